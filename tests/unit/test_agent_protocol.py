"""The agent's wire protocol, error transport, client settings and the Key Vault call limiter."""

from __future__ import annotations

import threading
import time

import pytest

from kvsops import errors
from kvsops.agent import client, protocol

VALUES = [
    None, True, False, 0, -1, 2**63 - 1, -(2**63), b"", b"\x00\xff" * 1000, "", "snow \u2603",
    "bad \udcff surrogate", [], [1, [2, [3]]], {}, {"a": {"b": [b"x", None, "y"]}, "": 7},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_round_trip(value: object) -> None:
    assert protocol.decode(protocol.encode(value)) == value
    framed = protocol.frame(value)
    assert protocol.payload_length(framed[:protocol.HEADER], protocol.MAX_REQUEST) == len(framed) - protocol.HEADER


def test_tuples_travel_as_lists() -> None:
    assert protocol.decode(protocol.encode((1, (2,)))) == [1, [2]]


@pytest.mark.parametrize("bad", [
    b"", b"Q", b"i\x00", b"b\x00\x00\x00\x05abc", b"s\x00\x00", b"l\x00\x00\x00\x03N", b"NN",
    b"d\x00\x00\x00\x01i" + b"\x00" * 8 + b"N",  # a non-string key
    b"l\xff\xff\xff\xff",  # a count larger than the frame: refused before anything is allocated
    b"d\x7f\xff\xff\xffNN",
    b"s\x00\x00\x00\x02\xff",  # truncated
])
def test_malformed_values_are_refused(bad: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(bad)


def test_depth_is_bounded_both_ways() -> None:
    deep: object = None
    for _ in range(protocol.MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(protocol.ProtocolError):
        protocol.encode(deep)
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(b"l\x00\x00\x00\x01" * (protocol.MAX_DEPTH + 2) + b"N")


def test_only_plain_values_encode() -> None:
    for bad in (1.5, object(), {1: 2}, {"a"}):
        with pytest.raises(protocol.ProtocolError):
            protocol.encode(bad)


def test_frame_header_checks() -> None:
    body = protocol.encode("x")
    good = protocol.frame("x")
    assert protocol.payload_length(good[:8], 100) == len(body)
    with pytest.raises(protocol.ProtocolError, match="not a kvsops agent frame"):
        protocol.payload_length(b"GET / HT", 100)
    with pytest.raises(protocol.ProtocolError, match="version 2"):
        protocol.payload_length(protocol.frame("x", version=2)[:8], 100)
    with pytest.raises(protocol.ProtocolError, match="larger than the limit"):
        protocol.payload_length(b"KVA\x01" + (101).to_bytes(4, "big"), 100)


# ----------------------------------------------------------------------------- errors over the wire


def _subclasses(cls: type) -> list[type]:
    return [cls] + [s for sub in cls.__subclasses__() for s in _subclasses(sub)]


@pytest.mark.parametrize("cls", [c for c in _subclasses(errors.KvsopsError) if c.__module__ == "kvsops.errors"],
                         ids=lambda c: c.__name__)
def test_every_error_class_survives_the_trip(cls: type[errors.KvsopsError]) -> None:
    exc = cls("a message", hint="a hint").with_where("f.yaml")
    info = protocol.decode(protocol.encode(client.error_info(exc)))
    assert isinstance(info, dict)
    back = client.rebuild(info)
    assert type(back) is cls
    assert isinstance(back, errors.KvsopsError)
    assert (back.render(), back.code, back.hint, back.exit_code) == (exc.render(), exc.code, exc.hint, exc.exit_code)


def test_unknown_codes_and_internal_errors() -> None:
    back = client.rebuild({"code": "FROM_THE_FUTURE", "message": "m", "exit": 77})
    assert isinstance(back, errors.KvsopsError) and back.code == "FROM_THE_FUTURE" and back.exit_code == 77
    internal = client.rebuild(client.error_info(KeyError("a secret that must not travel")))
    assert type(internal).__name__ == "KeyError" and not isinstance(internal, errors.KvsopsError)
    assert "secret" not in repr(internal)
    assert type(client.rebuild({"code": "INTERNAL", "type": "not an identifier"})).__name__ == "Exception"


# ----------------------------------------------------------------------------- client settings


def test_modes() -> None:
    assert client.mode({}) == "auto"
    assert [client.mode({"KVSOPS_AGENT": v}) for v in ("required", "OFF", "0", "false", " auto ")] == \
        ["required", "off", "off", "off", "auto"]
    with pytest.raises(errors.ConfigError):
        client.mode({"KVSOPS_AGENT": "sometimes"})
    assert client.from_env({}) is None
    assert client.from_env({"KVSOPS_AGENT_SOCK": "/x", "KVSOPS_AGENT": "off"}) is None
    link = client.from_env({"KVSOPS_AGENT_SOCK": "/x"})
    assert link is not None and link.path == "/x" and not link.required
    with pytest.raises(errors.AgentError, match="KVSOPS_AGENT_SOCK is not set"):
        client.from_env({"KVSOPS_AGENT": "required"})


def test_identity_is_digests_of_key_variables_only() -> None:
    env = {"SOPS_AGE_KEY": "AGE-SECRET-KEY-1SECRET", "AZURE_CLIENT_SECRET": "hunter2", "HOME": "/h",
           "PATH": "/bin", "ARGOCD_APP_NAME": "x", "KVSOPS_AZURE_CREDENTIAL": "workload_identity",
           "HTTPS_PROXY": "http://p", "SOPS_DECRYPTION_ORDER": "age"}
    ident = client.identity(env)
    assert set(ident) == {"SOPS_AGE_KEY", "AZURE_CLIENT_SECRET", "HOME", "KVSOPS_AZURE_CREDENTIAL", "HTTPS_PROXY"}
    blob = repr(ident)
    assert "SECRET" not in blob.replace("AZURE_CLIENT_SECRET", "") and "hunter2" not in blob
    assert client.identity({**env, "PATH": "/other"}) == ident
    assert client.identity({**env, "HOME": "/other"}) != ident
    spec = client.session_spec(env, policy=True)
    assert spec["env"] == {"SOPS_DECRYPTION_ORDER": "age"} and spec["policy"] is True


# ----------------------------------------------------------------------------- the limiter


def _windows(starts: list[float], width: float = 1.0) -> int:
    """The most starts in any window of ``width`` seconds."""
    starts = sorted(starts)
    best, j = 0, 0
    for i, t in enumerate(starts):
        while starts[j] <= t - width:
            j += 1
        best = max(best, i - j + 1)
    return best


def _run(limiter: object, n: int, hold: float = 0.0, vault: str = "v") -> list[float]:
    from kvsops.azure.common import Limiter

    assert isinstance(limiter, Limiter)
    starts: list[float] = []
    lock = threading.Lock()

    def one() -> None:
        limiter.acquire(vault, None)
        with lock:
            starts.append(time.monotonic())
        time.sleep(hold)
        limiter.release()

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return starts


def test_limiter_rate_is_never_exceeded() -> None:
    from kvsops.azure.common import Limiter

    limiter = Limiter(rate=5, concurrency=100)
    t0 = time.monotonic()
    starts = _run(limiter, 12)
    assert _windows(starts) <= 5
    assert time.monotonic() - t0 >= 2.0  # 12 starts at 5 per second: the last in the third second
    assert limiter.stats()["calls"] == 12


def test_limiter_concurrency() -> None:
    from kvsops.azure.common import Limiter

    limiter = Limiter(rate=1000, concurrency=3)
    active, peak = [0], [0]
    lock = threading.Lock()

    def one() -> None:
        limiter.acquire("v", None)
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        limiter.release()

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 3


def test_limiter_retry_after_holds_that_vault_only() -> None:
    from kvsops.azure.common import DeadlineExceeded, Limiter

    limiter = Limiter(rate=1000, concurrency=10)
    limiter.hold("throttled", 0.4)
    t0 = time.monotonic()
    limiter.acquire("other", None)
    limiter.release()
    assert time.monotonic() - t0 < 0.2
    with pytest.raises(DeadlineExceeded):
        limiter.acquire("throttled", time.monotonic() + 0.1)  # the hold outlasts the deadline: fail now
    limiter.acquire("throttled", None)
    limiter.release()
    assert time.monotonic() - t0 >= 0.4
    assert limiter.stats()["throttled"] == 1


def test_limiter_settings_are_checked() -> None:
    from kvsops.azure.common import Limiter

    with pytest.raises(errors.ConfigError):
        Limiter(rate=0, concurrency=1)
