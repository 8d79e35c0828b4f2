"""azure_kv end to end: the real azure-identity / azure-keyvault-keys code against the HTTPS emulator.

Nothing is mocked inside the SDK: trust comes from REQUESTS_CA_BUNDLE, identity from the standard
variables (workload identity via AZURE_AUTHORITY_HOST, a service principal, App Service managed
identity), and the vault is 127.0.0.1:PORT with KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE=false.
azure-identity reads os.environ, so each test sets it through monkeypatch (xdist runs each worker
in its own process) and hands the same mapping to the backend as ``ctx.env``. A dead proxy for
every other host makes sure nothing leaves the machine.

Tests marked ``root`` alias ``kvtest.vault.azure.net`` to 127.0.0.1 in /etc/hosts and serve the
emulator on port 443, to run the real sops binary (Go SDK) against it both ways.
"""

from __future__ import annotations

import base64
import fcntl
import os
import re
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

pytest.importorskip("azure.identity")
pytest.importorskip("azure.keyvault.keys")

from kvsops import errors  # noqa: E402
from kvsops.azure import common as azure_common  # noqa: E402
from kvsops.keys import azure_kv  # noqa: E402
from kvsops.keys.base import KeyContext, KeyFailure  # noqa: E402
from tests.azure_emulator import KeyVaultEmulator  # noqa: E402
from tests.keys import AgeKey  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
_SCRUB_PREFIXES = ("AZURE_", "IDENTITY_", "MSI_", "IMDS_", "KVSOPS_AZURE_", "KVSOPS_DEADLINE")
_SCRUB_NAMES = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "NO_PROXY", "no_proxy",
                "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")


class Harness:
    """Builds KeyContexts whose env is also os.environ (for the parts azure-identity reads itself)."""

    def __init__(self, emu: KeyVaultEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        self.emu, self.mp, self.tmp = emu, monkeypatch, tmp_path

    def ctx(self, identity: str = "workload", client_id: str = "renderer", deadline: float | None = None,
            **extra: str) -> KeyContext:
        for name in list(os.environ):
            if name.startswith(_SCRUB_PREFIXES) or name in _SCRUB_NAMES:
                self.mp.delenv(name, raising=False)
        env = self.emu.base_env()
        env["KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE"] = "false"
        if identity == "workload":
            env.update(self.emu.workload_identity_env(client_id, self.tmp / f"token-{client_id}"))
        elif identity == "secret":
            env.update(self.emu.client_secret_env(client_id, "s3cret-" + client_id))
            env["KVSOPS_AZURE_DISABLE_INSTANCE_DISCOVERY"] = "true"
        elif identity == "managed":
            env.update(self.emu.managed_identity_env())
        env.update(extra)
        for k, v in env.items():
            self.mp.setenv(k, v)
        dl = time.monotonic() + deadline if deadline is not None else None
        return KeyContext(env=dict(os.environ), home=str(self.tmp), deadline=dl)


@pytest.fixture
def h(emu: KeyVaultEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Harness:
    return Harness(emu, monkeypatch, tmp_path)


def _wrap(ctx: KeyContext, spec: str, data_key: bytes) -> dict[str, str]:
    return azure_kv.recipient(spec, ctx).wrap(data_key)


def _assert_public(text: str, emu: KeyVaultEmulator, *secrets_: bytes) -> None:
    for token in list(emu.tokens):
        assert token not in text
        assert token.split(".")[1] not in text
    for s in secrets_:
        assert s.hex() not in text
        assert base64.b64encode(s).decode() not in text
        assert azure_kv.b64url(s) not in text
    assert "Traceback" not in text and "azure.core" not in text


# ----------------------------------------------------------------------------- spec parsing (no network)


@pytest.mark.parametrize(
    "spec, vault, name, version",
    [
        ("https://myvault.vault.azure.net/keys/sops-key/0123abcd", "https://myvault.vault.azure.net", "sops-key",
         "0123abcd"),
        ("https://myvault.vault.azure.net/keys/sops-key", "https://myvault.vault.azure.net", "sops-key", ""),
        ("https://myvault.vault.azure.net/keys/sops-key/", "https://myvault.vault.azure.net", "sops-key", ""),
        ("https://MyVault.vault.azure.net:443/keys/k", "https://myvault.vault.azure.net", "k", ""),
        ("https://v.vault.azure.cn/keys/k/1", "https://v.vault.azure.cn", "k", "1"),
        ("https://v.vault.usgovcloudapi.net/keys/k/1", "https://v.vault.usgovcloudapi.net", "k", "1"),
        ("https://hsm1.managedhsm.azure.net/keys/k/1", "https://hsm1.managedhsm.azure.net", "k", "1"),
        ("https://127.0.0.1:8443/keys/k", "https://127.0.0.1:8443", "k", ""),
    ],
)
def test_parse_spec(spec: str, vault: str, name: str, version: str) -> None:
    assert azure_kv.parse_spec(spec) == azure_kv.KeyRef(vault, name, version)


@pytest.mark.parametrize("spec", [
    "http://v.vault.azure.net/keys/k", "https://v.vault.azure.net/secrets/k", "https://v.vault.azure.net/keys/",
    "https://v.vault.azure.net/keys/k/1/2", "https://v.vault.azure.net/keys/bad_name", "v.vault.azure.net/keys/k",
])
def test_parse_spec_rejects(spec: str) -> None:
    with pytest.raises(ValueError, match="Azure Key Vault key URL"):
        azure_kv.parse_spec(spec)


def test_config_specs_and_describe() -> None:
    assert azure_kv.config_specs({"vaultUrl": "https://v.vault.azure.net/", "key": "k", "version": ""}) == \
        ["https://v.vault.azure.net/keys/k"]
    assert azure_kv.describe({"vault_url": "https://v.vault.azure.net", "name": "k", "version": "1"}) == \
        "azure_kv https://v.vault.azure.net/keys/k/1"


def test_module_import_does_not_import_azure() -> None:
    code = ("import sys; import kvsops.keys.azure_kv as m; m.parse_spec('https://v.vault.azure.net/keys/k');"
            "m.describe({}); print(sorted(x for x in sys.modules if x.split('.')[0] == 'azure'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_common_and_secrets_import_does_not_import_azure() -> None:
    code = ("import sys; import kvsops.azure.common as c, kvsops.azure.secrets as s;"
            "c.Settings.from_env({'KVSOPS_AZURE_CREDENTIAL': 'workload-identity'}); c.scrub('x'); c.error_codes(None);"
            "print(sorted(x for x in sys.modules if x.split('.')[0] == 'azure'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_missing_extra_gives_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "azure.keyvault.keys", None)
    ctx = KeyContext(env={}, home=str(tmp_path))
    fields = {"vault_url": "https://v.vault.azure.net", "name": "k", "version": "1", "created_at": "x", "enc": "AAAA"}
    with pytest.raises(errors.MissingDependency) as ei:
        azure_kv.Unwrapper(ctx).unwrap(fields)
    assert "kvsops[azure]" in (ei.value.hint or "")


# ----------------------------------------------------------------------------- round trips


def test_round_trip_workload_identity_versionless(h: Harness, emu: KeyVaultEmulator) -> None:
    version = emu.create_key("sops-key")
    ctx = h.ctx("workload")
    data_key = os.urandom(32)
    fields = _wrap(ctx, emu.key_url("sops-key"), data_key)
    assert list(fields) == ["vault_url", "name", "version", "created_at", "enc"]
    assert fields["vault_url"] == emu.vault_url() and fields["name"] == "sops-key"
    assert fields["version"] == version  # resolved and stored, as sops >= 3.11 does
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", fields["created_at"])
    assert re.fullmatch(r"[A-Za-z0-9_-]{342}", fields["enc"])  # RSA-2048, base64url, no padding
    assert emu.counts["encrypt"] == 0  # encrypted locally with the public key
    # The vault itself agrees the ciphertext is RSA-OAEP-256 of the data key.
    ct = base64.urlsafe_b64decode(fields["enc"] + "==")
    assert emu.decrypt_locally("sops-key", version, ct) == data_key
    assert azure_kv.Unwrapper(ctx).unwrap(fields) == data_key
    assert emu.counts["decrypt"] == 1
    assert emu.token_requests == {"aad": 1}


def test_round_trip_pinned_version(h: Harness, emu: KeyVaultEmulator) -> None:
    v1 = emu.create_key("k")
    emu.rotate_key("k")
    ctx = h.ctx("workload")
    fields = _wrap(ctx, emu.key_url("k", v1), b"\x01" * 32)
    assert fields["version"] == v1
    assert azure_kv.Unwrapper(ctx).unwrap(fields) == b"\x01" * 32


def test_round_trip_service_principal_secret(h: Harness, emu: KeyVaultEmulator) -> None:
    emu.create_key("k")
    ctx = h.ctx("secret", client_id="ci-sp", KVSOPS_AZURE_CREDENTIAL="environment")
    fields = _wrap(ctx, emu.key_url("k"), b"\x02" * 32)
    assert azure_kv.Unwrapper(ctx).unwrap(fields) == b"\x02" * 32
    assert emu.token_requests == {"aad": 1}


def test_round_trip_managed_identity_default_chain(h: Harness, emu: KeyVaultEmulator) -> None:
    emu.create_key("k")
    ctx = h.ctx("managed")
    fields = _wrap(ctx, emu.key_url("k"), b"\x03" * 32)
    assert azure_kv.Unwrapper(ctx).unwrap(fields) == b"\x03" * 32
    assert emu.token_requests == {"msi": 1}


def test_wrap_and_unwrap_sizes_for_shamir_shares(h: Harness, emu: KeyVaultEmulator) -> None:
    emu.create_key("k")
    ctx = h.ctx()
    for n in (1, 33, 100):
        data = os.urandom(n)
        assert azure_kv.Unwrapper(ctx).unwrap(_wrap(ctx, emu.key_url("k"), data)) == data


def test_rotation_old_entries_keep_their_version(h: Harness, emu: KeyVaultEmulator) -> None:
    v1 = emu.create_key("k")
    ctx = h.ctx()
    old = _wrap(ctx, emu.key_url("k"), b"\x04" * 32)
    v2 = emu.rotate_key("k")
    ctx2 = h.ctx()  # a later encrypt, in a new process
    new = _wrap(ctx2, emu.key_url("k"), b"\x05" * 32)
    assert (old["version"], new["version"]) == (v1, v2)
    u = azure_kv.Unwrapper(ctx2)
    assert u.unwrap(old) == b"\x04" * 32 and u.unwrap(new) == b"\x05" * 32
    decrypts = [p for m, p, s, _ in emu.log if p.endswith("/decrypt") and s == 200]
    assert any(f"/{v1}/" in p for p in decrypts) and any(f"/{v2}/" in p for p in decrypts)


def test_sops_default_key_ops_encrypt_decrypt(h: Harness, emu: KeyVaultEmulator) -> None:
    emu.create_key("k", key_ops=("encrypt", "decrypt"))
    ctx = h.ctx()
    fields = _wrap(ctx, emu.key_url("k"), b"\x06" * 32)
    assert azure_kv.Unwrapper(ctx).unwrap(fields) == b"\x06" * 32


# ----------------------------------------------------------------------------- permissions (team workflow)


def test_developer_with_get_only_encrypts_locally_renderer_decrypts(h: Harness, emu: KeyVaultEmulator) -> None:
    emu.create_key("k", key_ops=("encrypt", "decrypt"))
    emu.grant("developer", "get")
    emu.grant("renderer", "decrypt")
    dev = h.ctx("workload", client_id="developer", KVSOPS_AZURE_CREDENTIAL="workload_identity")
    fields = _wrap(dev, emu.key_url("k"), b"\x07" * 32)
    assert emu.counts["encrypt"] == 0
    with pytest.raises(KeyFailure) as ei:
        azure_kv.Unwrapper(dev).unwrap(fields)
    msg = str(ei.value)
    assert "needs the 'decrypt' key permission" in msg and "Key Vault Crypto User" in msg
    assert "workload identity" in msg and fields["name"] in msg and emu.vault_url() in msg
    _assert_public(msg, emu, b"\x07" * 32)
    renderer = h.ctx("workload", client_id="renderer", KVSOPS_AZURE_CREDENTIAL="workload_identity")
    assert azure_kv.Unwrapper(renderer).unwrap(fields) == b"\x07" * 32


def test_no_get_permission_falls_back_to_remote_encrypt(h: Harness, emu: KeyVaultEmulator) -> None:
    version = emu.create_key("k")
    emu.forbid_get = True
    ctx = h.ctx()
    fields = _wrap(ctx, emu.key_url("k"), b"\x08" * 32)
    assert fields["version"] == version  # learnt from the encrypt answer's kid
    assert emu.counts["encrypt"] == 1
    assert azure_kv.Unwrapper(ctx).unwrap(fields) == b"\x08" * 32


def test_key_without_encrypt_op_is_refused_clearly(h: Harness, emu: KeyVaultEmulator) -> None:
    emu.create_key("k", key_ops=("decrypt",))
    with pytest.raises(KeyFailure, match="does not allow 'encrypt'"):
        _wrap(h.ctx(), emu.key_url("k"), b"\x09" * 32)


def test_disabled_key(h: Harness, emu: KeyVaultEmulator) -> None:
    emu.create_key("k")
    ctx = h.ctx()
    fields = _wrap(ctx, emu.key_url("k"), b"\x0a" * 32)
    emu.set_enabled("k", False)
    for call in (lambda: azure_kv.Unwrapper(h.ctx()).unwrap(fields),
                 lambda: _wrap(h.ctx(), emu.key_url("k"), b"x" * 32)):
        with pytest.raises(KeyFailure, match="disabled") as ei:
            call()
        _assert_public(str(ei.value), emu, b"\x0a" * 32)


def test_unknown_version_is_404(h: Harness, emu: KeyVaultEmulator) -> None:
    emu.create_key("k")
    ctx = h.ctx()
    fields = dict(_wrap(ctx, emu.key_url("k"), b"\x0b" * 32), version="0" * 32)
    with pytest.raises(KeyFailure, match="no such key or version.*404"):
        azure_kv.Unwrapper(ctx).unwrap(fields)


def test_rejected_token_is_401(h: Harness, emu: KeyVaultEmulator) -> None:
    emu.create_key("k")
    ctx = h.ctx()
    fields = _wrap(ctx, emu.key_url("k"), b"\x0c" * 32)
    assert azure_kv.Unwrapper(ctx).unwrap(fields) == b"\x0c" * 32
    revoked = list(emu.tokens)
    emu.tokens.clear()  # the vault no longer accepts the cached token
    with pytest.raises(KeyFailure, match="rejected the token.*401") as ei:
        azure_kv.Unwrapper(ctx).unwrap(dict(fields))
    for t in revoked:
        assert t not in str(ei.value)


def test_wrong_client_secret(h: Harness, emu: KeyVaultEmulator) -> None:
    emu.create_key("k")
    ctx = h.ctx("secret", client_id="ci-sp", KVSOPS_AZURE_CREDENTIAL="environment")
    emu.client_secrets["ci-sp"] = "something-else"
    with pytest.raises(KeyFailure, match="could not get a token with environment service principal") as ei:
        _wrap(ctx, emu.key_url("k"), b"\x0d" * 32)
    assert "s3cret-ci-sp" not in str(ei.value)
    # the failure is sticky for the process: no token storm from many files
    before = sum(emu.token_requests.values())
    with pytest.raises(KeyFailure):
        azure_kv.Unwrapper(ctx).unwrap({"vault_url": emu.vault_url(), "name": "k", "version": "1", "enc": "AAAA"})
    assert sum(emu.token_requests.values()) == before


def test_challenge_resource_mismatch_names_the_setting(h: Harness, emu: KeyVaultEmulator) -> None:
    emu.create_key("k")
    ctx = h.ctx(KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE="true")
    with pytest.raises(KeyFailure, match="KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE=false"):
        _wrap(ctx, emu.key_url("k"), b"\x0e" * 32)


def test_bad_credential_setting(h: Harness, emu: KeyVaultEmulator) -> None:
    with pytest.raises(errors.ConfigError, match="KVSOPS_AZURE_CREDENTIAL"):
        azure_kv.Unwrapper(h.ctx(KVSOPS_AZURE_CREDENTIAL="magic")).unwrap(
            {"vault_url": emu.vault_url(), "name": "k", "version": "1", "enc": "AAAA"})


# ----------------------------------------------------------------------------- faults and the deadline


def _wrapped(h: Harness, emu: KeyVaultEmulator, data_key: bytes = b"\x10" * 32) -> dict[str, str]:
    emu.create_key("k")
    fields = _wrap(h.ctx(), emu.key_url("k"), data_key)
    emu.reset_counters()
    return fields


def test_429_with_retry_after_is_honoured(h: Harness, emu: KeyVaultEmulator) -> None:
    fields = _wrapped(h, emu)
    ctx = h.ctx()
    azure_kv.Unwrapper(ctx).unwrap(fields)  # warm: challenge, token, key read
    emu.throttle(2, retry_after=1, ops={"decrypt"})
    t0 = time.monotonic()
    assert azure_kv.Unwrapper(ctx).unwrap(dict(fields, created_at="again")) == b"\x10" * 32
    elapsed = time.monotonic() - t0
    assert 1.9 <= elapsed < 15  # waited the two Retry-After seconds (the upper bound only catches a hang)
    assert emu.counts["decrypt"] == 1 + 3


def test_429_longer_than_the_deadline_fails_fast(h: Harness, emu: KeyVaultEmulator) -> None:
    fields = _wrapped(h, emu)
    emu.throttle(10, retry_after=120, ops={"decrypt"})
    t0 = time.monotonic()
    with pytest.raises(errors.Timeout, match="deadline") as ei:
        azure_kv.Unwrapper(h.ctx(deadline=30)).unwrap(fields)
    assert time.monotonic() - t0 < 15  # gave up at once, without sleeping into the deadline
    assert "KVSOPS_DEADLINE_SECONDS" in (ei.value.hint or "")


def test_transient_5xx_is_retried(h: Harness, emu: KeyVaultEmulator) -> None:
    fields = _wrapped(h, emu)
    emu.fail(2, status=503, ops={"decrypt"})
    assert azure_kv.Unwrapper(h.ctx()).unwrap(fields) == b"\x10" * 32
    assert emu.counts["decrypt"] == 3


def test_persistent_5xx_gives_up_after_bounded_retries(h: Harness, emu: KeyVaultEmulator) -> None:
    fields = _wrapped(h, emu)
    emu.fail(100, status=500, ops={"decrypt"})
    t0 = time.monotonic()
    with pytest.raises(KeyFailure, match="HTTP 500") as ei:
        azure_kv.Unwrapper(h.ctx()).unwrap(fields)
    assert time.monotonic() - t0 < 30  # bounded retries (counted below); the bound only catches a runaway
    assert emu.counts["decrypt"] == 1 + azure_common.RETRY_TOTAL
    _assert_public(str(ei.value), emu, b"\x10" * 32)


def test_hung_connection_hits_the_deadline(h: Harness, emu: KeyVaultEmulator) -> None:
    fields = _wrapped(h, emu)
    emu.hang(100, ops={"decrypt"})
    t0 = time.monotonic()
    with pytest.raises(errors.Timeout):
        azure_kv.Unwrapper(h.ctx(deadline=2)).unwrap(fields)
    assert time.monotonic() - t0 < 10  # the connection never answers: only the deadline ends the wait


def test_latency_beyond_the_deadline(h: Harness, emu: KeyVaultEmulator) -> None:
    fields = _wrapped(h, emu)
    emu.latency = 20
    t0 = time.monotonic()
    with pytest.raises(errors.Timeout):
        azure_kv.Unwrapper(h.ctx(deadline=1)).unwrap(fields)
    assert time.monotonic() - t0 < 8  # stopped at the 1 s deadline, not after the 20 s answer


def test_expired_deadline_makes_no_request(h: Harness, emu: KeyVaultEmulator) -> None:
    fields = _wrapped(h, emu)
    with pytest.raises(errors.Timeout):
        azure_kv.Unwrapper(h.ctx(deadline=-1)).unwrap(fields)
    assert sum(emu.counts.values()) == 0


# ----------------------------------------------------------------------------- many files


def _many(h: Harness, emu: KeyVaultEmulator, n: int) -> tuple[list[dict[str, str]], list[bytes]]:
    emu.create_key("k")
    ctx = h.ctx()
    keys = [os.urandom(32) for _ in range(n)]
    rec = azure_kv.recipient(emu.key_url("k"), ctx)
    return [rec.wrap(k) for k in keys], keys


def test_100_files_concurrently_one_token_one_decrypt_each(h: Harness, emu: KeyVaultEmulator) -> None:
    entries, keys = _many(h, emu, 100)
    emu.latency = 0.03

    emu.reset_counters()
    ctx_seq = h.ctx()
    u = azure_kv.Unwrapper(ctx_seq)
    t0 = time.monotonic()
    assert [u.unwrap(e) for e in entries] == keys
    sequential = time.monotonic() - t0
    assert emu.max_in_flight == 1

    emu.reset_counters()
    ctx = h.ctx()  # a new process: new credential, new clients
    u = azure_kv.Unwrapper(ctx)
    t0 = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(u.unwrap, entries))
    concurrent = time.monotonic() - t0
    assert got == keys
    assert emu.counts["decrypt"] == 100
    assert emu.token_requests == {"aad": 1}
    # the SDK's challenge cache is process-wide per host, so the sequential run may have filled it
    assert emu.counts["challenge"] <= 1 and emu.counts["get"] <= 1
    print(f"\n100 unwraps, 30 ms latency: sequential {sequential:.2f}s, 16 threads {concurrent:.2f}s, "
          f"at most {emu.max_in_flight} at once, calls {dict(emu.counts)}, tokens {dict(emu.token_requests)}")
    # The calls really overlap (not a wall-clock ratio, which a loaded machine breaks; bench/ measures time).
    assert emu.max_in_flight >= 4


def test_logs_and_errors_carry_no_token_or_plaintext(h: Harness, emu: KeyVaultEmulator,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    import logging

    data_key = b"\x11" * 32
    caplog.set_level(logging.DEBUG)
    fields = _wrapped(h, emu, data_key)
    ctx = h.ctx()
    assert azure_kv.Unwrapper(ctx).unwrap(fields) == data_key
    emu.set_enabled("k", False)
    with pytest.raises(KeyFailure) as ei:
        azure_kv.Unwrapper(h.ctx()).unwrap(fields)
    text = caplog.text + str(ei.value)
    for token in list(emu.tokens):
        assert token not in text
    assert data_key.hex() not in text and azure_kv.b64url(data_key) not in text


# ----------------------------------------------------------------------------- through kvsops.api


def _api() -> Any:
    return pytest.importorskip("kvsops.api")


def test_api_round_trip_and_many_files(h: Harness, emu: KeyVaultEmulator) -> None:
    api = _api()
    emu.create_key("k", key_ops=("encrypt", "decrypt"))
    ctx = h.ctx()
    session = api.Session(env=dict(ctx.env))
    rec = session.recipient("azure_kv", emu.key_url("k"))
    files = [api.encrypt_bytes(f"db:\n  password: pw-{i}\n".encode(), "yaml", [[rec]]) for i in range(20)]
    assert b"azure_kv:" in files[0] and b"pw-0" not in files[0]
    emu.reset_counters()
    emu.latency = 0.03
    reader = api.Session(env=dict(ctx.env))
    out = api.decrypt_many([(f"f{i}.yaml", d, "yaml") for i, d in enumerate(files)], session=reader, workers=16)
    assert [yaml.safe_load(api.emit_plain(o.docs, "yaml")) for o in out] == [
        {"db": {"password": f"pw-{i}"}} for i in range(20)]
    assert emu.counts["decrypt"] == 20 and emu.token_requests == {"aad": 1}


def test_api_failure_is_a_no_key_error_without_secrets(h: Harness, emu: KeyVaultEmulator) -> None:
    api = _api()
    emu.create_key("k")
    ctx = h.ctx()
    recipient = api.Session(env=dict(ctx.env)).recipient("azure_kv", emu.key_url("k"))
    data = api.encrypt_bytes(b"a: secret-value\n", "yaml", [[recipient]])
    emu.grant("someone-else", "decrypt")
    with pytest.raises(errors.KvsopsError) as ei:
        api.decrypt_bytes(data, "yaml", session=api.Session(env=dict(h.ctx().env)))
    msg = str(ei.value)
    assert "decrypt" in msg and "Key Vault Crypto User" in msg and "secret-value" not in msg
    _assert_public(msg, emu)


# ----------------------------------------------------------------------------- root: the real sops binary

KVTEST_HOST = "kvtest.vault.azure.net"
HOSTS = Path("/etc/hosts")


@pytest.fixture
def root_emu(tmp_path: Path) -> Iterator[KeyVaultEmulator]:
    if os.geteuid() != 0:
        pytest.skip("needs root: /etc/hosts alias and port 443")
    with open("/tmp/kvsops-azure-root.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one hosts-file/port-443 user at a time (xdist)
        original = HOSTS.read_bytes()
        try:
            HOSTS.write_bytes(original + f"\n127.0.0.1 {KVTEST_HOST} # kvsops azure test\n".encode())
            with KeyVaultEmulator(port=443, names=("localhost", "127.0.0.1", "*.vault.azure.net")) as e:
                yield e
        finally:
            HOSTS.write_bytes(original)


def _sops_env(emu: KeyVaultEmulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not (k.startswith(_SCRUB_PREFIXES) or k in _SCRUB_NAMES)}
    env.update(emu.base_env(hosts=[KVTEST_HOST]))
    env.update(emu.managed_identity_env())
    env.pop("SOPS_AGE_KEY_FILE", None)
    return env


@pytest.mark.root
def test_root_sops_encrypts_kvsops_decrypts(root_emu: KeyVaultEmulator, tools: Any, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    api = _api()
    emu = root_emu
    version = emu.create_key("sops-key", key_ops=("encrypt", "decrypt"))
    env = _sops_env(emu)
    plain = tmp_path / "secret.yaml"
    plain.write_text("db:\n  password: from-sops\n")
    url = f"https://{KVTEST_HOST}/keys/sops-key/{version}"
    res = subprocess.run([tools.sops, "encrypt", "--azure-kv", url, str(plain)], env=env, capture_output=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    assert b"azure_kv" in res.stdout and b"from-sops" not in res.stdout
    assert emu.counts["encrypt"] == 1 and emu.token_requests["msi"] >= 1
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in list(os.environ):
        if k not in env:
            monkeypatch.delenv(k)
    out = api.decrypt_bytes(res.stdout, "yaml", session=api.Session(env=dict(env)))
    assert yaml.safe_load(out) == {"db": {"password": "from-sops"}}
    assert emu.counts["decrypt"] == 1


@pytest.mark.root
def test_root_kvsops_encrypts_sops_decrypts(root_emu: KeyVaultEmulator, tools: Any, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    api = _api()
    emu = root_emu
    emu.create_key("sops-key", key_ops=("encrypt", "decrypt"))
    env = _sops_env(emu)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in list(os.environ):
        if k not in env:
            monkeypatch.delenv(k)
    session = api.Session(env=dict(env))
    rec = session.recipient("azure_kv", f"https://{KVTEST_HOST}/keys/sops-key")  # versionless: resolved
    data = api.encrypt_bytes(b"db:\n  password: from-kvsops\n", "yaml", [[rec]])
    enc = tmp_path / "secret.enc.yaml"
    enc.write_bytes(data)
    res = subprocess.run([tools.sops, "decrypt", str(enc)], env=env, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    assert yaml.safe_load(res.stdout) == {"db": {"password": "from-kvsops"}}
    assert emu.counts["decrypt"] == 1


def test_emulator_runs_as_a_script() -> None:
    code = textwrap.dedent("""
        import subprocess, sys, time
        p = subprocess.Popen([sys.executable, "-m", "tests.azure_emulator"], stdout=subprocess.PIPE, text=True)
        lines = []
        for line in p.stdout:
            lines.append(line)
            if line.startswith("# Ctrl-C"):
                break
        p.terminate()
        try:
            p.wait(30)  # a loaded machine: the emulator's shutdown waits for its threads
        except subprocess.TimeoutExpired:
            p.kill(); p.wait()
        print("".join(lines))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60).stdout
    assert "export REQUESTS_CA_BUNDLE=" in out and "export IDENTITY_ENDPOINT=" in out and "/keys/sops-key/" in out


# ----------------------------------------------------------------------------- through the CLI


def test_cli_mixed_age_and_key_vault_group(h: Harness, emu: KeyVaultEmulator, tmp_path: Path) -> None:
    key = AgeKey()
    emu.create_key("sops-key", key_ops=("encrypt", "decrypt"))
    env = dict(h.ctx().env)
    plain = tmp_path / "secret.yaml"
    plain.write_text("db:\n  password: cli-secret\n")

    def kvsops(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "kvsops", *args], env={**env, **(extra or {})},
                              capture_output=True, timeout=60)

    res = kvsops("encrypt", "--azure-kv", emu.key_url("sops-key"), "--age", key.recipient, str(plain))
    assert res.returncode == 0, res.stderr.decode()
    enc = tmp_path / "secret.enc.yaml"
    enc.write_bytes(res.stdout)
    assert b"azure_kv:" in res.stdout and b"age:" in res.stdout and emu.counts["encrypt"] == 0

    emu.reset_counters()
    res = kvsops("decrypt", str(enc), extra={"SOPS_AGE_KEY": key.identity})
    assert res.returncode == 0 and yaml.safe_load(res.stdout) == {"db": {"password": "cli-secret"}}
    assert emu.counts["decrypt"] == 0  # the local age key is tried first

    res = kvsops("decrypt", str(enc))
    assert res.returncode == 0, res.stderr.decode()
    assert yaml.safe_load(res.stdout) == {"db": {"password": "cli-secret"}}
    assert emu.counts["decrypt"] == 1

    emu.set_enabled("sops-key", False)
    res = kvsops("decrypt", str(enc))
    assert res.returncode != 0 and res.stdout == b""
    err = res.stderr.decode()
    assert "disabled" in err and "Traceback" not in err and "cli-secret" not in err


def test_cli_without_a_credential_says_it_in_one_line_and_one_hint(h: Harness, emu: KeyVaultEmulator,
                                                                   tmp_path: Path) -> None:
    """No usable identity: azure-identity's chain report (dozens of log lines) stays out of stderr;
    kvsops prints one error naming what each source lacked, uncut, and one hint. --debug shows the
    SDK's own log again."""
    emu.create_key("k", key_ops=("encrypt", "decrypt"))
    env = dict(h.ctx().env)
    plain = tmp_path / "s.yaml"
    plain.write_text("a: b\n")
    res = subprocess.run([sys.executable, "-m", "kvsops", "encrypt", "--azure-kv", emu.key_url("k"), str(plain)],
                         env=env, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    enc = tmp_path / "s.enc.yaml"
    enc.write_bytes(res.stdout)
    bare = {k: v for k, v in env.items() if not k.startswith(("AZURE_", "IDENTITY_", "MSI_"))}
    bare["HOME"] = str(tmp_path / "home")  # no az login, no shared token cache
    for args in (["decrypt", str(enc)], ["decrypt", "--output-type", "json", str(enc)]):  # fast path and argparse
        res = subprocess.run([sys.executable, "-m", "kvsops", *args], env=bare, capture_output=True, timeout=120)
        assert res.returncode == 128 and res.stdout == b""
        lines = res.stderr.decode().splitlines()
        assert len(lines) == 2, lines
        error, hint = lines
        assert error.startswith("kvsops: error: ") and error.endswith(" [NO_KEY]"), error
        assert "could not get a token with DefaultAzureCredential (tried environment (service principal): " in error
        for source in ("workload identity: ", "managed identity: ", "Azure CLI: not installed"):
            assert source in error, error
        assert "troubleshoot" not in error and "..." not in error and "https://aka.ms" not in error
        assert hint.startswith("kvsops: hint: ") and "AZURE_CLIENT_ID" in hint and "KVSOPS_AZURE_CREDENTIAL" in hint
    res = subprocess.run([sys.executable, "-m", "kvsops", "--debug", "decrypt", "--output-type", "json", str(enc)],
                         env=bare, capture_output=True, timeout=120)
    err = res.stderr.decode()
    assert res.returncode == 128 and "kvsops: debug: azure.identity" in err and err.count("kvsops: error: ") == 1


def test_credential_summary_words() -> None:
    from kvsops.azure.common import credential_summary, scrub

    chain = ("DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
             "Attempted credentials:\n"
             "\tEnvironmentCredential: EnvironmentCredential authentication unavailable. Environment variables "
             "are not fully configured.\nVisit https://aka.ms/x to troubleshoot this issue.\n"
             "\tManagedIdentityCredential: ManagedIdentityCredential authentication unavailable, no response from "
             "the IMDS endpoint.\n"
             "\tAzureCliCredential: Please run 'az login' to set up an account\n"
             "\tSomeFutureCredential: whatever\n"
             "To mitigate this issue, please refer to the troubleshooting guidelines here at https://aka.ms/y.")
    assert credential_summary(chain) == (
        "tried environment (service principal): AZURE_TENANT_ID, AZURE_CLIENT_ID and a secret or certificate "
        "not set; managed identity: no endpoint answered (not on an Azure host?); Azure CLI: not logged in (az login)")
    one = "WorkloadIdentityCredential: AADSTS700016: Application with identifier 'x' was not found. Trace ID: 1"
    assert credential_summary(one) == "AADSTS700016: Application with identifier 'x' was not found"
    long = "word " * 100
    assert scrub(long).endswith("word (shortened)") and len(scrub(long)) < 320


def test_cli_sops_yaml_rules_updatekeys_and_rotate(h: Harness, emu: KeyVaultEmulator, tmp_path: Path) -> None:
    """`.sops.yaml` azure_keyvault rules drive encrypt; updatekeys re-wraps for a rotated key version
    (values unchanged); rotate re-encrypts everything; old and new files decrypt through Key Vault."""
    key = AgeKey()
    v1 = emu.create_key("team-key", key_ops=("encrypt", "decrypt"))
    env = dict(h.ctx().env)
    vault = emu.vault_url()

    def config(version: str) -> None:
        (tmp_path / ".sops.yaml").write_text(
            "creation_rules:\n"
            "  - path_regex: \\.enc\\.yaml$\n"
            "    key_groups:\n"
            f"      - azure_keyvault:\n          - vaultUrl: {vault}\n            key: team-key\n"
            f"            version: '{version}'\n"
            f"        age: ['{key.recipient}']\n"
        )

    def kvsops(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "kvsops", *args], env={**env, **(extra or {})},
                              capture_output=True, timeout=60, cwd=tmp_path)

    config(v1)
    target = tmp_path / "app.enc.yaml"
    target.write_text("db:\n  password: rotate-me\n")
    res = kvsops("encrypt", "-i", str(target))
    assert res.returncode == 0, res.stderr.decode()
    before = yaml.safe_load(target.read_bytes())
    assert before["sops"]["azure_kv"][0]["version"] == v1

    v2 = emu.rotate_key("team-key")
    config(v2)
    res = kvsops("updatekeys", "-y", str(target))
    assert res.returncode == 0, res.stderr.decode()
    after = yaml.safe_load(target.read_bytes())
    assert after["sops"]["azure_kv"][0]["version"] == v2
    assert after["db"] == before["db"] and after["sops"]["mac"] == before["sops"]["mac"]

    emu.reset_counters()
    res = kvsops("decrypt", str(target))  # no age key in env: Key Vault only
    assert res.returncode == 0, res.stderr.decode()
    assert yaml.safe_load(res.stdout) == {"db": {"password": "rotate-me"}}
    assert emu.counts["decrypt"] == 1

    res = kvsops("rotate", "-i", str(target))
    assert res.returncode == 0, res.stderr.decode()
    rotated = yaml.safe_load(target.read_bytes())
    assert rotated["db"]["password"] != after["db"]["password"]
    assert rotated["sops"]["azure_kv"][0]["enc"] != after["sops"]["azure_kv"][0]["enc"]
    res = kvsops("decrypt", str(target), extra={"SOPS_AGE_KEY": key.identity})
    assert res.returncode == 0 and yaml.safe_load(res.stdout) == {"db": {"password": "rotate-me"}}
    res = kvsops("decrypt", str(target))
    assert res.returncode == 0 and yaml.safe_load(res.stdout) == {"db": {"password": "rotate-me"}}


def test_sdk_imports_are_serialized(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads that unwrap several files' keys at once (and the agent's warm-up thread beside its
    request threads) import the SDK in different orders; concurrent imports of packages with import
    cycles failed at random ('the Azure SDK is not installed', importlib's _DeadlockError). Every
    SDK import goes through one lock: a second import_sdk waits while the first is importing."""
    import threading

    (tmp_path / "kvsops_slow_sdk_module.py").write_text("import sys\nsys.modules['kvsops_test_gate'].wait(30)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    gate = threading.Event()
    monkeypatch.setitem(sys.modules, "kvsops_test_gate", gate)  # type: ignore[arg-type]
    done: list[str] = []

    def load(name: str) -> None:
        azure_common.import_sdk(name, "")
        done.append(name)

    first = threading.Thread(target=load, args=("kvsops_slow_sdk_module",))
    first.start()
    time.sleep(0.3)  # the first one is inside the lock, waiting on the gate
    second = threading.Thread(target=load, args=("azure.keyvault.keys.crypto",))
    second.start()
    second.join(1.0)
    assert second.is_alive() and done == [], "a second SDK import ran while the first was still importing"
    gate.set()
    first.join(30)
    second.join(30)
    assert done == ["kvsops_slow_sdk_module", "azure.keyvault.keys.crypto"]
    monkeypatch.delitem(sys.modules, "kvsops_slow_sdk_module")
