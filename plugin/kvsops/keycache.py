"""An optional in-memory cache of unwrapped data keys, for long-running renderers.

A process that renders the same applications again and again (the kvsops agent, a renderer
service, a test harness) would otherwise unwrap the same data keys on every render: a Key Vault
round trip, or a gpg run, each time. With the cache on, a data key unwrapped by one
:class:`kvsops.api.Session` is reused by later Sessions given the same :class:`DataKeyCache`.

- Off by default. The cache is an object its owner holds (the agent's service holds one) and
  hands to each Session it builds (``Session(..., data_keys=cache)``); no module global holds
  data keys. ``KVSOPS_DATA_KEY_CACHE_TTL=SECONDS`` (in the Session's injected environment) turns
  it on for that Session; ``KVSOPS_DATA_KEY_CACHE_MAX`` bounds the number of entries (default
  1024; the oldest entry goes first).
- In memory only: a dict in the owner's process, never written anywhere, gone with its owner.
- Only successful unwraps are cached; key policies (``allowed_entry``) are checked before any
  lookup, so a refused key stays refused.

What an entry is bound to (its slot is a SHA-256 digest of all of it, never the wrapped key itself):

- the **key**: its kind, its public identity (every field of the file's key entry except the
  wrapped key and its date: the age recipient, the PGP fingerprint, the Key Vault URL and version)
  and the wrapped data key. A stanza relabelled to another recipient is another slot: it is
  unwrapped (and fails) with the key it now names, never served from the cache;
- the **credentials**: a digest of the Session's whole environment (identities, GNUPGHOME, Azure
  identity, Argo CD app), so one tenant never gets another tenant's data key;
- the **grant**: the keys the Session may use under a key policy (:class:`Binding`), so a Session
  granted key B never gets what a Session granted key A unwrapped;
- the **policy** in force: when a Session brings a policy other than the one the cache last saw,
  the cache is emptied first (a revocation, or any edit of the policy, drops every cached key).

API (for callers that build Sessions, e.g. a resident agent)::

    cache = keycache.DataKeyCache()                          # held by the long-running owner
    binding = keycache.Binding(grant="...", policy="...")   # kvsops.policy.binding(allowed) builds it
    session = api.Session(env=env, allowed_entry=..., cache_binding=binding, data_keys=cache)

    view = keycache.from_env(env, cache, binding)   # None when the cache is off
    key = view.unwrap(kind, key_id, wrapped, lambda: real_unwrap())

A Session with a key policy (``allowed_entry``) but no ``cache_binding`` does not use the cache (it
cannot be bound to a grant it does not know). ``DataKeyCache`` can be built with an injected clock.
"""

from __future__ import annotations

import time
from _thread import allocate_lock

from kvsops._record import Record

TTL_ENV = "KVSOPS_DATA_KEY_CACHE_TTL"
MAX_ENV = "KVSOPS_DATA_KEY_CACHE_MAX"
DEFAULT_MAX = 1024

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Mapping


class Binding(Record):
    """The key policy in force for a Session: ``grant``, a canonical text of the keys it may use
    ("" without a policy); ``policy``, an identifier of the policy document it came from ("" for
    none). Both are public (key ids and digests), never secrets."""

    __slots__ = _fields = ("grant", "policy")
    _defaults = {"grant": "", "policy": ""}
    grant: str
    policy: str


NO_POLICY = Binding()


class DataKeyCache:
    """Bounded, expiring map of digest -> data key, emptied when the policy in force changes.
    Thread-safe."""

    def __init__(self, max_entries: int = DEFAULT_MAX, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._lock = allocate_lock()
        self._entries: dict[str, tuple[float, bytes]] = {}  # insertion order = age
        self._policy: str | None = None
        self.hits = 0
        self.misses = 0

    def shrink(self, max_entries: int) -> None:
        """A smaller bound from a later Session's settings holds from then on."""
        with self._lock:
            self.max_entries = min(self.max_entries, max_entries)

    def bind_policy(self, policy: str) -> None:
        """Note the policy in force; a different one than last time empties the cache."""
        with self._lock:
            if self._policy is not None and policy != self._policy:
                self._entries.clear()
            self._policy = policy

    def get(self, slot: str) -> bytes | None:
        with self._lock:
            found = self._entries.get(slot)
            if found is not None and found[0] <= self._clock():
                del self._entries[slot]
                found = None
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
            return found[1]

    def put(self, slot: str, data_key: bytes, ttl: float) -> None:
        with self._lock:
            self._entries.pop(slot, None)
            while len(self._entries) >= self.max_entries > 0:
                del self._entries[next(iter(self._entries))]
            if self.max_entries > 0:
                self._entries[slot] = (self._clock() + ttl, data_key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:  # never the keys
        return f"DataKeyCache(entries={len(self._entries)}, max={self.max_entries})"


def _field(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape") + b"\0"


class Scoped:
    """One Session's view of the cache: its TTL, and the digest of its environment and grant."""

    __slots__ = ("cache", "ttl", "_scope")

    def __init__(self, cache: DataKeyCache, ttl: float, env: Mapping[str, str], binding: Binding = NO_POLICY) -> None:
        import hashlib

        self.cache = cache
        self.ttl = ttl
        h = hashlib.sha256(b"kvsops data-key cache scope v2\0")
        for name in sorted(env):
            h.update(_field(name) + _field(str(env[name])))
        h.update(_field("grant") + _field(binding.grant))
        self._scope = h.digest()
        cache.bind_policy(binding.policy)

    def slot(self, kind: str, key_id: str, wrapped: str) -> str:
        import hashlib

        h = hashlib.sha256(self._scope)
        h.update(_field(kind) + _field(key_id) + _field(wrapped))
        return h.hexdigest()

    def unwrap(self, kind: str, key_id: str, wrapped: str, unwrap: Callable[[], bytes]) -> bytes:
        """The cached data key for (kind, key id, wrapped key) in this scope, else ``unwrap()``
        (cached when it succeeds)."""
        slot = self.slot(kind, key_id, wrapped)
        key = self.cache.get(slot)
        if key is None:
            key = unwrap()
            self.cache.put(slot, key, self.ttl)
        return key


def settings(env: Mapping[str, str]) -> tuple[float, int] | None:
    """(TTL, maximum entries) from the environment, or None when it leaves the cache off."""
    raw = (env.get(TTL_ENV) or "").strip()
    if not raw:
        return None
    from kvsops import errors

    try:
        ttl = float(raw)
        size = int((env.get(MAX_ENV) or "").strip() or DEFAULT_MAX)
    except ValueError:
        raise errors.ConfigError(f"{TTL_ENV} must be a number of seconds and {MAX_ENV} an integer") from None
    if ttl != ttl or ttl < 0 or size < 0:
        raise errors.ConfigError(f"{TTL_ENV} and {MAX_ENV} must not be negative")
    if ttl == 0 or size == 0:
        return None
    return ttl, size


def from_env(env: Mapping[str, str], cache: DataKeyCache | None, binding: Binding | None = NO_POLICY) -> Scoped | None:
    """The view of ``cache`` for a Session with this environment and binding; None when there is
    no cache or binding, or the environment leaves it off (bad settings raise either way). A
    ``KVSOPS_DATA_KEY_CACHE_MAX`` smaller than the cache's bound shrinks it."""
    found = settings(env)
    if found is None or cache is None or binding is None:
        return None
    ttl, size = found
    cache.shrink(size)
    return Scoped(cache, ttl, env, binding)
