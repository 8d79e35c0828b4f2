"""The small protocol every key backend implements."""

from __future__ import annotations

from kvsops.context import KeyContext
from kvsops.errors import KeyFailure, NotMyKey

__all__ = ["KeyContext", "KeyFailure", "NotMyKey", "Recipient", "Unwrapper"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping, Protocol
else:
    Protocol = object  # typing costs milliseconds at start-up; the protocols are for mypy only


class Recipient(Protocol):
    kind: str

    @property
    def id(self) -> str: ...

    def wrap(self, data_key: bytes) -> dict[str, str]:
        """Return the metadata entry fields (in sops' struct order, ``enc`` included)."""
        ...


class Unwrapper(Protocol):
    def unwrap(self, fields: Mapping[str, str]) -> bytes: ...
