"""Data keys: recovering a file's from its key groups through a Session (first success per group,
Shamir-combined across groups, a per-key report when nothing works), wrapping a new one for
recipients, and the MAC check that must hold before any plaintext leaves."""

from __future__ import annotations

from kvsops import errors, keys
from kvsops.errors import KeyFailure, NotMyKey
from kvsops.sops import metadata as md_mod, shamir, values
from kvsops.sops.metadata import KeyEntry, Metadata

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterable, Sequence

    from kvsops.keys.base import Recipient
    from kvsops.session import Session

DATA_KEY_SIZE = 32


def _describe(entry: KeyEntry) -> str:
    if keys.usable(entry.kind):
        try:
            return keys.backend(entry.kind).describe(entry.as_dict())
        except errors.KvsopsError:
            pass
    return entry.kind


def _sorted_group(group: Iterable[KeyEntry], order: Sequence[str]) -> list[KeyEntry]:
    """Listed kinds first in the given order, then local kinds, then network ones (stable)."""
    rank = {k: i for i, k in enumerate(order)}
    return sorted(group, key=lambda e: (rank.get(e.kind, len(rank)), 0 if _is_local(e.kind) else 1))


def _is_local(kind: str) -> bool:
    row = keys.info(kind)
    return row is not None and row.local


class _Tried:
    """What was tried for a data key: a public line per key, and how many of them a key policy
    refused (the error class follows from that count, never from the lines' text)."""

    __slots__ = ("lines", "refused")

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.refused = 0


def _group_part(group: Sequence[KeyEntry], session: Session, tried: _Tried, prefix: str) -> bytes | None:
    for entry in _sorted_group(group, session.order):
        name = prefix + _describe(entry)
        if not keys.usable(entry.kind):
            tried.lines.append(f"{name}: key type not supported by kvsops")
            continue
        if session.allowed_entry is not None:
            refusal = session.allowed_entry(entry)
            if refusal:
                tried.lines.append(f"{name}: refused by policy ({refusal})")
                tried.refused += 1
                continue
        try:
            return session.unwrap(entry)
        except NotMyKey as exc:
            tried.lines.append(f"{name}: {exc}")
        except KeyFailure as exc:
            raise errors.NoKeyAvailable(f"{_describe(entry)}: {exc}", hint=exc.hint) from None
    return None


def recover_data_key(md: Metadata, session: Session) -> bytes:
    """Unwrap the data key: first success per group; Shamir-combine when there are several."""
    if session.remote is not None:
        return session.remote.recover_data_key(md)
    tried = _Tried()
    parts: list[bytes] = []
    groups = md.key_groups
    need = 1 if len(groups) == 1 else (md.shamir_threshold or len(groups))
    for i, group in enumerate(groups):
        part = _group_part(group, session, tried, f"group {i + 1}: " if len(groups) > 1 else "")
        if part is not None:
            parts.append(part)
            if len(parts) >= need:
                break
    if len(parts) < need:
        raise _not_recovered(tried, bool(parts))
    key = parts[0] if len(groups) == 1 else shamir.combine(parts)
    if len(key) != DATA_KEY_SIZE:
        raise errors.NoKeyAvailable("the recovered data key has the wrong length (corrupt key material)")
    return key


def _not_recovered(tried: _Tried, some_parts: bool) -> errors.KvsopsError:
    message = "could not recover the data key: " + ("; ".join(tried.lines) or "no keys in file")
    if tried.refused and not some_parts:
        return errors.PolicyRefused(message, hint=(
            "the key policy for this project/repository does not allow the file's keys; re-encrypt the "
            "file for an allowed key or ask the platform admins to extend the policy"
        ))
    return errors.NoKeyAvailable(
        message, hint="check that a matching age identity, PGP secret key or Key Vault access is available"
    )


def _recipient_name(r: Recipient) -> str:
    # ``id`` may itself need the network (an Azure key URL without a version) and fail again.
    try:
        return str(r.id)
    except KeyFailure:
        return str(getattr(r, "kind", "key"))


def wrap_data_key(
    data_key: bytes, groups: Sequence[Sequence[Recipient]], threshold: int = 0
) -> tuple[tuple[tuple[KeyEntry, ...], ...], int]:
    """Wrap the data key (or one Shamir share per group) for every recipient."""
    if not groups or not any(groups):
        raise errors.UsageError(
            "no keys to encrypt with",
            hint="pass --age/--pgp/--azure-kv, or add a creation rule to .sops.yaml",
        )
    if len(groups) == 1:
        shares = [data_key]
        threshold = 0
    else:
        threshold = threshold or len(groups)
        threshold = min(threshold, len(groups))
        shares = shamir.split(data_key, len(groups), threshold)
    out = []
    for share, group in zip(shares, groups, strict=True):
        entries = []
        for r in group:
            try:
                fields = r.wrap(share)
            except KeyFailure as exc:
                raise errors.KeyWrapFailed(f"could not wrap the data key for {_recipient_name(r)}: {exc}") from None
            entries.append(KeyEntry.make(r.kind, fields))
        out.append(tuple(entries))
    return tuple(out), threshold


def _compare_digest(a: bytes, b: bytes) -> bool:
    # hmac.compare_digest is this function; importing hmac also loads OpenSSL's _hashlib.
    try:
        from _operator import _compare_digest as cmp
    except ImportError:  # pragma: no cover - other Python implementations
        from hmac import compare_digest as cmp  # type: ignore[no-redef]
    return bool(cmp(a, b))


def verify_mac(md: Metadata, key: bytes, computed: str) -> None:
    if not md.mac:
        raise errors.MacMismatch("the file has no MAC", hint="use --ignore-mac only if you trust the file")
    try:
        stored = values.decrypt(md.mac, key, md_mod.rfc3339_canonical(md.lastmodified))
    except errors.DecryptValueError:
        raise errors.MacMismatch(
            "cannot decrypt the MAC: the mac or lastmodified field was modified"
        ) from None
    if not isinstance(stored, str) or not _compare_digest(stored.encode(), computed.encode()):
        raise errors.MacMismatch(
            "MAC mismatch: the file's contents were modified after it was encrypted",
            hint="if you edited unencrypted values by hand, re-encrypt, or decrypt with --ignore-mac once",
        )
