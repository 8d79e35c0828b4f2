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
from kvsops.sops.timestamps import GO_TIME, scan, valid_date

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator, Union


class Comment(Record):
    """A comment line; ``text`` is what follows the ``#`` (leading space kept)."""

    __slots__ = _fields = ("text", "inline")
    _defaults = {"inline": False}
    text: str
    inline: bool


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
        stamp = scan(raw.strip(), GO_TIME)
        if stamp is None:
            raise ValueError("not a timestamp")
        (year, month, day), clock, frac, tz = stamp
        if not valid_date(int(year), int(month), int(day)):
            raise ValueError("not a timestamp")
        if clock is None:
            return cls(f"{year}-{month}-{day}T00:00:00Z")
        _, hh, mm, ss = clock
        if not (int(hh) < 24 and int(mm) < 60 and int(ss) < 61):
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
    Scalar = Union[str, int, float, bool, None, GoTime]
    Leaf = Union[Scalar, Comment]
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
