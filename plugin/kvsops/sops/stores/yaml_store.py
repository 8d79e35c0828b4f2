"""YAML store: go-yaml v3 semantics as sops uses them (stores/yaml/store.go). Pure.

Loading composes nodes with PyYAML (the C parser when available) and resolves scalars the way
yaml.v3 decodes into ``interface{}``. Comments are recovered from the token stream (the gaps between
tokens) and attached with a model of yaml.v3's head/line/foot rules. Emission is our own writer that
reproduces yaml.v3's emitter for the restricted tree sops builds (indent 4 by default, unlimited width).
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

from ... import errors
from .. import timestamps
from ..tree import Branch, Comment, GoTime, Uint64
from . import _common

INDENT = 4
MAX_NODES = 1_000_000
MAX_DEPTH = 200

# PyYAML (with libyaml) is imported on first use: its import is the largest single start-up cost
# of a decrypt (module code plus a dozen regexes), and a canonical sops file is read by
# kvsops.sops.stores.yaml_fast without it (see load_plain).
yaml: Any = None
_Loader: Any = None
_IMPLICIT: Any = None


def _pyyaml() -> Any:
    global yaml, _Loader, _IMPLICIT
    if yaml is None:
        import yaml as pyyaml

        _Loader = getattr(pyyaml, "CSafeLoader", None) or pyyaml.SafeLoader  # libyaml when available
        _IMPLICIT = pyyaml.resolver.Resolver()
        yaml = pyyaml
    return yaml

_T = "tag:yaml.org,2002:"
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MAX = (1 << 64) - 1

# ----------------------------------------------------------------------------------------------
# scalar resolution (yaml.v3 resolve.go)

_RESOLVE_MAP: dict[str, object] = {}
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


def _dollar(s: str) -> str:
    """What a pattern ending in ``$`` has to match: ``s`` without one final newline."""
    return s[:-1] if s.endswith("\n") else s


def _all_of(chars: frozenset[str], s: str) -> bool:
    """``re.match(r"^[chars]+$", s)``."""
    s = _dollar(s)
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
    s = _dollar(s)
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
        n = int(body)
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


def resolve_plain(s: str, line: int | None = None) -> object:
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


def _is_implicit(node: yaml.ScalarNode) -> bool:
    """PyYAML fills in implicit tags; only a tag it would not have chosen itself was written."""
    same: bool = node.tag == _IMPLICIT.resolve(yaml.ScalarNode, node.value, (True, False))
    return same


def _resolve_node(node: yaml.ScalarNode, line: int) -> object:
    return _resolve_scalar(node.tag, node.value, node.style, _is_implicit(node), line)


def _resolve_scalar(tag: str | None, value: str, style: str | None, implicit: bool, line: int) -> object:
    tag = tag or ""
    if style:
        # quoted and block scalars are strings unless an explicit non-string standard tag says otherwise
        if tag == _T + "str" or not tag.startswith(_T):
            return value
        short = tag[len(_T) :]
        if short in ("binary",):
            return value
    elif implicit:
        return resolve_plain(value, line)
    if tag.startswith(_T):
        short = tag[len(_T) :]
        if short in ("str", "binary"):
            return value
        r = resolve_plain(value, line)
        if short == "float" and isinstance(r, int) and not isinstance(r, bool):
            return float(r)
        return r
    # custom tags are not resolvable in yaml.v3: the value stays a string (the tag is dropped)
    return value


# ----------------------------------------------------------------------------------------------
# comments


def _split_lines(text: str) -> list[str]:
    """Lines as YAML counts them (comment paths only: ``re`` is imported there)."""
    import re

    return re.split(r"\r\n|\r|\n|\x85|\u2028|\u2029", text)


class _Item:
    """A mapping entry or sequence element, located in the source."""

    __slots__ = ("container", "index", "line", "col", "end", "depth", "scalar_line", "is_scalar", "leaf", "doc", "parent")

    def __init__(self, container: list, index: int, line: int, col: int, depth: int) -> None:  # type: ignore[type-arg]
        self.container = container
        self.index = index
        self.line = line
        self.col = col
        self.end = (line, col)
        self.depth = depth
        self.scalar_line = -1  # line where a scalar value starts (for line comments)
        self.is_scalar = False
        self.leaf = False
        self.doc = 0
        self.parent: _Item | None = None


def _find_comments_fast(text: str, spans: list[tuple[int, int, int, int]]) -> list[tuple[int, int, str, bool]]:
    """Comments are the ``#`` outside every scalar's source span, at a line start or after a blank."""

    spans = sorted(set(spans))
    starts = [(a, b) for a, b, _, _ in spans]
    out: list[tuple[int, int, str, bool]] = []
    import bisect

    for lineno, line in enumerate(_split_lines(text)):
        h = line.find("#")
        while h >= 0:
            if h == 0 or line[h - 1] in " \t":
                i = bisect.bisect_right(starts, (lineno, h)) - 1
                inside = False
                if i >= 0:
                    a, b, c, d = spans[i]
                    inside = (a, b) <= (lineno, h) < (c, d)
                if not inside:
                    out.append((lineno, h, line[h + 1 :], bool(line[:h].strip())))
                    break
            h = line.find("#", h + 1)
    return out


# ----------------------------------------------------------------------------------------------
# loading


class _Builder:
    def __init__(self, check_dups: bool, want_positions: bool) -> None:
        self.count = 0
        self.check_dups = check_dups
        self.want = want_positions
        self.items: list[_Item] = []
        self.visited: set[int] = set()
        self.doc = 0
        self.parent: _Item | None = None
        self.spans: list[tuple[int, int, int, int]] = []

    def _tick(self, depth: int) -> None:
        self.count += 1
        if self.count > MAX_NODES:
            raise errors.LimitExceeded(f"YAML document expands to more than {MAX_NODES} nodes (alias bomb?)")
        if depth > MAX_DEPTH:
            raise errors.LimitExceeded(f"YAML nesting deeper than {MAX_DEPTH} levels")

    def value(self, node: yaml.Node, depth: int, expanding: bool) -> object:
        self._tick(depth)
        if not isinstance(node, yaml.ScalarNode):
            expanding = expanding or id(node) in self.visited
            self.visited.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if self.want:
                self.spans.append((node.start_mark.line, node.start_mark.column, node.end_mark.line, node.end_mark.column))
            return _resolve_node(node, node.start_mark.line + 1)
        if isinstance(node, yaml.SequenceNode):
            seq: list[object] = []
            want = self.want and not expanding
            for child in node.value:
                if want:
                    it = self._track(seq, child.start_mark.line, node.start_mark.column, depth, child)
                saved = self.parent
                if want:
                    self.parent = it
                seq.append(self.value(child, depth + 1, expanding))
                self.parent = saved
            return seq
        if isinstance(node, yaml.MappingNode):
            self.visited.discard(id(node)) if not expanding else None
            return self.mapping(node, depth, expanding)
        raise errors.InputError("unsupported YAML node")  # pragma: no cover

    def _track(self, container: Any, line: int, col: int, depth: int, vnode: Any) -> _Item:
        """Record the position of the entry about to be appended to ``container`` (for comments)."""
        it = _Item(container, len(container), line, col, depth)
        it.end = (vnode.end_mark.line, vnode.end_mark.column)
        it.is_scalar = isinstance(vnode, yaml.ScalarNode)
        it.leaf = it.is_scalar or bool(getattr(vnode, "flow_style", False)) or not vnode.value
        if it.is_scalar:
            it.scalar_line = vnode.start_mark.line
        it.doc, it.parent = self.doc, self.parent
        self.items.append(it)
        return it

    def mapping(self, node: yaml.MappingNode, depth: int, expanding: bool) -> Branch:
        expanding = expanding or id(node) in self.visited
        self.visited.add(id(node))
        br = Branch()
        seen: dict[object, int] | None = {} if self.check_dups else None
        want = self.want and not expanding
        for knode, vnode in node.value:
            line = knode.start_mark.line + 1
            if not isinstance(knode, yaml.ScalarNode):
                raise errors.InputError(f"line {line}: mapping keys must be strings")
            key = _resolve_node(knode, line)
            if self.want:
                sm, em = knode.start_mark, knode.end_mark
                self.spans.append((sm.line, sm.column, em.line, em.column))
            if not isinstance(key, str):
                raise errors.InputError(f"line {line}: mapping key is not a string")
            if seen is not None:
                if key in seen:
                    raise errors.InputError(f"line {line}: mapping key {key!r} already defined at line {seen[key]}")
                seen[key] = line
            if want:
                it = self._track(br, knode.start_mark.line, knode.start_mark.column, depth, vnode)
            saved = self.parent
            if want:
                self.parent = it
            br.append((key, self.value(vnode, depth + 1, expanding)))
            self.parent = saved
        return br


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.InputError(f"YAML input is not valid UTF-8 (byte offset {exc.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


class _NeedNodes(Exception):
    """The event stream has anchors or aliases: build from composed nodes instead."""


def _event_tag(ev: Any) -> str:
    tag = ev.tag
    if tag is None or tag == "!":  # what the composer does: the resolver picks the implicit tag
        tag = _IMPLICIT.resolve(yaml.ScalarNode, ev.value, ev.implicit)
    return tag  # type: ignore[no-any-return]


def _scalar_from_event(ev: Any, line: int) -> object:
    if ev.style:  # quoted or block: _resolve_scalar decides from the tag alone
        return _resolve_scalar(_event_tag(ev), ev.value, ev.style, False, line)
    # Plain: the resolver's answer with implicit=(True, *) does not depend on the second flag, so
    # one call gives both the composer's tag and _is_implicit's reference tag.
    plain_tag = _IMPLICIT.resolve(yaml.ScalarNode, ev.value, (True, False))
    tag = ev.tag
    if tag is None or tag == "!":
        tag = plain_tag if ev.implicit[0] else _IMPLICIT.resolve(yaml.ScalarNode, ev.value, ev.implicit)
    return _resolve_scalar(tag, ev.value, ev.style, tag == plain_tag, line)


def _docs_from_events(text: str) -> list[Branch]:
    """The documents of a file without comments, built straight from the parser's events.

    The same values, checks and errors as composing nodes and walking them with :class:`_Builder`
    (which the file with comments needs, for positions), without holding a node and two marks per
    scalar for the whole file: for a 100k-value file that node tree is most of the peak memory.
    Anchors and aliases are left to the node path (:class:`_NeedNodes`)."""
    _pyyaml()
    events = yaml.parse(text, Loader=_Loader)
    try:
        try:
            return _build_from_events(events)
        except errors.KvsopsError:
            # The node path parses the whole stream before it checks anything: a syntax error
            # further down wins over a duplicate key (or a limit) found first, here too.
            for _ev in events:
                pass
            raise
    except yaml.YAMLError as exc:
        raise _syntax_error(exc) from None


def _syntax_error(exc: yaml.YAMLError) -> errors.InputError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return errors.InputError(f"Error unmarshaling input YAML: {exc.problem or 'syntax error'}{where}")
    return errors.InputError("Error unmarshaling input YAML: syntax error")


def _build_from_events(events: Any) -> list[Branch]:
    E = yaml.events
    docs: list[Branch] = []
    count = 0
    # Stack of open containers: [container, is_mapping, pending key or _NO_KEY, seen keys or None]
    stack: list[list[Any]] = []
    root: object = _NO_KEY
    check_dups = True
    for ev in events:
        cls = type(ev)
        if cls is E.StreamStartEvent or cls is E.StreamEndEvent:
            continue
        if cls is E.DocumentStartEvent:
            root = _NO_KEY
            continue
        if cls is E.DocumentEndEvent:
            docs.append(_document_root(root))
            check_dups = False  # as the node path: only the first document's keys are checked
            continue
        if cls is E.AliasEvent or getattr(ev, "anchor", None) is not None:
            raise _NeedNodes
        if cls is E.MappingEndEvent or cls is E.SequenceEndEvent:
            value = stack.pop()[0]
        else:
            top = stack[-1] if stack else None
            is_key = top is not None and top[1] and top[2] is _NO_KEY
            if top is not None and not is_key:  # the node path counts values and items, not keys or roots
                count += 1
                if count > MAX_NODES:
                    raise errors.LimitExceeded(f"YAML document expands to more than {MAX_NODES} nodes (alias bomb?)")
                if len(stack) + 1 > MAX_DEPTH:
                    raise errors.LimitExceeded(f"YAML nesting deeper than {MAX_DEPTH} levels")
        if cls is E.MappingEndEvent or cls is E.SequenceEndEvent:
            pass
        elif cls is E.ScalarEvent:
            if is_key:
                line = ev.start_mark.line + 1
                key = _scalar_from_event(ev, line)
                if not isinstance(key, str):
                    raise errors.InputError(f"line {line}: mapping key is not a string")
                assert top is not None  # is_key implies an open mapping
                if top[3] is not None:
                    if key in top[3]:
                        raise errors.InputError(f"line {line}: mapping key {key!r} already defined at line {top[3][key]}")
                    top[3][key] = line
                top[2] = key
                continue
            if not stack:  # a scalar document: only an empty (null) one is accepted, as an empty map
                if not (_event_tag(ev) == _T + "null" and ev.value in ("", "~", "null", "Null", "NULL")):
                    raise errors.InputError("Error unmarshaling input YAML: YAML documents that are values are not supported")
                root = Branch()
                continue
            value = _scalar_from_event(ev, ev.start_mark.line + 1)
        elif cls is E.MappingStartEvent or cls is E.SequenceStartEvent:
            if is_key:
                raise errors.InputError(f"line {ev.start_mark.line + 1}: mapping keys must be strings")
            is_map = cls is E.MappingStartEvent
            if not stack and not is_map:
                raise errors.InputError("Error unmarshaling input YAML: YAML documents that are sequences are not supported")
            stack.append([Branch() if is_map else [], is_map, _NO_KEY, {} if is_map and check_dups else None])
            continue
        else:  # pragma: no cover - no other event kinds exist
            raise errors.InputError("unsupported YAML event")
        if not stack:
            root = value
        elif stack[-1][1]:
            top = stack[-1]
            top[0].append((top[2], value))
            top[2] = _NO_KEY
        else:
            stack[-1][0].append(value)
    return docs


_NO_KEY = object()


def _document_root(root: object) -> Branch:
    return root if isinstance(root, Branch) else Branch()


def _pyyaml_loaded() -> bool:
    return yaml is not None or "yaml" in sys.modules


FAST_MAX_BYTES = 1 << 20  # larger files go to libyaml's event stream, which is faster for them


def load_plain(data: bytes) -> list[Branch]:
    text = _decode(data)
    want_comments = "#" in text
    # Only while PyYAML is not loaded: once it is (kustomize's ResourceList), libyaml's events are
    # cheaper per file than the pure-Python reader plus its check.
    if not want_comments and len(data) <= FAST_MAX_BYTES and not _pyyaml_loaded():
        from . import yaml_fast

        docs = yaml_fast.read(text, resolve_plain, MAX_DEPTH // 2)
        # Accepted only when emitting it gives back these very bytes (see yaml_fast's docstring).
        if docs is not None and emit_plain(docs) == data:
            return docs
    if not want_comments:
        try:
            return _docs_from_events(text)
        except _NeedNodes:
            pass
    return _docs_from_nodes(text, want_comments)


def _docs_from_nodes(text: str, want_comments: bool) -> list[Branch]:
    _pyyaml()
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise _syntax_error(exc) from None
    docs: list[Branch] = []
    builder = _Builder(check_dups=True, want_positions=want_comments)
    for i, node in enumerate(nodes):
        builder.check_dups = i == 0
        builder.doc = i
        if node is None:
            br = Branch()
        elif isinstance(node, yaml.MappingNode):
            br = builder.mapping(node, 1, False)
        elif isinstance(node, yaml.ScalarNode) and node.tag == _T + "null" and node.value in ("", "~", "null", "Null", "NULL"):
            br = Branch()
        elif isinstance(node, yaml.SequenceNode):
            raise errors.InputError("Error unmarshaling input YAML: YAML documents that are sequences are not supported")
        else:
            raise errors.InputError("Error unmarshaling input YAML: YAML documents that are values are not supported")
        docs.append(br)
    if want_comments and docs:
        _attach_comments(text, docs, nodes, builder.items, builder.spans)
    return docs


def _attach_comments(text: str, docs: list[Branch], nodes: list, items: list[_Item], spans: list[tuple[int, int, int, int]]) -> None:  # type: ignore[type-arg]
    comments = _find_comments_fast(text, spans)
    if not comments:
        return
    # document separators: lines starting with --- split comments between documents
    import bisect

    seps = [i for i, ln in enumerate(_split_lines(text)) if ln.startswith("---") or ln.startswith("...")]
    by_start = sorted(items, key=lambda it: (it.line, it.col))
    starts = [(it.line, it.col) for it in by_start]
    by_end = sorted((it for it in items if it.leaf), key=lambda it: (it.end, it.depth))
    ends = [it.end for it in by_end]

    inserts: dict[int, tuple[list, dict[int, list[Comment]]]] = {}  # type: ignore[type-arg]

    def add(container: list, index: int, c: Comment) -> None:  # type: ignore[type-arg]
        entry = inserts.setdefault(id(container), (container, {}))
        entry[1].setdefault(index, []).append(c)

    lead_sep = bool(seps) and _first_doc_starts_after_sep(text, seps[0])

    def doc_index(line: int) -> int:
        n = sum(1 for sp in seps if sp < line) - (1 if lead_sep else 0)
        return max(0, min(n, len(docs) - 1))

    for line, col, ctext, trailing in comments:
        if trailing:
            # items starting on this line before the comment, deepest first
            cands = [it for it in by_start[bisect.bisect_left(starts, (line, -1)) : bisect.bisect_left(starts, (line, col))]]
            if cands:
                it = max(cands, key=lambda x: x.depth)
                if it.is_scalar and it.scalar_line == line:
                    target = it
                    # `- k: v # c`: yaml.v3 gives it to the list item, so sops stores it in the list
                    seq_item = [x for x in cands if not isinstance(x.container, Branch)]
                    if seq_item and it.index == 0 and isinstance(it.container, Branch):
                        target = max(seq_item, key=lambda x: x.depth)
                    add(target.container, target.index, Comment(ctext, inline=True))
                else:
                    add(it.container, it.index, Comment(ctext))
                continue
        # own-line comment (or trailing with no item on its line)
        di = doc_index(line)
        ni = bisect.bisect_right(starts, (line, 1 << 30))
        nxt = by_start[ni] if ni < len(by_start) else None
        if nxt is not None and nxt.doc != di:
            nxt = None
        pi = bisect.bisect_right(ends, (line, col)) - 1
        prev = by_end[pi] if pi >= 0 else None
        if prev is not None:
            # by_end is ordered by (end, depth): prev is already the deepest item ending there
            if prev.doc != di:
                prev = None
        if nxt is not None and (col <= nxt.col or trailing or prev is None):
            add(nxt.container, nxt.index, Comment(ctext))
            continue
        if prev is not None:
            if nxt is None:
                # end of the document: the comment closes every block indented deeper than it
                while prev.parent is not None and prev.col > col:
                    prev = prev.parent
            add(prev.container, prev.index + 1, Comment(ctext))
            continue
        br = docs[di]
        add(br, len(br), Comment(ctext))

    for container, idx_map in inserts.values():
        if not idx_map:
            continue
        new: list = []  # type: ignore[type-arg]
        is_branch = isinstance(container, Branch)
        for i in range(len(container) + 1):
            for c in idx_map.get(i, ()):
                new.append((c, None) if is_branch else c)
            if i < len(container):
                new.append(container[i])
        container[:] = new


def _first_doc_starts_after_sep(text: str, sep_line: int) -> bool:
    lines = _split_lines(text)
    for ln in lines[:sep_line]:
        s = ln.strip()
        if s and not s.startswith("#") and not s.startswith("%"):
            return False
    return True


def load_encrypted(data: bytes) -> tuple[list[Branch], Branch]:
    docs = load_plain(data)
    return _common.split_metadata_branch(docs)


def has_metadata(data: bytes) -> bool:
    return _common.has_sops_key(load_plain, data)


# ----------------------------------------------------------------------------------------------
# emission (yaml.v3 emitter, restricted to sops trees)

_BASE60_RE = r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$"
_OLD_BOOL = frozenset("y Y yes Yes YES on On ON n N no No NO off Off OFF".split())
_BREAK_CHARS = "\r\n\x85\u2028\u2029"


def _printable(ch: str) -> bool:
    o = ord(ch)
    return o == 0x0A or 0x20 <= o <= 0x7E or 0xA0 <= o <= 0xD7FF or (0xE000 <= o <= 0xFFFD and o != 0xFEFF)


def _analyze(value: str) -> tuple[bool, bool, bool, bool]:
    """libyaml analyze_scalar: (multiline, block_plain_allowed, single_quoted_allowed, block_allowed)."""
    if not value:
        return False, True, True, False
    block_ind = False
    line_breaks = special = tabs = False
    leading_space = leading_break = trailing_space = trailing_break = False
    break_space = space_break = False
    prev_space = prev_break = False
    if value.startswith("---") or value.startswith("..."):
        block_ind = True
    preceded_ws = True
    n = len(value)
    for i, ch in enumerate(value):
        followed_ws = i + 1 >= n or value[i + 1] in " \t\r\n\x85\u2028\u2029"
        if i == 0:
            if ch in "#,[]{}&*!|>'\"%@`":
                block_ind = True
            elif ch in "?:":
                if followed_ws:
                    block_ind = True
            elif ch == "-":
                if followed_ws:
                    block_ind = True
        else:
            if ch == ":":
                if followed_ws:
                    block_ind = True
            elif ch == "#":
                if preceded_ws:
                    block_ind = True
        if ch == "\t":
            tabs = True
        elif not _printable(ch):
            special = True
        if ch == " ":
            if i == 0:
                leading_space = True
            if i == n - 1:
                trailing_space = True
            if prev_break:
                break_space = True
            prev_space, prev_break = True, False
        elif ch in _BREAK_CHARS:
            line_breaks = True
            if i == 0:
                leading_break = True
            if i == n - 1:
                trailing_break = True
            if prev_space:
                space_break = True
            prev_space, prev_break = False, True
        else:
            prev_space = prev_break = False
        preceded_ws = ch in " \t\r\n\x85\u2028\u2029"
    plain = single = block = True
    if leading_space or leading_break or trailing_space or trailing_break:
        plain = False
    if trailing_space:
        block = False
    if break_space:
        plain = single = False
    if space_break or tabs or special:
        plain = single = False
    if space_break or special:
        block = False
    if line_breaks:
        plain = False
    if block_ind:
        plain = False
    return line_breaks, plain, single, block


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
    text = _dollar(text)
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
    groups: list[tuple[list[str], list[str], object, object]] = []
    head: list[str] = []
    inline: list[str] = []
    for k, v in branch:
        if isinstance(k, Comment):
            (inline if k.inline else head).append(k.text)
        else:
            groups.append((head, inline, k, v))
            head, inline = [], []
    if head or inline:
        groups.append((head + inline, [], None, None))
    return groups


def _split_comments_seq(seq: list) -> list[tuple[list[str], list[str], object, object]]:  # type: ignore[type-arg]
    groups: list[tuple[list[str], list[str], object, object]] = []
    head: list[str] = []
    inline: list[str] = []
    for v in seq:
        if isinstance(v, Comment):
            (inline if v.inline else head).append(v.text)
        else:
            groups.append((head, inline, True, v))
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
    if depth > MAX_DEPTH * 2:
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


def _write_container_comments_only(w: _Writer, value: object, indent: int) -> None:
    comments = [k.text for k, _ in value] if isinstance(value, Branch) else [c.text for c in value]  # type: ignore[attr-defined]
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


def _write_seq(w: _Writer, seq: list, indent: int, depth: int) -> None:  # type: ignore[type-arg]
    if depth > MAX_DEPTH * 2:
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
