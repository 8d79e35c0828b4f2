"""Tree paths (``["a"]["b"][0]``) for --extract, set and unset, with sops' semantics. Pure."""

from __future__ import annotations

from kvsops import errors
from kvsops.sops.tree import Branch, Comment

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TypeVar

    _Node = TypeVar("_Node")

PathPart = "str | int"


def parse(arg: str) -> list[str | int]:
    """sops' parseTreePath: split on ``[``; quoted parts are keys (no escapes), others ints."""
    path: list[str | int] = []
    for comp in arg.split("["):
        if comp == "":
            continue
        if not comp.endswith("]"):
            raise errors.InvalidTreePath(f"path component {comp!r} does not end with ]")
        comp = comp[:-1]
        if comp[:1] in ('"', "'"):
            if len(comp) < 2:
                raise errors.InvalidTreePath("unterminated quoted path component")
            path.append(comp[1:-1])
            continue
        try:
            path.append(_atoi(comp))
        except ValueError:
            raise errors.InvalidTreePath(f"path component {comp!r} is neither a quoted key nor an index") from None
    return path


def _atoi(text: str) -> int:
    body = text[1:] if text[:1] in "+-" else text
    if not body or not body.isascii() or not body.isdigit():
        raise ValueError(text)
    return int(text)


def truncate(doc: Branch, path: list[str | int]) -> object:
    """The value at ``path`` (sops' Truncate); KeyNotFoundInTree when absent."""
    current: object = doc
    for comp in path:
        if isinstance(comp, str):
            if not isinstance(current, Branch) or current.index_of(comp) < 0:
                raise errors.KeyNotFoundInTree(f"component [{comp!r}] not found")
            current = current.get(comp)
        else:
            if not isinstance(current, list) or isinstance(current, Branch):
                raise errors.KeyNotFoundInTree(
                    f"component [{comp}] is an index, but that part of the tree is not a list"
                )
            if not 0 <= comp < len(current):
                raise errors.KeyNotFoundInTree(f"component [{comp}] is out of bounds")
            current = current[comp]
    return current


def equals(a: object, b: object) -> bool:
    """Go ``==`` on interface values: types must match (1 != 1.0, True != 1)."""
    if isinstance(a, Branch) or isinstance(b, Branch):
        return (isinstance(a, Branch) and isinstance(b, Branch) and len(a) == len(b)
                and all(equals(x[0], y[0]) and equals(x[1], y[1]) for x, y in zip(a, b, strict=True)))
    if isinstance(a, list) or isinstance(b, list):
        return (isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
                and all(equals(x, y) for x, y in zip(a, b, strict=True)))
    if isinstance(a, Comment) and isinstance(b, Comment):
        return a.text == b.text
    return type(a) is type(b) and a == b


def _from_path(path: list[str | int], leaf: object) -> object:
    inner = leaf if len(path) == 1 else _from_path(path[1:], leaf)
    return [inner] if isinstance(path[0], int) else Branch([(path[0], inner)])


def set_value(node: object, path: list[str | int], value: object) -> tuple[object, bool]:
    """sops' set: replace or create the value at ``path``; returns (new node, changed)."""
    head = path[0]
    if isinstance(node, Branch):
        if not isinstance(head, str):
            raise errors.InvalidSetFormat(f"index [{head}] used on a mapping")
        i = node.index_of(head)
        if i < 0:
            node.append((head, value if len(path) == 1 else _from_path(path[1:], value)))
            return node, True
        old = node[i][1]
        new, changed = (value, not equals(old, value)) if len(path) == 1 else set_value(old, path[1:], value)
        node[i] = (head, new)
        return node, changed
    if isinstance(node, list):
        if not isinstance(head, int) or head < 0:
            raise errors.InvalidSetFormat(f"key [{head!r}] used on a list")
        if head >= len(node):
            node.append(value if len(path) == 1 else _from_path(path[1:], value))
            return node, True
        if len(path) == 1:
            changed = not equals(node[head], value)
            node[head] = value
            return node, changed
        node[head], changed = set_value(node[head], path[1:], value)
        return node, changed
    new = _from_path(path, value)
    return new, not equals(node, new)


def set_in_document(doc: Branch, path: list[str | int], value: object) -> bool:
    """:func:`set_value` on a document: a mapping, so changed in place; whether the value changed."""
    return set_value(doc, path, value)[1]


def unset_in_document(doc: Branch, path: list[str | int]) -> None:
    """:func:`unset_value` on a document: a mapping, so changed in place."""
    unset_value(doc, path)


def unset_value(node: _Node, path: list[str | int]) -> _Node:
    """sops' unset: remove the key or list item at ``path``; KeyNotFoundInTree when absent."""
    head = path[0]
    if isinstance(node, Branch):
        i = node.index_of(head) if isinstance(head, str) else -1
        if i < 0:
            raise errors.KeyNotFoundInTree(f"key not found: {head!r}")
        if len(path) == 1:
            del node[i]
        else:
            node[i] = (head, unset_value(node[i][1], path[1:]))
        return node
    if isinstance(node, list):
        if not isinstance(head, int) or not 0 <= head < len(node):
            raise errors.KeyNotFoundInTree(f"index {head!r} out of bounds")
        if len(path) == 1:
            del node[head]
        else:
            node[head] = unset_value(node[head], path[1:])
        return node
    raise errors.KeyNotFoundInTree(f"key not found: {head!r} (that part of the tree is a value)")
