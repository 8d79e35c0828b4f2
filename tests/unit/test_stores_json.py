from __future__ import annotations

import pytest

from kvsops import errors
from kvsops.sops.stores import json_store as j
from kvsops.sops.stores._common import go_format_g, go_json_float
from kvsops.sops.tree import Branch


def test_order_duplicates_and_numbers() -> None:
    """Every number is a float64, as sops 3.11 decodes JSON (integers too)."""
    (doc,) = j.load_plain(b'{"b": 1, "a": 2, "b": 3.0, "big": 9223372036854775808, "i": 8080, "l": [1, -2]}')
    assert list(doc) == [("b", 1), ("a", 2), ("b", 3.0), ("big", 9.223372036854776e18), ("i", 8080), ("l", [1, -2])]
    assert {type(v) for _k, v in doc if not isinstance(v, list)} == {float}
    assert {type(v) for v in doc.get("l")} == {float}
    with pytest.raises(errors.InputError):
        j.load_plain(b'{"a": 1e400}')


def test_top_level_must_be_object() -> None:
    for bad in (b"[1]", b"1", b"", b'{"a": }'):
        with pytest.raises(errors.InputError):
            j.load_plain(bad)


def test_go_escaping_and_indent() -> None:
    doc = Branch([("h", "<a>&\u2028\u2029\x01\t\n"), ("u", "é😀"), ("e", []), ("o", Branch()), ("n", None)])
    assert j.emit_plain([doc]) == (
        b'{\n\t"h": "\\u003ca\\u003e\\u0026\\u2028\\u2029\\u0001\\t\\n",\n\t"u": "\xc3\xa9\xf0\x9f\x98\x80",\n'
        b'\t"e": [],\n\t"o": {},\n\t"n": null\n}\n'
    )
    assert j.emit_value([1, 2]) == b"[\n\t1,\n\t2\n]"
    assert j.emit_plain([Branch([("a", [1])])], indent=2) == b'{\n  "a": [\n    1\n  ]\n}\n'


@pytest.mark.parametrize(
    "x,js,g",
    [(1.0, "1", "1"), (1e-7, "1e-7", "1e-07"), (1e21, "1e+21", "1e+21"), (1234568000.0, "1234568000", "1.234568e+09"),
     (0.000001, "0.000001", "1e-06"), (123456.7, "123456.7", "123456.7"), (-0.5, "-0.5", "-0.5")],
)
def test_go_floats(x: float, js: str, g: str) -> None:
    assert go_json_float(x) == js
    assert go_format_g(x) == g


def test_nan_is_an_emit_error() -> None:
    with pytest.raises(errors.EmitError):
        j.emit_plain([Branch([("a", float("nan"))])])


def test_metadata_appended_and_extracted() -> None:
    md = Branch([("mac", "ENC[x]"), ("version", "3.11.0")])
    out = j.emit_encrypted([Branch([("a", "ENC[y]")])], md)
    assert out.endswith(b'"sops": {\n\t\t"mac": "ENC[x]",\n\t\t"version": "3.11.0"\n\t}\n}\n')
    docs, got = j.load_encrypted(out)
    assert docs == [Branch([("a", "ENC[y]")])] and got == md
    assert j.has_metadata(out) and not j.has_metadata(b'{"a": 1}')
    with pytest.raises(errors.MetadataNotFound):
        j.load_encrypted(b'{"a": 1}')
