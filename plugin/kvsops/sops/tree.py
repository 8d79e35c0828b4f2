"""The in-memory tree every store produces and consumes.

A file is a list of documents; each document is a :class:`Branch`. A Branch is an ordered list of
``(key, value)`` pairs (JSON keeps duplicate keys, so it is not a dict). A comment inside a mapping is
the pair ``(Comment(...), None)``; a comment inside a sequence is a ``Comment`` element (sops stores
it that way too, which is why encrypted list comments become ``- ENC[...]`` items).

Leaf values: ``str`` (binary data as ``str`` decoded with ``surrogateescape``), ``int``, ``float``,
``bool``, ``None``, :class:`GoTime`, :class:`Comment`, and :class:`Uint64` (loaded, never walked).
Containers: ``list`` and :class:`Branch`.
"""

from __future__ import annotations

from kvsops._record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator, Union


class Comment(Record):
    """A comment line; ``text`` is what follows the ``#`` (leading space kept)."""

    __slots__ = _fields = ("text", "inline")
    _defaults = {"inline": False}
    text: str
    inline: bool


# GoTime.parse's rule, scanned by hand (_time_groups) so that emitting a file, which asks whether
# each string would read back as a timestamp, never imports ``re``; tests/unit/test_scanners.py
# compares the two. ``\d`` is any Unicode decimal digit (``str.isdecimal``), ``\s`` any Unicode
# space (``str.isspace``), and ``$`` also matches before one final newline.
_TIME_RE = (
    r"^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:\s*([Zz]|[+-]\d{2}(?::?\d{2})?))?)?$"
)


def _time_groups(s: str) -> tuple[str | None, ...] | None:
    """``re.match(_TIME_RE, s).groups()``, or None. Every variable part is a maximal run followed
    by a character it cannot hold, and nothing the pattern ends with is a newline."""
    if s.endswith("\n"):
        s = s[:-1]
    if len(s) < 10 or s[4] != "-" or s[7] != "-":
        return None
    date = s[0:4], s[5:7], s[8:10]
    if not all(p.isdecimal() for p in date):
        return None
    if len(s) == 10:
        return (*date, None, None, None, None, None)
    if len(s) < 19 or s[10] not in ("T", "t", " ") or s[13] != ":" or s[16] != ":":
        return None
    clock = s[11:13], s[14:16], s[17:19]
    if not all(p.isdecimal() for p in clock):
        return None
    pos, n = 19, len(s)
    frac = None
    if s[pos : pos + 1] == ".":
        end = pos + 1
        while end < n and s[end].isdecimal():
            end += 1
        if end > pos + 1:
            frac, pos = s[pos + 1 : end], end
    tz = None
    if pos < n:
        while pos < n and s[pos].isspace():
            pos += 1
        tz = s[pos:]
        if not (tz in ("Z", "z") or (tz[:1] in ("+", "-") and len(tz) in (3, 5, 6) and tz[1:3].isdecimal() and (
            len(tz) == 3
            or (len(tz) == 5 and tz[3:5].isdecimal())
            or (len(tz) == 6 and tz[3] == ":" and tz[4:6].isdecimal())
        ))):
            return None
    return (*date, *clock, frac, tz)

_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def valid_date(y: int, m: int, d: int) -> bool:
    """What ``datetime.date(y, m, d)`` accepts, without importing datetime on the render path."""
    if not (1 <= y <= 9999 and 1 <= m <= 12):
        return False
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    return 1 <= d <= _DAYS[m - 1] + (1 if m == 2 and leap else 0)


class GoTime(Record):
    """A timestamp as Go's ``time.Time`` sees it: kept as its RFC 3339 (nano) text.

    Python's datetime has microsecond precision; Go keeps nanoseconds, and the MAC hashes Go's
    ``MarshalText`` output, so the canonical text is the value.
    """

    __slots__ = _fields = ("text",)
    text: str

    @classmethod
    def parse(cls, raw: str) -> "GoTime":
        """Parse a YAML timestamp (or RFC 3339) into Go's RFC3339Nano text form."""
        groups = _time_groups(raw.strip())
        if groups is None:
            raise ValueError("not a timestamp")
        year, month, day, hh, mm, ss, frac, tz = groups
        if not valid_date(int(year), int(month), int(day)):  # type: ignore[arg-type]  # the date is always there
            raise ValueError("not a timestamp")
        if hh is None:
            return cls(f"{year}-{month}-{day}T00:00:00Z")
        if not (int(hh) < 24 and int(mm) < 60 and int(ss) < 61):  # type: ignore[arg-type]  # with hh
            raise ValueError("not a timestamp")
        text = f"{year}-{month}-{day}T{hh}:{mm}:{ss}"
        if frac:
            frac = frac[:9].rstrip("0")
            if frac:
                text += "." + frac
        if tz is None or tz in ("Z", "z"):
            text += "Z"
        else:
            sign, rest = tz[0], tz[1:].replace(":", "")
            hours, minutes = rest[:2], rest[2:] or "00"
            text += "Z" if hours == "00" and minutes == "00" else f"{sign}{hours}:{minutes}"
        return cls(text)

    def __str__(self) -> str:
        return self.text


class Uint64(int):
    """A YAML integer above int64's range that fits uint64: yaml.v3 decodes it as a uint64, which
    sops loads and re-emits but whose tree walk (encrypt, decrypt, MAC) refuses it. Loading it is
    not an error here either; the walks raise, with sops' exit codes (23 and 25)."""

    __slots__ = ()


class Branch(list):  # type: ignore[type-arg]
    """An ordered mapping that allows duplicate keys: a list of ``(key, value)`` pairs."""

    def keys(self) -> Iterator[str]:
        return (k for k, _ in self if not isinstance(k, Comment))

    def get(self, key: str, default: object = None) -> object:
        for k, v in self:
            if k == key and not isinstance(k, Comment):
                return v
        return default

    def index_of(self, key: str) -> int:
        for i, (k, _) in enumerate(self):
            if k == key and not isinstance(k, Comment):
                return i
        return -1

    def set(self, key: str, value: object) -> None:
        i = self.index_of(key)
        if i >= 0:
            self[i] = (key, value)
        else:
            self.append((key, value))

    def remove_key(self, key: str) -> bool:
        i = self.index_of(key)
        if i < 0:
            return False
        del self[i]
        return True

    def __repr__(self) -> str:
        return f"Branch({list.__repr__(self)})"


if TYPE_CHECKING:
    Leaf = Union[str, int, float, bool, None, GoTime, Comment]
    Value = Union[Leaf, list, Branch]  # type: ignore[type-arg]
Document = Branch


def to_plain(value: object) -> object:
    """Convert a tree to plain Python (dicts, lists, scalars) for programmatic use; drops comments.

    Duplicate keys keep the last value, as most consumers (Helm, kustomize) would.
    """
    if isinstance(value, Branch):
        return {k: to_plain(v) for k, v in value if not isinstance(k, Comment)}
    if isinstance(value, list):
        return [to_plain(v) for v in value if not isinstance(v, Comment)]
    if isinstance(value, GoTime):
        return value.text
    return value


def from_plain(value: object) -> object:
    """Build a tree from plain Python data (dicts keep insertion order)."""
    if isinstance(value, dict):
        return Branch((str(k), from_plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [from_plain(v) for v in value]
    return value
