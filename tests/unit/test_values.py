"""Value cipher and Go stringification: the details a reimplementation most often gets wrong."""

import base64
import os

import pytest

from kvsops import errors
from kvsops.sops import values
from kvsops.sops.tree import Comment, GoTime

KEY = bytes(range(32))


@pytest.mark.parametrize(
    "x, want",
    [
        (1.0, "1"),
        (1234568000.0, "1234568000"),
        (1e-7, "0.0000001"),
        (-0.0, "-0"),
        (25.4, "25.4"),
        (0.1, "0.1"),
        (1e21, "1000000000000000000000"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
        (123456789.125, "123456789.125"),
    ],
)
def test_go_float_format(x, want):
    assert values.go_format_float(x) == want


@pytest.mark.parametrize(
    "value, raw, tname",
    [
        ("hello", b"hello", "str"),
        (42, b"42", "int"),
        (-7, b"-7", "int"),
        (1.5, b"1.5", "float"),
        (True, b"True", "bool"),
        (False, b"False", "bool"),
        (GoTime.parse("2024-01-01"), b"2024-01-01T00:00:00Z", "time"),
        (Comment(" a comment"), b" a comment", "comment"),
        ("caf\u00e9 \u2603", "caf\u00e9 \u2603".encode(), "str"),
    ],
)
def test_round_trip_and_plaintext_bytes(value, raw, tname):
    assert values.to_bytes(value) == raw
    enc = values.encrypt(value, KEY, "a:b:")
    assert enc.startswith("ENC[AES256_GCM,data:") and enc.endswith(f",type:{tname}]")
    data, iv, tag, t = values.split(enc)
    assert len(iv) == 32 and len(tag) == 16 and t == tname
    assert values.decrypt(enc, KEY, "a:b:") == value


def test_empty_string_stays_empty():
    assert values.encrypt("", KEY, "a:") == ""
    assert values.decrypt("", KEY, "a:") == ""


def test_iv_reuse_is_deterministic():
    iv = os.urandom(32)
    assert values.encrypt("x", KEY, "k:", iv) == values.encrypt("x", KEY, "k:", iv)


def test_wrong_aad_fails_without_plaintext():
    enc = values.encrypt("TOPSECRET", KEY, "a:")
    with pytest.raises(errors.DecryptValueError) as e:
        values.decrypt(enc, KEY, "b:")
    assert "TOPSECRET" not in str(e.value)


def test_tampered_type_tag_never_shows_plaintext():
    enc = values.encrypt("TOPSECRET", KEY, "a:")
    bad = enc.replace("type:str", "type:int")
    with pytest.raises(errors.DecryptValueError) as e:
        values.decrypt(bad, KEY, "a:")
    assert "TOPSECRET" not in str(e.value)


@pytest.mark.parametrize("text", ["ENC[AES256_GCM,data:,iv:,tag:,type:str]", "ENC[nope]", "plain"])
def test_malformed(text):
    with pytest.raises(errors.DecryptValueError):
        values.decrypt(text, KEY, "a:")


def test_any_iv_length_is_read():
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    iv = os.urandom(12)
    sealed = AESGCM(KEY).encrypt(iv, b"v", b"x:")
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    text = f"ENC[AES256_GCM,data:{b64(sealed[:-16])},iv:{b64(iv)},tag:{b64(sealed[-16:])},type:str]"
    assert values.decrypt(text, KEY, "x:") == "v"


@pytest.mark.parametrize("raw, want", [("1", True), ("t", True), ("TRUE", True), ("0", False), ("F", False)])
def test_go_parsebool(raw, want):
    assert values.parse_typed(raw.encode(), "bool") is want


def test_binary_safe_strings():
    raw = bytes(range(256))
    s = raw.decode("utf-8", "surrogateescape")
    enc = values.encrypt(s, KEY, "data:")
    assert values.to_bytes(values.decrypt(enc, KEY, "data:")) == raw
