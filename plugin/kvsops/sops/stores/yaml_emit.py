"""YAML emission: our own writer reproducing yaml.v3's emitter (libyaml's rules) for the restricted
tree sops builds: indent 4 by default, unlimited width, comments where sops keeps them. Pure."""

from __future__ import annotations

from ... import errors
from ..tree import Branch, Comment, GoTime
from . import _common
from .yaml_resolve import dollar, resolve_plain

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable

INDENT = 4
# The writer recurses: a tree from another store (JSON nests 10,000 deep) must not exhaust the
# stack. Twice the nesting a YAML load accepts.
_MAX_EMIT_DEPTH = 400


_BASE60_RE = r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$"
_OLD_BOOL = frozenset("y Y yes Yes YES on On ON n N no No NO off Off OFF".split())
_BREAK_CHARS = "\r\n\x85\u2028\u2029"


def _printable(ch: str) -> bool:
    o = ord(ch)
    return o == 0x0A or 0x20 <= o <= 0x7E or 0xA0 <= o <= 0xD7FF or (0xE000 <= o <= 0xFFFD and o != 0xFEFF)


_WS = " \t" + _BREAK_CHARS
_INDICATOR_FIRST = "#,[]{}&*!|>'\"%@`"  # a plain scalar cannot start with these


def _analyze(value: str) -> tuple[bool, bool, bool, bool]:
    """libyaml analyze_scalar: (multiline, block_plain_allowed, single_quoted_allowed, block_allowed)."""
    if not value:
        return False, True, True, False
    line_breaks = any(ch in _BREAK_CHARS for ch in value)
    special = any(ch != "\t" and not _printable(ch) for ch in value)
    tabs = "\t" in value
    break_space, space_break = _space_beside_break(value) if line_breaks and " " in value else (False, False)
    edges = value[0] in _BREAK_CHARS or value[-1] in _BREAK_CHARS or value[0] == " " or value[-1] == " "
    single = not (break_space or space_break or tabs or special)
    plain = single and not (edges or line_breaks or _has_indicator(value))
    block = not (value[-1] == " " or space_break or special)
    return line_breaks, plain, single, block


def _space_beside_break(value: str) -> tuple[bool, bool]:
    """(a space right after a line break, a line break right after a space)."""
    break_space = space_break = False
    for a, b in zip(value[:-1], value[1:], strict=True):  # neighbours
        if b == " " and a in _BREAK_CHARS:
            break_space = True
        elif a == " " and b in _BREAK_CHARS:
            space_break = True
    return break_space, space_break


def _ws_after(value: str, i: int) -> bool:
    return i + 1 >= len(value) or value[i + 1] in _WS


def _has_indicator(value: str) -> bool:
    """libyaml's block indicators: what would make a plain scalar read as something else."""
    first = value[0]
    if value.startswith(("---", "...")) or first in _INDICATOR_FIRST:
        return True
    if first in "?-" and _ws_after(value, 0):
        return True
    i = value.find(":")
    while i >= 0:
        if _ws_after(value, i):
            return True
        i = value.find(":", i + 1)
    i = value.find("#", 1)
    while i >= 0:
        if value[i - 1] in _WS:
            return True
        i = value.find("#", i + 1)
    return False


_ESCAPES = {
    0x00: "0", 0x07: "a", 0x08: "b", 0x09: "t", 0x0A: "n", 0x0B: "v", 0x0C: "f", 0x0D: "r",
    0x1B: "e", 0x22: '"', 0x5C: "\\", 0x85: "N", 0xA0: "_", 0x2028: "L", 0x2029: "P",
}


def _double_quoted(value: str) -> str:
    out = ['"']
    for ch in value:
        o = ord(ch)
        if not _printable(ch) or o == 0xFEFF or ch in _BREAK_CHARS or ch == '"' or ch == "\\":
            esc = _ESCAPES.get(o)
            if esc is not None:
                out.append("\\" + esc)
            elif o <= 0xFF:
                out.append(f"\\x{o:02X}")
            elif o <= 0xFFFF:
                out.append(f"\\u{o:04X}")
            else:
                out.append(f"\\U{o:08X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _can_plain_string(s: str) -> bool:
    try:
        r = resolve_plain(s)
    except errors.InputError:
        return False
    return isinstance(r, str) and not (_is_base60(s) or s in _OLD_BOOL)


def _is_base60(s: str) -> bool:
    if not s or not (s[0] in "+-" or s[0].isdigit()) or ":" not in s:
        return False
    import re  # rare: a digit-led string with a colon

    return bool(re.match(_BASE60_RE, s))


def _scalar_text(value: object) -> tuple[str, str]:
    """(style, text) where style is 'plain', 'single', 'double' or 'literal'."""
    if isinstance(value, str):
        if "\n" in value:
            style = "literal"
        elif _can_plain_string(value):
            style = "plain"
        else:
            style = "double"
        return style, value
    if value is None:
        return "plain", "null"
    if isinstance(value, bool):
        return "plain", "true" if value else "false"
    if isinstance(value, int):
        return "plain", str(value)
    if isinstance(value, float):
        s = _common.go_format_g(value)
        s = {"+Inf": ".inf", "-Inf": "-.inf", "NaN": ".nan"}.get(s, s)
        return "plain", s
    if isinstance(value, GoTime):
        return "plain", value.text
    if isinstance(value, Comment):
        return _scalar_text(value.text)
    raise errors.EmitError(f"cannot emit a value of type {type(value).__name__} as YAML")


def best_indent(indent: int | None) -> int:
    """The indent yaml.v3 emits with for sops' ``stores.yaml.indent`` / ``--indent``: 0 or None is
    sops' default 4, a negative value is refused (sops' getIndentation), and libyaml replaces
    anything outside 2..9 with 2."""
    if not indent:
        return INDENT
    if indent < 0:
        raise errors.EmitError("YAML Negative indentation not accepted")
    return indent if 2 <= indent <= 9 else 2


class _Writer:
    def __init__(self, indent: int = INDENT) -> None:
        self.parts: list[str] = []
        self.col = 0  # column of the current line (0 = at line start)
        self.indent = indent  # libyaml's best_indent

    def next_indent(self, indent: int) -> int:
        """yaml.v3's increase_indent outside a sequence item: the next multiple of the indent."""
        return self.indent * ((indent + self.indent) // self.indent)

    def nl(self) -> None:
        self.parts.append("\n")
        self.col = 0

    def put(self, s: str) -> None:
        self.parts.append(s)
        self.col += len(s)

    def ensure_line(self, indent: int) -> None:
        """Start a fresh line at ``indent`` unless the cursor already sits there after an indicator."""
        if self.col != 0:
            self.nl()
        self.put(" " * indent)

    def comments(self, comments: list[str], indent: int) -> None:
        for c in comments:
            self.ensure_line(indent)
            self.put("#" + c)
            self.nl()


_SAFE_PLAIN_RE = r"^[A-Za-z0-9_(][A-Za-z0-9_.,/=+\[\]:@()-]*$"
_SAFE_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_(")
_SAFE_REST = _SAFE_FIRST | frozenset(".,/=+[]:@)-")


def _is_safe_plain(text: str) -> bool:
    """``re.match(_SAFE_PLAIN_RE, text)``."""
    text = dollar(text)
    return text[:1] in _SAFE_FIRST and _SAFE_REST.issuperset(text)


def _style_for(value: object, simple_key: bool) -> tuple[str, str]:
    style, text = _scalar_text(value)
    if style == "plain" and _is_safe_plain(text) and not text.endswith(":"):
        # common case (ENC strings, identifiers): nothing in it can make plain unsafe
        return style, text
    multiline, plain_ok, single_ok, block_ok = _analyze(text)
    if simple_key and multiline:
        style = "double"
    if style == "plain":
        if not plain_ok:
            style = "single"
        if not text and simple_key:
            style = "single"
    if style == "single" and not single_ok:
        style = "double"
    if style == "literal" and (not block_ok or simple_key):
        style = "double"
    return style, text


def _write_scalar(w: _Writer, value: object, indent: int, line_comment: list[str], simple_key: bool = False) -> None:
    style, text = _style_for(value, simple_key)
    if style == "plain":
        if text:
            w.put(text)
    elif style == "single":
        w.put("'" + text.replace("'", "''") + "'")
    elif style == "double":
        w.put(_double_quoted(text))
    else:
        _write_literal(w, text, indent, line_comment)
        return
    if line_comment:
        _write_line_comment(w, line_comment, indent)


def _write_line_comment(w: _Writer, line_comment: list[str], indent: int) -> None:
    w.put(" #" + line_comment[0])
    for extra in line_comment[1:]:
        w.nl()
        w.put(" " * indent + "#" + extra)
    w.nl()


def _write_literal(w: _Writer, text: str, indent: int, line_comment: list[str]) -> None:
    hdr = "|"
    if text[0] in " \r\n\x85\u2028\u2029":
        hdr += str(w.indent)
    last = text[-1]
    if last not in _BREAK_CHARS:
        hdr += "-"
    elif len(text) == 1 or text[-2] in _BREAK_CHARS:
        hdr += "+"
    w.put(hdr)
    if line_comment:
        _write_line_comment(w, line_comment, indent)
    else:
        w.nl()
    # split keeping breaks; libyaml writes indentation only before non-break characters
    buf: list[str] = []
    at_line_start = True
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in _BREAK_CHARS:
            if ch == "\r" and i + 1 < n and text[i + 1] == "\n":
                buf.append("\r\n")
                i += 2
            else:
                buf.append("\n" if ch == "\n" else ch)
                i += 1
            at_line_start = True
            continue
        if at_line_start:
            buf.append(" " * indent)
            at_line_start = False
        j = i
        while j < n and text[j] not in _BREAK_CHARS:
            j += 1
        buf.append(text[i:j])
        i = j
    s = "".join(buf)
    w.parts.append(s)
    if at_line_start:
        w.col = 0
    else:
        w.col = 1  # somewhere mid-line


def _split_comments_map(branch: Branch) -> list[tuple[list[str], list[str], object, object]]:
    """Group a branch into (head comments, inline comments, key, value); a trailing group has key None."""
    return _split_comments(branch, False)


def _split_comments_seq(seq: list[object]) -> list[tuple[list[str], list[str], object, object]]:
    """The same for a sequence, with True for the key of every item."""
    return _split_comments(zip(seq, seq, strict=True), True)


def _split_comments(
    pairs: Iterable[tuple[object, object]], seq: bool
) -> list[tuple[list[str], list[str], object, object]]:
    groups: list[tuple[list[str], list[str], object, object]] = []
    head: list[str] = []
    inline: list[str] = []
    for k, v in pairs:
        if isinstance(k, Comment):
            (inline if k.inline else head).append(k.text)
        else:
            groups.append((head, inline, True if seq else k, v))
            head, inline = [], []
    if head or inline:
        groups.append((head + inline, [], None, None))
    return groups


def _is_empty_container(v: object) -> bool:
    if isinstance(v, Branch):
        return not any(not isinstance(k, Comment) for k, _ in v)
    if isinstance(v, list):
        return not any(not isinstance(x, Comment) for x in v)
    return False


def _write_flow_empty(w: _Writer, v: object, line_comment: list[str], indent: int) -> None:
    w.put("{}" if isinstance(v, Branch) else "[]")
    if line_comment:
        _write_line_comment(w, line_comment, indent)


def _write_map(w: _Writer, branch: Branch, indent: int, inline_first: bool, depth: int) -> None:
    if depth > _MAX_EMIT_DEPTH:
        raise errors.LimitExceeded("tree too deep to emit")
    groups = _split_comments_map(branch)
    first = True
    for head, inline, key, value in groups:
        if key is None:
            # trailing comments: foot of the last key, written at this mapping's indent
            w.comments(head, indent)
            continue
        if head:
            if first and inline_first:
                # leading comments of a mapping inside a list item were written before "- "
                pass
            else:
                w.comments(head, indent)
        if not (first and inline_first and w.col > 0):
            w.ensure_line(indent)
        first = False
        _write_key(w, key, indent)
        _write_value(w, value, indent, inline, depth)


def _write_key(w: _Writer, key: object, indent: int) -> None:
    style, text = _style_for(key, simple_key=True)
    if style == "plain":
        w.put(text)
    elif style == "single":
        w.put("'" + text.replace("'", "''") + "'")
    else:
        w.put(_double_quoted(text))
    w.put(":")


def _write_value(w: _Writer, value: object, indent: int, inline: list[str], depth: int) -> None:
    """A mapping value after ``key:``."""
    if isinstance(value, (Branch, list)):
        if _is_empty_container(value):
            w.put(" ")
            _write_flow_empty(w, value, inline, indent)
            _write_container_comments_only(w, value, w.next_indent(indent))
            return
        if inline:
            w.put(" ")
            _write_line_comment(w, inline, indent)
        child = w.next_indent(indent)
        lead = _leading_comments(value)
        if isinstance(value, Branch):
            w.comments(lead, child)
            _write_map(w, _drop_leading(value), child, False, depth + 1)
        else:
            w.comments(lead, child)
            _write_seq(w, _drop_leading(value), child, depth + 1)
        return
    w.put(" ")
    _write_scalar(w, value, w.next_indent(indent), inline)


def _write_container_comments_only(w: _Writer, value: list[object], indent: int) -> None:
    """An empty container's comments: every key (of a Branch) or item (of a list) is a Comment."""
    items = [k for k, _ in value] if isinstance(value, Branch) else value
    comments = [c.text for c in items if isinstance(c, Comment)]
    if comments:
        if w.col:
            w.nl()
        w.comments(comments, indent)


def _leading_comments(value: object) -> list[str]:
    out: list[str] = []
    if isinstance(value, Branch):
        for k, _ in value:
            if isinstance(k, Comment) and not k.inline:
                out.append(k.text)
            else:
                break
    elif isinstance(value, list):
        for x in value:
            if isinstance(x, Comment) and not x.inline:
                out.append(x.text)
            else:
                break
    return out


def _drop_leading(value: Any) -> Any:
    n = len(_leading_comments(value))
    if not n:
        return value
    if isinstance(value, Branch):
        return Branch(value[n:])
    return value[n:]


def _write_seq(w: _Writer, seq: list[object], indent: int, depth: int) -> None:
    if depth > _MAX_EMIT_DEPTH:
        raise errors.LimitExceeded("tree too deep to emit")
    first = True
    for head, inline, marker, value in _split_comments_seq(seq):
        if marker is None:
            w.comments(head, indent)
            continue
        if isinstance(value, (Branch, list)) and not _is_empty_container(value):
            head = head + _leading_comments(value)
            value = _drop_leading(value)
        w.comments(head, indent)
        if not (first and w.col > 0 and w.parts and w.parts[-1] == "- "):
            w.ensure_line(indent)
        first = False
        w.put("- ")
        child = indent + 2
        if isinstance(value, (Branch, list)):
            if _is_empty_container(value):
                _write_flow_empty(w, value, inline, indent)
                _write_container_comments_only(w, value, child)
                continue
            if inline:
                # a line comment on a collection item is written right after "- "
                _write_line_comment(w, inline, child)
            if isinstance(value, Branch):
                _write_map(w, value, child, True, depth + 1)
            else:
                _write_seq(w, value, child, depth + 1)
        else:
            _write_scalar(w, value, child, inline)


def _emit_doc(w: _Writer, branch: Branch) -> None:
    if _is_empty_container(branch):
        comments = [k.text for k, _ in branch]
        w.comments(comments, 0)
        w.put("{}")
        w.nl()
        return
    _write_map(w, branch, 0, False, 0)
    if w.col:
        w.nl()


def emit_plain(docs: list[Branch], indent: int | None = None) -> bytes:
    w = _Writer(best_indent(indent))
    for i, doc in enumerate(docs):
        if i > 0:
            if w.col:
                w.nl()
            w.put("---")
            w.nl()
        _emit_doc(w, doc)
    return "".join(w.parts).encode("utf-8", "surrogateescape")


def emit_encrypted(docs: list[Branch], metadata: Branch, indent: int | None = None) -> bytes:
    out: list[Branch] = []
    for doc in docs:
        _common.check_no_sops_key(doc)
        nd = Branch(doc)
        nd.append((_common.SOPS_KEY, metadata))
        out.append(nd)
    return emit_plain(out, indent)


def emit_value(value: object, indent: int | None = None) -> bytes:
    """``yaml.Marshal`` of a single value (``--extract``), with its trailing newline. sops' YAML
    EmitValue ignores the indent setting (yaml.Marshal always indents by 4): so does ``indent``."""
    w = _Writer()
    if isinstance(value, Branch):
        _emit_doc(w, value)
    elif isinstance(value, list):
        if _is_empty_container(value):
            w.put("[]")
        else:
            _write_seq(w, value, 0, 0)
        if w.col:
            w.nl()
    else:
        _write_scalar(w, value, w.indent, [])
        if w.col:
            w.nl()
    return "".join(w.parts).encode("utf-8", "surrogateescape")
