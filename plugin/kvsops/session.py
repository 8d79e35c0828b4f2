"""The Session: what one render holds (the environment it was given, the keys in force, the policy
hooks, the deadline, the unwrapped data keys), and the settings read from that environment.

Public API (hosts, the CLI and the agent build Sessions; its signature stays stable)::

    Session(env=None, *, order=None, deadline_seconds=None, allowed_entry=None,
            allowed_secret=None, cache_binding=None, data_keys=None)
        env               the environment the keys are found through (default: os.environ, copied);
                          backends read it through ``session.ctx`` (kvsops.context.KeyContext)
        order             the decryption order (default: SOPS_DECRYPTION_ORDER, else sops')
        deadline_seconds  for the whole render (default: KVSOPS_DEADLINE_SECONDS, else none)
        allowed_entry     a key policy hook: KeyEntry -> refusal reason or None (kvsops.policy)
        allowed_secret    the same for Key Vault secret references: (vault, name, version)
        cache_binding     the grant and policy the data-key cache binds entries to (kvsops.keycache)
        data_keys         a kvsops.keycache.DataKeyCache its owner keeps across Sessions (the
                          agent's); used when KVSOPS_DATA_KEY_CACHE_TTL turns it on. A Session
                          itself unwraps each distinct wrapped key once; nothing outlives it

    session.unwrap(entry) -> bytes       one wrapped data key, unwrapped once per Session
    session.unwrapper(kind)              the kind's backend Unwrapper (built once)
    session.recipient(kind, spec)        a Recipient to wrap for (UsageError on a bad spec)
    session.order, session.ctx, session.allowed_entry, session.allowed_secret, session.remote

Recovering a file's data key from its key groups is kvsops.datakey's; decrypting is kvsops.api's.
"""

from __future__ import annotations

import os
from _thread import allocate_lock

from kvsops import errors, keycache, keys
from kvsops.keys.base import KeyContext

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Mapping, Protocol, Sequence

    from kvsops.keys.base import Recipient, Unwrapper
    from kvsops.sops.metadata import KeyEntry, Metadata

    class Remote(Protocol):
        """Where a Session's keys are, when they are in a kvsops agent (kvsops.agent.session)."""

        def recover_data_key(self, md: Metadata) -> bytes: ...

        def secret_refusal(self, vault_url: str, name: str, version: str) -> str | None: ...

        def secret(self, vault_url: str, name: str, version: str) -> str: ...


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
        data_keys: keycache.DataKeyCache | None = None,
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
        # Data keys shared with later Sessions given the same cache (off unless KVSOPS_DATA_KEY_CACHE_TTL),
        # bound to the key, the credentials, the grant and the policy (see kvsops.keycache). Under
        # a key policy without a binding there is nothing to bind to: no cache.
        bound = cache_binding if cache_binding is not None else None if allowed_entry else keycache.NO_POLICY
        self._cache = keycache.from_env(env, data_keys, bound)
        # Set by kvsops.agent.session: recovers data keys (and Key Vault secrets) in the agent,
        # which applies this Session's policy, order and deadline there.
        self.remote: Remote | None = None

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
                         else self._cache.unwrap(entry.kind, key[1], entry.enc, lambda: self._unwrap_uncached(entry)),
                         None)
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
    fields = sorted(entry.fields, key=lambda kv: kv[0])
    return "\0".join(f"{k}={v}" for k, v in fields if k not in ("enc", "created_at"))


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
