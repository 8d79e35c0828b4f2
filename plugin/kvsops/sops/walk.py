"""Tree walks: encrypt and decrypt every leaf with its AAD, computing the MAC on the way.

The AAD of a value is its mapping-key path joined with ``:`` plus a trailing ``:``; list indices are
not part of it, and a comment uses the path of the mapping or list that holds it.
"""

from __future__ import annotations

try:  # CPython's own SHA-512: hashlib would first load OpenSSL's libcrypto (milliseconds per process)
    from _sha512 import sha512 as _sha512  # type: ignore[import-not-found, unused-ignore]  # CPython 3.11
except ImportError:  # pragma: no cover - other versions and implementations
    try:  # CPython >= 3.12
        from _sha2 import sha512 as _sha512  # type: ignore[import-not-found, no-redef, unused-ignore]
    except ImportError:
        from hashlib import sha512 as _sha512

from kvsops.errors import DecryptValueError, EncryptError, FormatError
from kvsops.sops import values
from kvsops.sops.rules import SelectionRule
from kvsops.sops.tree import Branch, Comment, GoTime, Uint64

# sha256(b"sops"): mixed in first when mac_only_encrypted, so the two MAC kinds never collide.
MAC_ONLY_ENCRYPTED_INIT = bytes.fromhex("8a3fd2ad54ce66527b1034f3d147be0b0b975b3bf44f72c6fdadec8176f27d69")

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    Leaf = Callable[[object, list[str], list[list[str]], bool], object]
_LEAF_TYPES = (str, int, float, GoTime, Comment)
MAX_DEPTH = 200
# sops' walk meets a YAML uint64 (selected or not) and stops: exit 23 encrypting, 25 decrypting.
_UINT64 = "cannot walk an integer above the int64 range (a uint64, which sops refuses too) at "


def _walk_value(v: object, path: list[str], comments: list[list[str]], on_leaf: Leaf) -> object:
    if isinstance(v, Branch):
        return _walk_branch(v, path, comments, on_leaf)
    if isinstance(v, list):
        return _walk_list(v, path, comments, on_leaf)
    if v is None:
        return None
    if isinstance(v, _LEAF_TYPES):
        return on_leaf(v, path, comments, isinstance(v, Comment))
    raise FormatError(f"cannot walk a value of type {type(v).__name__} at {_where(path)}")


def _walk_list(items: list[Any], path: list[str], comments: list[list[str]], on_leaf: Leaf) -> list[object]:
    if len(comments) > MAX_DEPTH:
        raise FormatError(f"tree is nested deeper than {MAX_DEPTH} levels")
    comments = comments + [[]]
    out = []
    for v in items:
        is_comment = isinstance(v, Comment)
        if is_comment:
            comments[-1].append(v.text)
        new = _walk_value(v, path, comments, on_leaf)
        if is_comment and isinstance(new, Comment) and values.is_encrypted(new.text):
            new = new.text  # sops stores an encrypted list comment as a plain list item
        out.append(new)
        if not is_comment:
            comments[-1] = []
    return out


def _walk_branch(branch: Branch, path: list[str], comments: list[list[str]], on_leaf: Leaf) -> Branch:
    if len(comments) > MAX_DEPTH:
        raise FormatError(f"tree is nested deeper than {MAX_DEPTH} levels")
    comments = comments + [[]]
    out = Branch()
    for key, v in branch:
        if isinstance(key, Comment):
            comments[-1].append(key.text)
            new = on_leaf(key, path, comments, True)
            out.append((new if isinstance(new, Comment) else Comment(str(new), key.inline), None))
            continue
        if not isinstance(key, str):
            raise FormatError(f"tree contains a non-string key at {_where(path)}")
        out.append((key, _walk_value(v, path + [key], comments, on_leaf)))
        comments[-1] = []
    return out


def _where(path: list[str]) -> str:
    return ":".join(path) or "(top level)"


def aad_of(path: list[str]) -> str:
    return ":".join(path) + ":"


class Stash:
    """IVs of decrypted values keyed by (aad, plaintext): re-encrypting an unchanged value reuses
    its IV, so ``edit``/``set`` leave untouched values byte-identical (as sops does)."""

    def __init__(self) -> None:
        self._ivs: dict[tuple[str, bytes, str], bytes] = {}

    def remember(self, aad: str, plain: bytes, tname: str, iv: bytes) -> None:
        self._ivs[(aad, plain, tname)] = iv

    def iv_for(self, aad: str, plain: bytes, tname: str) -> bytes | None:
        return self._ivs.get((aad, plain, tname))


def encrypt_docs(
    docs: list[Branch],
    key: bytes,
    rule: SelectionRule | None,
    mac_only_encrypted: bool = False,
    stash: Stash | None = None,
) -> tuple[list[Branch], str]:
    """Encrypt every selected leaf; return the encrypted documents and the MAC (uppercase hex)."""
    cipher = values.Cipher(key)

    def leaf(v: object, path: list[str], selected: bool) -> tuple[object, object]:
        if type(v) is Uint64:
            raise EncryptError(_UINT64 + _where(path))
        if not selected:
            return v, v
        if isinstance(v, Comment) and v.inline:
            return _encrypt_leaf(v, cipher, path, None), v  # sops never stashes inline comments
        return _encrypt_leaf(v, cipher, path, stash), v

    return _walk_docs(docs, rule, mac_only_encrypted, leaf)


def _walk_docs(docs: list[Branch], rule: SelectionRule | None, mac_only_encrypted: bool,
               leaf: Callable[[object, list[str], bool], tuple[object, object]]) -> tuple[list[Branch], str]:
    """Walk every document; ``leaf(value, path, selected)`` gives (new value, plaintext). The MAC
    hashes every plaintext that is not a comment (only the selected ones with mac_only_encrypted).
    Comments are never hashed, including list items that decrypt to a comment (sops <= 3.13.1)."""
    h = _sha512()
    if mac_only_encrypted:
        h.update(MAC_ONLY_ENCRYPTED_INIT)

    def on_leaf(v: object, path: list[str], comments: list[list[str]], is_comment: bool) -> object:
        selected = rule is None or rule.should_encrypt(path, comments, is_comment)
        new, plain = leaf(v, path, selected)
        if (not mac_only_encrypted or selected) and not isinstance(plain, Comment):
            h.update(values.to_bytes(plain))
        return new

    out = [_walk_branch(doc, [], [], on_leaf) for doc in docs]
    return out, h.hexdigest().upper()


def _encrypt_leaf(v: object, cipher: values.Cipher, path: list[str], stash: Stash | None) -> object:
    aad = aad_of(path)
    iv = None
    if stash is not None:
        iv = stash.iv_for(aad, values.to_bytes(v), values.type_tag(v))
    try:
        text = cipher.encrypt(v, aad, iv)
    except EncryptError as exc:
        raise exc.with_where(_where(path)) from None
    if isinstance(v, Comment):
        return Comment(text, v.inline) if text else v
    return text


def decrypt_docs(
    docs: list[Branch],
    key: bytes,
    rule: SelectionRule | None,
    mac_only_encrypted: bool = False,
    stash: Stash | None = None,
) -> tuple[list[Branch], str]:
    """Decrypt every selected leaf; return the plaintext documents and the computed MAC."""
    cipher = values.Cipher(key)

    def leaf(v: object, path: list[str], selected: bool) -> tuple[object, object]:
        if type(v) is Uint64:
            raise DecryptValueError(_UINT64 + _where(path))
        out = _decrypt_leaf(v, cipher, path, stash) if selected else v
        return out, out

    return _walk_docs(docs, rule, mac_only_encrypted, leaf)


def _decrypt_leaf(v: object, cipher: values.Cipher, path: list[str], stash: Stash | None) -> object:
    aad = aad_of(path)
    if isinstance(v, Comment):
        if not values.is_encrypted(v.text):
            return v  # a plaintext comment in an encrypted region: older sops wrote these
        try:
            plain, tname, iv = cipher.decrypt_raw(v.text, aad)
            dec = values.parse_typed(plain, tname)
        except DecryptValueError:
            return v
        return Comment(dec.text, v.inline) if isinstance(dec, Comment) else v
    if not isinstance(v, str):
        raise DecryptValueError(
            f"expected an encrypted value at {_where(path)}, found a {type(v).__name__}",
            hint="the file was modified after encryption, or its selection rule was changed",
        )
    if v == "":
        return ""
    try:
        plain, tname, iv = cipher.decrypt_raw(v, aad)
        dec = values.parse_typed(plain, tname)
    except DecryptValueError as exc:
        raise exc.with_where(_where(path)) from None
    if stash is not None:
        stash.remember(aad, plain, tname, iv)
    return dec
