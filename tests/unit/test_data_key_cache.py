"""The optional in-memory data-key cache (kvsops.keycache): off by default, env-enabled, keyed by a
digest, scoped to the Session's environment, bounded, expiring, successes only, policy first; and bound
to the key's recipient, the grant and the policy in force (relabel, cross-grant, revocation)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from kvsops import api, errors, keycache, keys as key_types, policy
from kvsops.keys.base import KeyFailure
from kvsops.sops.metadata import KeyEntry, Metadata
from tests.keys import AgeKey

DATA_KEY = bytes(range(32))


class FakeBackend:
    """A key backend whose unwraps are counted (stands in for a Key Vault round trip)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail = False
        backend = self

        class Unwrapper:
            def __init__(self, ctx: object) -> None:
                pass

            def unwrap(self, fields: dict[str, object]) -> bytes:
                backend.calls.append(str(fields["enc"]))
                if backend.fail:
                    raise KeyFailure("vault unavailable")
                return DATA_KEY

        self.module = types.SimpleNamespace(Unwrapper=Unwrapper, describe=lambda f: "fake key",
                                            recipient=None)
        self.cache = keycache.DataKeyCache()  # what a long-running owner (the agent) holds

    def session(self, env: dict[str, str], **kwargs: object) -> api.Session:
        """A Session of the owner: every one gets the owner's cache."""
        return api.Session(env=env, data_keys=self.cache, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    fb = FakeBackend()
    monkeypatch.setattr(key_types, "backend", lambda kind: fb.module)
    return fb


def _md(enc: str = "WRAPPED-1") -> Metadata:
    return Metadata(key_groups=((KeyEntry("age", (("recipient", "age1fake"), ("enc", enc))),),))


def _env(**extra: str) -> dict[str, str]:
    return {"HOME": "/nonexistent", "KVSOPS_DATA_KEY_CACHE_TTL": "60", **extra}


def test_off_by_default_every_session_unwraps(fake: FakeBackend) -> None:
    for _ in range(3):
        assert api.recover_data_key(_md(), fake.session({"HOME": "/nonexistent"})) == DATA_KEY
    assert len(fake.calls) == 3
    assert len(fake.cache) == 0 and fake.cache.misses == 0  # never even asked


def test_no_cache_outlives_its_owner(fake: FakeBackend) -> None:
    """The setting alone shares nothing: data keys are held by the cache a caller owns and hands
    to its Sessions, never by a module of this process."""
    for _ in range(2):
        assert api.recover_data_key(_md(), api.Session(env=_env())) == DATA_KEY
    assert len(fake.calls) == 2
    other = keycache.DataKeyCache()
    api.recover_data_key(_md(), fake.session(_env()))
    api.recover_data_key(_md(), api.Session(env=_env(), data_keys=other))
    assert len(fake.calls) == 4 and len(fake.cache) == len(other) == 1
    assert not [name for name, value in vars(keycache).items() if isinstance(value, keycache.DataKeyCache)]


def test_enabled_later_sessions_reuse_the_data_key(fake: FakeBackend) -> None:
    for _ in range(3):
        assert api.recover_data_key(_md(), fake.session(_env())) == DATA_KEY
    assert fake.calls == ["WRAPPED-1"]
    cache = fake.cache
    assert (cache.hits, cache.misses, len(cache)) == (2, 1, 1)


def test_entries_are_keyed_by_a_digest_never_by_the_wrapped_key(fake: FakeBackend) -> None:
    api.recover_data_key(_md("WRAPPED-SECRETLESS-MARKER"), fake.session(_env()))
    (slot,) = fake.cache._entries
    assert "WRAPPED" not in slot and len(slot) == 64 and int(slot, 16) >= 0
    assert "WRAPPED" not in repr(fake.cache) and DATA_KEY.hex() not in repr(fake.cache)


def test_scope_is_the_whole_environment(fake: FakeBackend) -> None:
    api.recover_data_key(_md(), fake.session(_env(SOPS_AGE_KEY_FILE="/tenant-a/key.txt")))
    api.recover_data_key(_md(), fake.session(_env(SOPS_AGE_KEY_FILE="/tenant-b/key.txt")))
    api.recover_data_key(_md(), fake.session(_env(SOPS_AGE_KEY_FILE="/tenant-a/key.txt")))
    assert len(fake.calls) == 2  # tenant b never sees tenant a's data key; a's second render hits


def test_ttl_expires_entries(fake: FakeBackend) -> None:
    now = [1000.0]
    fake.cache = keycache.DataKeyCache(clock=lambda: now[0])
    env = _env(KVSOPS_DATA_KEY_CACHE_TTL="5")
    api.recover_data_key(_md(), fake.session(env))
    now[0] += 4.9
    api.recover_data_key(_md(), fake.session(env))
    assert len(fake.calls) == 1
    now[0] += 0.2
    api.recover_data_key(_md(), fake.session(env))
    assert len(fake.calls) == 2


def test_bounded_oldest_entry_goes_first(fake: FakeBackend) -> None:
    env = _env(KVSOPS_DATA_KEY_CACHE_MAX="2")
    for enc in ("W1", "W2", "W3"):
        api.recover_data_key(_md(enc), fake.session(env))
    assert len(fake.cache) == 2
    api.recover_data_key(_md("W3"), fake.session(env))  # still cached
    api.recover_data_key(_md("W1"), fake.session(env))  # evicted: unwrapped again
    assert fake.calls == ["W1", "W2", "W3", "W1"]


def test_failures_are_not_cached(fake: FakeBackend) -> None:
    fake.fail = True
    with pytest.raises(errors.NoKeyAvailable):
        api.recover_data_key(_md(), fake.session(_env()))
    fake.fail = False
    assert api.recover_data_key(_md(), fake.session(_env())) == DATA_KEY
    assert len(fake.calls) == 2


def test_policy_is_checked_before_the_cache(fake: FakeBackend) -> None:
    api.recover_data_key(_md(), fake.session(_env()))
    refusing = fake.session(_env(), allowed_entry=lambda entry: "not for this project")
    with pytest.raises(errors.PolicyRefused):
        api.recover_data_key(_md(), refusing)
    assert len(fake.calls) == 1


@pytest.mark.parametrize("ttl, size", [("abc", "1"), ("-1", "1"), ("5", "x"), ("nan", "1")])
def test_bad_settings_are_config_errors(fake: FakeBackend, ttl: str, size: str) -> None:
    with pytest.raises(errors.ConfigError):
        fake.session(_env(KVSOPS_DATA_KEY_CACHE_TTL=ttl, KVSOPS_DATA_KEY_CACHE_MAX=size))
    with pytest.raises(errors.ConfigError):  # with a cache to use as without one
        fake.session(_env(KVSOPS_DATA_KEY_CACHE_TTL=ttl, KVSOPS_DATA_KEY_CACHE_MAX=size))


def test_zero_means_off(fake: FakeBackend) -> None:
    for env in (_env(KVSOPS_DATA_KEY_CACHE_TTL="0"), _env(KVSOPS_DATA_KEY_CACHE_MAX="0")):
        api.recover_data_key(_md(), fake.session(env))
        api.recover_data_key(_md(), fake.session(env))
    assert len(fake.calls) == 4


def test_never_written_to_disk(fake: FakeBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    api.recover_data_key(_md(), api.Session(env=_env(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path))))
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- bound to the key and the grant
# Real age keys and real policy grants: what the renderer sees under an Argo CD key policy.


class Keys:
    def __init__(self, tmp_path: Path) -> None:
        ka, kb = AgeKey(), AgeKey()
        (self.a_id, self.a), (self.b_id, self.b) = (ka.identity, ka.recipient), (kb.identity, kb.recipient)
        self.tmp = tmp_path
        self.cache = keycache.DataKeyCache()  # the renderer's, across its renders
        # one sidecar holding both tenants' identities, the cache on
        self.env = {"HOME": "/nonexistent", "SOPS_AGE_KEY": f"{self.a_id}\n{self.b_id}",
                    "KVSOPS_DATA_KEY_CACHE_TTL": "60"}

    def encrypt(self, recipient: str, text: bytes = b"secret: v\n") -> bytes:
        sess = api.Session(env={"HOME": "/nonexistent"})
        return api.encrypt_bytes(text, "yaml", [[sess.recipient("age", recipient)]])

    def grant(self, name: str, *recipients: str, policy_id: str = "p1") -> dict[str, str]:
        d = self.tmp / name
        d.mkdir(mode=0o700)
        allowed = policy.Allowed.from_lists({"age": list(recipients)}, "test")._replace(policy=policy_id)
        path = policy.write_grant(d, allowed, "proj", "repo")
        return {**self.env, "KVSOPS_POLICY_GRANT": str(path)}

    def session(self, env: dict[str, str]) -> api.Session:
        return policy.session_from_env(env, default_file="", data_keys=self.cache)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path)


def test_relabelled_stanza_is_not_served_from_the_cache(keys: Keys) -> None:
    """Granted A, a Session decrypts a file for A; granted only B, another Session gets a copy whose
    stanza says B: the cache must not hand it A's data key (the B identity cannot unwrap it)."""
    data = keys.encrypt(keys.a)
    assert api.decrypt_bytes(data, "yaml", session=keys.session(keys.grant("ga", keys.a))) == b"secret: v\n"
    relabelled = data.replace(keys.a.encode(), keys.b.encode())
    assert relabelled != data
    with pytest.raises(errors.NoKeyAvailable):
        api.decrypt_bytes(relabelled, "yaml", session=keys.session(keys.grant("gb", keys.b)))
    # the same within one grant that allows both: the entry is bound to the recipient it names
    both = keys.grant("gab", keys.a, keys.b)
    assert api.decrypt_bytes(data, "yaml", session=keys.session(both)) == b"secret: v\n"
    with pytest.raises(errors.NoKeyAvailable):
        api.decrypt_bytes(relabelled, "yaml", session=keys.session(both))


def test_relabel_within_one_session(keys: Keys) -> None:
    """The in-Session dedupe is keyed by recipient too: one render decrypting both copies."""
    data = keys.encrypt(keys.a)
    relabelled = data.replace(keys.a.encode(), keys.b.encode())
    sess = keys.session(keys.grant("gab", keys.a, keys.b))
    api.decrypt_bytes(data, "yaml", session=sess)
    with pytest.raises(errors.NoKeyAvailable):
        api.decrypt_bytes(relabelled, "yaml", session=sess)


def test_grants_do_not_share_entries(keys: Keys) -> None:
    data = keys.encrypt(keys.a)
    g1, g2 = keys.grant("g1", keys.a), keys.grant("g2", keys.a, keys.b)
    cache = keys.cache
    api.decrypt_bytes(data, "yaml", session=keys.session(g1))
    api.decrypt_bytes(data, "yaml", session=keys.session(g2))  # allowed too, but its own entry
    assert (cache.hits, cache.misses, len(cache)) == (0, 2, 2)
    api.decrypt_bytes(data, "yaml", session=keys.session(g1))
    assert cache.hits == 1
    with pytest.raises(errors.PolicyRefused):  # granted B only: refused before any lookup
        api.decrypt_bytes(data, "yaml", session=keys.session(keys.grant("gb", keys.b)))
    assert cache.hits == 1


def _policy(*rules: tuple[str, str]) -> str:
    return "rules:\n" + "".join(f"  - projects: [{p}]\n    age: [{r}]\n" for p, r in rules)


def test_a_changed_policy_empties_the_cache(keys: Keys) -> None:
    """Revocation: the policy stops granting A to the project; every cached key is dropped at once."""
    data = keys.encrypt(keys.a)
    cache = keys.cache
    first = {**keys.env, "KVSOPS_POLICY": _policy(("team", keys.a)), "ARGOCD_APP_PROJECT_NAME": "team"}
    api.decrypt_bytes(data, "yaml", session=keys.session(first))
    api.decrypt_bytes(data, "yaml", session=keys.session(first))
    assert (cache.hits, len(cache)) == (1, 1)
    revoked = {**first, "KVSOPS_POLICY": _policy(("team", keys.b), ("other", keys.a))}
    sess = keys.session(revoked)
    assert len(cache) == 0  # emptied when a Session brought the new policy, before any decrypt
    with pytest.raises(errors.PolicyRefused):
        api.decrypt_bytes(data, "yaml", session=sess)
    # and back: a fresh unwrap, not an entry that survived
    api.decrypt_bytes(data, "yaml", session=keys.session(first))
    assert (cache.hits, len(cache)) == (1, 1)


def test_grant_carries_its_policy(keys: Keys) -> None:
    data = keys.encrypt(keys.a)
    api.decrypt_bytes(data, "yaml", session=keys.session(keys.grant("g1", keys.a, policy_id="p1")))
    assert len(keys.cache) == 1
    keys.session(keys.grant("g2", keys.a, policy_id="p2"))
    assert len(keys.cache) == 0


def test_ttl_expiry_with_real_keys(keys: Keys) -> None:
    now = [1000.0]
    keys.cache = cache = keycache.DataKeyCache(clock=lambda: now[0])
    data = keys.encrypt(keys.a)
    env = {**keys.grant("g", keys.a), "KVSOPS_DATA_KEY_CACHE_TTL": "5"}
    api.decrypt_bytes(data, "yaml", session=keys.session(env))
    now[0] += 4.9
    api.decrypt_bytes(data, "yaml", session=keys.session(env))
    assert (cache.hits, cache.misses) == (1, 1)
    now[0] += 0.2
    api.decrypt_bytes(data, "yaml", session=keys.session(env))
    assert (cache.hits, cache.misses) == (1, 2)


def test_a_policy_without_a_binding_gets_no_cache(keys: Keys) -> None:
    """A caller that hands a Session a policy hook but no binding cannot be served across grants."""
    data = keys.encrypt(keys.a)
    for _ in range(2):
        api.decrypt_bytes(data, "yaml", session=api.Session(env=keys.env, allowed_entry=lambda e: None,
                                                            data_keys=keys.cache))
    assert len(keys.cache) == 0 and keys.cache.misses == 0
