"""dotenv store (sops stores/dotenv/store.go). Pure.

No quote handling, no trimming, no ``export``: exactly what sops does.
"""

from __future__ import annotations

from ... import errors
from ..tree import Branch, Comment
from . import _common

PREFIX = "sops_"
STRUCTURED = True
no_documents = _common.no_documents


def is_metadata_key(key: object) -> bool:
    """The metadata is flattened into ``sops_...`` lines."""
    return isinstance(key, str) and key.startswith(PREFIX)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def load_plain(data: bytes) -> list[Branch]:
    br = Branch()
    for lineno, line in enumerate(_text(data).split("\n"), start=1):
        if not line:
            continue
        if line[0] == "#":
            br.append((Comment(line[1:]), None))
            continue
        pos = line.find("=")
        if pos < 0:
            raise errors.InputError(f"invalid dotenv input line {lineno}: no '=' found")
        br.append((line[:pos], line[pos + 1 :].replace("\\n", "\n")))
    return [br]


def load_encrypted(data: bytes) -> tuple[list[Branch], Branch]:
    docs = load_plain(data)
    kept = Branch()
    flat: list[tuple[str, object]] = []
    for k, v in docs[0]:
        if not isinstance(k, Comment) and k.startswith(PREFIX):
            flat.append((k[len(PREFIX) :], v))
        else:
            kept.append((k, v))
    if not flat:
        raise errors.MetadataNotFound("sops metadata not found")
    return [kept], _common.unflatten_metadata(flat)


def has_metadata(data: bytes) -> bool:
    try:
        docs = load_plain(data)
    except errors.KvsopsError:
        return False
    return any(not isinstance(k, Comment) and k.startswith(PREFIX) for k, _ in docs[0])


def _is_complex(v: object) -> bool:
    return isinstance(v, (Branch, list))


def emit_plain(docs: list[Branch], indent: int | None = None) -> bytes:
    if not docs:
        return b""
    lines: list[str] = []
    for k, v in docs[0]:
        if _is_complex(v):
            name = k.text if isinstance(k, Comment) else k
            raise errors.EmitError(f"cannot use complex value in dotenv file; offending key {name}")
        if isinstance(k, Comment):
            lines.append(f"#{k.text}\n")
            continue
        if isinstance(v, str):
            value = v.replace("\n", "\\n")
        else:
            value = _common.val_to_string(v)
        lines.append(f"{k}={value}\n")
    return "".join(lines).encode("utf-8", "surrogateescape")


def emit_encrypted(docs: list[Branch], metadata: Branch, indent: int | None = None) -> bytes:
    doc = docs[0] if docs else Branch()
    for k, _ in doc:
        if not isinstance(k, Comment) and k.startswith(PREFIX):
            raise errors.EmitError(
                f"found key {k!r} in encrypted data, which starts with the reserved key prefix 'sops_'"
            )
    out = Branch(doc)
    for k, v in _common.flatten_metadata(metadata, PREFIX):
        out.append((k, v))
    return emit_plain([out])


def emit_value(value: object, indent: int | None = None) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    raise errors.EmitError(f"the dotenv store only supports emitting strings, got {type(value).__name__}")
