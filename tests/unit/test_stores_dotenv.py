from __future__ import annotations

import pytest

from kvsops import errors
from kvsops.sops.stores import dotenv_store as d
from kvsops.sops.tree import Branch, Comment, GoTime


def test_load_exactly_like_sops() -> None:
    (doc,) = d.load_plain(b'#c\nA= x \nB="q"\nC=a=b\nD=l1\\nl2\nE=\r\n\nexport F=1\n')
    assert list(doc) == [
        (Comment("c"), None), ("A", " x "), ("B", '"q"'), ("C", "a=b"), ("D", "l1\nl2"), ("E", "\r"), ("export F", "1"),
    ]


def test_line_without_equals_names_line_not_content() -> None:
    with pytest.raises(errors.InputError) as exc:
        d.load_plain(b"A=1\nSECRETVALUE\n")
    assert "line 2" in str(exc.value) and "SECRETVALUE" not in str(exc.value)


def test_emit_non_strings() -> None:
    doc = Branch([("f", 1.0), ("g", 2.5), ("b", True), ("i", 3), ("t", GoTime("2024-01-01T00:00:00.5Z")),
                  ("s", "a\nb")])
    assert d.emit_plain([doc]) == b"f=1.0\ng=2.5\nb=true\ni=3\nt=2024-01-01T00:00:00Z\ns=a\\nb\n"
    with pytest.raises(errors.EmitError):
        d.emit_plain([Branch([("x", Branch())])])


def test_metadata_flatten_roundtrip() -> None:
    md = Branch([
        ("age", [Branch([("recipient", "age1x"), ("enc", "-----BEGIN\nxx\n-----END\n")])]),
        ("lastmodified", "2025-01-01T00:00:00Z"), ("mac", "ENC[m]"), ("shamir_threshold", 2), ("version", "3.11.0"),
    ])
    out = d.emit_encrypted([Branch([("A", "ENC[a]")])], md)
    assert out == (
        b"A=ENC[a]\nsops_age__list_0__map_enc=-----BEGIN\\nxx\\n-----END\\n\n"
        b"sops_age__list_0__map_recipient=age1x\nsops_lastmodified=2025-01-01T00:00:00Z\nsops_mac=ENC[m]\n"
        b"sops_shamir_threshold=2\nsops_version=3.11.0\n"
    )
    docs, got = d.load_encrypted(out)
    assert docs == [Branch([("A", "ENC[a]")])]
    assert got.get("shamir_threshold") == 2
    assert got.get("age") == [Branch([("enc", "-----BEGIN\nxx\n-----END\n"), ("recipient", "age1x")])]
    with pytest.raises(errors.EmitError):
        d.emit_encrypted([Branch([("sops_x", "1")])], md)
    with pytest.raises(errors.MetadataNotFound):
        d.load_encrypted(b"A=1\n")
