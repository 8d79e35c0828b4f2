"""decrypt / encrypt: the one path every entry point calls. Bytes in, bytes (or trees) out.

Nothing here writes files; plaintext leaves only as the return value, and only after the MAC
has been verified.
"""

from __future__ import annotations

import os
from _thread import allocate_lock

from kvsops import errors, keycache
from kvsops import keys
from kvsops.keys.base import KeyContext, KeyFailure, NotMyKey
from kvsops.sops import metadata as md_mod
from kvsops.sops import shamir, stores, values, walk
from kvsops.sops.metadata import KeyEntry, Metadata
from kvsops.sops.rules import SelectionRule
from kvsops.sops.tree import Branch

# Start-up time is a feature (every Helm values file and kustomize generator is a new process):
# typing, dataclasses, threading and concurrent.futures stay out of the decrypt path.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Iterable, Mapping, Sequence

    from kvsops.keys.base import Recipient, Unwrapper

DATA_KEY_SIZE = 32


def decryption_order(spec: str | None) -> tuple[str, ...]:
    """``--decryption-order`` / ``SOPS_DECRYPTION_ORDER``: listed kinds first, then the rest."""
    if not spec:
        return keys.default_order()
    kinds = tuple(k.strip() for k in spec.split(",") if k.strip())
    if len(set(kinds)) != len(kinds):
        raise errors.DuplicateDecryptionKeyType("decryption order lists a key type twice")
    return kinds


DEADLINE_ENV = "KVSOPS_DEADLINE_SECONDS"


def deadline_from_env(env: Mapping[str, str], default: float | None = None) -> float | None:
    """``KVSOPS_DEADLINE_SECONDS`` (seconds for the whole render), else ``default``."""
    text = (env.get(DEADLINE_ENV) or "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise errors.ConfigError(f"{DEADLINE_ENV} must be a positive number of seconds")
    return value


class Session:
    """Per-process state: injected environment, one unwrapper per key type, and a cache of
    unwrapped data keys keyed by the key and its wrapped ciphertext (each distinct one is unwrapped
    once, even when many files are decrypted concurrently).

    ``cache_binding`` (a :class:`kvsops.keycache.Binding`, built by :func:`kvsops.policy.binding`)
    is the grant and policy the process-wide data-key cache binds entries to; a Session with
    ``allowed_entry`` but no binding does not use that cache."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        order: Sequence[str] | None = None,
        deadline_seconds: float | None = None,
        allowed_entry: Callable[[KeyEntry], str | None] | None = None,
        allowed_secret: Callable[[str, str, str], str | None] | None = None,
        cache_binding: keycache.Binding | None = None,
    ) -> None:
        env = dict(os.environ if env is None else env)
        if deadline_seconds is None:
            deadline_seconds = deadline_from_env(env)
        if deadline_seconds:
            import time

            deadline: float | None = time.monotonic() + deadline_seconds
        else:
            deadline = None
        self.ctx = KeyContext(env=env, home=env.get("HOME", ""), deadline=deadline)
        self.order = tuple(order) if order else decryption_order(env.get("SOPS_DECRYPTION_ORDER"))
        # A policy hook (Argo CD key policy): returns a refusal reason for an entry, or None.
        self.allowed_entry = allowed_entry
        # The same for Key Vault secret references (vault_url, name, version) -> refusal or None;
        # see kvsops.refs.resolve (a Session with allowed_entry but no allowed_secret refuses them).
        self.allowed_secret = allowed_secret
        self._lock = allocate_lock()
        self._unwrappers: dict[str, Unwrapper] = {}
        self._parts: dict[tuple[str, str, str], _Once] = {}
        # Data keys shared with later Sessions of this process (off unless KVSOPS_DATA_KEY_CACHE_TTL),
        # bound to the key, the credentials, the grant and the policy (see kvsops.keycache). Under
        # a key policy without a binding there is nothing to bind to: no cache.
        bound = cache_binding if cache_binding is not None else None if allowed_entry else keycache.NO_POLICY
        self._cache = keycache.from_env(env, bound) if env.get(keycache.TTL_ENV) and bound is not None else None
        # Set by kvsops.agent.session: recovers data keys (and Key Vault secrets) in the agent,
        # which applies this Session's policy, order and deadline there.
        self.remote: object = None

    def unwrapper(self, kind: str) -> Unwrapper:
        with self._lock:
            u = self._unwrappers.get(kind)
            if u is None:
                u = keys.backend(kind).Unwrapper(self.ctx)
                self._unwrappers[kind] = u
            return u

    def unwrap(self, entry: KeyEntry) -> bytes:
        key = (entry.kind, key_id(entry), entry.enc)
        with self._lock:
            once = self._parts.get(key)
            owner = once is None
            if owner:
                once = self._parts[key] = _Once()
        assert once is not None
        if owner:
            try:
                once.set(self._unwrap_uncached(entry) if self._cache is None
                         else self._cache.unwrap(entry.kind, key[1], entry.enc, lambda: self._unwrap_uncached(entry)), None)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiter
                once.set(None, exc)
        return once.get()

    def _unwrap_uncached(self, entry: KeyEntry) -> bytes:
        return self.unwrapper(entry.kind).unwrap(entry.as_dict())

    def recipient(self, kind: str, spec: str) -> Recipient:
        try:
            return keys.backend(kind).recipient(spec, self.ctx)
        except ValueError as exc:
            raise errors.UsageError(str(exc)) from None


def key_id(entry: KeyEntry) -> str:
    """A key entry's public identity: every field but the wrapped key and its date (the age
    recipient, the PGP fingerprint, the Key Vault URL and version). A stanza relabelled to another
    recipient is another key: it is never served what the first one unwrapped."""
    return "\0".join(f"{k}={v}" for k, v in sorted(entry.fields, key=lambda kv: kv[0]) if k not in ("enc", "created_at"))


class _Once:
    """The outcome of one unwrap, shared by every thread that asks for the same wrapped key
    (a Future without importing concurrent.futures: threads wait on a held lock)."""

    __slots__ = ("_done", "_value", "_exc")

    def __init__(self) -> None:
        self._done = allocate_lock()
        self._done.acquire()
        self._value: bytes | None = None
        self._exc: BaseException | None = None

    def set(self, value: bytes | None, exc: BaseException | None) -> None:
        self._value, self._exc = value, exc
        self._done.release()

    def get(self) -> bytes:
        with self._done:  # blocks until set() released it; then everyone passes
            pass
        if self._exc is not None:
            raise self._exc
        assert self._value is not None
        return self._value


_default_session: Session | None = None


def default_session() -> Session:
    global _default_session
    if _default_session is None:
        _default_session = Session()
    return _default_session


# ----------------------------------------------------------------------------- data keys


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


def _group_part(group: Sequence[KeyEntry], session: Session, report: list[str]) -> bytes | None:
    for entry in _sorted_group(group, session.order):
        name = _describe(entry)
        if not keys.usable(entry.kind):
            report.append(f"{name}: key type not supported by kvsops")
            continue
        if session.allowed_entry is not None:
            refusal = session.allowed_entry(entry)
            if refusal:
                report.append(f"{name}: refused by policy ({refusal})")
                continue
        try:
            return session.unwrap(entry)
        except NotMyKey as exc:
            report.append(f"{name}: {exc}")
        except KeyFailure as exc:
            raise errors.NoKeyAvailable(f"{name}: {exc}", hint=exc.hint) from None
    return None


def recover_data_key(md: Metadata, session: Session) -> bytes:
    """Unwrap the data key: first success per group; Shamir-combine when there are several."""
    if session.remote is not None:
        return session.remote.recover_data_key(md)  # type: ignore[attr-defined, no-any-return]
    report: list[str] = []
    parts: list[bytes] = []
    groups = md.key_groups
    need = 1 if len(groups) == 1 else (md.shamir_threshold or len(groups))
    for i, group in enumerate(groups):
        sub: list[str] = []
        part = _group_part(group, session, sub)
        prefix = f"group {i + 1}: " if len(groups) > 1 else ""
        report.extend(prefix + line for line in sub)
        if part is not None:
            parts.append(part)
            if len(parts) >= need:
                break
    if len(parts) < need:
        policy_refused = any("refused by policy" in line for line in report)
        cls = errors.PolicyRefused if policy_refused and not parts else errors.NoKeyAvailable
        raise cls(
            "could not recover the data key: " + ("; ".join(report) or "no keys in file"),
            hint=(
                "the key policy for this project/repository does not allow the file's keys; re-encrypt the "
                "file for an allowed key or ask the platform admins to extend the policy"
                if cls is errors.PolicyRefused
                else "check that a matching age identity, PGP secret key or Key Vault access is available"
            ),
        )
    key = parts[0] if len(groups) == 1 else shamir.combine(parts)
    if len(key) != DATA_KEY_SIZE:
        raise errors.NoKeyAvailable("the recovered data key has the wrong length (corrupt key material)")
    return key


def _recipient_name(r: object) -> str:
    # ``id`` may itself need the network (an Azure key URL without a version) and fail again.
    try:
        return str(r.id)  # type: ignore[attr-defined]
    except KeyFailure:
        return str(getattr(r, "kind", "key"))


def wrap_data_key(
    data_key: bytes, groups: Sequence[Sequence[object]], threshold: int = 0
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
    for share, group in zip(shares, groups):
        entries = []
        for r in group:
            try:
                fields = r.wrap(share)  # type: ignore[attr-defined]
            except KeyFailure as exc:
                raise errors.KeyWrapFailed(f"could not wrap the data key for {_recipient_name(r)}: {exc}") from None
            entries.append(KeyEntry.make(r.kind, fields))  # type: ignore[attr-defined]
        out.append(tuple(entries))
    return tuple(out), threshold


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
    if fmt == "binary":
        md = md.with_(rule=None)
    return docs, md


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
    session = session or default_session()
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
    session = session or default_session()
    n = len(items)
    failed: list[BaseException | None] = [None] * n
    loaded: list[tuple[list[Branch], Metadata] | None] = [None] * n
    keys: list[bytes | None] = [None] * n

    def attempt(i: int, step: Callable[[], object]) -> object:
        try:
            return step()
        except errors.KvsopsError as exc:
            where = items[i][0]
            failed[i] = exc.with_where(where) if where else exc
        except Exception as exc:  # noqa: BLE001 - raised below, in input order
            failed[i] = exc
        return None

    for i, (_where, data, fmt) in enumerate(items):
        loaded[i] = attempt(i, lambda: load_encrypted(data, fmt))  # type: ignore[call-overload]

    def unwrap(i: int) -> None:
        keys[i] = attempt(i, lambda: recover_data_key(loaded[i][1], session))  # type: ignore[index, call-overload]

    # Only files before the first failure can change the outcome: no unwraps (no vault calls) after it.
    first_bad = next((i for i in range(n) if failed[i] is not None), n)
    todo = list(range(first_bad))
    waits = session.remote is not None or any(
        not _in_process(e.kind) for i in todo for e in loaded[i][1].entries())  # type: ignore[index]
    if waits and workers > 1 and len(todo) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(workers, len(todo))) as pool:
            list(pool.map(unwrap, todo))
    else:
        for i in todo:
            unwrap(i)

    out: list[Decrypted] = []
    for i, (_where, _data, fmt) in enumerate(items):
        if failed[i] is None:
            docs, md = loaded[i]  # type: ignore[misc]
            dec = attempt(i, lambda: _decrypt_values(docs, md, fmt, keys[i], ignore_mac, keep_ivs))  # type: ignore[arg-type]
        if failed[i] is not None:
            raise failed[i] from None  # type: ignore[misc]
        out.append(dec)  # type: ignore[arg-type]
    return out


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
    if fmt == "binary":
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
    return stores.get(fmt).emit_encrypted(enc_docs, md_mod.to_tree(md, write_rule=fmt != "binary"), indent)


def encrypt_bytes(
    data: bytes,
    fmt: str,
    groups: Sequence[Sequence[object]],
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
        if fmt == "yaml" and data:  # sops' first yaml.v3 Decode of a non-empty file found io.EOF
            raise errors.InputError("Error unmarshaling input YAML: EOF (the file has no YAML document)")
        raise errors.NeedAtLeastOneDocument("the file has no documents to encrypt")
    if _has_sops_key(docs[0], fmt):
        raise errors.AlreadyEncrypted("the file is already encrypted", hint="decrypt it first, or use edit/set")
    data_key = os.urandom(DATA_KEY_SIZE)
    key_groups, threshold = wrap_data_key(data_key, groups, threshold)
    if rule is None and fmt != "binary":
        rule = SelectionRule()
    return encrypt_docs(
        docs, output_fmt or fmt, key_groups, data_key,
        rule=rule, threshold=threshold, mac_only_encrypted=mac_only_encrypted, indent=indent,
    )


def _has_sops_key(doc: Branch, fmt: str) -> bool:
    if fmt == "dotenv":
        return any(isinstance(k, str) and k.startswith("sops_") for k, _ in doc)
    return doc.index_of("sops") >= 0


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


def rewrap(data: bytes, fmt: str, groups: Sequence[Sequence[object]], *, threshold: int | None = None,
           session: Session | None = None, indent: int | None = None) -> bytes:
    """updatekeys: wrap the same data key for new key groups; values, MAC and lastmodified stay."""
    session = session or default_session()
    docs, md = load_encrypted(data, fmt)
    key = recover_data_key(md, session)
    wanted = md.shamir_threshold if threshold is None else threshold
    key_groups, wanted = wrap_data_key(key, groups, wanted)
    new = md.with_(key_groups=key_groups, shamir_threshold=wanted if len(key_groups) > 1 else 0)
    return stores.get(fmt).emit_encrypted(docs, md_mod.to_tree(new, write_rule=fmt != "binary"), indent)
