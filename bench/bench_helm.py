"""One values file through the kvsops Helm downloader vs `sops -d`, whole process each time.

    .venv/bin/python bench/bench_helm.py [-n RUNS] [--keys N]

The file (a ~60-key values file, age-encrypted with a fresh key by the real sops) is decrypted N
times by each, exactly as Helm would start the downloader (the plugin shim, cwd, stdin /dev/null),
and the medians are printed with their ratio. Nothing is asserted: this is a measurement.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHIM = REPO / "helm-plugin" / "kvsops-getter-legacy" / "bin" / "kvsops-helm"


def _sops() -> str:
    for cand in (os.environ.get("KVSOPS_TOOLS", ""), str(REPO / ".tools/bin")):
        if cand and os.access(os.path.join(cand, "sops"), os.X_OK):
            return os.path.join(cand, "sops")
    raise SystemExit("sops not found: run scripts/setup.sh")


def _time(argv: list[str], cwd: Path, env: dict[str, str], runs: int) -> tuple[float, bytes]:
    samples, out = [], b""
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, check=True)
        samples.append(time.perf_counter() - t0)
        out = proc.stdout
    return statistics.median(samples), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--runs", type=int, default=21)
    ap.add_argument("--keys", type=int, default=60)
    ns = ap.parse_args()
    import pyrage

    ident = pyrage.x25519.Identity.generate()
    with tempfile.TemporaryDirectory(prefix="kvsops-bench-") as tmp:
        work = Path(tmp)
        (work / "key.txt").write_text(f"{ident}\n")
        lines = [f"key{i}:\n    password: value-{i}-{'x' * 20}\n    port: {1000 + i}" for i in range(ns.keys)]
        (work / "plain.yaml").write_text("\n".join(lines) + "\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SOPS_", "KVSOPS_"))}
        env.update(SOPS_AGE_KEY_FILE=str(work / "key.txt"), SOPS_DISABLE_VERSION_CHECK="1", HOME=tmp)
        sops = _sops()
        enc = subprocess.run([sops, "encrypt", "--age", str(ident.to_public()), "plain.yaml"], cwd=work, env=env,
                             check=True, capture_output=True).stdout
        (work / "secrets.yaml").write_bytes(enc)
        helm_env = dict(env, HELM_PLUGIN_DIR=str(SHIM.parent.parent), HELM_PLUGIN_NAME="kvsops-getter-legacy")
        ours_argv = [str(SHIM), "downloader", "", "", "", "secrets://secrets.yaml"]
        sops_argv = [sops, "decrypt", "secrets.yaml"]
        _time(ours_argv, work, helm_env, 2)  # warm the page cache for both
        _time(sops_argv, work, env, 2)
        ours, out_ours = _time(ours_argv, work, helm_env, ns.runs)
        theirs, out_sops = _time(sops_argv, work, env, ns.runs)
    same = "identical" if out_ours == out_sops else "DIFFERENT"
    print(f"values file: {ns.keys} keys, {len(enc)} bytes encrypted; {ns.runs} runs each; outputs {same}")
    print(f"kvsops downloader (shim + python): median {ours * 1000:7.1f} ms")
    print(f"sops -d                          : median {theirs * 1000:7.1f} ms")
    print(f"ratio kvsops / sops              : {ours / theirs:.2f}x")
    return 0 if same == "identical" else 1


if __name__ == "__main__":
    sys.exit(main())
