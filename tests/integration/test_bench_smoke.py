"""The benchmark suite runs end to end in quick mode and prints its table (no timing is asserted:
a benchmark is a measurement, not a test)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_prints_every_case(tools) -> None:  # type: ignore[no-untyped-def]
    for name in ("sops", "kustomize58", "helm3", "helm4"):
        tools.path(name)  # skips (or fails on CI) when setup.sh did not install it
    pytest.importorskip("azure.identity")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOPS_", "KVSOPS_"))}
    env["KVSOPS_TOOLS"] = str(Path(tools.sops).parent)
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "run.py"), "--quick", "--runs", "2"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "kvsops" in out.splitlines()[0] and "sops 3.11" in out.splitlines()[0]
    header = next(line for line in out.splitlines() if line.startswith("case"))
    for column in ("kvsops", "baseline", "ratio", "target", "kvsops MB", "base MB"):
        assert column in header
    lines = out.splitlines()
    rules = [i for i, line in enumerate(lines) if set(line) == {"-"}]
    body = lines[rules[0] + 1:rules[-1]]  # the table: between the header rule and the closing rule
    cases = {line.split()[0] for line in body if re.match(r"\d+(?:[de]|h\d)? ", line)}
    # 9 is a "skipped" line without root (the Go SDK needs port 443); 10 and 11 print lines of their own
    assert cases == {"1", "2", "3", "4d", "4e", "5", "6", "7h3", "7h4", "8", "9", "10", "11"}, out
    assert re.search(r"^10 +agent memory: at rest ", out, re.M) and re.search(r"^11 +\d+ concurrent renders", out, re.M)
    # outputs that must match sops byte for byte did match
    assert "DIFFERENT" not in out, out
    assert out.count("outputs identical") >= 5, out
    assert "rows in" in out.splitlines()[-1]
