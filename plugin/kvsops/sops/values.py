"""One value: AES-256-GCM with a 32-byte IV, sops' ENC[...] text form, Go stringification."""

from __future__ import annotations

import binascii
import os

from kvsops._b64 import b64decode_strict, b64encode
from kvsops.errors import DecryptValueError, EncryptError
from kvsops.sops.tree import Comment, GoTime

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from kvsops.sops.tree import Leaf

# sops' regex, ``^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]`` (DOTALL), is greedy
# and unanchored at the end: _split_enc gives the same groups without importing ``re``.
_ENC_PREFIX = "ENC[AES256_GCM,data:"
IV_SIZE = 32  # sops uses cipher.NewGCMWithNonceSize(32), not GCM's usual 12
TAG_SIZE = 16

_DIGITS = frozenset("0123456789")
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _aesgcm_class() -> type[AESGCM]:
    # cryptography's AESGCM lives in its Rust extension; the public module re-exports it but
    # first imports the whole ``primitives.ciphers`` package (typing, enum, abc: milliseconds
    # of every render). Take the same class from the binding when this cryptography has it there.
    try:
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        return rust_openssl.aead.AESGCM
    except (ImportError, AttributeError):  # pragma: no cover - other cryptography layouts
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM


class Cipher:
    """AES-256-GCM with one data key, held by whoever walks a file (kvsops.sops.walk builds one per
    walk: building the AESGCM object per value costs more than the encryption). Never a module
    global: the key lives as long as the render that owns it."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead: AESGCM = _aesgcm_class()(key)

    def __repr__(self) -> str:  # never the key
        return "Cipher()"

    def encrypt(self, value: object, aad: str, iv: bytes | None = None) -> str:
        """Encrypt one leaf. Empty strings (and empty comments) stay ``""`` as in sops."""
        plain = to_bytes(value)
        tag_name = type_tag(value)
        if not plain and tag_name in ("str", "comment"):
            return ""
        if iv is None:
            iv = os.urandom(IV_SIZE)
        sealed = self._aead.encrypt(iv, plain, aad.encode("utf-8", "surrogateescape"))
        b64 = b64encode
        return (
            f"ENC[AES256_GCM,data:{b64(sealed[:-TAG_SIZE]).decode()},iv:{b64(iv).decode()},"
            f"tag:{b64(sealed[-TAG_SIZE:]).decode()},type:{tag_name}]"
        )

    def decrypt_raw(self, text: str, aad: str) -> tuple[bytes, str, bytes]:
        """Authenticate and decrypt: (plaintext bytes, type tag, iv)."""
        data, iv, tag, tname = split(text)
        try:
            plain = self._aead.decrypt(iv, data + tag, aad.encode("utf-8", "surrogateescape"))
        except Exception as exc:
            if not _is_invalid_tag(exc):
                raise
            raise DecryptValueError(
                "value failed authentication (wrong data key, tampered value, or value moved to another key)"
            ) from None
        return plain, tname, iv

    def decrypt(self, text: str, aad: str) -> Leaf:
        if text == "":
            return ""
        plain, tname, _ = self.decrypt_raw(text, aad)
        return parse_typed(plain, tname)


def _is_invalid_tag(exc: BaseException) -> bool:
    from cryptography.exceptions import InvalidTag

    return isinstance(exc, InvalidTag)


_INF = float("inf")


def go_format_float(x: float) -> str:
    """strconv.FormatFloat(x, 'f', -1, 64): shortest round-trip digits, never an exponent."""
    if x != x:
        return "NaN"
    if x in (_INF, -_INF):
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
    """One leaf with ``key`` (a walk uses one :class:`Cipher` for all of them)."""
    return Cipher(key).encrypt(value, aad, iv)


def _split_enc(text: str) -> tuple[str, str, str, str] | None:
    """The four groups sops' greedy regex captures (see ``_ENC_PREFIX``), or None.

    Backtracking picks the match whose group ends lie furthest right, first group first. Each
    choice is monotone (a separator further right leaves at least as much room for the rest), so
    the last "]" bounds the type, the last ",type:" before it (leaving a non-empty type) bounds
    the tag, and so on back to the data; every group is non-empty and may hold any character.
    """
    if not text.startswith(_ENC_PREFIX):
        return None
    start = len(_ENC_PREFIX)  # every bound below stays >= start - 1 > 0 (never from the end)
    end = text.rfind("]", start)
    if end < 0:
        return None
    typ = text.rfind(",type:", start, end - 1)  # leaves >= 1 character of type before "]"
    if typ < 0:
        return None
    tag = text.rfind(",tag:", start, typ - 1)  # leaves >= 1 character of tag
    if tag < 0:
        return None
    iv = text.rfind(",iv:", start + 1, tag - 1)  # leaves non-empty data and iv
    if iv < 0:
        return None
    return text[start:iv], text[iv + 4 : tag], text[tag + 5 : typ], text[typ + 6 : end]


def _is_go_int(text: str) -> bool:
    """``^[+-]?[0-9]+$`` (ASCII digits; ``$`` also matches before one final newline)."""
    if text.endswith("\n"):
        text = text[:-1]
    if text[:1] in ("+", "-"):
        text = text[1:]
    return bool(text) and _DIGITS.issuperset(text)


def split(text: str) -> tuple[bytes, bytes, bytes, str]:
    """Parse an ENC string into (ciphertext, iv, tag, type). Raises DecryptValueError."""
    groups = _split_enc(text)
    if groups is None:
        raise DecryptValueError("value does not match sops' data format")
    try:
        data, iv, tag = (b64decode_strict(g) for g in groups[:3])
    except (binascii.Error, ValueError):
        raise DecryptValueError("value has invalid base64 in data, iv or tag") from None
    if not iv or len(tag) != TAG_SIZE:
        raise DecryptValueError("value has an invalid iv or tag length")
    return data, iv, tag, groups[3]


def decrypt_raw(text: str, key: bytes, aad: str) -> tuple[bytes, str, bytes]:
    """Authenticate and decrypt: (plaintext bytes, type tag, iv)."""
    return Cipher(key).decrypt_raw(text, aad)


def parse_typed(plain: bytes, tname: str) -> Leaf:
    """Turn decrypted bytes back into a typed value. Errors never include the plaintext."""
    if tname == "str":
        return plain.decode("utf-8", "surrogateescape")
    text = plain.decode("utf-8", "surrogateescape")
    if tname == "int":
        if not _is_go_int(text):
            raise DecryptValueError("decrypted value is not a valid int")
        if len(text.strip().lstrip("+-")) > 20:  # past 64 bits (and Python reads at most 4,300 digits)
            raise DecryptValueError("decrypted int is out of range")
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


def decrypt(text: str, key: bytes, aad: str) -> Leaf:
    return Cipher(key).decrypt(text, aad)
