"""``kvsops install-plugins DIR``: the legacy plugin tree and a ``ksops`` shim, so existing KSOPS
and SopsSecretGenerator manifests run unchanged with kvsops.

Each file is a two-line shell script that execs the installed ``kvsops-krm`` by absolute path
(the one beside the running interpreter); kvsops-krm picks KRM or legacy mode from its argv, as
KSOPS does.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

MARKER = "# installed by kvsops install-plugins"
LAYOUT = (
    "kvsops/v1/sopsgenerator/SopsGenerator",
    "viaduct.ai/v1/ksops/ksops",
    "goabout.com/v1beta1/sopssecretgenerator/SopsSecretGenerator",
    "goabout.com/v1beta1/sopssecret/SopsSecret",
    "ksops",  # KRM functions: put DIR on PATH (``exec: {path: ksops}``)
)
USAGE = "usage: kvsops install-plugins [--force] DIR\n"


def krm_executable() -> str:
    for d in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        cand = Path(d) / "kvsops-krm"
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand.resolve())
    found = shutil.which("kvsops-krm")
    if found:
        return str(Path(found).resolve())
    from kvsops import errors

    raise errors.ConfigError("kvsops-krm is not installed beside this Python",
                             hint="install kvsops into this Python's environment (pip install ./kvsops from a clone)")


def shim(target: str) -> str:
    return f"#!/bin/sh\n{MARKER}\nexec {shlex.quote(target)} \"$@\"\n"


def install(directory: Path, *, force: bool = False) -> list[Path]:
    from kvsops import errors

    text = shim(krm_executable())
    written = []
    for rel in LAYOUT:
        path = directory / rel
        if path.exists() and not force and MARKER not in path.read_text("utf-8", "replace"):
            raise errors.OutputError(f"{path} exists and was not written by kvsops", hint="pass --force to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.kvsops-tmp")
        tmp.write_text(text, "utf-8")
        tmp.chmod(0o755)
        os.replace(tmp, path)
        written.append(path)
    return written


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
