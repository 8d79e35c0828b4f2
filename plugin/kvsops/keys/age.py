"""age keys (X25519 and SSH recipients) through pyrage, a maintained age implementation."""

from __future__ import annotations

from _thread import allocate_lock

from kvsops.keys import keyring
from kvsops.keys.armor import armor, dearmor
from kvsops.keys.base import KeyContext, KeyFailure, NotMyKey

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

KIND = "age"
LOCAL = True


def describe(fields: Mapping[str, object]) -> str:
    return f"age recipient {fields.get('recipient', '?')}"


def _parse_recipient(spec: str):  # type: ignore[no-untyped-def]
    import pyrage

    spec = spec.strip()
    try:
        if spec.startswith(("ssh-ed25519 ", "ssh-rsa ")):
            return pyrage.ssh.Recipient.from_str(spec)
        if spec.startswith("age1pq1"):
            return pyrage.tagpq.Recipient.from_str(spec) if hasattr(pyrage, "tagpq") else None
        return pyrage.x25519.Recipient.from_str(spec)
    except Exception:  # pyrage raises RecipientError / ValueError; the spec is public
        return None


class Recipient:
    kind = KIND

    def __init__(self, spec: str) -> None:
        self.spec = spec.strip()
        self._r = _parse_recipient(self.spec)
        if self._r is None:
            raise ValueError(f"invalid age recipient {self.spec!r}")

    @property
    def id(self) -> str:
        return self.spec

    def wrap(self, data_key: bytes) -> dict[str, str]:
        import pyrage

        return {"recipient": self.spec, "enc": armor(pyrage.encrypt(data_key, [self._r]))}


def recipient(spec: str, ctx: KeyContext | None = None) -> Recipient:
    return Recipient(spec)


class Unwrapper:
    def __init__(self, ctx: KeyContext) -> None:
        self._ctx = ctx
        self._lock = allocate_lock()
        self._loaded = False
        self._x25519: list[tuple[str, object]] = []  # (public recipient, identity)
        self._others: list[object] = []
        self._sources: list[str] = []
        self._problems: tuple[str, ...] = ()

    def _load(self, recipient_hint: str) -> None:
        import pyrage

        with self._lock:
            if self._loaded:
                return
            material = keyring.load_age(self._ctx.env, recipient_hint)
            for _origin, ident in material.identities:
                try:
                    if ident.startswith("AGE-SECRET-KEY-1"):
                        obj = pyrage.x25519.Identity.from_str(ident)
                        self._x25519.append((str(obj.to_public()), obj))
                    elif ident.startswith("AGE-SECRET-KEY-PQ-1") and hasattr(pyrage, "tagpq"):
                        self._others.append(pyrage.tagpq.Identity.from_str(ident))  # pragma: no cover
                except Exception:
                    self._problems += (f"{_origin}: an identity line is not a valid age identity",)
            for origin, buf in material.ssh_keys:
                try:
                    self._others.append(pyrage.ssh.Identity.from_buffer(buf))
                except Exception:
                    self._problems += (f"{origin}: not a usable unencrypted ssh-ed25519/ssh-rsa key",)
            self._sources = material.sources
            self._problems = material.problems + self._problems
            self._loaded = True

    def unwrap(self, fields: Mapping[str, object]) -> bytes:
        import pyrage

        recipient = str(fields.get("recipient", "")).strip()
        self._load(recipient)
        try:
            blob = dearmor(str(fields.get("enc", "")))
        except ValueError as exc:
            raise KeyFailure(f"the wrapped data key is malformed ({exc})") from None
        matching = [obj for pub, obj in self._x25519 if pub == recipient]
        candidates = matching or (self._others if self._others else [])
        if not matching and not self._others:
            raise NotMyKey(self._why_none())
        try:
            return bytes(pyrage.decrypt(blob, candidates))
        except pyrage.DecryptError:
            if matching:
                raise KeyFailure("the identity matches the recipient but the wrapped data key does not decrypt") from None
            raise NotMyKey(self._why_none()) from None

    def _why_none(self) -> str:
        if not self._sources and not self._x25519:
            why = "no age identity found (SOPS_AGE_KEY, SOPS_AGE_KEY_FILE, SOPS_AGE_KEY_CMD, sops/age/keys.txt, ssh keys)"
        else:
            why = f"none of the {len(self._x25519) + len(self._others)} loaded identities matches"
        if self._problems:
            why += "; " + "; ".join(self._problems)
        return why


def generate() -> tuple[str, str]:
    """A new X25519 identity: (identity string, recipient string)."""
    import pyrage

    ident = pyrage.x25519.Identity.generate()
    return str(ident), str(ident.to_public())
