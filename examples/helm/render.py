"""Render the example chart with secrets.yaml decrypted by the kvsops downloader, in memory.

What `helm template demo ./chart -f secrets://secrets.yaml` does with the kvsops getter installed:
Helm runs `<plugin>/bin/kvsops-helm downloader "" "" "" secrets://secrets.yaml` in the current
directory and reads the plaintext from its stdout. Here the same process is started the same way,
and the values go to Helm's real template engine (helm-python-sdk). Run from this directory:

    python render.py        # uses examples/keys/demo-age-key.txt (a PUBLIC demo key)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SHIM = REPO / "helm-plugin" / "kvsops-getter-legacy" / "bin" / "kvsops-helm"


def download(href: str) -> bytes:
    env = dict(os.environ, SOPS_AGE_KEY_FILE=str(REPO / "examples/keys/demo-age-key.txt"),
               HELM_PLUGIN_DIR=str(SHIM.parent.parent), HELM_PLUGIN_NAME="kvsops-getter-legacy")
    proc = subprocess.run([str(SHIM), "downloader", "", "", "", href], cwd=HERE, env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"downloader failed for {href} (exit {proc.returncode})")
    return proc.stdout


def main() -> int:
    import helm_python as helm

    values = helm.values_from_yaml(download("secrets://secrets.yaml").decode())
    with helm.Chart.load(str(HERE / "chart")) as chart:
        manifests = chart.render(values, name="demo", namespace="default")
    for name in sorted(manifests):
        sys.stdout.write(f"---\n# Source: {name}\n{manifests[name].strip()}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
