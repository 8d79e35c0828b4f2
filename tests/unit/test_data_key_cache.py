"""The optional in-memory data-key cache (kvsops.keycache): off by default, env-enabled, keyed by a
digest, scoped to the Session's environment, bounded, expiring, successes only, policy first."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from kvsops import api, errors, keycache
from kvsops.keys.base import KeyFailure
from kvsops.sops.metadata import KeyEntry, Metadata

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


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    fb = FakeBackend()
    monkeypatch.setattr(api, "backend", lambda kind: fb.module)
    monkeypatch.setattr(keycache, "_shared", None)  # a fresh process-wide cache per test
    return fb


def _md(enc: str = "WRAPPED-1") -> Metadata:
    return Metadata(key_groups=((KeyEntry("age", (("recipient", "age1fake"), ("enc", enc))),),))


def _env(**extra: str) -> dict[str, str]:
    return {"HOME": "/nonexistent", "KVSOPS_DATA_KEY_CACHE_TTL": "60", **extra}


def test_off_by_default_every_session_unwraps(fake: FakeBackend) -> None:
    for _ in range(3):
        assert api.recover_data_key(_md(), api.Session(env={"HOME": "/nonexistent"})) == DATA_KEY
    assert len(fake.calls) == 3
    assert keycache._shared is None  # nothing was even created


def test_enabled_later_sessions_reuse_the_data_key(fake: FakeBackend) -> None:
    for _ in range(3):
        assert api.recover_data_key(_md(), api.Session(env=_env())) == DATA_KEY
    assert fake.calls == ["WRAPPED-1"]
    cache = keycache.shared()
    assert (cache.hits, cache.misses, len(cache)) == (2, 1, 1)


def test_entries_are_keyed_by_a_digest_never_by_the_wrapped_key(fake: FakeBackend) -> None:
    api.recover_data_key(_md("WRAPPED-SECRETLESS-MARKER"), api.Session(env=_env()))
    (slot,) = keycache.shared()._entries
    assert "WRAPPED" not in slot and len(slot) == 64 and int(slot, 16) >= 0
    assert "WRAPPED" not in repr(keycache.shared()) and DATA_KEY.hex() not in repr(keycache.shared())


def test_scope_is_the_whole_environment(fake: FakeBackend) -> None:
    api.recover_data_key(_md(), api.Session(env=_env(SOPS_AGE_KEY_FILE="/tenant-a/key.txt")))
    api.recover_data_key(_md(), api.Session(env=_env(SOPS_AGE_KEY_FILE="/tenant-b/key.txt")))
    api.recover_data_key(_md(), api.Session(env=_env(SOPS_AGE_KEY_FILE="/tenant-a/key.txt")))
    assert len(fake.calls) == 2  # tenant b never sees tenant a's data key; a's second render hits


def test_ttl_expires_entries(fake: FakeBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(keycache, "_shared", keycache.DataKeyCache(clock=lambda: now[0]))
    env = _env(KVSOPS_DATA_KEY_CACHE_TTL="5")
    api.recover_data_key(_md(), api.Session(env=env))
    now[0] += 4.9
    api.recover_data_key(_md(), api.Session(env=env))
    assert len(fake.calls) == 1
    now[0] += 0.2
    api.recover_data_key(_md(), api.Session(env=env))
    assert len(fake.calls) == 2


def test_bounded_oldest_entry_goes_first(fake: FakeBackend) -> None:
    env = _env(KVSOPS_DATA_KEY_CACHE_MAX="2")
    for enc in ("W1", "W2", "W3"):
        api.recover_data_key(_md(enc), api.Session(env=env))
    assert len(keycache.shared()) == 2
    api.recover_data_key(_md("W3"), api.Session(env=env))  # still cached
    api.recover_data_key(_md("W1"), api.Session(env=env))  # evicted: unwrapped again
    assert fake.calls == ["W1", "W2", "W3", "W1"]


def test_failures_are_not_cached(fake: FakeBackend) -> None:
    fake.fail = True
    with pytest.raises(errors.NoKeyAvailable):
        api.recover_data_key(_md(), api.Session(env=_env()))
    fake.fail = False
    assert api.recover_data_key(_md(), api.Session(env=_env())) == DATA_KEY
    assert len(fake.calls) == 2


def test_policy_is_checked_before_the_cache(fake: FakeBackend) -> None:
    api.recover_data_key(_md(), api.Session(env=_env()))
    refusing = api.Session(env=_env(), allowed_entry=lambda entry: "not for this project")
    with pytest.raises(errors.PolicyRefused):
        api.recover_data_key(_md(), refusing)
    assert len(fake.calls) == 1


@pytest.mark.parametrize("ttl, size", [("abc", "1"), ("-1", "1"), ("5", "x"), ("nan", "1")])
def test_bad_settings_are_config_errors(fake: FakeBackend, ttl: str, size: str) -> None:
    with pytest.raises(errors.ConfigError):
        api.Session(env=_env(KVSOPS_DATA_KEY_CACHE_TTL=ttl, KVSOPS_DATA_KEY_CACHE_MAX=size))


def test_zero_means_off(fake: FakeBackend) -> None:
    for env in (_env(KVSOPS_DATA_KEY_CACHE_TTL="0"), _env(KVSOPS_DATA_KEY_CACHE_MAX="0")):
        api.recover_data_key(_md(), api.Session(env=env))
        api.recover_data_key(_md(), api.Session(env=env))
    assert len(fake.calls) == 4


def test_never_written_to_disk(fake: FakeBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    api.recover_data_key(_md(), api.Session(env=_env(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path))))
    assert list(tmp_path.iterdir()) == []
