"""The YAML store builds comment-free files straight from parser events (less memory than a node
tree); files with comments, anchors or aliases go through composed nodes. Both must give the same
documents, and the same error, for every input: checked here side by side."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvsops import errors
from kvsops.sops.stores import yaml_load, yaml_store as y

HERE = Path(__file__).resolve().parent.parent
CORPORA = [p for d in ("vectors",)
           for p in sorted((HERE / d).rglob("*.y*ml")) if p.is_file()]

SNIPPETS = [
    "", "---\n", "---\n...\n", "a: 1\n", "a: 1\n---\nb: 2\n", "---\na: 1\n---\n---\nb: [1, 2]\n",
    "~\n", "null\n", "!!null null\n", "!!null foo\n", "!!int ''\n", "'null'\n", "1\n", "foo\n", "- a\n- b\n",
    "a: {b: [1, {c: d}], e: []}\nf: {}\n",
    "s: 'single'\nd: \"double\\t\\u00e9\"\nl: |\n  line1\n  line2\nf: >-\n  folded\n  text\n",
    "i: 0x1F\no: 0o17\nold: 017\nb: 0b101\nf: 1.5e3\nn: .nan\ninf: -.inf\nt: true\ny: yes\nno: No\n",
    "ts: 2001-12-14t21:59:43.10-05:00\nd: 2002-12-14\nbad: 2002-13-45\n",
    "big: 18446744073709551616\nneg: -9223372036854775808\nu: 18446744073709551615\n",
    "tagged: !!str 123\nf: !!float 1\nb: !!binary aGVsbG8=\ncustom: !foo bar\nq: !!int '7'\n",
    "? complex\n: value\n'quoted key': 1\n\"k\\u00e9y\": 2\n",
    "a: 1\na: 2\n", "---\na: 1\n---\na: 1\na: 2\n", "a: 1\nb:\n  c: 1\n  c: 2\n",
    "1: x\n", "true: x\n", "null: x\n", "[a]: x\n", "{a: b}: x\n", "a: [1, 2\n", "a: b\n c: d\n",
    "a: 1\nb: 1\na: 2\nc: [\n", "- a\n- [\n", "a:\n  - b: 1\n    b: 2\n", "x: \"\\xff\"\n",
    "list:\n- a\n- - b\n  - c\n-\n- {}\n", "sops:\n    enc: |\n        -----BEGIN-----\n        abc\n    mac: ENC[x]\n",
]


def _outcome(fn, text: str):  # type: ignore[no-untyped-def]
    try:
        return ("ok", fn(text))
    except errors.KvsopsError as exc:
        return ("error", type(exc).__name__, str(exc))


def _nodes(text: str):  # type: ignore[no-untyped-def]
    return yaml_load.docs_from_nodes(text, False)


def _events(text: str):  # type: ignore[no-untyped-def]
    try:
        return yaml_load.docs_from_events(text)
    except yaml_load.NeedNodes:
        # Anchors/aliases: the store falls back to the node path; the public loader must agree.
        return y.load_plain(text.encode())


@pytest.mark.parametrize("text", SNIPPETS)
def test_snippets_same_as_nodes(text: str) -> None:
    assert _outcome(_events, text) == _outcome(_nodes, text)


@pytest.mark.parametrize("path", CORPORA, ids=lambda p: p.name)
def test_corpus_same_as_nodes(path: Path) -> None:
    text = "\n".join(line for line in path.read_text("utf-8").splitlines() if "#" not in line) + "\n"
    assert _outcome(_events, text) == _outcome(_nodes, text)


def test_anchors_and_aliases_use_the_node_path() -> None:
    text = "a: &x {b: 1}\nc: *x\n"
    with pytest.raises(yaml_load.NeedNodes):
        yaml_load.docs_from_events(text)
    assert y.load_plain(text.encode()) == _nodes(text)


def test_limits_match() -> None:
    deep = "a:\n" + "".join("  " * i + "- \n" for i in range(1, y.MAX_DEPTH + 3))
    assert _outcome(_events, deep) == _outcome(_nodes, deep)
    assert _outcome(_events, deep)[0] == "error"


def test_syntax_error_after_a_duplicate_key_wins_as_with_nodes() -> None:
    text = "a: 1\na: 2\nb: [\n"
    assert _outcome(_events, text) == _outcome(_nodes, text)
    assert "unmarshaling" in _outcome(_events, text)[2]
