"""An optional in-memory cache of unwrapped data keys, for long-running renderers.

A process that renders the same applications again and again (a renderer service, a test
harness, a plugin kept warm) would otherwise unwrap the same data keys on every render: a Key
Vault round trip, or a gpg run, each time. With the cache on, a data key unwrapped by one
:class:`kvsops.api.Session` is reused by later Sessions of the same process.

- Off by default. ``KVSOPS_DATA_KEY_CACHE_TTL=SECONDS`` (in the Session's injected environment)
  turns it on for that Session; ``KVSOPS_DATA_KEY_CACHE_MAX`` bounds the number of entries
  (default 1024; the oldest entry goes first).
- In memory only: a dict in this process, never written anywhere, gone when the process ends.
- Keyed by a SHA-256 digest of (key type, wrapped key, *scope*), never by the wrapped key itself.
  The scope is a digest of the Session's whole environment, so a Session only ever sees data keys
  that a Session with the very same credentials (identities, GNUPGHOME, Azure identity, Argo CD
  app and grant) unwrapped: one tenant never gets another tenant's data key from the cache.
- Only successful unwraps are cached; key policies (``allowed_entry``) are checked before any
  lookup, so a refused key stays refused.
"""

from __future__ import annotations

import time
from _thread import allocate_lock

TTL_ENV = "KVSOPS_DATA_KEY_CACHE_TTL"
MAX_ENV = "KVSOPS_DATA_KEY_CACHE_MAX"
DEFAULT_MAX = 1024

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Mapping


class DataKeyCache:
    """Bounded, expiring map of digest -> data key. Thread-safe."""

    def __init__(self, max_entries: int = DEFAULT_MAX, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._lock = allocate_lock()
        self._entries: dict[str, tuple[float, bytes]] = {}  # insertion order = age
        self.hits = 0
        self.misses = 0

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


_shared: DataKeyCache | None = None
_shared_lock = allocate_lock()


def shared(max_entries: int = DEFAULT_MAX) -> DataKeyCache:
    """The process-wide cache (created on first use; a later, smaller bound shrinks it)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = DataKeyCache(max_entries)
        elif max_entries < _shared.max_entries:
            _shared.max_entries = max_entries
        return _shared


class Scoped:
    """One Session's view of the cache: its TTL and the digest of its environment."""

    __slots__ = ("cache", "ttl", "_scope")

    def __init__(self, cache: DataKeyCache, ttl: float, env: Mapping[str, str]) -> None:
        import hashlib

        self.cache = cache
        self.ttl = ttl
        h = hashlib.sha256(b"kvsops data-key cache scope\0")
        for name in sorted(env):
            h.update(name.encode("utf-8", "surrogateescape") + b"\0")
            h.update(str(env[name]).encode("utf-8", "surrogateescape") + b"\0")
        self._scope = h.digest()

    def slot(self, kind: str, wrapped: str) -> str:
        import hashlib

        h = hashlib.sha256(self._scope)
        h.update(kind.encode() + b"\0" + wrapped.encode("utf-8", "surrogateescape"))
        return h.hexdigest()

    def unwrap(self, kind: str, wrapped: str, unwrap: Callable[[], bytes]) -> bytes:
        slot = self.slot(kind, wrapped)
        key = self.cache.get(slot)
        if key is None:
            key = unwrap()
            self.cache.put(slot, key, self.ttl)
        return key


def from_env(env: Mapping[str, str]) -> Scoped | None:
    """The cache view for a Session with this environment, or None when the cache is off."""
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
    return Scoped(shared(size), ttl, env)
