"""The protocol every key backend module implements, and the small helpers they share."""

from __future__ import annotations

from kvsops.context import KeyContext
from kvsops.errors import KeyFailure, NotMyKey

__all__ = ["KeyContext", "KeyFailure", "NotMyKey", "comma_list", "one_string"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping, Protocol

    class Recipient(Protocol):
        """Something a data key can be wrapped for (parsed from a CLI or ``.sops.yaml`` spec)."""

        kind: str

        @property
        def id(self) -> str: ...

        def wrap(self, data_key: bytes) -> dict[str, str]:
            """Return the metadata entry fields (in sops' struct order, ``enc`` included)."""
            ...

    class Unwrapper(Protocol):
        """Holds the keys of one kind a Session may use. ``unwrap`` raises ``NotMyKey`` when it
        holds no matching key (try the next one) and ``KeyFailure`` for a real error. It must be
        thread-safe (files are decrypted concurrently) and reuse clients for the whole process."""

        def unwrap(self, fields: Mapping[str, object]) -> bytes: ...

    class KeyBackend(Protocol):
        """A key type's module (``kvsops.keys.age`` is the example); its row in
        ``kvsops.keys.KINDS`` says the rest (flags, env, .sops.yaml key, policy list, order)."""

        KIND: str

        def describe(self, fields: Mapping[str, object]) -> str:
            """A public identifier of an entry for messages (recipient, fingerprint, key URL)."""
            ...

        def entry_spec(self, fields: Mapping[str, object]) -> str:
            """The entry's key as a spec (what ``recipient`` takes, what sops' ToString prints)."""
            ...

        def same_key(self, have: str, want: str) -> bool:
            """Whether the spec ``want`` (a flag, a rule) names the key of the entry spec ``have``."""
            ...

        def config_specs(self, item: object) -> list[str]:
            """One item of a ``.sops.yaml`` key group's list as specs; ValueError on a wrong shape."""
            ...

        def policy_key(self, text: str) -> str:
            """An item of a key policy's list, canonical; ValueError when it is not one."""
            ...

        def policy_allows(self, allowed: frozenset[str], fields: Mapping[str, object]) -> bool:
            """Whether an entry is one of the canonical policy items ``allowed``."""
            ...

        def recipient(self, spec: str, ctx: KeyContext) -> Recipient:
            """Parse a spec; ValueError when it is not one of this kind."""
            ...

        def Unwrapper(self, ctx: KeyContext) -> Unwrapper: ...  # noqa: N802 - the backend's class


_NULLS = ("", "~", "null", "Null", "NULL")  # what YAML's BaseLoader leaves of a null


def comma_list(value: object, name: str) -> list[str]:
    """A key list as ``.sops.yaml`` and the flags give it: a comma-separated string (trimmed, empties
    skipped) or a list of strings; ValueError for anything else."""
    if value is None or value in _NULLS:
        return []
    if isinstance(value, str):
        return [k.strip() for k in value.split(",") if k.strip()]
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise ValueError(f"invalid {name} key configuration: expected strings in the list")
        return [str(v) for v in value]
    raise ValueError(f"invalid {name} key configuration: expected a string or a list of strings")


def one_string(value: object, name: str) -> str:
    """One string (a null is ""); ValueError for anything else."""
    if value is None or value in _NULLS:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value
