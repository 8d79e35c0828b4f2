"""The repository is clean under ruff, configured in pyproject.toml [tool.ruff] (E, F, I, B; line
length 120; Python 3.10). ruff comes with the test extra, so a missing ruff fails here: no skip."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# One finding of each selected family, judged under the project's own settings (a file name
# inside the package): unsorted imports (I001), an unused import (F401), a 121-character line
# (E501; the 120-character line above it passes), zip() without strict= (B905, py310 and later).
PROBE = f"""\
import sys
import os

X = {'1' * 116}
Y = {'1' * 117}
print(list(zip(sys.argv, sys.argv)))
"""


def ruff(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert importlib.util.find_spec("ruff") is not None, "ruff is not installed: scripts/setup.sh installs .[test]"
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=ROOT, input=stdin, capture_output=True,
                          text=True, timeout=300)


def test_ruff_is_clean() -> None:
    proc = ruff("check", "--no-cache", "--output-format", "concise")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "All checks passed" in proc.stdout


def test_ruff_checks_every_python_file_of_the_repository() -> None:
    proc = ruff("check", "--show-files")
    assert proc.returncode == 0, proc.stderr
    checked = {Path(line).resolve() for line in proc.stdout.splitlines() if line.endswith(".py")}
    tracked = subprocess.run(["git", "ls-files", "-z", "*.py"], cwd=ROOT, capture_output=True, check=True).stdout
    missing = {p for p in (ROOT / n for n in tracked.decode().split("\0") if n) if p.resolve() not in checked}
    assert not missing, sorted(str(p.relative_to(ROOT)) for p in missing)


def test_the_configured_rules_are_in_force() -> None:
    proc = ruff("check", "--no-cache", "--output-format", "concise", "--stdin-filename", "plugin/kvsops/probe.py", "-",
                stdin=PROBE)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    found = {(int(line.split(":")[1]), line.split()[1])
             for line in proc.stdout.splitlines() if line.startswith("plugin/")}
    assert found == {(1, "I001"), (2, "F401"), (5, "E501"), (6, "B905")}, proc.stdout
