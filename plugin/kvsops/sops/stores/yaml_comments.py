"""YAML comments: recovered from the source text (the ``#`` outside every scalar's span) and
attached to the tree with a model of yaml.v3's head/line/foot rules, as sops keeps them. Pure."""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from ..tree import Branch, Comment

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .yaml_load import Item


def split_lines(text: str) -> list[str]:
    """Lines as YAML counts them (comment paths only: ``re`` is imported there)."""
    import re

    return re.split(r"\r\n|\r|\n|\x85|\u2028|\u2029", text)


def find_comments(text: str, spans: list[tuple[int, int, int, int]]) -> list[tuple[int, int, str, bool]]:
    """Comments are the ``#`` outside every scalar's source span, at a line start or after a blank."""

    spans = sorted(set(spans))
    starts = [(a, b) for a, b, _, _ in spans]
    out: list[tuple[int, int, str, bool]] = []
    for lineno, line in enumerate(split_lines(text)):
        h = line.find("#")
        while h >= 0:
            if h == 0 or line[h - 1] in " \t":
                i = bisect_right(starts, (lineno, h)) - 1
                inside = False
                if i >= 0:
                    a, b, c, d = spans[i]
                    inside = (a, b) <= (lineno, h) < (c, d)
                if not inside:
                    out.append((lineno, h, line[h + 1 :], bool(line[:h].strip())))
                    break
            h = line.find("#", h + 1)
    return out


def attach_comments(text: str, docs: list[Branch], items: list[Item], spans: list[tuple[int, int, int, int]]) -> None:
    comments = find_comments(text, spans)
    if not comments:
        return
    place = _Placement(text, docs, items)
    for line, col, ctext, trailing in comments:
        if not (trailing and place.line_comment(line, col, ctext)):
            place.own_line(line, col, ctext, trailing)
    place.apply()


class _Placement:
    """Where comments go: the entries ordered by where they start (what follows a comment) and,
    for leaves, by where they end (what a comment follows); the document separators; and the
    comments to insert, by container and index."""

    def __init__(self, text: str, docs: list[Branch], items: list[Item]) -> None:
        self.docs = docs
        # document separators: lines starting with --- split comments between documents
        self.seps = [i for i, ln in enumerate(split_lines(text)) if ln.startswith("---") or ln.startswith("...")]
        self.lead_sep = bool(self.seps) and _first_doc_starts_after_sep(text, self.seps[0])
        self.by_start = sorted(items, key=lambda it: (it.line, it.col))
        self.starts = [(it.line, it.col) for it in self.by_start]
        self.by_end = sorted((it for it in items if it.leaf), key=lambda it: (it.end, it.depth))
        self.ends = [it.end for it in self.by_end]
        self.inserts: dict[int, tuple[list[Any], dict[int, list[Comment]]]] = {}

    def add(self, container: list[Any], index: int, c: Comment) -> None:
        entry = self.inserts.setdefault(id(container), (container, {}))
        entry[1].setdefault(index, []).append(c)

    def doc_index(self, line: int) -> int:
        n = sum(1 for sp in self.seps if sp < line) - (1 if self.lead_sep else 0)
        return max(0, min(n, len(self.docs) - 1))

    def line_comment(self, line: int, col: int, ctext: str) -> bool:
        """A comment after an entry on its line: it belongs to the deepest entry starting there
        (False when none does)."""
        cands = self.by_start[bisect_left(self.starts, (line, -1)) : bisect_left(self.starts, (line, col))]
        if not cands:
            return False
        it = max(cands, key=_depth)
        if it.is_scalar and it.scalar_line == line:
            target = it
            # `- k: v # c`: yaml.v3 gives it to the list item, so sops stores it in the list
            seq_item = [x for x in cands if not isinstance(x.container, Branch)]
            if seq_item and it.index == 0 and isinstance(it.container, Branch):
                target = max(seq_item, key=_depth)
            self.add(target.container, target.index, Comment(ctext, inline=True))
        else:
            self.add(it.container, it.index, Comment(ctext))
        return True

    def own_line(self, line: int, col: int, ctext: str, trailing: bool) -> None:
        """A comment on its own line (or after a line with no entry): the head of the next entry,
        else the foot of the previous one, else the end of its document."""
        di = self.doc_index(line)
        nxt = self.next_item(line, di)
        prev = self.prev_leaf(line, col, di)
        if nxt is not None and (col <= nxt.col or trailing or prev is None):
            self.add(nxt.container, nxt.index, Comment(ctext))
        elif prev is not None:
            if nxt is None:
                # end of the document: the comment closes every block indented deeper than it
                while prev.parent is not None and prev.col > col:
                    prev = prev.parent
            self.add(prev.container, prev.index + 1, Comment(ctext))
        else:
            br = self.docs[di]
            self.add(br, len(br), Comment(ctext))

    def next_item(self, line: int, doc: int) -> Item | None:
        """The first entry starting after ``line``, in the same document."""
        ni = bisect_right(self.starts, (line, 1 << 30))
        nxt = self.by_start[ni] if ni < len(self.by_start) else None
        return nxt if nxt is not None and nxt.doc == doc else None

    def prev_leaf(self, line: int, col: int, doc: int) -> Item | None:
        """The last leaf ending before ``(line, col)``, in the same document; by_end is ordered by
        (end, depth), so it is already the deepest one ending there."""
        pi = bisect_right(self.ends, (line, col)) - 1
        prev = self.by_end[pi] if pi >= 0 else None
        return prev if prev is not None and prev.doc == doc else None

    def apply(self) -> None:
        for container, idx_map in self.inserts.values():
            if idx_map:
                _insert(container, idx_map)


def _depth(it: Item) -> int:
    return it.depth


def _insert(container: list[Any], idx_map: dict[int, list[Comment]]) -> None:
    """Put the comments in ``container`` before the entries at their indexes (at the end: after)."""
    new: list[Any] = []
    is_branch = isinstance(container, Branch)
    for i in range(len(container) + 1):
        for c in idx_map.get(i, ()):
            new.append((c, None) if is_branch else c)
        if i < len(container):
            new.append(container[i])
    container[:] = new


def _first_doc_starts_after_sep(text: str, sep_line: int) -> bool:
    lines = split_lines(text)
    for ln in lines[:sep_line]:
        s = ln.strip()
        if s and not s.startswith("#") and not s.startswith("%"):
            return False
    return True
