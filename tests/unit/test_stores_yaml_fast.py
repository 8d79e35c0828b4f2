"""yaml_fast reads canonical sops YAML without PyYAML; load_plain accepts its tree only when
re-emitting it gives back the input bytes. Whatever it accepts must be exactly what the PyYAML
path builds: checked on real files, on snippets at the edges of the subset, on trees emitted by our
writer (hypothesis), and on mutated encrypted files."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from kvsops import errors
from kvsops.sops.stores import yaml_fast, yaml_load, yaml_store as y
from kvsops.sops.tree import Branch

HERE = Path(__file__).resolve().parent.parent
EXAMPLES = HERE.parent / "examples"  # sops-encrypted files (demo key), written by the real sops
FILES = [p for d in (HERE / "vectors", HERE / "integration/helm_chart", EXAMPLES)
         for p in sorted(d.rglob("*.y*ml")) if p.is_file()]


def _fast(text: str) -> list[Branch] | None:
    docs = yaml_fast.read(text, y.resolve_plain, y.MAX_DEPTH // 2)
    return docs if docs is not None and y.emit_plain(docs) == text.encode() else None


def _slow(text: str) -> object:
    try:
        return yaml_load.docs_from_events(text)
    except yaml_load.NeedNodes:
        return yaml_load.docs_from_nodes(text, "#" in text)
    except errors.KvsopsError as exc:
        return ("error", type(exc).__name__, str(exc))


def _check(text: str) -> bool:
    """True when the fast path accepted the text (and then agreed with the PyYAML path)."""
    got = _fast(text)
    if got is None:
        return False
    assert got == _slow(text), text
    return True


SNIPPETS = [
    "a: 1\n", "a: b\nc:\n    d: e\n    f:\n        - 1\n        - x: y\n          z: w\n",
    "a:\n- 1\n- 2\n", "a: {}\nb: []\n", "a:\n", "a:\nb: 1\n", "'a b': 1\n\"c\": 2\n",
    "a: 'it''s'\n", "a: \"q\\\"d\\\\e\\n\"\n", "a: \"\\u00e9\"\n", "a: |\n    x\n    y\n", "a: |-\n    x\n",
    "a: |+\n    x\n\n", "a: >\n    x\n", "a: |2\n      x\n", "a: 1\na: 2\n", "1: a\n", "true: a\n",
    "a: &x 1\nb: *x\n", "a: !!str 1\n", "a: [1, 2]\n", "a: {b: c}\n", "- a\n", "a\n", "a: b: c\n",
    "a: b\n  c\n", "a: 18446744073709551616\n", "a: 0x10\nb: 1e3\nc: .inf\nd: ~\ne: null\nf: yes\n",
    "a: 2001-12-14\nb: '2001-12-14'\n", "a:\n    - - 1\n", "a:\n    -\n        b: 1\n", "\ufeffa: 1\n",
    "a: 1", "a: 1\n\n", "a: 1 \n", "---\na: 1\n", "a: 1\n---\nb: 2\n", "a:\tb\n", "a: 'x\n    y'\n",
    "k: v\n" * 3, "a:\n    b:\n        c:\n            d: 1\n", "a: -1\nb: -x\nc: - x\n", "a: ?x\n",
    "a: x:y\n", "a::b\n", "a: |\n    x\n\n    y\n", "a: |\n      lead\n    back\n",
]


@pytest.mark.parametrize("text", SNIPPETS)
def test_snippets(text: str) -> None:
    _check(text)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(HERE.parent)))
def test_files(path: Path) -> None:
    _check(path.read_text("utf-8"))


def _fast_layout(text: str) -> bool:
    """Comment-free, one document, no sequence item that is itself a sequence: what the fast reader
    takes (the others are left to PyYAML on purpose: correct, only slower)."""
    return "#" not in text and "\n---" not in text and "- - " not in text


def test_sops_files_take_the_fast_path() -> None:
    enc = [p for p in FILES if "ENC[AES256_GCM" in p.read_text("utf-8") and _fast_layout(p.read_text("utf-8"))]
    assert enc, "no comment-free encrypted YAML in the test corpora"
    assert all(_check(p.read_text("utf-8")) for p in enc), [p.name for p in enc if not _fast(p.read_text("utf-8"))]


_scalars = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.sampled_from(["", "1", "true", "null", "~", "0x1f", "1e3", "-", "- x", "a: b", "'q'", '"d"', "x\ny",
                     "x\n", "2001-12-14", "3.11.0", "ENC[AES256_GCM,data:abc=,iv:x,tag:y,type:str]", " s", "s "]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)
_keys = st.one_of(st.text(min_size=1, max_size=8), st.sampled_from(["a", "sops", "1", "true", "k: v", "-x"]))
_trees = st.recursive(
    _scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4),
        st.dictionaries(_keys, kids, max_size=4).map(lambda d: Branch(d.items())),
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _trees, min_size=1, max_size=5))
def test_emitted_trees(tree: dict[str, object]) -> None:
    doc = Branch(tree.items())
    try:
        text = y.emit_plain([doc]).decode("utf-8")
    except (errors.KvsopsError, UnicodeDecodeError):
        return
    _check(text)


def test_mutated_encrypted_files() -> None:
    rng = random.Random(8)
    enc = [p.read_text("utf-8") for p in FILES if "ENC[AES256_GCM" in p.read_text("utf-8")]
    alphabet = [" ", "\n", ":", "-", "'", '"', "|", "{", "}", "a", "1", "    ", "- ", ": "]
    accepted = 0
    for _ in range(1500):
        text = rng.choice(enc)
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(text))
            op = rng.random()
            if op < 0.4:
                text = text[:i] + rng.choice(alphabet) + text[i:]
            elif op < 0.8:
                text = text[:i] + text[i + rng.randint(1, 4):]
            else:
                text = text[:i] + rng.choice(alphabet) + text[i + 1:]
        accepted += _check(text)
    assert accepted  # some mutations (inside values) stay canonical and must agree


def test_load_plain_without_pyyaml_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = [False]
    monkeypatch.setattr(yaml_load, "pyyaml_loaded", lambda: loaded[0])
    real = yaml_load.pyyaml

    def load() -> object:
        loaded[0] = True
        return real()

    monkeypatch.setattr(yaml_load, "pyyaml", load)
    assert y.load_plain(b"a: 1\nb:\n    - x\n") == [Branch([("a", 1), ("b", ["x"])])]
    assert not loaded[0]  # answered by the fast reader
    assert y.load_plain(b"a: [1]\n") == [Branch([("a", [1])])]  # flow style: PyYAML
    assert loaded[0]
    assert y.load_plain(b"c: 1\n") == [Branch([("c", 1)])]  # PyYAML loaded: libyaml's events
