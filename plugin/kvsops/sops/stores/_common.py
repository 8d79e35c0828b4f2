"""Helpers shared by the stores: Go number formatting, metadata flattening. Pure."""

from __future__ import annotations

import sys

from ... import errors
from ..tree import Branch, Comment, GoTime

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

SOPS_KEY = "sops"
MAP_SEP = "__map_"
LIST_SEP = "__list_"


def _shortest_digits(x: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of ``abs(x)`` and the decimal point position (Go's ``dp``)."""
    from decimal import Decimal  # floats are rare in secrets: not imported at start-up

    sign, digits, exp = Decimal(repr(abs(x))).as_tuple()
    ds = "".join(map(str, digits)).lstrip("0")
    if not ds:
        return "0", 1
    # strip trailing zeros, moving them into the exponent
    stripped = ds.rstrip("0")
    exp_adj = int(exp) + (len(ds) - len(stripped))
    return stripped, len(stripped) + exp_adj


def _fmt_e(neg: bool, digs: str, exp: int, upper: bool = False) -> str:
    mant = digs[0] + ("." + digs[1:] if len(digs) > 1 else "")
    e = "E" if upper else "e"
    sign = "-" if exp < 0 else "+"
    a = abs(exp)
    es = f"{a:02d}"
    return ("-" if neg else "") + mant + e + sign + es


def _fmt_f(neg: bool, digs: str, dp: int) -> str:
    if dp <= 0:
        s = "0." + "0" * (-dp) + digs
    elif dp >= len(digs):
        s = digs + "0" * (dp - len(digs))
    else:
        s = digs[:dp] + "." + digs[dp:]
    return ("-" if neg else "") + s


# math is not imported for these (one module less at every start; floats are rare in secrets).
_INF = float("inf")


def _negative(x: float) -> bool:
    """``math.copysign(1.0, x) < 0``: the sign bit, so -0.0 counts (and a NaN's sign too)."""
    import math

    return math.copysign(1.0, x) < 0


def _go_special(x: float) -> str | None:
    """NaN, +Inf, -Inf and signed zeros as every Go FormatFloat format writes them, else None."""
    if x != x:
        return "NaN"
    if x in (_INF, -_INF):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if _negative(x) else "0"
    return None


def go_format_g(x: float, upper: bool = False) -> str:
    """Go ``strconv.FormatFloat(x, 'g', -1, 64)`` (``'G'`` with ``upper``)."""
    special = _go_special(x)
    if special is not None:
        return special
    neg = x < 0
    digs, dp = _shortest_digits(x)
    exp = dp - 1
    # shortest formatting: Go decides with eprec = 6
    if exp < -4 or exp >= 6:
        return _fmt_e(neg, digs, exp, upper)
    return _fmt_f(neg, digs, dp)


def go_format_f(x: float) -> str:
    """Go ``strconv.FormatFloat(x, 'f', -1, 64)``: positional, shortest."""
    special = _go_special(x)
    if special is not None:
        return special
    digs, dp = _shortest_digits(x)
    return _fmt_f(x < 0, digs, dp)


def go_json_float(x: float) -> str:
    """Go ``encoding/json`` float64 encoding."""
    if x != x or x in (_INF, -_INF):
        raise errors.EmitError("json: unsupported value: a non-finite float")
    a = abs(x)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        neg = _negative(x)
        digs, dp = _shortest_digits(x)
        s = _fmt_e(neg, digs, dp - 1)
        n = len(s)
        if n >= 4 and s[n - 4] == "e" and s[n - 3] == "-" and s[n - 2] == "0":
            s = s[: n - 2] + s[n - 1]
        return s
    return go_format_f(x)


def gotime_rfc3339(t: GoTime) -> str:
    """Go ``time.Format(time.RFC3339)``: the RFC3339Nano text without fractional seconds."""
    text = t.text
    dot = text.find(".")
    if dot < 0:
        return text
    end = dot + 1
    while end < len(text) and text[end].isdigit():
        end += 1
    return text[:dot] + text[end:]


def val_to_string(v: object) -> str:
    """sops ``stores.ValToString`` (used by dotenv and INI for non-string leaves)."""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        r = go_format_g(v, upper=True)
        if "." not in r and "E" not in r:
            if v != v or v in (_INF, -_INF):
                return r
            r = f"{v:.1f}"
        return r
    if isinstance(v, int):
        return str(v)
    if isinstance(v, GoTime):
        return gotime_rfc3339(v)
    if v is None:
        return "<nil>"
    if isinstance(v, Comment):
        return v.text
    raise errors.EmitError(f"cannot stringify a value of type {type(v).__name__}")


# ----------------------------------------------------------------------------------------------
# metadata flattening (dotenv, INI)


def _flatten_value(value: object, key: str, out: list[tuple[str, object]], seen: set[str]) -> None:
    if isinstance(value, Branch):
        _flatten_map(value, key + MAP_SEP, out, seen)
        return
    if isinstance(value, list):
        i = 0
        for item in value:
            if isinstance(item, Comment):
                continue
            _flatten_value(item, f"{key}{LIST_SEP}{i}", out, seen)
            i += 1
        return
    if key in seen:
        raise errors.EmitError(f"found key collision {key!r} while flattening metadata")
    seen.add(key)
    out.append((key, value))


def _flatten_map(branch: Branch, prefix: str, out: list[tuple[str, object]], seen: set[str]) -> None:
    # sops 3.13 sorts every map level alphabetically before flattening
    items = [(k, v) for k, v in branch if not isinstance(k, Comment)]
    items.sort(key=lambda kv: str(kv[0]))
    for k, v in items:
        _flatten_value(v, prefix + str(k), out, seen)


def flatten_metadata(md: Branch, prefix: str) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    _flatten_map(md, prefix, out, set())
    return out


def _tokenize(path: str) -> list[tuple[str, str | int]]:
    """``("m", key)`` and ``("l", index)`` tokens."""
    tokens: list[tuple[str, str | int]] = []
    state = "n"
    last = 0
    i = 0

    def finish(end: int) -> None:
        if state == "n":
            tokens.append(("m", path[last:end]))
        elif state == "m":
            tokens.append(("m", path[last + len(MAP_SEP) : end]))
        else:
            raw = path[last + len(LIST_SEP) : end]
            try:
                pos = int(raw)
            except ValueError:
                pos = 0
            tokens.append(("l", pos))

    while i < len(path):
        if path.startswith(MAP_SEP, i):
            finish(i)
            last = i
            state = "m"
            i += len(MAP_SEP)
        elif path.startswith(LIST_SEP, i):
            finish(i)
            last = i
            state = "l"
            i += len(LIST_SEP)
        else:
            i += 1
    finish(i)
    return tokens


class _Node:
    __slots__ = ("has_value", "value", "subkeys", "indices")

    def __init__(self) -> None:
        self.has_value = False
        self.value: object = None
        self.subkeys: dict[str, _Node] = {}
        self.indices: dict[int, _Node] = {}


def _convert(node: _Node) -> object:
    kinds = int(node.has_value) + int(bool(node.subkeys)) + int(bool(node.indices))
    if kinds > 1:
        raise errors.FormatError("error while unflattening metadata: type mismatch")
    if kinds == 0:
        return Branch()
    if node.has_value:
        return node.value
    if node.subkeys:
        return Branch((k, _convert(node.subkeys[k])) for k in sorted(node.subkeys))
    idx = node.indices
    if min(idx) != 0 or max(idx) + 1 != len(idx):
        raise errors.FormatError("error while unflattening metadata: incomplete list")
    return [_convert(idx[i]) for i in range(len(idx))]


def unflatten_metadata(items: list[tuple[str, object]]) -> Branch:
    """dotenv/INI metadata back into a tree; ``shamir_threshold``, a string in those formats, is
    read as an int when it is one (sops' weakly typed decode)."""
    root = _Node()
    for key, value in items:
        node = root
        for kind, tok in _tokenize(key):
            if kind == "m":
                node = node.subkeys.setdefault(str(tok), _Node())
            else:
                node = node.indices.setdefault(int(tok), _Node())
        if node.has_value:
            raise errors.FormatError(f"error while unflattening metadata key {key!r}: duplicate value")
        node.has_value = True
        node.value = value
    result = _convert(root)
    if not isinstance(result, Branch):
        raise errors.FormatError("error while unflattening metadata")
    raw = result.get("shamir_threshold")
    if isinstance(raw, str):
        try:
            result.set("shamir_threshold", int(raw))
        except ValueError:
            pass
    return result


def long_number_error(text: str | bytes, prefix: str = "") -> errors.InputError | None:
    """See :func:`kvsops.sops.stores.long_number_error`."""
    import re

    limit = getattr(sys, "get_int_max_str_digits", lambda: 0)()
    if not limit:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    # YAML 1.1 ints may carry underscores (1_000); a longer run than the limit of digits alone
    for m in re.finditer(r"[0-9_]{%d,}" % (limit + 1), text):
        if sum(c != "_" for c in m.group()) > limit:
            line = text.count("\n", 0, m.start()) + 1
            return errors.InputError(f"{prefix}line {line}: an integer of more than {limit} digits",
                                     hint="quote it to keep it as a string")
    return None


def split_metadata_branch(docs: list[Branch]) -> tuple[list[Branch], Branch]:
    """YAML/JSON ``ExtractMetadata``: take ``sops`` from document 0, strip it from every document."""
    md: Branch | None = None
    out: list[Branch] = []
    for bi, doc in enumerate(docs):
        kept = Branch()
        for k, v in doc:
            if not isinstance(k, Comment) and k == SOPS_KEY:
                if bi == 0:
                    if md is not None:
                        raise errors.FormatError("Found duplicate sops entry")
                    if not isinstance(v, Branch):
                        raise errors.FormatError("Found sops entry that is not a mapping")
                    md = v
                continue
            kept.append((k, v))
        out.append(kept)
    if md is None:
        raise errors.MetadataNotFound("sops metadata not found")
    return out, md


def has_sops_key(load_plain: Callable[[bytes], list[Branch]], data: bytes) -> bool:
    """A store's ``has_metadata``: document 0 of the plain parse has a ``sops`` key."""
    try:
        docs = load_plain(data)
    except errors.KvsopsError:
        return False
    return bool(docs) and docs[0].index_of(SOPS_KEY) >= 0


def is_metadata_key(key: object) -> bool:
    """A store's ``is_metadata_key``: the top-level ``sops`` key."""
    return isinstance(key, str) and key == SOPS_KEY


def no_documents(data: bytes) -> errors.KvsopsError:
    """A store's ``no_documents``: what encrypting a file without a document raises."""
    return errors.NeedAtLeastOneDocument("the file has no documents to encrypt")


def check_no_sops_key(doc: Branch) -> None:
    for k, _ in doc:
        if not isinstance(k, Comment) and k == SOPS_KEY:
            raise errors.EmitError(
                "found key 'sops' in encrypted data, which is a reserved key used for SOPS metadata"
            )
