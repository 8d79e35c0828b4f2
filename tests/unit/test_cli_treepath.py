"""Tree paths for --extract / set / unset, with sops' semantics (cmd/sops/main.go, sops.go)."""

from __future__ import annotations

import pytest

from kvsops import errors
from kvsops.cli import treepath
from kvsops.cli.commands import json_value
from kvsops.sops.tree import Branch


def doc() -> Branch:
    return Branch([("a", Branch([("b", [1, Branch([("c", "x")])])])), ("n", 1)])


@pytest.mark.parametrize("text,want", [
    ('["a"]["b"][0]', ["a", "b", 0]),
    ("['a'][1]", ["a", 1]),
    ("", []),
    ('["with space"][-1]', ["with space", -1]),
])
def test_parse(text: str, want: list[object]) -> None:
    assert treepath.parse(text) == want


@pytest.mark.parametrize("text", ['["a"', '["a"][x]', "[1.5]", "a", '[""]x'])
def test_parse_errors(text: str) -> None:
    with pytest.raises(errors.InvalidTreePath):
        treepath.parse(text)


def test_truncate() -> None:
    assert treepath.truncate(doc(), ["a", "b", 1, "c"]) == "x"
    for path in (["z"], ["a", "b", 5], ["n", 0], ["a", "b", "c"]):
        with pytest.raises(errors.KeyNotFoundInTree):
            treepath.truncate(doc(), path)


def test_set_creates_replaces_and_reports_changes() -> None:
    d = doc()
    d, changed = treepath.set_value(d, ["n"], 1)
    assert not changed
    d, changed = treepath.set_value(d, ["n"], 1.0)  # Go: float64(1) != int 1
    assert changed and d.get("n") == 1.0 and isinstance(d.get("n"), float)
    d, changed = treepath.set_value(d, ["new", 0, "k"], "v")  # missing parts are created
    assert changed and d.get("new") == [Branch([("k", "v")])]
    d, changed = treepath.set_value(d, ["a", "b", 9], True)  # past the end: appended
    assert d.get("a").get("b")[-1] is True  # type: ignore[union-attr]
    with pytest.raises(errors.InvalidSetFormat):
        treepath.set_value(d, [0], "x")


def test_unset() -> None:
    d = treepath.unset_value(doc(), ["a", "b", 0])
    assert d.get("a").get("b") == [Branch([("c", "x")])]  # type: ignore[union-attr]
    for path in (["zz"], ["a", "b", 7], ["n", "x"]):
        with pytest.raises(errors.KeyNotFoundInTree):
            treepath.unset_value(doc(), path)


def test_equals_is_type_strict() -> None:
    assert not treepath.equals(True, 1) and not treepath.equals(1, 1.0)
    assert treepath.equals(Branch([("a", [1])]), Branch([("a", [1])]))
    assert not treepath.equals(Branch([("a", 1)]), [("a", 1)])


def test_json_values_decode_like_go() -> None:
    assert json_value("5") == 5.0 and isinstance(json_value("5"), float)
    assert json_value('"s"') == "s" and json_value("true") is True and json_value("null") is None
    obj = json_value('{"a": 1, "b": [2.5, {"c": 3}]}')  # sops 3.11: numbers are floats all the way down
    assert obj == Branch([("a", 1.0), ("b", [2.5, Branch([("c", 3.0)])])]) and isinstance(obj.get("a"), float)  # type: ignore[union-attr]
    for bad in ("{", "NaN", "1e999", "'x'", "[1, 2]"):  # an array is refused by sops 3.11 too (7)
        with pytest.raises(errors.InvalidSetFormat):
            json_value(bad)


def test_set_and_unset_in_a_document_change_it_in_place() -> None:
    d = doc()
    assert treepath.set_in_document(d, ["a", "b", 0], 2) is True
    assert treepath.set_in_document(d, ["n"], 1) is False
    assert treepath.truncate(d, ["a", "b", 0]) == 2
    treepath.unset_in_document(d, ["n"])
    assert [k for k, _ in d] == ["a"]
    with pytest.raises(errors.InvalidSetFormat):
        treepath.set_in_document(d, [0], 1)  # a document is a mapping
