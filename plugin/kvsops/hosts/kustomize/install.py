"""``kvsops install-plugins DIR``: the legacy plugin tree and a ``ksops`` shim, so existing KSOPS
and SopsSecretGenerator manifests run unchanged with kvsops (the layout and the shims live in
kvsops.plugin_home, shared with the Argo CD host).
"""

from __future__ import annotations

import sys
from pathlib import Path

from kvsops.plugin_home import LAYOUT, MARKER, install, krm_executable, shim

__all__ = ["LAYOUT", "MARKER", "install", "krm_executable", "main", "shim"]
USAGE = "usage: kvsops install-plugins [--force] DIR\n"


def main(argv: list[str]) -> int:
    from kvsops.report import guarded

    force = "--force" in argv
    rest = [a for a in argv if a != "--force"]
    if len(rest) != 1 or rest[0].startswith("-"):
        sys.stderr.write(USAGE)
        return 0 if rest and rest[0] in ("-h", "--help") else 2

    def work() -> int:
        root = Path(rest[0]).absolute()
        for path in install(root, force=force):
            sys.stdout.write(f"{path}\n")
        sys.stderr.write(
            f"kvsops: legacy plugins: export KUSTOMIZE_PLUGIN_HOME={root}\n"
            f"kvsops: KRM (exec: {{path: ksops}}): put {root} on PATH\n"
        )
        return 0

    return guarded(work)
