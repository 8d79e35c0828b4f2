"""YAML loading: PyYAML's parser (libyaml when available) into sops' tree, with yaml.v3's scalar
resolution (:mod:`.yaml_resolve`), duplicate-key checks and limits. Pure.

Two builders give the same values, checks and errors: from the parser's events (no comments, no
anchors: the common case, and the lighter one on memory), and from composed nodes (anchors and
aliases, and the positions :mod:`.yaml_comments` needs).
"""

from __future__ import annotations

import sys

from ... import errors
from ..tree import Branch
from .yaml_resolve import TAG, resolve_scalar

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..tree import Scalar

MAX_NODES = 1_000_000
MAX_DEPTH = 200
# sops' words (go-yaml's) for a document that is not a mapping
_SEQUENCE_DOCUMENT = "Error unmarshaling input YAML: YAML documents that are sequences are not supported"
_VALUE_DOCUMENT = "Error unmarshaling input YAML: YAML documents that are values are not supported"

# PyYAML (with libyaml) is imported on first use: its import is the largest single start-up cost
# of a decrypt (module code plus a dozen regexes), and a canonical sops file is read by
# kvsops.sops.stores.yaml_fast without it (see yaml_store.load_plain).
yaml: Any = None
_Loader: Any = None
_IMPLICIT: Any = None


def pyyaml() -> Any:
    global yaml, _Loader, _IMPLICIT
    if yaml is None:
        import yaml as pyyaml

        _Loader = getattr(pyyaml, "CSafeLoader", None) or pyyaml.SafeLoader  # libyaml when available
        _IMPLICIT = pyyaml.resolver.Resolver()
        yaml = pyyaml
    return yaml


def _is_implicit(node: yaml.ScalarNode) -> bool:
    """PyYAML fills in implicit tags; only a tag it would not have chosen itself was written."""
    same: bool = node.tag == _IMPLICIT.resolve(yaml.ScalarNode, node.value, (True, False))
    return same


def _resolve_node(node: yaml.ScalarNode, line: int) -> Scalar:
    return resolve_scalar(node.tag, node.value, node.style, _is_implicit(node), line)


class Item:
    """A mapping entry or sequence element, located in the source."""

    __slots__ = (
        "container", "index", "line", "col", "end", "depth", "scalar_line", "is_scalar", "leaf", "doc", "parent",
    )

    def __init__(self, container: list[Any], index: int, line: int, col: int, depth: int) -> None:
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
        self.parent: Item | None = None


class Builder:
    def __init__(self, check_dups: bool, want_positions: bool) -> None:
        self.count = 0
        self.check_dups = check_dups
        self.want = want_positions
        self.items: list[Item] = []
        self.visited: set[int] = set()
        self.doc = 0
        self.parent: Item | None = None
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
                start, end = node.start_mark, node.end_mark
                self.spans.append((start.line, start.column, end.line, end.column))
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

    def _track(self, container: Any, line: int, col: int, depth: int, vnode: Any) -> Item:
        """Record the position of the entry about to be appended to ``container`` (for comments)."""
        it = Item(container, len(container), line, col, depth)
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


def decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.InputError(f"YAML input is not valid UTF-8 (byte offset {exc.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


class NeedNodes(Exception):
    """The event stream has anchors or aliases: build from composed nodes instead."""


def _event_tag(ev: Any) -> str:
    tag: str | None = ev.tag
    if tag is None or tag == "!":  # what the composer does: the resolver picks the implicit tag
        resolved: str = _IMPLICIT.resolve(yaml.ScalarNode, ev.value, ev.implicit)
        return resolved
    return tag


def _scalar_from_event(ev: Any, line: int) -> Scalar:
    if ev.style:  # quoted or block: resolve_scalar decides from the tag alone
        return resolve_scalar(_event_tag(ev), ev.value, ev.style, False, line)
    # Plain: the resolver's answer with implicit=(True, *) does not depend on the second flag, so
    # one call gives both the composer's tag and _is_implicit's reference tag.
    plain_tag = _IMPLICIT.resolve(yaml.ScalarNode, ev.value, (True, False))
    tag = ev.tag
    if tag is None or tag == "!":
        tag = plain_tag if ev.implicit[0] else _IMPLICIT.resolve(yaml.ScalarNode, ev.value, ev.implicit)
    return resolve_scalar(tag, ev.value, ev.style, tag == plain_tag, line)


def docs_from_events(text: str) -> list[Branch]:
    """The documents of a file without comments, built straight from the parser's events.

    The same values, checks and errors as composing nodes and walking them with :class:`Builder`
    (which the file with comments needs, for positions), without holding a node and two marks per
    scalar for the whole file: for a 100k-value file that node tree is most of the peak memory.
    Anchors and aliases are left to the node path (:class:`NeedNodes`)."""
    pyyaml()
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
    return _EventTree().build(events)


_NO_KEY = object()


class _MapFrame:
    """An open mapping: its Branch, the key read and not yet given a value (``_NO_KEY`` while the
    next scalar is a key), and the keys seen with their lines (None: duplicates not checked)."""

    __slots__ = ("value", "key", "seen")

    def __init__(self, seen: dict[str, int] | None) -> None:
        self.value = Branch()
        self.key: object = _NO_KEY
        self.seen = seen

    def add(self, value: object) -> None:
        self.value.append((self.key, value))
        self.key = _NO_KEY


class _SeqFrame:
    """An open sequence; its ``key`` is never ``_NO_KEY``: no scalar in it is a key."""

    __slots__ = ("value", "key")

    def __init__(self) -> None:
        self.value: list[object] = []
        self.key: object = None

    def add(self, value: object) -> None:
        self.value.append(value)


class _EventTree:
    """The documents of an event stream: a stack of open containers, one handler per event kind.

    Checks in the node path's order: anchors and aliases first (:class:`NeedNodes`), then keys,
    then the limits on values and items (keys and document roots are not counted)."""

    __slots__ = ("docs", "stack", "root", "check_dups", "count")

    def __init__(self) -> None:
        self.docs: list[Branch] = []
        self.stack: list[_MapFrame | _SeqFrame] = []
        self.root: object = _NO_KEY
        self.check_dups = True  # as the node path: only the first document's keys are checked
        self.count = 0

    def build(self, events: Any) -> list[Branch]:
        E = yaml.events
        handlers = {
            E.StreamStartEvent: _skip, E.StreamEndEvent: _skip, E.AliasEvent: _alias,
            E.DocumentStartEvent: self.doc_start, E.DocumentEndEvent: self.doc_end,
            E.ScalarEvent: self.scalar, E.MappingStartEvent: self.map_start,
            E.SequenceStartEvent: self.seq_start, E.MappingEndEvent: self.end, E.SequenceEndEvent: self.end,
        }
        for ev in events:
            handlers[type(ev)](ev)
        return self.docs

    def doc_start(self, ev: Any) -> None:
        self.root = _NO_KEY

    def doc_end(self, ev: Any) -> None:
        self.docs.append(_document_root(self.root))
        self.check_dups = False

    def scalar(self, ev: Any) -> None:
        if ev.anchor is not None:
            raise NeedNodes
        if not self.stack:
            self.root = _root_scalar(ev)
            return
        top = self.stack[-1]
        if top.key is _NO_KEY:
            assert isinstance(top, _MapFrame)
            _set_key(top, ev)
            return
        self.tick()
        top.add(_scalar_from_event(ev, ev.start_mark.line + 1))

    def map_start(self, ev: Any) -> None:
        self.open(ev)
        self.stack.append(_MapFrame({} if self.check_dups else None))

    def seq_start(self, ev: Any) -> None:
        if not self.stack:
            if ev.anchor is not None:
                raise NeedNodes
            raise errors.InputError(_SEQUENCE_DOCUMENT)
        self.open(ev)
        self.stack.append(_SeqFrame())

    def open(self, ev: Any) -> None:
        if ev.anchor is not None:
            raise NeedNodes
        if self.stack:
            if self.stack[-1].key is _NO_KEY:
                raise errors.InputError(f"line {ev.start_mark.line + 1}: mapping keys must be strings")
            self.tick()

    def end(self, ev: Any) -> None:
        value = self.stack.pop().value
        if self.stack:
            self.stack[-1].add(value)
        else:
            self.root = value

    def tick(self) -> None:
        """One more value or item (the node path counts those, not keys or roots)."""
        self.count += 1
        if self.count > MAX_NODES:
            raise errors.LimitExceeded(f"YAML document expands to more than {MAX_NODES} nodes (alias bomb?)")
        if len(self.stack) + 1 > MAX_DEPTH:
            raise errors.LimitExceeded(f"YAML nesting deeper than {MAX_DEPTH} levels")


def _skip(ev: Any) -> None:
    pass


def _alias(ev: Any) -> None:
    raise NeedNodes


def _set_key(top: _MapFrame, ev: Any) -> None:
    line = ev.start_mark.line + 1
    key = _scalar_from_event(ev, line)
    if not isinstance(key, str):
        raise errors.InputError(f"line {line}: mapping key is not a string")
    if top.seen is not None:
        if key in top.seen:
            raise errors.InputError(f"line {line}: mapping key {key!r} already defined at line {top.seen[key]}")
        top.seen[key] = line
    top.key = key


def _root_scalar(ev: Any) -> Branch:
    """A scalar document: only an empty (null) one is accepted, as an empty map."""
    if not (_event_tag(ev) == TAG + "null" and ev.value in ("", "~", "null", "Null", "NULL")):
        raise errors.InputError(_VALUE_DOCUMENT)
    return Branch()


def _document_root(root: object) -> Branch:
    return root if isinstance(root, Branch) else Branch()


def pyyaml_loaded() -> bool:
    return yaml is not None or "yaml" in sys.modules


def docs_from_nodes(text: str, want_comments: bool) -> list[Branch]:
    pyyaml()
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise _syntax_error(exc) from None
    docs: list[Branch] = []
    builder = Builder(check_dups=True, want_positions=want_comments)
    for i, node in enumerate(nodes):
        builder.check_dups = i == 0
        builder.doc = i
        if node is None:
            br = Branch()
        elif isinstance(node, yaml.MappingNode):
            br = builder.mapping(node, 1, False)
        elif (isinstance(node, yaml.ScalarNode) and node.tag == TAG + "null"
              and node.value in ("", "~", "null", "Null", "NULL")):
            br = Branch()
        elif isinstance(node, yaml.SequenceNode):
            raise errors.InputError(_SEQUENCE_DOCUMENT)
        else:
            raise errors.InputError(_VALUE_DOCUMENT)
        docs.append(br)
    if want_comments and docs:
        from .yaml_comments import attach_comments

        attach_comments(text, docs, builder.items, builder.spans)
    return docs
