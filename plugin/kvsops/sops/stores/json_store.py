"""JSON store (sops stores/json/store.go). Pure.

Order and duplicate keys are kept; every number is a float64, as sops 3.11 decodes JSON (so
``8080`` is encrypted with ``type:float``; 3.13.2 would keep integers in int64 as ``int``). Output
reproduces Go's ``json.Marshal`` escaping plus ``json.Indent``.
"""

from __future__ import annotations

import json
import math
import re

from ... import errors
from ..tree import Branch, Comment, GoTime
from . import _common

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

STRUCTURED = True
is_metadata_key = _common.is_metadata_key
no_documents = _common.no_documents

DEFAULT_INDENT = "\t"
_MAX_DEPTH = 10000


def _parse_number(s: str) -> float:
    # Go's encoding/json decodes a number into an interface{} as strconv.ParseFloat(s, 64), which
    # rounds correctly as float() does, and fails beyond the float64 range.
    f = float(s)
    if math.isinf(f):
        raise ValueError("number out of range")
    return f


def _const(name: str) -> NoReturn:
    raise ValueError(f"invalid JSON constant {name}")


def _pairs(pairs: list[tuple[str, object]]) -> Branch:
    return Branch(pairs)


_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs, parse_int=_parse_number, parse_float=_parse_number, parse_constant=_const
)


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # Go's decoder replaces invalid UTF-8 inside strings with U+FFFD
        text = data.decode("utf-8", "replace")
    return text


def load_plain(data: bytes) -> list[Branch]:
    text = _decode(data)
    stripped = text.lstrip(" \t\r\n")
    if not stripped:
        raise errors.InputError("Could not unmarshal input data: EOF")
    if stripped[0] != "{":
        kind = "arrays or other types" if stripped[0] == "[" else "other JSON types"
        raise errors.InputError(
            f"SOPS only supports JSON files with a top-level object (starting with '{{'), not {kind}",
            hint="wrap the content in an object, e.g. {\"data\": [...]}",
        )
    try:
        value, end = _DECODER.raw_decode(text, len(text) - len(stripped))
    except json.JSONDecodeError as exc:
        raise errors.InputError(
            f"Could not unmarshal input data: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None
    except (ValueError, RecursionError) as exc:
        err = None
        if isinstance(exc, ValueError):
            err = _common.long_number_error(text, "Could not unmarshal input data: ")
        raise err or errors.InputError(f"Could not unmarshal input data: {type(exc).__name__}") from None
    # sops reads tokens until the top-level object closes; trailing content is ignored by Go's
    # token reader as long as it is not read. We do the same.
    assert isinstance(value, Branch)
    return [value]


def load_encrypted(data: bytes) -> tuple[list[Branch], Branch]:
    docs = load_plain(data)
    return _common.split_metadata_branch(docs)


def has_metadata(data: bytes) -> bool:
    return _common.has_sops_key(load_plain, data)


# ----------------------------------------------------------------------------------------------
# emission

_ESC_RE = re.compile('[\\x00-\\x1f"\\\\<>&\u2028\u2029\ud800-\udfff]')
_SIMPLE = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _esc(m: re.Match[str]) -> str:
    ch = m.group(0)
    s = _SIMPLE.get(ch)
    if s is not None:
        return s
    o = ord(ch)
    if 0xD800 <= o <= 0xDFFF:
        return "\ufffd"  # invalid UTF-8 (surrogate-escaped bytes) becomes U+FFFD, as in Go
    return f"\\u{o:04x}"


def go_string(s: str) -> str:
    return '"' + _ESC_RE.sub(_esc, s) + '"'


def _scalar(v: object) -> str:
    if isinstance(v, str):
        return go_string(v)
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _common.go_json_float(v)
    if isinstance(v, GoTime):
        return go_string(v.text)
    if isinstance(v, Comment):
        return go_string(v.text)
    raise errors.EmitError(f"cannot encode a value of type {type(v).__name__} as JSON")


def _encode(v: object, out: list[str], indent: str, level: int) -> None:
    if level > _MAX_DEPTH:
        raise errors.LimitExceeded("tree too deep to emit")
    if isinstance(v, Branch):
        _encode_items([(k, x) for k, x in v if not isinstance(k, Comment)], "{}", out, indent, level)
    elif isinstance(v, list):
        _encode_items([(None, x) for x in v if not isinstance(x, Comment)], "[]", out, indent, level)
    else:
        out.append(_scalar(v))


def _encode_items(items: list[tuple[object, object]], brackets: str, out: list[str], indent: str, level: int) -> None:
    """An object's members (key, value) or an array's elements (None, value), as json.Indent lays
    them out: one per line, and an empty container compact."""
    if not items:
        out.append(brackets)
        return
    pad = "\n" + indent * (level + 1)
    out.append(brackets[0])
    first = True
    for k, x in items:
        if not first:
            out.append(",")
        first = False
        out.append(pad)
        if k is not None:
            out.append(go_string(str(k)))
            out.append(": ")
        _encode(x, out, indent, level + 1)
    out.append("\n" + indent * level + brackets[1])


def indent_string(indent: int | None) -> str:
    """sops ``--indent``: -1/None = TAB, N >= 0 = N spaces."""
    if indent is None or indent == -1:
        return DEFAULT_INDENT
    if indent < -1:
        raise errors.EmitError("JSON Indentation parameter smaller than -1 is not accepted")
    return " " * indent


def encode_value(v: object, indent: int | None = None) -> str:
    out: list[str] = []
    _encode(v, out, indent_string(indent), 0)
    return "".join(out)


def emit_plain(docs: list[Branch], indent: int | None = None) -> bytes:
    if not docs:
        raise errors.EmitError("no document to emit")
    return (encode_value(docs[0], indent) + "\n").encode("utf-8")


def emit_encrypted(docs: list[Branch], metadata: Branch, indent: int | None = None) -> bytes:
    if not docs:
        docs = [Branch()]
    _common.check_no_sops_key(docs[0])
    doc = Branch(docs[0])
    doc.append((_common.SOPS_KEY, metadata))
    return emit_plain([doc], indent)


def emit_value(value: object, indent: int | None = None) -> bytes:
    return encode_value(value, indent).encode("utf-8")
