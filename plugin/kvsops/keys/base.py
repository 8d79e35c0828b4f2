"""The small protocol every key backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Protocol


class NotMyKey(Exception):
    """This backend holds no key for the entry: try the next one. The message is public."""


class KeyFailure(Exception):
    """A real failure (permission, network, corrupt wrapped key). The message is public."""


@dataclass
class KeyContext:
    """What a backend may read from the outside world, injected (never read from os.environ)."""

    env: Mapping[str, str]
    home: str
    # Runs a command without a shell: (argv, stdin bytes, extra env) -> (rc, stdout, stderr).
    run: Callable[..., tuple[int, bytes, bytes]] | None = None
    # Absolute monotonic deadline for network operations (time.monotonic() value), or None.
    deadline: float | None = None
    # Free-form per-process state shared by backends (clients, credentials).
    state: dict[str, object] = field(default_factory=dict)


class Recipient(Protocol):
    kind: str

    @property
    def id(self) -> str: ...

    def wrap(self, data_key: bytes) -> dict[str, str]:
        """Return the metadata entry fields (in sops' struct order, ``enc`` included)."""
        ...


class Unwrapper(Protocol):
    def unwrap(self, fields: Mapping[str, str]) -> bytes: ...
