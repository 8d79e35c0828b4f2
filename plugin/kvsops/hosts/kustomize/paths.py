"""Confine every input file to the kustomization root.

kustomize runs a generator with its cwd at the root of the kustomization that lists it, and its own
load restrictor covers only the files kustomize itself reads. KSOPS and SopsSecretGenerator read any
absolute, ``../`` or symlinked path, so one tenant's generator could decrypt another tenant's file
with the shared key. We refuse all three unless the operator opts out for a trusted setup.
"""

from __future__ import annotations

import os
import stat

from kvsops import errors

TYPE_CHECKING = False  # typing costs milliseconds of every kustomize generator's start-up
if TYPE_CHECKING:
    from typing import Mapping

OPT_OUT_ENV = "KVSOPS_ALLOW_OUTSIDE_ROOT"
MAX_FILE_BYTES = 64 * 1024 * 1024


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


class Root:
    """The directory every generator path is resolved against (and must stay inside)."""

    def __init__(self, directory: str | os.PathLike[str], *, allow_outside: bool = False) -> None:
        # Plain strings and os.path (pathlib would add ~4 ms of imports to every generator run).
        self.path = os.path.realpath(directory)
        self.allow_outside = allow_outside
        self._inside = self.path if self.path.endswith(os.sep) else self.path + os.sep

    @classmethod
    def from_env(cls, directory: str | os.PathLike[str], env: Mapping[str, str]) -> "Root":
        return cls(directory, allow_outside=_truthy(env.get(OPT_OUT_ENV)))

    def resolve(self, name: str) -> str:
        """The real path of ``name``; refuses absolute paths and anything that leaves the root."""
        if not name or "\x00" in name:
            raise errors.GeneratorError(f"invalid file path {name!r}")
        hint = f"paths are relative to the kustomization root; set {OPT_OUT_ENV}=true only for trusted configs"
        if self.allow_outside:
            return os.path.realpath(os.path.join(self.path, os.path.expanduser(name)))
        if os.path.isabs(name) or name.startswith("/"):
            raise errors.PathRefused(f"absolute path {name!r} refused", hint=hint)
        lexical = os.path.normpath(name)
        if lexical == ".." or lexical.startswith(".." + os.sep):
            raise errors.PathRefused(f"path {name!r} leaves the kustomization root", hint=hint)
        real = os.path.realpath(os.path.join(self.path, name))
        if real != self.path and not real.startswith(self._inside):
            raise errors.PathRefused(
                f"path {name!r} resolves (through a symlink) outside the kustomization root", hint=hint
            )
        return real

    def read(self, name: str) -> bytes:
        """Read a regular file inside the root (no devices, FIFOs or directories; size-capped)."""
        real = self.resolve(name)
        # O_NONBLOCK: opening a FIFO planted in the repo must not hang the render.
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(real, flags)
        except FileNotFoundError:
            raise errors.InputError(f"file {name!r} does not exist") from None
        except OSError as exc:
            raise errors.InputError(f"cannot open {name!r} ({exc.strerror or type(exc).__name__})") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise errors.InputError(f"{name!r} is not a regular file")
            if st.st_size > MAX_FILE_BYTES:
                raise errors.LimitExceeded(f"{name!r} is larger than {MAX_FILE_BYTES} bytes")
            # os.read sized by fstat: a buffered read(MAX_FILE_BYTES + 1) costs ~30 us per file.
            chunks: list[bytes] = []
            left = MAX_FILE_BYTES + 1
            while left > 0:
                chunk = os.read(fd, min(left, max(st.st_size + 1, 1 << 16)))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # b"" for an empty file
        finally:
            os.close(fd)
