r"""One timestamp scanner for the three timestamp grammars of the format. Pure; no ``re``.

- :data:`YAML`: a plain YAML scalar that yaml.v3 decodes as a timestamp (resolve.go's formats);
- :data:`GO_TIME`: what :meth:`kvsops.sops.tree.GoTime.parse` reads (a YAML timestamp in its
  canonical form, or a timestamp value's text);
- :data:`RFC3339`: the metadata's ``lastmodified`` and ``created_at`` (Go's ``time.Parse(RFC3339)``).

Each dialect names the regex it implements; the scanner reads by hand so that a decrypt never
imports ``re`` (~5 ms of start-up with enum and functools), and tests/unit/test_scanners.py checks
it against each regex on generated and hostile inputs. As in those patterns, ``\d`` is any Unicode
decimal digit (``str.isdecimal``), ``\s`` any Unicode space (``str.isspace``), and ``$`` also
matches before one final newline.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    # ((year, month, day), (separator, hour, minute, second) or None, fraction digits, zone)
    Stamp = tuple[tuple[str, str, str], tuple[str, str, str, str] | None, str | None, str | None]


class Dialect:
    """How one grammar differs from the others; every part not named here is shared."""

    __slots__ = ("pattern", "widths", "seps", "needs_clock", "zone_needed", "zone_refused",
                 "zone_letters", "zone_short", "zone_space")

    def __init__(self, pattern: str, *, short: bool, seps: str, needs_clock: bool, zone_needed: str,
                 zone_refused: str, zone_letters: tuple[str, ...], zone_short: bool, zone_space: bool) -> None:
        self.pattern = pattern  # the regex this dialect implements (the tests' oracle)
        self.widths = (1, 2) if short else (2, 2)  # digits of month, day, hour, minute, second
        self.seps = seps  # what may separate the date from the clock
        self.needs_clock = needs_clock
        self.zone_needed = zone_needed  # separators after which a zone must follow the clock
        self.zone_refused = zone_refused  # separators after which none may
        self.zone_letters = zone_letters  # the letter forms of UTC
        self.zone_short = zone_short  # +hh and +hhmm besides +hh:mm
        self.zone_space = zone_space  # spaces before the zone


YAML = Dialect(
    r"^(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:([Tt])(\d{1,2}):(\d{1,2}):(\d{1,2})(\.\d+)?(Z|[+-]\d{2}:\d{2})"
    r"|( )(\d{1,2}):(\d{1,2}):(\d{1,2})(\.\d+)?)?$",
    short=True, seps="Tt ", needs_clock=False, zone_needed="Tt", zone_refused=" ",
    zone_letters=("Z",), zone_short=False, zone_space=False,
)
GO_TIME = Dialect(
    r"^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:\s*([Zz]|[+-]\d{2}(?::?\d{2})?))?)?$",
    short=False, seps="Tt ", needs_clock=False, zone_needed="", zone_refused="",
    zone_letters=("Z", "z"), zone_short=True, zone_space=True,
)
RFC3339 = Dialect(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
    short=False, seps="Tt", needs_clock=True, zone_needed="Tt", zone_refused="",
    zone_letters=("Z", "z"), zone_short=False, zone_space=False,
)


def _digits(s: str, i: int, lo: int, hi: int) -> int:
    r"""The end of ``\d{lo,hi}`` at ``i`` when a non-digit (or the end) follows it, else -1: what
    follows a number in every dialect is never a digit, so a shorter match could not succeed."""
    j, n = i, len(s)
    while j < n and j - i <= hi and s[j].isdecimal():
        j += 1
    return j if lo <= j - i <= hi else -1


def _fields(s: str, pos: int, widths: tuple[tuple[int, int], ...], seps: tuple[str, ...]) -> tuple[list[str], int]:
    """Numbers of the given widths, each followed by its separator ("" for none); ([], -1) when
    they are not there."""
    out: list[str] = []
    for (lo, hi), sep in zip(widths, seps, strict=True):
        end = _digits(s, pos, lo, hi)
        if end < 0 or (sep and s[end : end + 1] != sep):
            return [], -1
        out.append(s[pos:end])
        pos = end + len(sep)
    return out, pos


def _zone_ok(zone: str, d: Dialect) -> bool:
    if zone in d.zone_letters:
        return True
    if len(zone) < 3 or zone[0] not in ("+", "-") or not zone[1:3].isdecimal():
        return False
    minutes = zone[3:]
    if len(minutes) == 3:
        return minutes[0] == ":" and minutes[1:].isdecimal()
    return d.zone_short and (minutes == "" or (len(minutes) == 2 and minutes.isdecimal()))


def scan(s: str, d: Dialect) -> Stamp | None:
    """``s`` read in dialect ``d``, or None when ``d.pattern`` does not match it."""
    if s.endswith("\n"):
        s = s[:-1]  # nothing a pattern ends with is a newline: this is ``$``
    date, pos = _fields(s, 0, ((4, 4), d.widths, d.widths), ("-", "-", ""))
    if pos < 0:
        return None
    ymd = (date[0], date[1], date[2])
    if pos == len(s):
        return None if d.needs_clock else (ymd, None, None, None)
    rest = _time_of_day(s, pos, d)
    return None if rest is None else (ymd, *rest)


def _time_of_day(s: str, pos: int, d: Dialect) -> tuple[tuple[str, str, str, str], str | None, str | None] | None:
    """The separator, clock, fraction and zone from ``pos`` to the end."""
    sep = s[pos]
    if sep not in d.seps:
        return None
    clock, pos = _fields(s, pos + 1, (d.widths, d.widths, d.widths), (":", ":", ""))
    if pos < 0:
        return None
    frac = None
    if s[pos : pos + 1] == ".":
        end = _digits(s, pos + 1, 1, len(s))
        if end < 0:
            return None
        frac, pos = s[pos + 1 : end], end
    hms = (sep, clock[0], clock[1], clock[2])
    if pos == len(s):
        return None if sep in d.zone_needed else (hms, frac, None)
    zone = s[pos:].lstrip() if d.zone_space else s[pos:]  # lstrip: str.isspace's characters
    if sep in d.zone_refused or not _zone_ok(zone, d):
        return None
    return hms, frac, zone


_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def valid_date(y: int, m: int, d: int) -> bool:
    """What ``datetime.date(y, m, d)`` accepts, without importing datetime on the render path."""
    if not (1 <= y <= 9999 and 1 <= m <= 12):
        return False
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    return 1 <= d <= _DAYS[m - 1] + (1 if m == 2 and leap else 0)
