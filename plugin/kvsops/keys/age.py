"""age keys: X25519 and SSH recipients through pyrage (a maintained age implementation), and
post-quantum ``age1pq1...`` recipients (mlkem768x25519) through kvsops.keys.age_pq, which pyrage
lacks. Neither library is imported until a key of its kind is used."""

from __future__ import annotations

from _thread import allocate_lock

from kvsops.keys import keyring
from kvsops.keys.armor import armor, dearmor
from kvsops.keys.base import KeyContext, KeyFailure, NotMyKey, comma_list

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

    from kvsops.keys import age_pq

KIND = "age"


PQ_PREFIX = "age1pq1"
_PQ_IDENTITY_PREFIXES = ("AGE-SECRET-KEY-PQ-1", "AGE-PLUGIN-PQ-1")


def describe(fields: Mapping[str, object]) -> str:
    return f"age recipient {short(str(fields.get('recipient', '?')))}"


def entry_spec(fields: Mapping[str, object]) -> str:
    return str(fields.get("recipient", "") or "").strip()


def same_key(have: str, want: str) -> bool:
    return have == want


def config_specs(item: object) -> list[str]:
    return comma_list(item, "age")  # sops splits each item on commas


def policy_key(text: str) -> str:
    return text.strip()


def policy_allows(allowed: frozenset[str], fields: Mapping[str, object]) -> bool:
    return str(fields.get("recipient", "")).strip() in allowed


def short(recipient: str) -> str:
    """A recipient for messages: post-quantum ones are ~1,950 characters."""
    recipient = recipient.strip()
    return recipient if len(recipient) <= 100 else f"{recipient[:24]}...{recipient[-8:]}"


def _parse_recipient(spec: str) -> object | None:
    """A pyrage X25519 or SSH recipient (pyrage has no type information), or None."""
    import pyrage

    try:
        if spec.startswith(("ssh-ed25519 ", "ssh-rsa ")):
            parsed: object = pyrage.ssh.Recipient.from_str(spec)
        else:
            parsed = pyrage.x25519.Recipient.from_str(spec)
    except Exception:  # pyrage raises RecipientError / ValueError; the spec is public
        return None
    return parsed


class Recipient:
    kind = KIND

    def __init__(self, spec: str) -> None:
        self.spec = spec.strip()
        self._pq = b""
        self._r = None
        if self.spec.startswith(PQ_PREFIX):
            from kvsops.keys import age_pq

            try:
                self._pq = age_pq.recipient_public_key(self.spec)
            except ValueError as exc:
                raise ValueError(f"invalid age recipient {short(self.spec)!r} ({exc})") from None
            return
        self._r = _parse_recipient(self.spec)
        if self._r is None:
            raise ValueError(f"invalid age recipient {self.spec!r}")

    @property
    def id(self) -> str:
        return self.spec

    def wrap(self, data_key: bytes) -> dict[str, str]:
        if self._pq:
            from kvsops.keys import age_pq

            return {"recipient": self.spec, "enc": armor(age_pq.encrypt(data_key, [self._pq]))}
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
        self._pq_text: list[tuple[str, str]] = []  # (origin, identity string): parsed on first PQ entry
        self._pq: list[age_pq.Identity] | None = None
        self._sources: list[str] = []
        self._problems: tuple[str, ...] = ()

    def _load(self, recipient_hint: str) -> None:
        with self._lock:
            if self._loaded:
                return
            material = keyring.load_age(self._ctx.env, recipient_hint)
            for origin, ident in material.identities:
                if ident.startswith(_PQ_IDENTITY_PREFIXES):
                    self._pq_text.append((origin, ident))
                elif ident.startswith("AGE-SECRET-KEY-1"):
                    self._add_x25519(origin, ident)
            if material.ssh_keys:
                import pyrage

                for origin, buf in material.ssh_keys:
                    try:
                        self._others.append(pyrage.ssh.Identity.from_buffer(buf))
                    except Exception:
                        self._problems += (f"{origin}: not a usable unencrypted ssh-ed25519/ssh-rsa key",)
            self._sources = material.sources
            self._problems = material.problems + self._problems
            self._loaded = True

    def _add_x25519(self, origin: str, ident: str) -> None:
        import pyrage  # here, not for a key file of post-quantum identities only

        try:
            obj = pyrage.x25519.Identity.from_str(ident)
        except Exception:
            self._problems += (f"{origin}: an identity line is not a valid age identity",)
            return
        self._x25519.append((str(obj.to_public()), obj))

    def unwrap(self, fields: Mapping[str, object]) -> bytes:
        recipient = str(fields.get("recipient", "")).strip()
        self._load(recipient)
        try:
            blob = dearmor(str(fields.get("enc", "")))
        except ValueError as exc:
            raise KeyFailure(f"the wrapped data key is malformed ({exc})") from None
        if recipient.startswith(PQ_PREFIX):
            return self._unwrap_pq(recipient, blob)
        import pyrage

        matching = [obj for pub, obj in self._x25519 if pub == recipient]
        candidates = matching or (self._others if self._others else [])
        if not matching and not self._others:
            raise NotMyKey(self._why_none())
        try:
            return bytes(pyrage.decrypt(blob, candidates))
        except pyrage.DecryptError:
            if matching:
                raise KeyFailure(
                    "the identity matches the recipient but the wrapped data key does not decrypt"
                ) from None
            raise NotMyKey(self._why_none()) from None

    def _unwrap_pq(self, recipient: str, blob: bytes) -> bytes:
        # Only the identity whose recipient is the entry's is tried, as for X25519: an entry cannot
        # borrow another key of this process (the Argo CD key policy relies on it).
        from kvsops.keys import age_pq

        matching = [i for i in self._pq_identities() if i.recipient == recipient]
        if not matching:
            raise NotMyKey(self._why_none())
        try:
            return age_pq.decrypt(blob, matching)
        except age_pq.NoMatch:
            raise KeyFailure("the identity matches the recipient but the wrapped data key does not decrypt") from None
        except age_pq.Malformed as exc:
            raise KeyFailure(f"the wrapped data key is malformed ({exc})") from None

    def _pq_identities(self) -> list[age_pq.Identity]:
        from kvsops.keys import age_pq

        with self._lock:
            if self._pq is None:
                self._pq = []
                for origin, text in self._pq_text:
                    try:
                        self._pq.append(age_pq.parse_identity(text))
                    except ValueError:
                        self._problems += (f"{origin}: an identity line is not a valid age identity",)
            return self._pq

    def _why_none(self) -> str:
        count = len(self._x25519) + len(self._others) + len(self._pq_text)
        if not self._sources and not count:
            why = ("no age identity found "
                   "(SOPS_AGE_KEY, SOPS_AGE_KEY_FILE, SOPS_AGE_KEY_CMD, sops/age/keys.txt, ssh keys)")
        else:
            why = f"none of the {count} loaded identities matches"
        if self._problems:
            why += "; " + "; ".join(self._problems)
        return why


def generate(pq: bool = False) -> tuple[str, str]:
    """A new identity, X25519 or post-quantum (``pq``): (identity string, recipient string)."""
    if pq:
        from kvsops.keys import age_pq

        new = age_pq.generate()
        return str(new), new.recipient
    import pyrage

    ident = pyrage.x25519.Identity.generate()
    return str(ident), str(ident.to_public())


if TYPE_CHECKING:  # mypy checks this module against the backend protocol
    from kvsops.keys import age as _this
    from kvsops.keys.base import KeyBackend

    _CONFORMS: KeyBackend = _this
