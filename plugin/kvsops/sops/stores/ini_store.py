"""INI store (sops stores/ini/store.go on gopkg.in/ini.v1 with AllowNonUniqueSections). Pure.

Every section is a top-level key holding a Branch of string values. go-ini attaches the comment
lines *above* a key to that key; sops then stores it as a Comment *after* the key, and go-ini writes
it above the key again, so a round trip keeps comments in place.
"""

from __future__ import annotations

from ... import errors
from ..tree import Branch, Comment
from . import _common

STRUCTURED = True
is_metadata_key = _common.is_metadata_key
no_documents = _common.no_documents

DEFAULT_SECTION = "DEFAULT"
_DELIMS = "=:"


def _strip_comment_char(comment: str) -> str:
    if comment.startswith(";"):
        return comment.lstrip("; ")
    if comment.startswith("#"):
        return comment.lstrip("# ")
    return comment


class _Section:
    def __init__(self, name: str) -> None:
        self.name = name
        self.comment = ""
        self.keys: list[list[str]] = []  # [name, value, comment]
        self.index: dict[str, int] = {}

    def set(self, name: str, value: str, comment: str) -> None:
        i = self.index.get(name)
        if i is None:
            self.index[name] = len(self.keys)
            self.keys.append([name, value, comment])
        else:
            self.keys[i][1] = value
            self.keys[i][2] = comment


def _read_key_name(line: str, lineno: int) -> tuple[str, int]:
    quote = ""
    if line[0] == '"':
        quote = '"""' if len(line) > 6 and line.startswith('"""') else '"'
    elif line[0] == "`":
        quote = "`"
    if quote:
        start = len(quote)
        pos = line.find(quote, start)
        if pos < 0:
            raise errors.InputError(f"Could not unmarshal input data: line {lineno}: missing closing key quote")
        rest = line[pos + start :]
        i = min((rest.find(d) for d in _DELIMS if d in rest), default=-1)
        if i < 0:
            raise errors.InputError(f"Could not unmarshal input data: line {lineno}: key-value delimiter not found")
        return line[start:pos].strip(), pos + start + i + 1
    idx = [line.find(d) for d in _DELIMS if d in line]
    if not idx:
        raise errors.InputError(f"Could not unmarshal input data: line {lineno}: key-value delimiter not found")
    end = min(idx)
    if end == 0:
        raise errors.InputError(f"Could not unmarshal input data: line {lineno}: empty key name")
    return line[:end].strip(), end + 1


def _surrounded(s: str, q: str) -> bool:
    return len(s) >= 2 and s[0] == q and s[-1] == q


class _Parser:
    def __init__(self, text: str) -> None:
        # go-ini reads lines up to and including '\n'
        self.lines = text.splitlines(keepends=True) if text else []
        # splitlines also splits on \r, \v, ...; go-ini only on \n
        self.lines = _split_keep_nl(text)
        self.pos = 0
        self.comment: list[str] = []

    def next_line(self) -> str | None:
        if self.pos >= len(self.lines):
            return None
        line = self.lines[self.pos]
        self.pos += 1
        return line

    def read_multiline(self, val: str, quote: str, lineno: int) -> str:
        while True:
            nxt = self.next_line()
            if nxt is None:
                raise errors.InputError(f"Could not unmarshal input data: line {lineno}: missing closing value quote")
            pos = nxt.rfind(quote)
            if pos > -1:
                val += nxt[:pos]
                rest = nxt[pos:]
                ci = min((rest.find(c) for c in "#;" if c in rest), default=-1)
                if ci > -1:
                    self.comment.append(rest[ci:].strip())
                return val
            val += nxt

    def read_value(self, raw: str, lineno: int) -> str:
        line = raw.lstrip()
        if not line:
            return ""
        quote = ""
        if len(line) > 3 and line.startswith('"""'):
            quote = '"""'
        elif line[0] == "`":
            quote = "`"
        if quote:
            start = len(quote)
            pos = line[start:].rfind(quote)
            if pos == -1:
                return self.read_multiline(line[start:], quote, lineno)
            return line[start : start + pos]
        line = line.strip()
        if line.endswith("\\"):
            line = line[:-1]
            while True:
                nxt = self.next_line()
                if nxt is None:
                    break
                nxt = nxt.strip()
                if nxt.endswith("\\"):
                    line += nxt[:-1]
                    continue
                line += nxt
                break
            return line
        ci = min((line.find(c) for c in "#;" if c in line), default=-1)
        if ci > -1:
            self.comment.append(line[ci:])
            line = line[:ci].strip()
        if _surrounded(line, "'") or _surrounded(line, '"'):
            line = line[1:-1]
        return line

    def parse(self) -> list[_Section]:
        sections = [_Section(DEFAULT_SECTION)]
        cur = sections[0]
        lineno = 0
        while True:
            raw = self.next_line()
            if raw is None:
                break
            lineno = self.pos
            line = raw.lstrip()
            if lineno == 1 and line.startswith("\ufeff"):
                line = line[1:]
            if not line.strip():
                continue
            if line[0] in "#;":
                self.comment.append(line.rstrip("\r\n"))
                continue
            if line[0] == "[":
                close = line.rfind("]")
                if close < 0:
                    raise errors.InputError(f"Could not unmarshal input data: line {lineno}: unclosed section")
                name = line[1:close].strip()
                rest = line[close + 1 :].strip()
                if rest and rest[0] in "#;":
                    self.comment.append(rest)
                cur = _Section(name)
                cur.comment = "\n".join(self.comment).strip()
                self.comment = []
                sections.append(cur)
                continue
            key, offset = _read_key_name(line, lineno)
            value = self.read_value(line[offset:], lineno)
            cur.set(key, value, _join_comment(self.comment))
            self.comment = []
        return sections


def _join_comment(parts: list[str]) -> str:
    if not parts:
        return ""
    # go-ini writes comment lines with their line break, then the inline comment without one
    return "\n".join(parts).strip()


def _split_keep_nl(text: str) -> list[str]:
    out: list[str] = []
    start = 0
    while True:
        i = text.find("\n", start)
        if i < 0:
            if start < len(text):
                out.append(text[start:])
            return out
        out.append(text[start : i + 1])
        start = i + 1


def load_plain(data: bytes) -> list[Branch]:
    text = data.decode("utf-8", "surrogateescape")
    sections = _Parser(text).parse()
    top = Branch()
    for sec in sections:
        items = Branch()
        if sec.comment:
            items.append((Comment(_strip_comment_char(sec.comment)), None))
        for name, value, comment in sec.keys:
            items.append((name, value))
            if comment:
                items.append((Comment(_strip_comment_char(comment)), None))
        top.append((sec.name, items))
    return [top]


def load_encrypted(data: bytes) -> tuple[list[Branch], Branch]:
    docs = load_plain(data)
    docs, flat = _common.split_metadata_branch(docs)
    items: list[tuple[str, object]] = []
    for k, v in flat:
        if isinstance(k, Comment):
            continue
        if isinstance(v, str):
            v = v.replace("\\n", "\n")
        items.append((k, v))
    return docs, _common.unflatten_metadata(items)


def has_metadata(data: bytes) -> bool:
    return _common.has_sops_key(load_plain, data)


# ----------------------------------------------------------------------------------------------
# emission: go-ini WriteTo with PrettyFormat


def _blen(s: str) -> int:
    return len(s.encode("utf-8", "surrogateescape"))


def _to_sections(docs: list[Branch]) -> list[_Section]:
    out: list[_Section] = []
    for branch in docs:
        for name, value in branch:
            if isinstance(name, Comment):
                continue
            if not isinstance(value, Branch):
                raise errors.EmitError(
                    f"Error encoding section {name}: Section values should always be TreeBranches"
                )
            sec = _Section(str(name))
            first = 0
            if value and isinstance(value[0][0], Comment):
                sec.comment = value[0][0].text
                first = 1
            last: list[str] | None = None
            for k, v in value[first:]:
                if isinstance(k, Comment):
                    if last is not None:
                        last[2] = k.text
                    continue
                if isinstance(v, (Branch, list)):
                    raise errors.EmitError(f"cannot use complex value in INI file; offending key {name}:{k}")
                sec.set(str(k), _common.val_to_string(v), "")
                last = sec.keys[sec.index[str(k)]]
            out.append(sec)
    return out


def _comment_lines(comment: str, trim: bool) -> list[str]:
    lines = []
    for ln in comment.split("\n"):
        if not ln or (ln[0] != "#" and ln[0] != ";"):
            lines.append("; " + (ln.strip() if trim else ln))
        else:
            lines.append(ln[:1] + " " + ln[1:].strip())
    return lines


def _write(sections: list[_Section]) -> str:
    buf: list[str] = []
    last = len(sections) - 1
    for i, sec in enumerate(sections):
        if sec.comment:
            for ln in _comment_lines(sec.comment, trim=False):
                buf.append(ln + "\n")
        if i > 0 or sec.name.upper() != DEFAULT_SECTION:
            buf.append("[" + sec.name + "]\n")
        elif not sec.keys:
            continue
        names: list[str] = []
        align = 0
        for name, _, _ in sec.keys:
            length = _blen(name)
            if '"' in name or any(d in name for d in _DELIMS):
                length += 2
            elif "`" in name:
                length += 6
            align = max(align, length)
        for name, val, comment in sec.keys:
            if comment:
                for ln in _comment_lines(comment, trim=True):
                    buf.append(ln + "\n")
            kname = name
            if '"' in kname or any(d in kname for d in _DELIMS):
                kname = "`" + kname + "`"
            elif "`" in kname:
                kname = '"""' + kname + '"""'
            names.append(kname)
            if "\n" in val or "`" in val:
                val = '"""' + val + '"""'
            elif "#" in val or ";" in val:
                val = "`" + val + "`"
            elif val.strip() != val:
                val = '"' + val + '"'
            pad = " " * max(0, align - _blen(kname))
            buf.append(kname + pad + " = " + val + "\n")
        if i != last:
            buf.append("\n")
    return "".join(buf)


def emit_plain(docs: list[Branch], indent: int | None = None) -> bytes:
    return _write(_to_sections(docs)).encode("utf-8", "surrogateescape")


def emit_encrypted(docs: list[Branch], metadata: Branch, indent: int | None = None) -> bytes:
    doc = docs[0] if docs else Branch()
    _common.check_no_sops_key(doc)
    flat = Branch()
    for k, v in _common.flatten_metadata(metadata, ""):
        if isinstance(v, str):
            v = v.replace("\n", "\\n")
        flat.append((k, v))
    out = Branch(doc)
    out.append((_common.SOPS_KEY, flat))
    return emit_plain([out])


def emit_value(value: object, indent: int | None = None) -> bytes:
    """sops' INI ``EmitValue``: ``json.Marshal`` of the value."""
    from . import json_store

    if isinstance(value, (Branch, list)):
        return json_store.encode_value(value, 0).replace("\n", "").encode("utf-8")
    return json_store.encode_value(value).encode("utf-8")
