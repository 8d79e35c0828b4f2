"""Unit tests of the YAML store (pure; the byte-exact comparisons with sops are in integration)."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest

from kvsops import errors
from kvsops.sops.stores import yaml_store as y
from kvsops.sops.tree import Branch, Comment, GoTime


@pytest.mark.parametrize(
    "text,expected",
    [
        ("1", 1), ("-42", -42), ("+7", 7), ("0x1F", 31), ("0o17", 15), ("0777", 511), ("1_000", 1000),
        ("0b101", 5), ("09", 9.0), ("1.0", 1.0), ("1e3", 1000.0), (".5", 0.5), ("true", True), ("False", False),
        ("yes", "yes"), ("no", "no"), ("on", "on"), ("~", None), ("null", None), ("", None),
        ("1e400", "1e400"), ("abc", "abc"), ("<<", "<<"), ("-", "-"), ("99999999999999999999999", 1e23),
        ("2024-01-01", GoTime("2024-01-01T00:00:00Z")),
        ("2001-12-14t21:59:43.10-05:00", GoTime("2001-12-14T21:59:43.1-05:00")),
        ("2001-12-14 21:59:43.10", GoTime("2001-12-14T21:59:43.1Z")),
        ("2001-12-14 21:59:43.10 -5", "2001-12-14 21:59:43.10 -5"),
        ("2024-02-30", "2024-02-30"),
    ],
)
def test_resolve_plain(text: str, expected: object) -> None:
    got = y.resolve_plain(text)
    assert got == expected and type(got) is type(expected)


def test_special_floats() -> None:
    assert math.isnan(y.resolve_plain(".nan"))  # type: ignore[arg-type]
    assert y.resolve_plain("-.inf") == -math.inf


def test_uint64_loads_but_the_walks_refuse_it_without_the_value() -> None:
    """yaml.v3 decodes it as a uint64; sops' walks refuse it: 23 encrypting, 25 decrypting."""
    from kvsops.sops import walk
    from kvsops.sops.tree import Uint64

    (doc,) = y.load_plain(b"a: 18446744073709551615\nb: 9223372036854775807\n")
    assert type(doc.get("a")) is Uint64 and type(doc.get("b")) is int
    assert y.emit_plain([doc]) == b"a: 18446744073709551615\nb: 9223372036854775807\n"
    for run, cls, code in ((walk.encrypt_docs, errors.EncryptError, 23),
                           (walk.decrypt_docs, errors.DecryptValueError, 25)):
        with pytest.raises(cls) as exc:
            run([doc], b"k" * 32, None)
        assert exc.value.exit_code == code and "18446744073709551615" not in str(exc.value)


def test_quoted_and_tagged_scalars() -> None:
    (doc,) = y.load_plain(b'a: "123"\nb: \'true\'\nc: !!str 12\nd: !env FOO\ne: !!float 3\nf: |\n  x\n')
    assert list(doc) == [("a", "123"), ("b", "true"), ("c", "12"), ("d", "FOO"), ("e", 3.0), ("f", "x\n")]


def test_errors() -> None:
    for bad in (b"- a\n", b"x\n", b"a: [\n", b"1: x\n"):
        with pytest.raises(errors.InputError):
            y.load_plain(bad)
    with pytest.raises(errors.InputError, match="already defined"):
        y.load_plain(b"a: 1\nb: 2\na: 3\n")
    # duplicates only matter in document 0
    assert len(y.load_plain(b"a: 1\n---\nb: 1\nb: 2\n")) == 2


def test_empty_documents() -> None:
    assert y.load_plain(b"") == []
    assert y.load_plain(b"---\n") == [Branch()]


def test_alias_expansion_and_limits() -> None:
    (doc,) = y.load_plain(b"base: &b {x: 1}\ncopy: *b\n")
    assert doc.get("copy") == Branch([("x", 1)])
    assert doc.get("copy") is not doc.get("base")
    names = "abcdefghi"
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{c}: &{c} [" + ",".join(["*" + p] * 10) + "]\n" for p, c in pairwise(names)
    )
    with pytest.raises(errors.LimitExceeded):
        y.load_plain(bomb.encode())
    with pytest.raises(errors.LimitExceeded):
        y.load_plain(b"a: " + b"[" * 250 + b"]" * 250 + b"\n")


def test_comments_positions() -> None:
    src = b"# top\na: 1 # inline\nb:\n    # in b\n    c: 2\nl:\n    - x # on x\n    # before y\n    - y\n# end\n"
    (doc,) = y.load_plain(src)
    assert doc[0] == (Comment(" top"), None)
    assert doc[1] == (Comment(" inline", inline=True), None)
    assert doc[2] == ("a", 1)
    assert doc.get("b")[0] == (Comment(" in b"), None)  # type: ignore[index]
    assert doc.get("l") == [Comment(" on x", inline=True), "x", Comment(" before y"), "y"]
    assert doc[-1] == (Comment(" end"), None)


def test_inline_comment_is_reemitted_as_line_comment() -> None:
    doc = Branch([(Comment(" c", inline=True), None), ("k", "v"), ("l", [Comment(" i", inline=True), "x"])])
    assert y.emit_plain([doc]) == b"k: v # c\nl:\n    - x # i\n"


@pytest.mark.parametrize(
    "value,out",
    [
        ("yes", '"yes"'), ("123", '"123"'), ("", '""'), ("null", '"null"'), ("2024-01-01", '"2024-01-01"'),
        (": x", "': x'"), ("#x", "'#x'"), ("  lead", "'  lead'"), ("it's", "it's"), ("1:20", '"1:20"'),
        ("a\tb", '"a\\tb"'), ("😀", '"\\U0001F600"'), ("héllo", "héllo"), (1.0, "1"), (1234568000.0, "1.234568e+09"),
        (math.inf, ".inf"), (None, "null"), (True, "true"), (GoTime("2024-01-01T00:00:00Z"), "2024-01-01T00:00:00Z"),
        (Branch(), "{}"), ([], "[]"),
    ],
)
def test_scalar_styles(value: object, out: str) -> None:
    assert y.emit_plain([Branch([("k", value)])]) == f"k: {out}\n".encode()


def test_literal_blocks_and_layout() -> None:
    doc = Branch(
        [
            ("a", "x\ny\n"),
            ("b", "x\ny"),
            ("c", "x\n\n"),
            ("l", [Branch([("k", "v"), ("m", Branch([("nn", 1)]))]), ["p", "q"], "z\n"]),
        ]
    )
    assert y.emit_plain([doc]) == (
        b"a: |\n    x\n    y\nb: |-\n    x\n    y\nc: |+\n    x\n\n"
        b"l:\n    - k: v\n      m:\n        nn: 1\n    - - p\n      - q\n    - |\n      z\n"
    )


def test_encrypted_roundtrip_every_document_gets_metadata() -> None:
    md = Branch([("lastmodified", "2025-01-01T00:00:00Z"), ("mac", "ENC[x]"), ("version", "3.11.0")])
    out = y.emit_encrypted([Branch([("a", "1")]), Branch([("b", "2")])], md)
    assert out.count(b"sops:\n") == 2
    docs, got = y.load_encrypted(out)
    assert docs == [Branch([("a", "1")]), Branch([("b", "2")])]
    assert got == md
    with pytest.raises(errors.MetadataNotFound):
        y.load_encrypted(b"a: 1\n")
    with pytest.raises(errors.FormatError):
        y.load_encrypted(b"sops: 1\n")


def test_emit_value() -> None:
    assert y.emit_value([1, "a"]) == b"- 1\n- a\n"
    assert y.emit_value(1.5) == b"1.5\n"
    assert y.emit_value(Branch([("a", 1)])) == b"a: 1\n"


def test_multidoc_roundtrip() -> None:
    src = b"a: 1\n---\nb:\n    c: [1, 2]\n"
    assert y.emit_plain(y.load_plain(src)) == b"a: 1\n---\nb:\n    c:\n        - 1\n        - 2\n"


def test_indent_setting_as_sops_and_libyaml_take_it() -> None:
    assert [y.best_indent(n) for n in (None, 0, 1, 2, 3, 9, 10)] == [4, 4, 2, 2, 3, 9, 2]
    with pytest.raises(errors.EmitError, match="Negative"):
        y.best_indent(-1)
    doc = Branch([("k", Branch([("l", [Branch([("a", 1), ("b", Branch([("c", 2)]))])])]))])
    assert y.emit_plain([doc], 2) == b"k:\n  l:\n    - a: 1\n      b:\n        c: 2\n"
    assert y.emit_plain([doc], 3) == b"k:\n   l:\n      - a: 1\n        b:\n         c: 2\n"
    assert y.emit_value([Branch([("b", Branch([("c", 2)]))])], 2) == b"- b:\n    c: 2\n"  # yaml.Marshal: 4
