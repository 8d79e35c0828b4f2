"""age's post-quantum recipient type ``mlkem768x25519`` and the age v1 file format that carries it.

Identities are ``AGE-SECRET-KEY-PQ-1...`` (a 32-byte seed, Bech32), recipients ``age1pq1...`` (the
1216-byte MLKEM768-X25519 public key, Bech32 without BIP173's length limit). A stanza is
``-> mlkem768x25519 <base64 enc>`` whose body is the file key sealed with HPKE (RFC 9180, base mode:
KEM MLKEM768-X25519 a.k.a. X-Wing, HKDF-SHA256, ChaCha20-Poly1305, info below, empty AAD).

pyrage (rage) has no native post-quantum identity, so sops data keys wrapped for these recipients
are read and written here, after the age specification (c2sp.org/age) and checked against its test
vectors (tests/vectors/age-testkit). The primitives are cryptography's (HPKE, ML-KEM, X25519, HKDF,
ChaCha20-Poly1305); this module only does the format. Nothing here reads files or the environment,
and cryptography is imported only when a post-quantum key is used: X25519-only files never load it.
"""

from __future__ import annotations

from kvsops._b64 import b64decode_strict, b64encode

LABEL = b"age-encryption.org/mlkem768x25519"  # the HPKE info string of the specification
STANZA_TYPE = "mlkem768x25519"
RECIPIENT_HRP = "age1pq"
IDENTITY_HRP = "AGE-SECRET-KEY-PQ-"
PLUGIN_IDENTITY_HRP = "AGE-PLUGIN-PQ-"  # age-plugin-pq's wrapping of the very same 32-byte seed
MIN_CRYPTOGRAPHY = "47"  # the first release with hazmat.primitives.hpke and KEM.MLKEM768_X25519

_SEED_LEN = 32
_MLKEM_PK_LEN = 1184  # ML-KEM-768 encapsulation key; the X25519 public key follows it
_PK_LEN = _MLKEM_PK_LEN + 32
_MLKEM_CT_LEN = 1088  # ML-KEM-768 ciphertext; the X25519 ephemeral share follows it
_ENC_LEN = _MLKEM_CT_LEN + 32
_FILE_KEY_LEN = 16
_TAG_LEN = 16
_INTRO = b"age-encryption.org/v1\n"
_BODY_LINE_BYTES = 48  # 64 base64 columns
_CHUNK = 64 * 1024
_NONCE_LEN = 16

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable, Sequence

    Stanza = tuple[list[str], bytes]  # (arguments, type first; body)


class Malformed(ValueError):
    """The age file is broken (never a key mismatch). Messages are public: no key material."""


class HeaderFailure(Malformed):
    pass


class HMACFailure(Malformed):
    pass


class PayloadFailure(Malformed):
    pass


class NoMatch(Exception):
    """None of the identities can unwrap any stanza (age's ErrIncorrectIdentity)."""


# ----------------------------------------------------------------------------- Bech32 (BIP173)

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
# The generator terms for each value of the top five bits: one lookup per character instead of five
# tests (a post-quantum recipient is ~1,950 characters).
_STEP = tuple(
    (_GEN[0] if t & 1 else 0) ^ (_GEN[1] if t & 2 else 0) ^ (_GEN[2] if t & 4 else 0)
    ^ (_GEN[3] if t & 8 else 0) ^ (_GEN[4] if t & 16 else 0)
    for t in range(32)
)


def _polymod(values: Iterable[int]) -> int:
    chk = 1
    for v in values:
        chk = (chk & 0x1FFFFFF) << 5 ^ v ^ _STEP[chk >> 25]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _regroup(data: Iterable[int], src: int, dst: int, pad: bool) -> list[int]:
    acc = bits = 0
    out = []
    mask = (1 << dst) - 1
    for v in data:
        acc = (acc << src | v) & 0xFFFFFFFF
        bits += src
        while bits >= dst:
            bits -= dst
            out.append(acc >> bits & mask)
    if pad:
        if bits:
            out.append(acc << (dst - bits) & mask)
    elif bits >= src or acc << (dst - bits) & mask:
        raise ValueError("invalid padding")
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    """Lowercase unless ``hrp`` is uppercase (age's secret keys are written in capitals)."""
    low = hrp.lower()
    values = _regroup(data, 8, 5, True)
    pm = _polymod(_hrp_expand(low) + values + [0] * 6) ^ 1
    values += [pm >> 5 * (5 - i) & 31 for i in range(6)]
    s = low + "1" + "".join(_CHARSET[v] for v in values)
    return s.upper() if hrp.isupper() else s


def bech32_decode(s: str) -> tuple[str, bytes]:
    """(hrp in the string's case, data). No length limit, as the age specification says."""
    if s.lower() != s and s.upper() != s:
        raise ValueError("mixed case")
    pos = s.rfind("1")
    if pos < 1 or pos + 7 > len(s):
        raise ValueError("no separator")
    hrp = s[:pos]
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise ValueError("invalid character in the prefix")
    values = [_CHARSET.find(c) for c in s[pos + 1 :].lower()]
    if -1 in values:
        raise ValueError("invalid character")
    if _polymod(_hrp_expand(hrp.lower()) + values) != 1:
        raise ValueError("invalid checksum")
    return hrp, bytes(_regroup(values[:-6], 5, 8, False))


# ----------------------------------------------------------------------------- primitives (lazy)


class _Primitives:
    """What this module uses of cryptography. Taken from its Rust binding, where cryptography 47-50
    keep these very classes: the public modules re-export them but first import typing, abc and the
    legacy OpenSSL backend (tens of milliseconds of every Helm values file's process). Any other
    layout falls back to the public API (kvsops.sops.values does the same for AES-GCM)."""

    def __init__(self) -> None:
        try:
            from cryptography.hazmat.bindings._rust import openssl as rust

            self.hpke: Any = rust.hpke
            self.mlkem_from_seed: Any = rust.mlkem.from_mlkem768_seed_bytes
            self.mlkem_from_public: Any = rust.mlkem.from_mlkem768_public_bytes
            self.x25519_from_private: Any = rust.x25519.from_private_bytes
            self.x25519_from_public: Any = rust.x25519.from_public_bytes
            self.chacha: Any = rust.aead.ChaCha20Poly1305
            # backend.mlkem_supported()'s test, without importing the backend; it decides when unsure
            supported = any(getattr(rust, flag, False) for flag in (
                "CRYPTOGRAPHY_IS_AWSLC", "CRYPTOGRAPHY_IS_BORINGSSL", "CRYPTOGRAPHY_OPENSSL_350_OR_GREATER"))
            supported = supported or self._public_api()
        except (ImportError, AttributeError):
            supported = self._public_api()
        if not supported or not hasattr(getattr(self, "hpke", None), "Suite") \
                or not hasattr(self.hpke.KEM, "MLKEM768_X25519"):
            from kvsops.errors import MissingDependency

            raise MissingDependency(
                f"age post-quantum keys (age1pq1..., AGE-SECRET-KEY-PQ-1...) need cryptography >= {MIN_CRYPTOGRAPHY} "
                f"with ML-KEM support (installed: {_installed_cryptography()})",
                hint=f"pip install 'cryptography>={MIN_CRYPTOGRAPHY}'")
        self.suite = self.hpke.Suite(self.hpke.KEM.MLKEM768_X25519, self.hpke.KDF.HKDF_SHA256,
                                     self.hpke.AEAD.CHACHA20_POLY1305)

    def _public_api(self) -> bool:
        try:
            from cryptography.hazmat.backends.openssl.backend import backend
            from cryptography.hazmat.primitives import hpke
            from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
            from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
        except ImportError:
            return False
        self.hpke = hpke
        self.mlkem_from_seed = mlkem.MLKEM768PrivateKey.from_seed_bytes
        self.mlkem_from_public = mlkem.MLKEM768PublicKey.from_public_bytes
        self.x25519_from_private = x25519.X25519PrivateKey.from_private_bytes
        self.x25519_from_public = x25519.X25519PublicKey.from_public_bytes
        self.chacha = ChaCha20Poly1305
        return bool(backend.mlkem_supported())


_PRIMITIVES: list[_Primitives] = []


def _crypto() -> _Primitives:
    """cryptography's primitives, or a MissingDependency naming the version that has them."""
    if not _PRIMITIVES:
        _PRIMITIVES.append(_Primitives())
    return _PRIMITIVES[0]


def _installed_cryptography() -> str:
    try:
        import cryptography

        return str(cryptography.__version__)
    except ImportError:
        return "none"


def _is_invalid_tag(exc: BaseException) -> bool:
    from cryptography.exceptions import InvalidTag  # only on the failure path: it imports typing

    return isinstance(exc, InvalidTag)


# Hashes, HMAC and HKDF from cryptography too: deriving a key pair loads its hashes module anyway
# (MLKEM768X25519PrivateKey checks its arguments against the public key classes), while hashlib
# and hmac would add the standard library's OpenSSL binding on top.


def _shake256(data: bytes, size: int) -> bytes:
    from cryptography.hazmat.primitives import hashes

    h = hashes.Hash(hashes.SHAKE256(size))
    h.update(data)
    return h.finalize()


def _hmac(key: bytes, data: bytes) -> Any:
    from cryptography.hazmat.primitives import hashes, hmac

    h = hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(hashes.SHA256(), 32, salt, info).derive(ikm)


# ----------------------------------------------------------------------------- keys


class Identity:
    """A post-quantum identity; the key pair is derived (X-Wing's SHAKE256 seed expansion) on first use."""

    __slots__ = ("_seed", "_private", "_x25519", "_public", "_recipient")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != _SEED_LEN:
            raise ValueError("a post-quantum identity is a 32-byte seed")
        self._seed = seed
        self._private: Any = None
        self._x25519: Any = None
        self._public = b""
        self._recipient = ""

    def __repr__(self) -> str:  # never the seed
        return "age_pq.Identity(...)"

    def _derive(self) -> None:
        if self._private is not None:
            return
        prims = _crypto()
        expanded = _shake256(self._seed, 96)
        m = prims.mlkem_from_seed(expanded[:64])
        x = prims.x25519_from_private(expanded[64:])
        self._x25519 = x
        self._public = m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
        # Set last: files are decrypted on several threads, and this is what says "derived".
        self._private = prims.hpke.MLKEM768X25519PrivateKey(m, x)

    @property
    def public_key(self) -> bytes:
        self._derive()
        return self._public

    @property
    def recipient(self) -> str:
        if not self._recipient:
            self._recipient = bech32_encode(RECIPIENT_HRP, self.public_key)
        return self._recipient

    def __str__(self) -> str:
        return bech32_encode(IDENTITY_HRP, self._seed)

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        """The file key from the first stanza for this identity; None when none is."""
        for args, body in stanzas:
            key = self._unwrap_one(args, body)
            if key is not None:
                return key
        return None

    def _unwrap_one(self, args: list[str], body: bytes) -> bytes | None:
        if args[0] != STANZA_TYPE:
            return None
        if len(args) != 2:
            raise HeaderFailure("an mlkem768x25519 stanza needs exactly one argument")
        enc = _b64_raw_decode(args[1].encode())
        if len(enc) != _ENC_LEN:
            raise HeaderFailure("an mlkem768x25519 stanza's encapsulated key has the wrong length")
        # Checked before decrypting, as the specification requires (partitioning oracles).
        if len(body) != _FILE_KEY_LEN + _TAG_LEN:
            raise HeaderFailure("an mlkem768x25519 stanza's body has the wrong length")
        self._derive()
        try:
            key: bytes = _crypto().suite.decrypt(enc + body, self._private, info=LABEL)
            return key
        except Exception as exc:  # noqa: BLE001 - only InvalidTag is a mismatch
            if not _is_invalid_tag(exc):
                raise
        # ML-KEM rejects implicitly (a foreign stanza is just a wrong tag); an X25519 share of low
        # order is a broken file, not a mismatch (age's vectors hybrid_low_order/hybrid_identity).
        try:
            self._x25519.exchange(_crypto().x25519_from_public(enc[_MLKEM_CT_LEN:]))
        except ValueError:
            raise HeaderFailure("an mlkem768x25519 stanza has a low-order X25519 share") from None
        return None


def parse_identity(text: str) -> Identity:
    """``AGE-SECRET-KEY-PQ-1...``, or age-plugin-pq's ``AGE-PLUGIN-PQ-1...`` of the same seed."""
    try:
        hrp, seed = bech32_decode(text.strip())
    except ValueError as exc:
        raise ValueError(f"malformed post-quantum identity ({exc})") from None
    if hrp not in (IDENTITY_HRP, PLUGIN_IDENTITY_HRP):
        raise ValueError("not a post-quantum identity")
    return Identity(seed)


def generate() -> Identity:
    import os

    return Identity(os.urandom(_SEED_LEN))


def recipient_public_key(text: str) -> bytes:
    """The 1216-byte public key of an ``age1pq1...`` recipient (checked: both halves must load)."""
    try:
        hrp, pk = bech32_decode(text.strip())
    except ValueError as exc:
        raise ValueError(f"malformed post-quantum recipient ({exc})") from None
    if hrp != RECIPIENT_HRP:
        raise ValueError("not a post-quantum recipient")
    if len(pk) != _PK_LEN:
        raise ValueError("a post-quantum recipient has the wrong length")
    _public_key_object(pk)
    return pk


def _public_key_object(pk: bytes) -> Any:
    prims = _crypto()
    try:
        return prims.hpke.MLKEM768X25519PublicKey(prims.mlkem_from_public(pk[:_MLKEM_PK_LEN]),
                                                  prims.x25519_from_public(pk[_MLKEM_PK_LEN:]))
    except ValueError:
        raise ValueError("invalid MLKEM768-X25519 public key") from None


def wrap(file_key: bytes, public_key: bytes) -> Stanza:
    sealed: bytes = _crypto().suite.encrypt(file_key, _public_key_object(public_key), info=LABEL)
    return [STANZA_TYPE, _b64_raw(sealed[:_ENC_LEN]).decode()], sealed[_ENC_LEN:]


# ----------------------------------------------------------------------------- age v1 files


def encrypt(plaintext: bytes, public_keys: Sequence[bytes]) -> bytes:
    """A binary age v1 file of ``plaintext`` for the given post-quantum recipients."""
    import os

    if not public_keys:
        raise ValueError("no recipients")
    file_key = os.urandom(_FILE_KEY_LEN)
    header = _INTRO + b"".join(_stanza_bytes(*wrap(file_key, pk)) for pk in public_keys) + b"---"
    mac = _hmac(_hkdf(file_key, b"", b"header"), header).finalize()
    nonce = os.urandom(_NONCE_LEN)
    return header + b" " + _b64_raw(mac) + b"\n" + nonce + _seal(_hkdf(file_key, nonce, b"payload"), plaintext)


def decrypt(blob: bytes, identities: Sequence[Identity]) -> bytes:
    """The plaintext of a binary age v1 file; NoMatch when no identity has a stanza, Malformed else."""
    stanzas, mac, mac_input, payload = parse_header(blob)
    file_key = None
    for ident in identities:
        file_key = ident.unwrap(stanzas)
        if file_key is not None:
            break
    if file_key is None:
        raise NoMatch("no identity matches any recipient stanza")
    try:
        _hmac(_hkdf(file_key, b"", b"header"), mac_input).verify(mac)  # constant time
    except Exception as exc:  # noqa: BLE001 - InvalidSignature
        from cryptography.exceptions import InvalidSignature

        if not isinstance(exc, InvalidSignature):
            raise
        raise HMACFailure("bad header MAC") from None
    if len(payload) < _NONCE_LEN:
        raise HeaderFailure("the payload nonce is missing")  # the testkit counts it as a header failure
    nonce = payload[:_NONCE_LEN]
    return _open(_hkdf(file_key, nonce, b"payload"), payload[_NONCE_LEN:])


def parse_header(blob: bytes) -> tuple[list[Stanza], bytes, bytes, bytes]:
    """(stanzas, MAC, the bytes the MAC covers, payload) of a binary age v1 file."""
    if not blob.startswith(_INTRO):
        raise HeaderFailure("not an age v1 file")
    pos = len(_INTRO)
    stanzas: list[Stanza] = []
    while not blob.startswith(b"---", pos):
        line, pos = _line(blob, pos)
        parts = line.split(b" ")
        if parts[0] != b"->" or len(parts) < 2 or not all(map(_is_argument, parts[1:])):
            raise HeaderFailure("malformed stanza line")
        body = b""
        while True:
            line, pos = _line(blob, pos)
            chunk = _b64_raw_decode(line)
            if len(chunk) > _BODY_LINE_BYTES:
                raise HeaderFailure("stanza body line too long")
            body += chunk
            if len(chunk) < _BODY_LINE_BYTES:
                break
        stanzas.append(([a.decode("ascii") for a in parts[1:]], body))
    mac_end = pos + 3
    line, pos = _line(blob, pos)
    parts = line.split(b" ")
    if parts[0] != b"---" or len(parts) != 2:
        raise HeaderFailure("malformed header MAC line")
    mac = _b64_raw_decode(parts[1])
    if len(mac) != 32 or not stanzas:
        raise HeaderFailure("malformed header MAC line" if stanzas else "no recipient stanza")
    return stanzas, mac, blob[:mac_end], blob[pos:]


def _line(blob: bytes, pos: int) -> tuple[bytes, int]:
    end = blob.find(b"\n", pos)
    if end < 0:
        raise HeaderFailure("truncated header")
    return blob[pos:end], end + 1


def _is_argument(arg: bytes) -> bool:
    return bool(arg) and all(33 <= c <= 126 for c in arg)


def _stanza_bytes(args: list[str], body: bytes) -> bytes:
    b64 = _b64_raw(body)
    # Wrapped at 64 columns; the last line is always shorter, so it may be empty.
    lines = [b64[i : i + 64] for i in range(0, len(b64) + 1, 64)]
    return b"-> " + " ".join(args).encode() + b"\n" + b"\n".join(lines) + b"\n"


def _b64_raw(data: bytes) -> bytes:
    return b64encode(data).rstrip(b"=")


def _b64_raw_decode(s: bytes) -> bytes:
    """Unpadded, canonical base64 only (the specification rejects padding and stray bits)."""
    if b"=" in s:
        raise HeaderFailure("padded base64 in the header")
    try:
        data = b64decode_strict(s + b"=" * (-len(s) % 4))
    except ValueError:  # binascii.Error is a ValueError
        raise HeaderFailure("invalid base64 in the header") from None
    if _b64_raw(data) != s:
        raise HeaderFailure("non-canonical base64 in the header")
    return data


def _chunk_nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def _seal(key: bytes, plaintext: bytes) -> bytes:
    aead = _crypto().chacha(key)
    out = []
    count = max(1, -(-len(plaintext) // _CHUNK))
    for i in range(count):
        out.append(aead.encrypt(_chunk_nonce(i, i == count - 1), plaintext[i * _CHUNK : (i + 1) * _CHUNK], None))
    return b"".join(out)


def _open(key: bytes, ciphertext: bytes) -> bytes:
    """STREAM: 64 KiB chunks, the last one flagged; nothing is returned unless all of it verifies."""
    aead = _crypto().chacha(key)
    size = _CHUNK + _TAG_LEN
    out = []
    pos = counter = 0
    while True:
        chunk = ciphertext[pos : pos + size]
        pos += len(chunk)
        last = pos >= len(ciphertext)
        if len(chunk) < _TAG_LEN:
            raise PayloadFailure("truncated payload")
        try:
            plain = aead.decrypt(_chunk_nonce(counter, last), chunk, None)
        except Exception as exc:  # noqa: BLE001 - only InvalidTag is a broken payload
            if not _is_invalid_tag(exc):
                raise
            raise PayloadFailure("the payload does not decrypt") from None
        if last and not plain and counter:
            raise PayloadFailure("empty final chunk")
        out.append(plain)
        if last:
            return b"".join(out)
        counter += 1
