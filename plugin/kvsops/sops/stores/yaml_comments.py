"""YAML comments: recovered from the source text (the ``#`` outside every scalar's span) and
attached to the tree with a model of yaml.v3's head/line/foot rules, as sops keeps them. Pure."""

from __future__ import annotations

from ..tree import Branch, Comment

TYPE_CHECKING = False
if TYPE_CHECKING:
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
    import bisect

    for lineno, line in enumerate(split_lines(text)):
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


def attach_comments(text: str, docs: list[Branch], nodes: list, items: list[Item], spans: list[tuple[int, int, int, int]]) -> None:  # type: ignore[type-arg]
    comments = find_comments(text, spans)
    if not comments:
        return
    # document separators: lines starting with --- split comments between documents
    import bisect

    seps = [i for i, ln in enumerate(split_lines(text)) if ln.startswith("---") or ln.startswith("...")]
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
    lines = split_lines(text)
    for ln in lines[:sep_line]:
        s = ln.strip()
        if s and not s.startswith("#") and not s.startswith("%"):
            return False
    return True
