"""A reader for the block YAML that sops (go-yaml v3, indent 4) writes, without PyYAML. Pure.

Why: importing PyYAML costs more start-up than decrypting a small file, and kustomize, Helm and
Argo CD start one process per file. Encrypted files are nearly always exactly what sops' emitter
(and ours, the same) wrote, so a small line reader suffices for them.

How it stays correct: :func:`read` understands a strict subset (block mappings and sequences,
plain, single- and simply double-quoted scalars, ``|``/``|-`` literals, ``{}``/``[]``) and returns
None for anything else. The caller (``yaml_store.load_plain``) accepts the result only when
re-emitting it reproduces the input byte for byte; otherwise PyYAML reads the file. Plain scalars
are resolved by the same function as on the PyYAML path, so a tree that re-emits to the input is the
tree PyYAML's path would have built. Duplicate keys, non-string keys and anything the resolver
refuses are left to the PyYAML path too, so its errors stay the only errors.
"""

from __future__ import annotations

from kvsops.errors import KvsopsError
from kvsops.sops.tree import Branch

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


class _Unsupported(Exception):
    pass


_INDICATORS = frozenset("[]{},#&*!|>'\"%@`")  # a plain scalar cannot start with these
_SIMPLE_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n", "\\t": "\t"}


def read(text: str, resolve: Callable[[str, int], object], max_depth: int) -> list[Branch] | None:
    """The single document of ``text`` as a Branch, or None when the text is outside the subset."""
    if not text.endswith("\n") or "\t" in text or "\r" in text or text.startswith(("---", "%", "...")):
        return None
    lines = text.split("\n")
    lines.pop()  # the empty string after the final newline
    if not lines or "\n---" in text or "\n..." in text:
        return None
    try:
        reader = _Reader(lines, resolve, max_depth)
        doc = reader.mapping(0, 1)
        if reader.i != len(lines):
            return None
    except (_Unsupported, KvsopsError, IndexError, ValueError):
        return None
    return [doc]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


class _Reader:
    def __init__(self, lines: list[str], resolve: Callable[[str, int], object], max_depth: int) -> None:
        self.lines = lines
        self.i = 0
        self.resolve = resolve
        self.max_depth = max_depth

    # ------------------------------------------------------------------ containers

    def mapping(self, indent: int, depth: int, first: str | None = None) -> Branch:
        """Entries at column ``indent``; ``first`` is an entry already cut from a ``- `` line."""
        if depth > self.max_depth:
            raise _Unsupported
        out = Branch()
        seen: set[str] = set()
        body: str | None
        while True:
            if first is not None:
                body, first = first, None
            else:
                if self.i >= len(self.lines):
                    break
                body = self._body_at(indent)
                if body is None or body.startswith("- ") or body == "-":
                    break
            key, rest = self._key(body)
            if key in seen:
                raise _Unsupported  # duplicate key: PyYAML's path reports it
            seen.add(key)
            self.i += 1
            out.append((key, self._value(rest, indent, depth)))
        if not out:
            raise _Unsupported
        return out

    def _body_at(self, indent: int) -> str | None:
        """The current line after ``indent`` spaces; None where the block at ``indent`` ends (a
        blank or shallower line). A deeper line is outside the subset."""
        line = self.lines[self.i]
        if not line.strip() or _indent(line) != indent:
            if line.strip() and _indent(line) > indent:
                raise _Unsupported
            return None
        return line[indent:]

    def sequence(self, indent: int, depth: int) -> list[object]:
        if depth > self.max_depth:
            raise _Unsupported
        items: list[object] = []
        while self.i < len(self.lines):
            body = self._body_at(indent)
            if body is None:
                break
            if body == "-":
                self.i += 1
                items.append(self._nested(indent, depth, allow_same_indent_seq=False))
                continue
            if not body.startswith("- "):
                break
            rest = body[2:]
            if rest.startswith(("- ", "? ")) or rest == "-" or not rest.strip() or rest[0] == " ":
                raise _Unsupported
            if self._is_entry(rest):
                items.append(self.mapping(indent + 2, depth + 1, first=rest))
            else:
                self.i += 1
                items.append(self._value(rest, indent, depth, inline_in_seq=True))
        return items

    # ------------------------------------------------------------------ entries and values

    def _is_entry(self, text: str) -> bool:
        if text[0] in "'\"":
            try:
                _, end = self._quoted(text)
            except _Unsupported:
                return False
            return text[end:end + 2] == ": " or text[end:] == ":"
        return ": " in text or text.endswith(":")

    def _key(self, body: str) -> tuple[str, str]:
        key: object
        if body[:1] in ("'", '"'):
            key, end = self._quoted(body)
            rest = body[end:]
        else:
            cut = body.find(": ")
            if cut < 0:
                if not body.endswith(":"):
                    raise _Unsupported
                cut = len(body) - 1
            raw, rest = body[:cut], body[cut:]
            if not raw or raw[0] in _INDICATORS or raw[0] in "-?:" or raw != raw.strip():
                raise _Unsupported
            key = self.resolve(raw, self.i + 1)
            if not isinstance(key, str):
                raise _Unsupported  # PyYAML's path reports non-string keys
        if rest == ":":
            return key, ""
        if not rest.startswith(": "):
            raise _Unsupported
        return key, rest[2:]

    def _value(self, rest: str, indent: int, depth: int, inline_in_seq: bool = False) -> object:
        """The value after ``key: `` (or ``- ``) on line ``self.i - 1``."""
        if rest == "":
            if inline_in_seq:
                raise _Unsupported
            return self._nested(indent, depth, allow_same_indent_seq=True)
        if rest != rest.rstrip(" "):
            raise _Unsupported
        c = rest[0]
        if c == "|":
            return self._literal(rest, indent)
        if rest == "{}":
            return Branch()
        if rest == "[]":
            return []
        if c in "'\"":
            value, end = self._quoted(rest)
            if end != len(rest):
                raise _Unsupported
            return value
        if c in _INDICATORS or (c in "-?:" and rest[1:2] in ("", " ")) or ": " in rest:
            raise _Unsupported
        self._no_continuation(indent)
        return self.resolve(rest, self.i)

    def _nested(self, indent: int, depth: int, allow_same_indent_seq: bool) -> object:
        if self.i >= len(self.lines) or not self.lines[self.i].strip():
            return self.resolve("", self.i)  # an empty value: null
        line = self.lines[self.i]
        col = _indent(line)
        body = line[col:]
        is_seq = body.startswith("- ") or body == "-"
        if col > indent:
            if is_seq:
                return self.sequence(col, depth + 1)
            return self.mapping(col, depth + 1)
        if col == indent and is_seq and allow_same_indent_seq:
            return self.sequence(col, depth + 1)
        return self.resolve("", self.i)

    def _no_continuation(self, indent: int) -> None:
        """A plain scalar ends at its line: a deeper next line would be its continuation."""
        if self.i < len(self.lines):
            nxt = self.lines[self.i]
            if nxt.strip() and _indent(nxt) > indent and not nxt.lstrip(" ").startswith("- "):
                raise _Unsupported

    def _quoted(self, text: str) -> tuple[str, int]:
        """A quoted scalar at the start of ``text`` on one line: (value, index after it)."""
        q = text[0]
        if q == "'":
            i, out = 1, []
            while True:
                j = text.find("'", i)
                if j < 0:
                    raise _Unsupported
                out.append(text[i:j])
                if text[j + 1:j + 2] == "'":
                    out.append("'")
                    i = j + 2
                    continue
                return "".join(out), j + 1
        k = 1
        while k < len(text) and text[k] != '"':
            k += 2 if text[k] == "\\" else 1
        if k >= len(text):
            raise _Unsupported
        raw = text[1:k]
        if "\\" in raw:
            raw = _unescape(raw)
        return raw, k + 1

    def _literal(self, header: str, indent: int) -> str:
        if header not in ("|", "|-"):
            raise _Unsupported  # keep (|+), explicit indentation, folded: PyYAML reads them
        start = self.i
        body: list[str] = []
        content = -1
        while self.i < len(self.lines):
            line = self.lines[self.i]
            if line.strip():
                col = _indent(line)
                if col <= indent:
                    break
                if content < 0:
                    content = col
                if col < content:
                    raise _Unsupported
                body.append(line[content:])
            elif line:
                raise _Unsupported  # whitespace-only lines: leave them to PyYAML
            else:
                body.append("")
            self.i += 1
        if content < 0 or self.i == start:
            raise _Unsupported
        while body and body[-1] == "":  # trailing empty lines belong to the chomping
            body.pop()
            self.i -= 1
        text = "\n".join(body)
        return text if header == "|-" else text + "\n"


def _unescape(raw: str) -> str:
    out = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        pair = raw[i:i + 2]
        if pair not in _SIMPLE_ESCAPES:
            raise _Unsupported  # \x, \u, \U, line folding: PyYAML reads them
        out.append(_SIMPLE_ESCAPES[pair])
        i += 2
    return "".join(out)
