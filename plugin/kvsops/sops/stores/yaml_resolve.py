"""YAML scalar resolution: what a plain or tagged scalar means to yaml.v3 decoding into
``interface{}`` (resolve.go), as sops reads it. Pure; no PyYAML, no ``re``."""

from __future__ import annotations

from .. import timestamps
from ..tree import GoTime, Uint64

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..tree import Scalar

TAG = "tag:yaml.org,2002:"
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1

_RESOLVE_MAP: dict[str, bool | float | None] = {}
for _v, _words in (
    (True, ("true", "True", "TRUE")),
    (False, ("false", "False", "FALSE")),
    (None, ("", "~", "null", "Null", "NULL")),
    (float("nan"), (".nan", ".NaN", ".NAN")),  # float(), not math.nan: math is not imported
    (float("inf"), (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF")),
    (float("-inf"), ("-.inf", "-.Inf", "-.INF")),
):
    for _w in _words:
        _RESOLVE_MAP[_w] = _v

_HINT_M = set("yYnNtTfFoO~")
_HINT_D = set("0123456789+-")
# The scalar rules below were regexes (kept as *_RE for tests/unit/test_scanners.py, which checks
# each scanner against its regex on generated and hostile inputs). They are scanned by hand so that
# reading and writing YAML never imports ``re`` (~5 ms of every start with enum and functools).
# Every scanner takes ``$`` as Python does (end, or before one final newline); ``\d`` is any
# Unicode decimal digit, which is what ``str.isdecimal`` tests.
_YAML_FLOAT_RE = r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"
_DOT_FLOAT_RE = r"^\.[0-9]+([eE][-+]?[0-9]+)?$"
_INF = float("inf")
_DIGITS = frozenset("0123456789")
_OCTAL = frozenset("01234567")
_GO_INT = {  # prefix: (base, the digits r"^[...]+$" allows)
    "0x": (16, frozenset("0123456789abcdefABCDEF")),
    "0o": (8, _OCTAL),
    "0b": (2, frozenset("01")),
}


def dollar(s: str) -> str:
    """What a pattern ending in ``$`` has to match: ``s`` without one final newline."""
    return s[:-1] if s.endswith("\n") else s


def _all_of(chars: frozenset[str], s: str) -> bool:
    """``re.match(r"^[chars]+$", s)``."""
    s = dollar(s)
    return bool(s) and chars.issuperset(s)


def _run(s: str, i: int, chars: frozenset[str]) -> int:
    """The end of the run of ``chars`` starting at ``i``."""
    n = len(s)
    while i < n and s[i] in chars:
        i += 1
    return i


def _is_yaml_float(s: str, dot_only: bool = False) -> bool:
    """``re.match(_YAML_FLOAT_RE, s)`` (or ``_DOT_FLOAT_RE`` with ``dot_only``). Every part is a
    maximal run followed by a character the run cannot hold, so no backtracking can change it."""
    s = dollar(s)
    i = 0
    if not dot_only and s[:1] in ("+", "-"):
        i = 1
    if s[i : i + 1] == ".":
        j = _run(s, i + 1, _DIGITS)
        if j == i + 1:
            return False
    elif dot_only:
        return False
    else:
        j = _run(s, i, _DIGITS)
        if j == i:
            return False
        if s[j : j + 1] == ".":
            j = _run(s, j + 1, _DIGITS)
    if s[j : j + 1] in ("e", "E"):
        k = j + 1
        if s[k : k + 1] in ("+", "-"):
            k += 1
        j = _run(s, k, _DIGITS)
        if j == k:
            return False
    return j == len(s)


class _NotInt(Exception):
    pass


def _go_parse_int_base0(s: str) -> int:
    """Go ``strconv.ParseInt(s, 0, ...)`` without range checks (underscores already removed)."""
    neg = False
    body = s
    if body[:1] in "+-" and body:
        neg = body[0] == "-"
        body = body[1:]
    if not body:
        raise _NotInt
    low = body[:2].lower()
    if low in _GO_INT:
        base, allowed = _GO_INT[low]
        digits = body[2:]
        if not _all_of(allowed, digits):
            raise _NotInt
        n = int(digits, base)
    elif body[0] == "0" and len(body) > 1:
        if not _all_of(_OCTAL, body[1:]):
            raise _NotInt
        n = int(body[1:], 8)
    else:
        if not _all_of(_DIGITS, body):
            raise _NotInt
        # Go reports a range error past 64 bits (then the float rule applies); Python would refuse
        # to read more than 4,300 digits at all (ValueError), so a long one is just "too big".
        n = int(body) if len(body) <= 20 else _UINT64_MAX + 1
    return -n if neg else n


def _parse_timestamp(s: str) -> GoTime | None:
    stamp = timestamps.scan(s, timestamps.YAML)
    if stamp is None:
        return None
    (year, month, day), clock, frac, tz = stamp
    text = f"{year}-{int(month):02d}-{int(day):02d}"
    if clock is not None:
        hh, mi, ss = int(clock[1]), int(clock[2]), int(clock[3])
        if not (hh < 24 and mi < 60 and ss < 60):
            return None
        if tz is not None and tz != "Z" and (int(tz[1:3]) >= 24 or int(tz[4:6]) >= 60):
            return None
        text += f"T{hh:02d}:{mi:02d}:{ss:02d}{'.' + frac if frac else ''}{tz or 'Z'}"
    try:
        return GoTime.parse(text)
    except ValueError:
        return None


def resolve_plain(s: str, line: int | None = None) -> Scalar:
    """Resolve an untagged plain scalar like yaml.v3 does into ``interface{}``."""
    if not s:
        return None
    c = s[0]
    if c in _HINT_M or c == "." or c in _HINT_D:
        if s in _RESOLVE_MAP:
            return _RESOLVE_MAP[s]
    else:
        return s
    if c == ".":
        if _is_yaml_float(s, dot_only=True):
            return float(s)
        return s
    if c in _HINT_M:
        return s
    # digits or sign: timestamp, int, float
    if c.isdigit():
        ts = _parse_timestamp(s)
        if ts is not None:
            return ts
    plain = s.replace("_", "")
    try:
        n = _go_parse_int_base0(plain)
    except _NotInt:
        n = None
    if n is not None:
        if _INT64_MIN <= n <= _INT64_MAX:
            return n
        if 0 <= n <= _UINT64_MAX:
            return Uint64(n)  # the walks refuse it, as sops' does (see Uint64)
        # out of uint64 range: falls through to the float rule as in Go
    if _is_yaml_float(plain):
        f = float(plain)
        if f not in (_INF, -_INF):
            return f
    return s


def resolve_scalar(tag: str | None, value: str, style: str | None, implicit: bool, line: int) -> Scalar:
    tag = tag or ""
    if style:
        # quoted and block scalars are strings unless an explicit non-string standard tag says otherwise
        if tag == TAG + "str" or not tag.startswith(TAG):
            return value
        short = tag[len(TAG) :]
        if short in ("binary",):
            return value
    elif implicit:
        return resolve_plain(value, line)
    if tag.startswith(TAG):
        short = tag[len(TAG) :]
        if short in ("str", "binary"):
            return value
        r = resolve_plain(value, line)
        if short == "float" and isinstance(r, int) and not isinstance(r, bool):
            return float(r)
        return r
    # custom tags are not resolvable in yaml.v3: the value stays a string (the tag is dropped)
    return value
