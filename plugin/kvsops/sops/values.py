"""One value: AES-256-GCM with a 32-byte IV, sops' ENC[...] text form, Go stringification."""

from __future__ import annotations

import base64
import binascii
import math
import os
import re

from kvsops.errors import DecryptValueError, EncryptError
from kvsops.sops.tree import Comment, GoTime

# sops' regex is greedy and unanchored at the end; keep the same acceptance.
_ENC = re.compile(r"^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]", re.DOTALL)
IV_SIZE = 32  # sops uses cipher.NewGCMWithNonceSize(32), not GCM's usual 12
TAG_SIZE = 16

_INT = re.compile(r"^[+-]?[0-9]+$")
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


_AEADS: dict[bytes, object] = {}


def _aesgcm_class():  # type: ignore[no-untyped-def]
    # cryptography's AESGCM lives in its Rust extension; the public module re-exports it but
    # first imports the whole ``primitives.ciphers`` package (typing, enum, abc: milliseconds
    # of every render). Take the same class from the binding when this cryptography has it there.
    try:
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        return rust_openssl.aead.AESGCM
    except (ImportError, AttributeError):  # pragma: no cover - other cryptography layouts
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM


def _aesgcm(key: bytes):  # type: ignore[no-untyped-def]
    # One AESGCM object per data key: building it per value costs more than the encryption.
    aead = _AEADS.get(key)
    if aead is None:
        if len(_AEADS) >= 16:
            _AEADS.clear()
        aead = _AEADS[key] = _aesgcm_class()(key)
    return aead


def _is_invalid_tag(exc: BaseException) -> bool:
    from cryptography.exceptions import InvalidTag

    return isinstance(exc, InvalidTag)


def go_format_float(x: float) -> str:
    """strconv.FormatFloat(x, 'f', -1, 64): shortest round-trip digits, never an exponent."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    from decimal import Decimal

    text = format(Decimal(repr(x)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def to_bytes(value: object) -> bytes:
    """sops' ToBytes: the exact plaintext bytes fed to GCM and to the MAC."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, bool):  # before int: bool is an int in Python
        return b"True" if value else b"False"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return go_format_float(value).encode()
    if isinstance(value, GoTime):
        return value.text.encode()
    if isinstance(value, Comment):
        return value.text.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes):
        return value
    raise EncryptError(f"cannot encrypt a value of type {type(value).__name__}")


def type_tag(value: object) -> str:
    if isinstance(value, str):
        return "str"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, GoTime):
        return "time"
    if isinstance(value, Comment):
        return "comment"
    if isinstance(value, bytes):
        return "str"
    raise EncryptError(f"cannot encrypt a value of type {type(value).__name__}")


def is_encrypted(value: object) -> bool:
    return isinstance(value, str) and value.startswith("ENC[AES256_GCM,")


def encrypt(value: object, key: bytes, aad: str, iv: bytes | None = None) -> str:
    """Encrypt one leaf. Empty strings (and empty comments) stay ``""`` as in sops."""
    plain = to_bytes(value)
    tag_name = type_tag(value)
    if not plain and tag_name in ("str", "comment"):
        return ""
    if iv is None:
        iv = os.urandom(IV_SIZE)
    sealed = _aesgcm(key).encrypt(iv, plain, aad.encode("utf-8", "surrogateescape"))
    b64 = base64.b64encode
    return (
        f"ENC[AES256_GCM,data:{b64(sealed[:-TAG_SIZE]).decode()},iv:{b64(iv).decode()},"
        f"tag:{b64(sealed[-TAG_SIZE:]).decode()},type:{tag_name}]"
    )


def split(text: str) -> tuple[bytes, bytes, bytes, str]:
    """Parse an ENC string into (ciphertext, iv, tag, type). Raises DecryptValueError."""
    m = _ENC.match(text)
    if not m:
        raise DecryptValueError("value does not match sops' data format")
    try:
        data, iv, tag = (base64.b64decode(g, validate=True) for g in m.group(1, 2, 3))
    except (binascii.Error, ValueError):
        raise DecryptValueError("value has invalid base64 in data, iv or tag") from None
    if not iv or len(tag) != TAG_SIZE:
        raise DecryptValueError("value has an invalid iv or tag length")
    return data, iv, tag, m.group(4)


def decrypt_raw(text: str, key: bytes, aad: str) -> tuple[bytes, str, bytes]:
    """Authenticate and decrypt: (plaintext bytes, type tag, iv)."""
    data, iv, tag, tname = split(text)
    try:
        plain = _aesgcm(key).decrypt(iv, data + tag, aad.encode("utf-8", "surrogateescape"))
    except Exception as exc:
        if not _is_invalid_tag(exc):
            raise
        raise DecryptValueError(
            "value failed authentication (wrong data key, tampered value, or value moved to another key)"
        ) from None
    return plain, tname, iv


def parse_typed(plain: bytes, tname: str) -> object:
    """Turn decrypted bytes back into a typed value. Errors never include the plaintext."""
    if tname == "str":
        return plain.decode("utf-8", "surrogateescape")
    text = plain.decode("utf-8", "surrogateescape")
    if tname == "int":
        if not _INT.match(text):
            raise DecryptValueError("decrypted value is not a valid int")
        n = int(text)
        if not -(2**63) <= n < 2**63:
            raise DecryptValueError("decrypted int is out of range")
        return n
    if tname == "float":
        try:
            return float(text)
        except ValueError:
            raise DecryptValueError("decrypted value is not a valid float") from None
    if tname == "bool":
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise DecryptValueError("decrypted value is not a valid bool")
    if tname == "time":
        try:
            return GoTime.parse(text)
        except ValueError:
            raise DecryptValueError("decrypted value is not a valid time") from None
    if tname == "comment":
        return Comment(text)
    if tname == "bytes":
        return text
    raise DecryptValueError("value has an unknown type tag")


def decrypt(text: str, key: bytes, aad: str) -> object:
    if text == "":
        return ""
    plain, tname, _ = decrypt_raw(text, key, aad)
    return parse_typed(plain, tname)
