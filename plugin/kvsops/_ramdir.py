"""Where kvsops puts the only files it ever writes while decrypting: ``edit``'s plaintext and the
Helm downloader's private GnuPG home. Both belong in RAM so that no plaintext or private key
reaches a disk: ``/dev/shm`` when it is a writable directory, else (no choice left) the system's
temp dir. ``KVSOPS_SHM_DIR`` names another RAM-backed directory (a container's memory-backed
``emptyDir``, a tmpfs under ``/run``); it must exist, since falling back to a disk would defeat it.
"""

from __future__ import annotations

import os

from kvsops.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

ENV = "KVSOPS_SHM_DIR"
SHM = "/dev/shm"


def ram_dir(env: Mapping[str, str]) -> str | None:
    """The directory for private temp dirs (``None``: the system's temp dir)."""
    chosen = env.get(ENV, "")
    if chosen:
        if not (os.path.isabs(chosen) and os.path.isdir(chosen) and os.access(chosen, os.W_OK | os.X_OK)):
            raise ConfigError(f"{ENV} must name an existing, writable directory (an absolute path)")
        return chosen
    return SHM if os.path.isdir(SHM) and os.access(SHM, os.W_OK | os.X_OK) else None
