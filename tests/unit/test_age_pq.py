"""age's post-quantum recipient type (kvsops.keys.age_pq) against the specification's vectors, and the
age key backend's handling of post-quantum identities and recipients (kvsops.keys.age)."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kvsops.context import KeyContext
from kvsops.errors import KeyFailure, NotMyKey
from kvsops.keys import age, age_pq
from kvsops.keys.armor import armor, dearmor

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
TESTKIT = sorted((VECTORS / "age-testkit").iterdir())


# ----------------------------------------------------------------------------- the testkit


class X25519TestIdentity:
    """The testkit's format vectors wrap their file keys for X25519 (which kvsops leaves to pyrage):
    this test-only identity, written from the specification, lets them exercise age_pq's header,
    MAC and STREAM code."""

    def __init__(self, text: str) -> None:
        hrp, key = age_pq.bech32_decode(text)
        assert hrp == "AGE-SECRET-KEY-"
        self.key = x25519.X25519PrivateKey.from_private_bytes(key)

    def unwrap(self, stanzas):
        for args, body in stanzas:
            if args[0] != "X25519":
                continue
            if len(args) != 2:
                raise age_pq.HeaderFailure("X25519 stanza arguments")
            share = age_pq._b64_raw_decode(args[1].encode())
            if len(share) != 32 or len(body) != 32:
                raise age_pq.HeaderFailure("X25519 stanza lengths")
            try:
                shared = self.key.exchange(x25519.X25519PublicKey.from_public_bytes(share))
            except ValueError:
                raise age_pq.HeaderFailure("low-order share") from None
            salt = share + self.key.public_key().public_bytes_raw()
            wrap_key = HKDF(SHA256(), 32, salt, b"age-encryption.org/v1/X25519").derive(shared)
            try:
                return ChaCha20Poly1305(wrap_key).decrypt(bytes(12), body, None)
            except InvalidTag:
                continue
        return None


def read_vector(path: Path) -> tuple[dict[str, str], list[str], bytes]:
    head, _, body = path.read_bytes().partition(b"\n\n")
    meta, identities = {}, []
    for line in head.decode().splitlines():
        key, _, value = line.partition(": ")
        if key == "identity":
            identities.append(value)
        else:
            meta[key] = value
    if meta.get("compressed") == "zlib":
        body = zlib.decompress(body)
    return meta, identities, body


def outcome(meta: dict[str, str], identities: list[str], body: bytes) -> str:
    ids = [age_pq.parse_identity(i) if i.startswith("AGE-SECRET-KEY-PQ-") else X25519TestIdentity(i)
           for i in identities]
    try:
        if meta.get("armored") == "yes":
            body = dearmor(body.decode())
        plain = age_pq.decrypt(body, ids)
    except age_pq.NoMatch:
        return "no match"
    except age_pq.HeaderFailure:
        return "header failure"
    except age_pq.HMACFailure:
        return "HMAC failure"
    except age_pq.PayloadFailure:
        return "payload failure"
    assert hashlib.sha256(plain).hexdigest() == meta["payload"]
    return "success"


def test_the_testkit_is_there():
    names = {p.name for p in TESTKIT}
    assert len(names) == 86 and {"hybrid", "hybrid_low_order", "armor_hybrid", "stream_two_chunks"} <= names


@pytest.mark.parametrize("path", TESTKIT, ids=[p.name for p in TESTKIT])
def test_age_testkit_vector(path):
    meta, identities, body = read_vector(path)
    assert outcome(meta, identities, body) == meta["expect"], meta.get("comment", "")


@pytest.mark.parametrize("name", ["hybrid", "stream_two_chunks", "stream_empty_payload", "x25519_grease"])
def test_header_and_stream_round_trip(name):
    """The testkit's README: success vectors round-trip header encoding and STREAM encryption."""
    meta, identities, body = read_vector(VECTORS / "age-testkit" / name)
    stanzas, mac, mac_input, payload = age_pq.parse_header(body)
    assert age_pq._INTRO + b"".join(age_pq._stanza_bytes(a, b) for a, b in stanzas) + b"---" == mac_input
    file_key = bytes.fromhex(meta["file key"])
    nonce = payload[:16]
    key = age_pq._hkdf(file_key, nonce, b"payload")
    assert age_pq._seal(key, age_pq._open(key, payload[16:])) == payload[16:]


# ----------------------------------------------------------------------------- keys and Bech32


def test_the_specification_example_key_pair():
    spec = dict(line.split(": ", 1) for line in (VECTORS / "age-spec" / "mlkem768x25519-keys.txt")
                .read_text().splitlines() if not line.startswith("#"))
    ident = age_pq.parse_identity(spec["identity"])
    assert ident.recipient == spec["recipient"]
    assert str(ident) == spec["identity"]  # upper case, as age writes it
    assert len(ident.public_key) == 1216 and age_pq.recipient_public_key(spec["recipient"]) == ident.public_key


def test_bech32_rules():
    assert age_pq.bech32_decode("A12UEL5L") == ("A", b"")  # BIP173's valid examples
    assert age_pq.bech32_decode("a12uel5l") == ("a", b"")
    assert age_pq.bech32_decode("abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw")[0] == "abcdef"
    for bad in ("A12uEL5L", "a12uel5m", "pzry9x0s0muk", "1pzry9x0s0muk", "a1b2c3", "x1b4n0q5v"):
        with pytest.raises(ValueError):
            age_pq.bech32_decode(bad)
    data = bytes(range(256)) * 5  # no length limit (age's recipients are ~1,950 characters)
    assert age_pq.bech32_decode(age_pq.bech32_encode("age1pq", data)) == ("age1pq", data)
    assert age_pq.bech32_encode("AGE-X-", b"\x01").isupper()


def test_plugin_identity_is_the_same_seed():
    ident = age_pq.generate()
    _, seed = age_pq.bech32_decode(str(ident))
    plugin = age_pq.bech32_encode("AGE-PLUGIN-PQ-", seed)
    assert age_pq.parse_identity(plugin).recipient == ident.recipient


@pytest.mark.parametrize("text, why", [
    ("age1pq1qqqqqqqq", "malformed"),
    (age_pq.bech32_encode("age1pq", bytes(1215)), "wrong length"),
    (age_pq.bech32_encode("age1xx", bytes(1216)), "not a post-quantum recipient"),
    (age_pq.bech32_encode("age1pq", b"\xff" * 1216), "invalid MLKEM768-X25519 public key"),
])
def test_bad_recipients(text, why):
    with pytest.raises(ValueError, match=why):
        age_pq.recipient_public_key(text)
    with pytest.raises(ValueError, match="invalid age recipient"):
        age.Recipient(text)


@pytest.mark.parametrize("text", ["AGE-SECRET-KEY-PQ-1QQQQ", age_pq.bech32_encode("AGE-SECRET-KEY-PQ-", bytes(31)),
                                  age_pq.bech32_encode("AGE-SECRET-KEY-", bytes(32))])
def test_bad_identities(text):
    with pytest.raises(ValueError):
        age_pq.parse_identity(text)


def test_identity_repr_hides_the_seed():
    ident = age_pq.generate()
    assert str(ident) not in repr(ident) and "AGE-SECRET" not in repr(ident)


def test_encrypt_decrypt_many_chunks_and_recipients():
    a, b, c = age_pq.generate(), age_pq.generate(), age_pq.generate()
    plain = bytes(range(256)) * 1000  # 4 STREAM chunks
    blob = age_pq.encrypt(plain, [a.public_key, b.public_key])
    assert age_pq.decrypt(blob, [b]) == plain and age_pq.decrypt(blob, [c, a]) == plain
    with pytest.raises(age_pq.NoMatch):
        age_pq.decrypt(blob, [c])
    stanzas = age_pq.parse_header(blob)[0]
    assert [args[0] for args, _ in stanzas] == ["mlkem768x25519"] * 2
    assert all(len(body) == 32 and len(args) == 2 for args, body in stanzas)


def test_tampering_is_detected_and_classified():
    ident = age_pq.generate()
    blob = age_pq.encrypt(b"k" * 32, [ident.public_key])
    end = blob.index(b"\n---") + 5
    mac_flip = blob[:end] + bytes([blob[end] ^ 1]) + blob[end + 1:]
    with pytest.raises(age_pq.Malformed):  # a MAC character changed: bad base64 bits or a bad MAC
        age_pq.decrypt(mac_flip, [ident])
    payload_flip = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(age_pq.PayloadFailure):
        age_pq.decrypt(payload_flip, [ident])
    with pytest.raises(age_pq.HeaderFailure):
        age_pq.decrypt(blob[:40], [ident])


# ----------------------------------------------------------------------------- the age backend


def key_file_env(tmp_path, *lines: str) -> dict[str, str]:
    path = tmp_path / "keys.txt"
    path.write_text("# created: now\n" + "\n".join(lines) + "\n")
    return {"HOME": str(tmp_path / "home"), "SOPS_AGE_KEY_FILE": str(path)}


def unwrapper(env) -> age.Unwrapper:
    return age.Unwrapper(KeyContext(env, env["HOME"]))


def test_backend_round_trip_with_secret_and_plugin_identities(tmp_path):
    ident = age_pq.generate()
    entry = age.Recipient(ident.recipient).wrap(b"d" * 32)
    assert entry["recipient"] == ident.recipient and entry["enc"].startswith("-----BEGIN AGE ENCRYPTED FILE-----\n")
    other = age_pq.generate()
    assert unwrapper(key_file_env(tmp_path, str(other), str(ident))).unwrap(entry) == b"d" * 32
    _, seed = age_pq.bech32_decode(str(ident))
    plugin_form = age_pq.bech32_encode("AGE-PLUGIN-PQ-", seed)
    assert unwrapper(key_file_env(tmp_path, plugin_form)).unwrap(entry) == b"d" * 32


def test_backend_mismatch_is_not_my_key(tmp_path):
    entry = age.Recipient(age_pq.generate().recipient).wrap(b"d" * 32)
    x_ident, _ = age.generate()
    with pytest.raises(NotMyKey, match="none of the 2 loaded identities matches"):
        unwrapper(key_file_env(tmp_path, str(age_pq.generate()), x_ident)).unwrap(entry)


def test_backend_only_tries_the_identity_of_the_entrys_recipient(tmp_path):
    """An entry naming key A whose data key is wrapped for key B (both in this process) must not
    decrypt: the Argo CD key policy allows entries by recipient."""
    a, b = age_pq.generate(), age_pq.generate()
    forged = {"recipient": a.recipient, "enc": age.Recipient(b.recipient).wrap(b"d" * 32)["enc"]}
    with pytest.raises(KeyFailure, match="does not decrypt"):
        unwrapper(key_file_env(tmp_path, str(a), str(b))).unwrap(forged)


def test_backend_malformed_enc_is_a_key_failure(tmp_path):
    ident = age_pq.generate()
    entry = age.Recipient(ident.recipient).wrap(b"d" * 32)
    blob = dearmor(entry["enc"])
    header_end = blob.index(b"\n---")
    broken = blob[:header_end - 5] + b"!" + blob[header_end - 4:]
    with pytest.raises(KeyFailure, match="malformed") as info:
        unwrapper(key_file_env(tmp_path, str(ident))).unwrap({"recipient": ident.recipient, "enc": armor(broken)})
    assert str(ident) not in str(info.value)


def test_backend_reports_a_malformed_pq_identity_line(tmp_path):
    entry = age.Recipient(age_pq.generate().recipient).wrap(b"d" * 32)
    bad = "AGE-SECRET-KEY-PQ-1QQQQQQQQQQQQQQQQ"
    with pytest.raises(NotMyKey, match="not a valid age identity") as info:
        unwrapper(key_file_env(tmp_path, bad)).unwrap(entry)
    assert bad not in str(info.value)


def test_public_api_fallback_derives_the_same_keys():
    """The module takes cryptography's classes from its Rust binding; the public API is the fallback."""
    prims = age_pq._Primitives.__new__(age_pq._Primitives)
    assert prims._public_api()
    seed = bytes(range(32))
    expanded = hashlib.shake_256(seed).digest(96)
    m = prims.mlkem_from_seed(expanded[:64])
    x = prims.x25519_from_private(expanded[64:])
    assert m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw() == age_pq.Identity(seed).public_key


def test_describe_shortens_post_quantum_recipients():
    rec = age_pq.generate().recipient
    text = age.describe({"recipient": rec})
    assert len(text) < 60 and text.startswith("age recipient age1pq1") and rec[-8:] in text
    x = age.generate()[1]
    assert age.describe({"recipient": x}) == f"age recipient {x}"
