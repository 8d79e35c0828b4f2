"""Every backend module of kvsops.keys' table against the KeyBackend protocol (mypy checks the
signatures; this checks the behaviour every caller relies on), and the table's own rules.

Each backend has an example entry here: a new key type adds one (the test fails until it does).
Round trips that need a real key store are in the backend's own tests (age here and in
test_age_pq, pgp in tests/integration with the real gpg, azure_kv against the Key Vault emulator).
"""

from __future__ import annotations

import pytest

from kvsops import keys
from kvsops.context import KeyContext
from kvsops.errors import KeyFailure, NotMyKey
from tests.keys import AgeKey

AZURE = "https://team.vault.azure.net"
# kind -> (a spec, the metadata entry fields a key of that spec has, another key's spec)
EXAMPLES = {
    "age": ("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
            {"recipient": "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p", "enc": "x"},
            "age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg"),
    "pgp": ("FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4",
            {"created_at": "2024-01-01T00:00:00Z", "enc": "x", "fp": "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4"},
            "D7229043384BCC60326C6FB9D8720D957C3D3074"),
    "azure_kv": (f"{AZURE}/keys/sops/0123abcd",
                 {"vault_url": AZURE, "name": "sops", "version": "0123abcd", "created_at": "2024-01-01T00:00:00Z",
                  "enc": "x"},
                 f"{AZURE}/keys/other/0123abcd"),
}
BACKENDS = [row.kind for row in keys.backends()]
CTX = KeyContext({"HOME": "/nonexistent"}, "/nonexistent")


def test_every_backend_has_an_example() -> None:
    assert sorted(EXAMPLES) == sorted(BACKENDS)


@pytest.mark.parametrize("kind", BACKENDS)
def test_module_is_the_row_it_is_registered_under(kind: str) -> None:
    module = keys.backend(kind)
    assert module.KIND == kind
    for name in ("describe", "entry_spec", "same_key", "config_specs", "policy_key", "policy_allows", "recipient",
                 "Unwrapper"):
        assert callable(getattr(module, name)), name


@pytest.mark.parametrize("kind", BACKENDS)
def test_spec_identity_and_matching(kind: str) -> None:
    b = keys.backend(kind)
    spec, fields, other = EXAMPLES[kind]
    assert b.entry_spec(fields) == spec  # what updatekeys and rotate compare
    assert b.same_key(spec, spec) and not b.same_key(spec, other)
    assert b.recipient(spec, CTX).id == spec  # a spec parses back to the key it names
    with pytest.raises(ValueError):
        b.recipient("", CTX)
    described = b.describe(fields)
    assert described and "enc" not in described and fields["enc"] not in described.split()


@pytest.mark.parametrize("kind", BACKENDS)
def test_policy_items_allow_their_key_only(kind: str) -> None:
    b = keys.backend(kind)
    spec, fields, other = EXAMPLES[kind]
    assert b.policy_allows(frozenset({b.policy_key(spec)}), fields)
    assert not b.policy_allows(frozenset({b.policy_key(other)}), fields)
    assert not b.policy_allows(frozenset(), fields)
    assert b.policy_key(b.policy_key(spec)) == b.policy_key(spec)  # canonical
    with pytest.raises(ValueError):
        b.config_specs({"no": "such shape"} if kind != "azure_kv" else "a string")


def _gpg_without_keys(argv, stdin, env, timeout):  # type: ignore[no-untyped-def]
    """What gpg answers when it holds no secret key for the message (KeyContext.run injected)."""
    return 2, b"", b"gpg: encrypted with rsa2048 key, ID 3D16CEE4A27381B4\ngpg: decryption failed: No secret key\n"


@pytest.mark.parametrize("kind", [row.kind for row in keys.backends() if row.local])
def test_unwrapper_without_keys_is_not_my_key(kind: str) -> None:
    """No identity for the entry: NotMyKey (callers try the next key), never a data key. Network
    backends are tested against their server (azure_kv: tests/integration/test_azure_kv.py)."""
    wrapped = {"age": lambda: keys.backend("age").recipient(AgeKey().recipient, CTX).wrap(b"k" * 32),
               "pgp": lambda: {**EXAMPLES["pgp"][1],
                               "enc": "-----BEGIN PGP MESSAGE-----\nx\n-----END PGP MESSAGE-----"}}
    fields = wrapped[kind]()  # a well-formed entry, for a key that is not there
    ctx = KeyContext({"HOME": "/nonexistent", "SOPS_AGE_KEY": AgeKey().identity}, "/nonexistent", run=_gpg_without_keys)
    with pytest.raises(NotMyKey):
        keys.backend(kind).Unwrapper(ctx).unwrap(fields)


@pytest.mark.parametrize(("raised", "message"),
                         [(FileNotFoundError, "was not found"), (TimeoutError, "did not answer")])
def test_pgp_runs_gpg_through_the_context(raised: type[Exception], message: str) -> None:
    def run(argv, stdin, env, timeout):  # type: ignore[no-untyped-def]
        assert argv[0] == "gpg" and env["GNUPGHOME"] == "/home/u/.gnupg" and timeout > 0
        raise raised

    ctx = KeyContext({"HOME": "/home/u"}, "/home/u", run=run)
    with pytest.raises(KeyFailure, match=message):
        keys.backend("pgp").Unwrapper(ctx).unwrap({"fp": "F", "enc": "-----BEGIN PGP MESSAGE-----\nx"})


def test_age_round_trip_through_the_protocol() -> None:
    b = keys.backend("age")
    key = AgeKey()
    fields = b.recipient(key.recipient, CTX).wrap(b"k" * 32)
    assert b.entry_spec(fields) == key.recipient
    ctx = KeyContext({"HOME": "/nonexistent", "SOPS_AGE_KEY": key.identity}, "/nonexistent")
    assert b.Unwrapper(ctx).unwrap(fields) == b"k" * 32
    with pytest.raises(NotMyKey):
        other = KeyContext({"HOME": "/nonexistent", "SOPS_AGE_KEY": AgeKey().identity}, "/nonexistent")
        b.Unwrapper(other).unwrap(fields)


def test_table_rules() -> None:
    kinds = [row.kind for row in keys.KINDS]
    assert len(kinds) == len(set(kinds))
    assert keys.default_order() == ("age", "pgp")  # sops' default decryption order
    for row in keys.KINDS:
        assert bool(row.module) != bool(row.foreign[0]), row.kind  # a backend, or sops' name for the entry
        assert row.config_key
        if row.flag:
            assert row.module and row.env and row.noun and row.flag_rank
        assert not (row.policy and not row.module)
        assert not (row.in_process and not row.local)
    ranks = [row.flag_rank for row in keys.KINDS if row.flag]
    assert len(ranks) == len(set(ranks))


def test_foreign_kinds_are_named_and_configured_as_sops_does() -> None:
    assert keys.entry_spec("kms", {"arn": "arn:aws:kms:x", "enc": "e"}) == "arn:aws:kms:x"
    assert keys.entry_spec("hc_vault", {"vault_address": "https://v", "engine_path": "transit", "key_name": "k"}) == \
        "https://v/v1/transit/keys/k"
    assert keys.entry_spec("hckms", {}) == ""
    assert keys.config_specs("gcp_kms", {"resource_id": "projects/p"}) == ["projects/p"]
    assert keys.config_specs("hc_vault", "https://v/v1/transit/keys/k") == ["https://v/v1/transit/keys/k"]
    with pytest.raises(ValueError, match="kms arn must be a string"):
        keys.config_specs("kms", {"arn": ["x"]})
    assert not keys.usable("kms") and keys.usable("age")
    with pytest.raises(ValueError):
        keys.backend("kms")
