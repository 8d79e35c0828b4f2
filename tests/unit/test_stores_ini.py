from __future__ import annotations

import pytest

from kvsops import errors
from kvsops.sops.stores import ini_store as i
from kvsops.sops.tree import Branch, Comment


def test_load_sections_comments_and_quotes() -> None:
    src = b'top = 1\n; sec comment\n[s]\n# key comment\nk = v\nq = "  p  "\nb = `a#b`\nm = """l1\nl2"""\ninl = x ; c\n'
    (doc,) = i.load_plain(src)
    assert doc[0] == ("DEFAULT", Branch([("top", "1")]))
    assert doc[1] == ("s", Branch([
        (Comment("sec comment"), None), ("k", "v"), (Comment("key comment"), None), ("q", "  p  "), ("b", "a#b"),
        ("m", "l1\nl2"), ("inl", "x"), (Comment("c"), None),
    ]))


def test_pretty_format_emission() -> None:
    doc = Branch([
        ("DEFAULT", Branch()),
        ("s", Branch([(Comment("sec"), None), ("k", "v"), (Comment("kc"), None), ("longer", "a;b"), ("sp", " x"),
                      ("ml", "a\nb"), ("k:c", "1")])),
        ("t", Branch([("a", "1")])),
    ])
    assert i.emit_plain([doc]) == (
        b"; sec\n[s]\n; kc\nk      = v\nlonger = `a;b`\nsp     = \" x\"\n"
        b"ml     = \"\"\"a\nb\"\"\"\n`k:c`  = 1\n\n[t]\na = 1\n"
    )
    assert i.load_plain(i.emit_plain([doc]))[0][1] == doc[1]


def test_metadata_section_roundtrip() -> None:
    md = Branch([("age", [Branch([("enc", "x\ny\n"), ("recipient", "age1")])]), ("mac", "ENC[m]"),
                 ("version", "3.11.0")])
    out = i.emit_encrypted([Branch([("DEFAULT", Branch()), ("s", Branch([("k", "ENC[v]")]))])], md)
    assert b"[sops]\nage__list_0__map_enc       = x\\ny\\n\n" in out
    docs, got = i.load_encrypted(out)
    assert got == md
    assert docs[0].get("s") == Branch([("k", "ENC[v]")])
    # 3.13.0/3.13.1 wrote go-ini multi-line values: read them too
    legacy = (b'[sops]\nage__list_0__map_enc = """x\ny\n"""\nage__list_0__map_recipient = age1\n'
              b"mac = ENC[m]\nversion = 3.11.0\n")
    assert i.load_encrypted(legacy)[1] == md
    with pytest.raises(errors.MetadataNotFound):
        i.load_encrypted(b"[a]\nb = 1\n")


def test_bad_line() -> None:
    with pytest.raises(errors.InputError):
        i.load_plain(b"[s]\nnovalue\n")
