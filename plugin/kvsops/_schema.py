"""Field-name checks for configuration mappings: a misspelt field is found and named, with its path
and the closest valid name, instead of being ignored.

A schema maps each field to what may sit below it: ``ANY`` (any value; a free-form map),
another schema (a mapping), a one-item list ``[schema]`` (a list whose mapping items follow the
schema), or ``{EACH: schema}`` (a map of free keys whose mapping values follow the schema). Two
optional entries refine what is reported: ``MOVED`` (field -> where it belongs: a right name in the
wrong place) and ``IGNORED`` (field -> why it is accepted without effect). Only names are checked;
the caller checks types and values. The caller decides whether a finding is an error (generator
configs, the key policy) or a warning (``.sops.yaml``, whose unknown keys sops ignores).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable, Iterator, Mapping

ANY = None
EACH = "*"
MOVED = "<moved>"
IGNORED = "<ignored>"
_SPECIAL = (EACH, MOVED, IGNORED)


class Finding:
    """A field ``path`` (``secrets[0].env``) named ``name`` that ``schema`` does not take as it is."""

    __slots__ = ("path", "name", "parent", "known", "moved", "ignored")

    def __init__(self, path: str, name: str, parent: str, known: list[str], moved: str | None,
                 ignored: str | None) -> None:
        self.path, self.name, self.parent, self.known = path, name, parent, known
        self.moved, self.ignored = moved, ignored

    def message(self) -> str:
        """``unknown field `a.b`; did you mean `c`?`` (or where it belongs, or why it has no effect)."""
        if self.ignored:
            return f"`{self.path}` has no effect: {self.ignored}"
        if self.moved:
            return f"unknown field `{self.path}`; it belongs {self.moved}"
        return f"unknown field `{self.path}`{did_you_mean(self.name, self.known)}"

    def fields_here(self) -> str:
        """``the fields of `secrets[0]` are: a, b, c``"""
        level = f"`{self.parent}`" if self.parent else "the top level"
        return f"the fields of {level} are: {', '.join(self.known)}"


def findings(obj: Mapping[Any, Any], schema: Mapping[str, Any], path: str = "") -> Iterator[Finding]:
    """Every unknown or ignored field of ``obj`` and below, in document order."""
    known = [k for k in schema if k not in _SPECIAL]
    moved: Mapping[str, str] = schema.get(MOVED) or {}
    ignored: Mapping[str, str] = schema.get(IGNORED) or {}
    for key, value in obj.items():
        name = str(key)
        full = f"{path}.{name}" if path else name
        if name in ignored or name not in known:
            yield Finding(full, name, path, known, moved.get(name), ignored.get(name))
        else:
            yield from _below(value, schema[name], full)


def _below(value: Any, sub: Any, path: str) -> Iterator[Finding]:
    if isinstance(sub, list) and isinstance(value, list):
        for i, item in enumerate(value):
            if _is_map(item):
                yield from findings(item, sub[0], f"{path}[{i}]")
    elif isinstance(sub, dict) and EACH in sub and _is_map(value):
        for k, item in value.items():
            if _is_map(item):
                yield from findings(item, sub[EACH], f"{path}.{k}")
    elif isinstance(sub, dict) and _is_map(value):
        yield from findings(value, sub, path)


def _is_map(value: object) -> bool:
    from collections.abc import Mapping

    return isinstance(value, Mapping)


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``; did you mean `x`?`` for the closest of ``known`` (case-insensitive), or ``""``."""
    import difflib  # only on this error path

    by_lower = {k.lower(): k for k in known}
    low = name.lower()
    close = difflib.get_close_matches(low, list(by_lower), n=1, cutoff=0.6)
    if not close and len(low) >= 4:  # a shortened name: `shamir` for `shamir_threshold`
        close = [k for k in by_lower if k.startswith(low)][:1]
    return f"; did you mean `{by_lower[close[0]]}`?" if close else ""
