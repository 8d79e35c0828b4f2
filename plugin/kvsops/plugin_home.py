"""kvsops' legacy kustomize plugin home: the generator kinds it serves and the shims that run them.

kustomize looks a legacy exec plugin up at ``$KUSTOMIZE_PLUGIN_HOME/<group>/<version>/<lowercase
kind>/<Kind>`` (built from the config's apiVersion and kind). ``kvsops install-plugins DIR`` writes
one shim per served kind there; each is a two-line shell script that execs the installed
``kvsops-krm`` by absolute path (the one beside the running interpreter), which picks KRM or legacy
mode from its argv, as KSOPS does. The Argo CD sidecar runs kustomize with such a home only
(see kvsops.hosts.argocd.localize), so this table is the whole list of programs kustomize can run
there.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import sysconfig
from pathlib import Path

MARKER = "# installed by kvsops install-plugins"
# Set by the Argo CD sidecar for kustomize: the private localized copy kustomize builds, and the
# checkout it mirrors; kvsops' legacy plugin maps its working directory from one to the other.
COPY_ENV = "KVSOPS_KUSTOMIZE_COPY"
SOURCE_ENV = "KVSOPS_KUSTOMIZE_SOURCE"

# kind -> apiVersion kvsops serves it under (KSOPS ignores the version; kvsops' own kinds check it).
SERVED = {
    "SopsGenerator": "kvsops/v1",
    "ksops": "viaduct.ai/v1",
    "SopsSecretGenerator": "goabout.com/v1beta1",
    "SopsSecret": "goabout.com/v1beta1",
}
# Program names of kvsops' function configs (and of the tools it replaces), by basename.
FUNCTION_NAMES = frozenset({"kvsops-krm", "kvsops", "ksops", "SopsSecretGenerator"})


def plugin_path(kind: str) -> str:
    """``group/version/lowercase kind/Kind`` below the plugin home, as kustomize builds it."""
    return f"{SERVED[kind]}/{kind.lower()}/{kind}"


LAYOUT = (*(plugin_path(k) for k in SERVED), "ksops")  # "ksops": KRM functions find it on PATH


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


def check(directory: str) -> str:
    """A configured plugin home: absolute, and every served kind's plugin is a kvsops shim."""
    from kvsops import errors

    if not os.path.isabs(directory):
        raise errors.ConfigError(f"the kustomize plugin home {directory!r} is not an absolute path")
    for kind in SERVED:
        path = os.path.join(directory, plugin_path(kind))
        try:
            with open(path, "rb") as fh:
                head = fh.read(4096)
        except OSError:
            head = b""
        if MARKER.encode() not in head or not os.access(path, os.X_OK):
            raise errors.ConfigError(
                f"the kustomize plugin home {directory} has no kvsops plugin for {kind}",
                hint=f"populate it at image build: kvsops install-plugins {directory}",
            )
    return directory
