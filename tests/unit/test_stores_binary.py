from __future__ import annotations

import pytest

from kvsops import errors
from kvsops.sops.stores import binary_store as b, detect, get
from kvsops.sops.tree import Branch


def test_arbitrary_bytes_roundtrip() -> None:
    raw = bytes(range(256)) + b"\xff\xfe no newline"
    docs = b.load_plain(raw)
    assert docs[0].keys and docs[0][0][0] == "data"
    assert b.emit_plain(docs) == raw


def test_non_binary_tree_is_an_emit_error_with_hint() -> None:
    with pytest.raises(errors.EmitError) as exc:  # sops: ErrorDumpingTree, exit 4
        b.emit_plain([Branch([("a", "1")])])
    assert exc.value.exit_code == 4
    assert "no binary data found in tree" in exc.value.message and exc.value.hint and "--output-type" in exc.value.hint


def test_encrypted_form_is_json() -> None:
    md = Branch([("mac", "ENC[m]"), ("version", "3.11.0")])
    out = b.emit_encrypted([Branch([("data", "ENC[d]")])], md)
    assert out == b'{\n\t"data": "ENC[d]",\n\t"sops": {\n\t\t"mac": "ENC[m]",\n\t\t"version": "3.11.0"\n\t}\n}\n'
    assert b.load_encrypted(out) == ([Branch([("data", "ENC[d]")])], md)
    with pytest.raises(errors.EmitError):
        b.emit_value("x")


def test_registry() -> None:
    assert get("binary") is b
    assert detect("x.env.enc") == "binary"
