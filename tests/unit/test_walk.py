"""Tree walk: AAD rule, selection rules, MAC semantics."""

import hashlib
import os

import pytest

from kvsops import errors
from kvsops.sops import values, walk
from kvsops.sops.rules import SelectionRule
from kvsops.sops.tree import Branch, Comment, GoTime

KEY = os.urandom(32)


def doc():
    return Branch(
        [
            (Comment(" top"), None),
            ("a", "x"),
            ("b", Branch([("c", 1), ("d", [1.5, True, Comment(" in list"), "s"]), ("e_unencrypted", "plain")])),
            ("t", GoTime.parse("2024-01-01T10:00:00+02:00")),
            ("n", None),
            ("empty", ""),
        ]
    )


def test_round_trip_and_mac_agree():
    enc, mac = walk.encrypt_docs([doc()], KEY, SelectionRule())
    dec, mac2 = walk.decrypt_docs(enc, KEY, SelectionRule())
    assert dec == [doc()]
    assert mac == mac2 and len(mac) == 128 and mac == mac.upper()


def test_mac_is_sha512_of_plaintexts_in_order_excluding_comments_and_nulls():
    _, mac = walk.encrypt_docs([doc()], KEY, SelectionRule())
    want = hashlib.sha512(b"x" + b"1" + b"1.5" + b"True" + b"s" + b"plain" + b"2024-01-01T10:00:00+02:00").hexdigest()
    assert mac == want.upper()


def test_mac_only_encrypted():
    _, mac = walk.encrypt_docs([doc()], KEY, SelectionRule(), mac_only_encrypted=True)
    h = hashlib.sha512(walk.MAC_ONLY_ENCRYPTED_INIT)
    h.update(b"x" + b"1" + b"1.5" + b"True" + b"s" + b"2024-01-01T10:00:00+02:00")
    assert mac == h.hexdigest().upper()
    assert walk.MAC_ONLY_ENCRYPTED_INIT == hashlib.sha256(b"sops").digest()


def test_aad_excludes_list_indices_and_comments_use_parent_path():
    enc, _ = walk.encrypt_docs([doc()], KEY, SelectionRule())
    d = enc[0]
    assert values.decrypt(d.get("a"), KEY, "a:") == "x"
    items = d.get("b").get("d")
    assert values.decrypt(items[0], KEY, "b:d:") == 1.5
    assert isinstance(items[2], str)  # an encrypted list comment becomes a list item, like sops
    assert values.decrypt(items[2], KEY, "b:d:") == Comment(" in list")
    top_comment = d[0][0]
    assert values.decrypt(top_comment.text, KEY, ":") == Comment(" top")
    assert d.get("b").get("e_unencrypted") == "plain"


def test_moved_value_is_rejected():
    enc, _ = walk.encrypt_docs([Branch([("a", "1"), ("b", "2")])], KEY, SelectionRule())
    swapped = Branch([("a", enc[0].get("b")), ("b", enc[0].get("a"))])
    with pytest.raises(errors.DecryptValueError) as e:
        walk.decrypt_docs([swapped], KEY, SelectionRule())
    assert "a" in str(e.value)


@pytest.mark.parametrize(
    "rule, encrypted",
    [
        (SelectionRule("unencrypted_suffix", "_plain"), {"data", "pw_secret"}),
        (SelectionRule("encrypted_suffix", "_secret"), {"pw_secret"}),
        (SelectionRule("encrypted_regex", "^(data|pw)"), {"data", "pw_secret"}),
        (SelectionRule("unencrypted_regex", "^x"), {"data", "pw_secret"}),
    ],
)
def test_selection_rules(rule, encrypted):
    d = Branch([("data", "1"), ("x_plain", "2"), ("pw_secret", "3")])
    enc, _ = walk.encrypt_docs([d], KEY, rule)
    got = {k for k, v in enc[0] if values.is_encrypted(v)}
    assert got == encrypted
    dec, _ = walk.decrypt_docs(enc, KEY, rule)
    assert dec[0] == d


def test_encrypted_comment_regex():
    d = Branch([(Comment(" sops:enc"), None), ("a", "1"), ("b", "2")])
    rule = SelectionRule("encrypted_comment_regex", "sops:enc")
    enc, _ = walk.encrypt_docs([d], KEY, rule)
    assert enc[0][0][0] == Comment(" sops:enc")  # the marker itself stays plain
    assert values.is_encrypted(enc[0].get("a")) and enc[0].get("b") == "2"


def test_unencrypted_comment_regex():
    d = Branch([(Comment(" plain"), None), ("a", "1"), ("b", "2")])
    enc, _ = walk.encrypt_docs([d], KEY, SelectionRule("unencrypted_comment_regex", "plain"))
    assert enc[0].get("a") == "1" and values.is_encrypted(enc[0].get("b"))


def test_catastrophic_or_unsupported_regex_refused():
    with pytest.raises(errors.ConfigError):
        SelectionRule("encrypted_regex", r"(a)\1")
    with pytest.raises(errors.ConfigError):
        SelectionRule("encrypted_regex", r"(?=x)")


def test_non_string_where_encrypted_expected():
    with pytest.raises(errors.DecryptValueError):
        walk.decrypt_docs([Branch([("a", 5)])], KEY, SelectionRule())


def test_stash_reuses_ivs():
    enc, _ = walk.encrypt_docs([doc()], KEY, SelectionRule())
    stash = walk.Stash()
    dec, _ = walk.decrypt_docs(enc, KEY, SelectionRule(), stash=stash)
    again, _ = walk.encrypt_docs(dec, KEY, SelectionRule(), stash=stash)
    assert again[0].get("a") == enc[0].get("a")
    assert again[0].get("b").get("c") == enc[0].get("b").get("c")


def test_deep_nesting_is_bounded():
    d = Branch([("leaf", "x")])
    for i in range(walk.MAX_DEPTH + 5):
        d = Branch([(f"k{i}", d)])
    with pytest.raises(errors.FormatError):
        walk.encrypt_docs([d], KEY, SelectionRule())
