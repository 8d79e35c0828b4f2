"""decrypt / encrypt: the one path every entry point calls. Bytes in, bytes (or trees) out.

Nothing here writes files; plaintext leaves only as the return value, and only after the MAC
has been verified. The public facade the hosts and the CLI call: the Session is kvsops.session's,
data-key recovery, wrapping and the MAC check are kvsops.datakey's (both re-exported here).
"""

from __future__ import annotations

import os

from kvsops import errors, keys
from kvsops.datakey import DATA_KEY_SIZE, recover_data_key, verify_mac, wrap_data_key
from kvsops.session import DEADLINE_ENV, Session, deadline_from_env, decryption_order, key_id
from kvsops.sops import metadata as md_mod, stores, values, walk
from kvsops.sops.metadata import KeyEntry, Metadata
from kvsops.sops.rules import SelectionRule
from kvsops.sops.tree import Branch

# Start-up time is a feature (every Helm values file and kustomize generator is a new process):
# typing, dataclasses, threading and concurrent.futures stay out of the decrypt path.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Sequence

    from kvsops.keys.base import Recipient

__all__ = [
    "DATA_KEY_SIZE", "DEADLINE_ENV", "Decrypted", "Session", "deadline_from_env", "decrypt", "decrypt_bytes",
    "decrypt_files", "decrypt_many", "decryption_order", "emit_plain", "encrypt_bytes", "encrypt_docs", "file_status",
    "is_encrypted", "key_id", "load_encrypted", "recover_data_key", "reencrypt", "rewrap", "verify_mac",
    "wrap_data_key",
]


# ----------------------------------------------------------------------------- decrypt


class Decrypted:
    __slots__ = ("docs", "metadata", "fmt", "data_key", "stash")

    def __init__(self, docs: list[Branch], metadata: Metadata, fmt: str, data_key: bytes,
                 stash: walk.Stash | None = None) -> None:
        self.docs = docs
        self.metadata = metadata
        self.fmt = fmt
        self.data_key = data_key
        self.stash = walk.Stash() if stash is None else stash

    def __repr__(self) -> str:  # never the data key or the plaintext
        return f"Decrypted(fmt={self.fmt!r}, documents={len(self.docs)})"


def load_encrypted(data: bytes, fmt: str) -> tuple[list[Branch], Metadata]:
    try:
        docs, raw = stores.get(fmt).load_encrypted(data)
    except errors.InputError as exc:
        # sops returns a store's parse error of an encrypted file unwrapped: exit 1, not the
        # CouldNotReadInputFile (2) of a plaintext file that does not parse.
        exc.exit_code = 1
        raise
    md = md_mod.parse(raw)
    if not stores.get(fmt).STRUCTURED:
        md = md.with_(rule=None)
    return docs, md


def decrypt(
    data: bytes,
    fmt: str,
    *,
    session: Session | None = None,
    ignore_mac: bool = False,
    where: str | None = None,
    keep_ivs: bool = True,
) -> Decrypted:
    """Parse, unwrap the data key, decrypt every value and verify the MAC.

    ``keep_ivs`` remembers each value's IV so that re-encrypting an unchanged value reproduces it
    (edit, set, rotate); read-only callers pass False and save a map entry per value."""
    session = session or Session()  # no process-wide Session: a render owns its keys
    try:
        docs, md = load_encrypted(data, fmt)
        key = recover_data_key(md, session)
        return _decrypt_values(docs, md, fmt, key, ignore_mac, keep_ivs)
    except errors.KvsopsError as exc:
        raise (exc.with_where(where) if where else exc) from None


def _decrypt_values(docs: list[Branch], md: Metadata, fmt: str, key: bytes, ignore_mac: bool,
                    keep_ivs: bool = True) -> Decrypted:
    stash = walk.Stash() if keep_ivs else None
    plain, computed = walk.decrypt_docs(docs, key, md.rule, md.mac_only_encrypted, stash)
    if not ignore_mac:
        verify_mac(md, key, computed)
    return Decrypted(plain, md, fmt, key, stash)


def decrypt_bytes(
    data: bytes,
    fmt: str,
    *,
    output_fmt: str | None = None,
    session: Session | None = None,
    ignore_mac: bool = False,
    where: str | None = None,
    indent: int | None = None,
) -> bytes:
    dec = decrypt(data, fmt, session=session, ignore_mac=ignore_mac, where=where, keep_ivs=False)
    return emit_plain(dec.docs, output_fmt or fmt, where=where, indent=indent)


def emit_plain(docs: list[Branch], fmt: str, *, where: str | None = None, indent: int | None = None) -> bytes:
    """``indent``: sops' ``--indent`` / ``stores.<format>.indent`` (None: the format's default)."""
    try:
        return stores.get(fmt).emit_plain(docs, indent)
    except errors.KvsopsError as exc:
        raise (exc.with_where(where) if where else exc) from None


def decrypt_many(
    items: Sequence[tuple[str, bytes, str]],
    *,
    session: Session | None = None,
    workers: int = 8,
    ignore_mac: bool = False,
    keep_ivs: bool = False,
) -> list[Decrypted]:
    """Decrypt many files (``(where, data, fmt)``) in one process; the first error (in input order)
    is raised and nothing is returned.

    Parsing and value decryption are CPU work under the GIL: threads would only add switching, so
    they run in turn. The data-key unwraps are what waits (Key Vault round trips, gpg): those run on
    up to ``workers`` threads, and the Session unwraps each distinct wrapped key once. Each file
    goes through the same steps as :func:`decrypt`, in the same order. ``keep_ivs`` is off: renderers
    only read (see :func:`decrypt`)."""
    session = session or Session()
    jobs = [_Job(where, data, fmt) for where, data, fmt in items]
    for job in jobs:
        job.attempt(job.load)
    # Only files before the first failure can change the outcome: no unwraps (no vault calls) after it.
    todo = _until_failed(jobs)
    waits = session.remote is not None or any(not _in_process(e.kind) for job in todo for e in job.metadata().entries())
    if waits and workers > 1 and len(todo) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(workers, len(todo))) as pool:
            list(pool.map(lambda job: job.attempt(job.unwrap, session), todo))
    else:
        for job in todo:
            job.attempt(job.unwrap, session)
    for job in jobs:
        if job.error is None:
            job.attempt(job.finish, ignore_mac, keep_ivs)
        if job.error is not None:
            raise job.error from None
    return [job.decrypted() for job in jobs]


def decrypt_files(items: Sequence[tuple[str, bytes, str]], out: str, *, session: Session) -> list[bytes | None]:
    """For ``(where, data, fmt)`` items that may be SOPS files: None for each that is not one
    (:func:`is_encrypted`), else its plaintext emitted as ``out``. The SOPS files are decrypted
    together (:func:`decrypt_many`: the first error in input order)."""
    encrypted = [i for i, (_w, data, fmt) in enumerate(items) if is_encrypted(data, fmt)]
    done = decrypt_many([items[i] for i in encrypted], session=session) if encrypted else []
    plain: list[bytes | None] = [None] * len(items)
    for i, dec in zip(encrypted, done, strict=True):
        plain[i] = emit_plain(dec.docs, out, where=items[i][0])
    return plain


def _until_failed(jobs: list[_Job]) -> list[_Job]:
    """The jobs before the first that failed."""
    out = []
    for job in jobs:
        if job.error is not None:
            break
        out.append(job)
    return out


class _Job:
    """One file of :func:`decrypt_many`: what is known of it so far, or why it failed."""

    __slots__ = ("where", "data", "fmt", "docs", "md", "key", "done", "error")

    def __init__(self, where: str, data: bytes, fmt: str) -> None:
        self.where, self.data, self.fmt = where, data, fmt
        self.docs: list[Branch] = []
        self.md: Metadata | None = None
        self.key = b""
        self.done: Decrypted | None = None
        self.error: BaseException | None = None

    def attempt(self, step: Callable[..., object], *args: object) -> None:
        """Run a step; a failure is kept (with this file's name) for decrypt_many to raise in order."""
        try:
            step(*args)
        except errors.KvsopsError as exc:
            self.error = exc.with_where(self.where) if self.where else exc
        except Exception as exc:  # noqa: BLE001 - raised by decrypt_many, in input order
            self.error = exc

    def metadata(self) -> Metadata:
        assert self.md is not None, "loaded"
        return self.md

    def load(self) -> None:
        self.docs, self.md = load_encrypted(self.data, self.fmt)

    def unwrap(self, session: Session) -> None:
        self.key = recover_data_key(self.metadata(), session)

    def finish(self, ignore_mac: bool, keep_ivs: bool) -> None:
        self.done = _decrypt_values(self.docs, self.metadata(), self.fmt, self.key, ignore_mac, keep_ivs)

    def decrypted(self) -> Decrypted:
        assert self.done is not None, "finished"
        return self.done


def _in_process(kind: str) -> bool:
    """Unwrapped by CPU work in this process (nothing to wait for): no threads for it."""
    row = keys.info(kind)
    return row is not None and row.in_process


def is_encrypted(data: bytes, fmt: str) -> bool:
    """Metadata present with a version and a mac; False for anything that does not load."""
    try:
        return file_status(data, fmt)
    except errors.KvsopsError:
        return False


def file_status(data: bytes, fmt: str) -> bool:
    """sops' filestatus: False without sops metadata (or without its version or mac); a file that
    does not load at all raises."""
    try:
        _docs, raw = stores.get(fmt).load_encrypted(data)
    except errors.MetadataNotFound:
        return False
    return isinstance(raw, Branch) and bool(raw.get("version")) and bool(raw.get("mac"))


# ----------------------------------------------------------------------------- encrypt


def encrypt_docs(
    docs: list[Branch],
    fmt: str,
    key_groups: tuple[tuple[KeyEntry, ...], ...],
    data_key: bytes,
    *,
    rule: SelectionRule | None,
    threshold: int = 0,
    mac_only_encrypted: bool = False,
    stash: walk.Stash | None = None,
    version: str = md_mod.WRITER_VERSION,
    indent: int | None = None,
) -> bytes:
    """Encrypt documents with an already wrapped data key; returns the file bytes."""
    store = stores.get(fmt)
    if not store.STRUCTURED:
        rule = None
    enc_docs, mac = walk.encrypt_docs(docs, data_key, rule, mac_only_encrypted, stash)
    lastmodified = md_mod.now_rfc3339()  # set after the MAC is computed, as sops does
    md = Metadata(
        key_groups=key_groups,
        shamir_threshold=threshold if len(key_groups) > 1 else 0,
        lastmodified=lastmodified,
        mac=values.encrypt(mac, data_key, lastmodified),
        rule=rule,
        mac_only_encrypted=mac_only_encrypted,
        version=version,
    )
    return store.emit_encrypted(enc_docs, md_mod.to_tree(md, write_rule=store.STRUCTURED), indent)


def encrypt_bytes(
    data: bytes,
    fmt: str,
    groups: Sequence[Sequence[Recipient]],
    *,
    rule: SelectionRule | None = None,
    threshold: int = 0,
    mac_only_encrypted: bool = False,
    output_fmt: str | None = None,
    indent: int | None = None,
) -> bytes:
    """Encrypt a plaintext file for the given recipient groups."""
    store = stores.get(fmt)
    docs = store.load_plain(data)
    if not docs:
        raise store.no_documents(data)
    if any(store.is_metadata_key(k) for k, _ in docs[0]):
        raise errors.AlreadyEncrypted("the file is already encrypted", hint="decrypt it first, or use edit/set")
    data_key = os.urandom(DATA_KEY_SIZE)
    key_groups, threshold = wrap_data_key(data_key, groups, threshold)
    if rule is None and store.STRUCTURED:
        rule = SelectionRule()
    return encrypt_docs(
        docs, output_fmt or fmt, key_groups, data_key,
        rule=rule, threshold=threshold, mac_only_encrypted=mac_only_encrypted, indent=indent,
    )


def reencrypt(dec: Decrypted, docs: list[Branch] | None = None, *, fmt: str | None = None,
              data_key: bytes | None = None, key_groups: tuple[tuple[KeyEntry, ...], ...] | None = None,
              version: str | None = None, indent: int | None = None) -> bytes:
    """Re-encrypt a decrypted file (edit/set/unset/rotate/updatekeys), reusing IVs of unchanged
    values when the data key is unchanged."""
    md = dec.metadata
    return encrypt_docs(
        dec.docs if docs is None else docs,
        fmt or dec.fmt,
        key_groups if key_groups is not None else md.key_groups,
        dec.data_key if data_key is None else data_key,
        rule=md.rule,
        threshold=md.shamir_threshold,
        mac_only_encrypted=md.mac_only_encrypted,
        stash=dec.stash,  # sops reuses IVs even after rotate; data and tag still change
        version=version or md.version,
        indent=indent,
    )


def rewrap(data: bytes, fmt: str, groups: Sequence[Sequence[Recipient]], *, threshold: int | None = None,
           session: Session | None = None, indent: int | None = None) -> bytes:
    """updatekeys: wrap the same data key for new key groups; values, MAC and lastmodified stay."""
    session = session or Session()  # no process-wide Session: a render owns its keys
    docs, md = load_encrypted(data, fmt)
    key = recover_data_key(md, session)
    wanted = md.shamir_threshold if threshold is None else threshold
    key_groups, wanted = wrap_data_key(key, groups, wanted)
    new = md.with_(key_groups=key_groups, shamir_threshold=wanted if len(key_groups) > 1 else 0)
    store = stores.get(fmt)
    return store.emit_encrypted(docs, md_mod.to_tree(new, write_rule=store.STRUCTURED), indent)
