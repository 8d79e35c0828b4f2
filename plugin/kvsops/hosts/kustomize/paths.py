"""Confine every input file to the kustomization root.

kustomize runs a generator with its cwd at the root of the kustomization that lists it, and its own
load restrictor covers only the files kustomize itself reads. KSOPS and SopsSecretGenerator read any
absolute, ``../`` or symlinked path, so one tenant's generator could decrypt another tenant's file
with the shared key. We refuse all three (race-free: :mod:`kvsops.fs`) unless the operator opts out
for a trusted setup.
"""

from __future__ import annotations

import os

from kvsops import fs

TYPE_CHECKING = False  # typing costs milliseconds of every kustomize generator's start-up
if TYPE_CHECKING:
    from typing import Mapping

OPT_OUT_ENV = "KVSOPS_ALLOW_OUTSIDE_ROOT"
HINT = f"paths are relative to the kustomization root; set {OPT_OUT_ENV}=true only for trusted configs"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


class Root:
    """The directory every generator path is resolved against (and must stay inside)."""

    def __init__(self, directory: str | os.PathLike[str], *, allow_outside: bool = False,
                 limit: int | None = None) -> None:
        # Plain strings and os.path (pathlib would add ~4 ms of imports to every generator run).
        self._beneath = fs.Beneath(os.fspath(directory), label="the kustomization root", hint=HINT, limit=limit)
        self.path = self._beneath.path
        self.allow_outside = allow_outside

    @classmethod
    def from_env(cls, directory: str | os.PathLike[str], env: Mapping[str, str]) -> "Root":
        return cls(directory, allow_outside=_truthy(env.get(OPT_OUT_ENV)), limit=fs.max_bytes(env))

    def read(self, name: str) -> bytes:
        """Read a regular file beneath the root (no devices, FIFOs or directories; size-capped)."""
        if self.allow_outside and name and "\x00" not in name:
            path = os.path.join(self.path, os.path.expanduser(name))
            return fs.read_path(path, fs.show(name), limit=self._beneath.limit)
        return self._beneath.read(name)
