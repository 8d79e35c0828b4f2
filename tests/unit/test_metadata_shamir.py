import os

import pytest

from kvsops import errors
from kvsops.sops import metadata, shamir
from kvsops.sops.tree import Branch


def raw(**extra):
    b = Branch(
        [
            ("age", [Branch([("recipient", "age1xyz"), ("enc", "E")])]),
            ("lastmodified", "2025-08-06T18:55:05Z"),
            ("mac", "ENC[...]"),
            ("unencrypted_suffix", "_unencrypted"),
            ("version", "3.13.2"),
        ]
    )
    for k, v in extra.items():
        b.set(k, v)
    return b


def test_parse_and_write_round_trip():
    md = metadata.parse(raw())
    assert md.rule.kind == "unencrypted_suffix"
    tree = metadata.to_tree(md)
    assert [k for k, _ in tree] == ["age", "lastmodified", "mac", "unencrypted_suffix", "version"]
    assert [k for k, _ in tree.get("age")[0]] == ["recipient", "enc"]


def test_any_order_unknown_fields_and_weak_types():
    b = Branch(list(reversed(raw(attention="old", mac_only_encrypted="true"))))
    md = metadata.parse(b)
    assert md.mac_only_encrypted is True


def test_default_rule_applied_in_memory():
    b = raw()
    b.remove_key("unencrypted_suffix")
    assert metadata.parse(b).rule.value == "_unencrypted"


def test_two_rules_refused():
    with pytest.raises(errors.FormatError):
        metadata.parse(raw(encrypted_regex="^data$"))


@pytest.mark.parametrize("version", ["", "3.13", "abc"])
def test_bad_version_refused(version):
    with pytest.raises(errors.FormatError):
        metadata.parse(raw(version=version))


def test_legacy_1x_version_accepted():
    assert metadata.parse(raw(version="1.13")).version == "1.13"


def test_top_level_lists_win_over_key_groups():
    b = raw(key_groups=[Branch([("age", [Branch([("recipient", "other"), ("enc", "X")])])])])
    md = metadata.parse(b)
    assert len(md.key_groups) == 1 and md.key_groups[0][0].get("recipient") == "age1xyz"


def test_key_groups_written_only_with_several_groups():
    e = metadata.KeyEntry.make("age", {"recipient": "r", "enc": "e"})
    md = metadata.Metadata(key_groups=((e,), (e,)), shamir_threshold=2, lastmodified="2025-01-01T00:00:00Z", mac="m")
    tree = metadata.to_tree(md)
    assert [k for k, _ in tree][:2] == ["shamir_threshold", "key_groups"]
    assert tree.get("key_groups")[0].get("hc_vault") == []


def test_no_keys():
    b = raw()
    b.remove_key("age")
    with pytest.raises(errors.FormatError):
        metadata.parse(b)


@pytest.mark.parametrize(
    "text, want",
    [
        ("2025-08-06T18:55:05Z", "2025-08-06T18:55:05Z"),
        ("2025-08-06T18:55:05.123456Z", "2025-08-06T18:55:05Z"),
        ("2025-08-06T18:55:05+02:00", "2025-08-06T18:55:05+02:00"),
        ("2025-08-06T18:55:05+00:00", "2025-08-06T18:55:05Z"),
    ],
)
def test_lastmodified_canonical(text, want):
    assert metadata.rfc3339_canonical(text) == want


def test_shamir_layout_and_combine():
    secret = os.urandom(32)
    shares = shamir.split(secret, 3, 2)
    assert [s[-1] for s in shares] == [1, 2, 3] and all(len(s) == 33 for s in shares)
    assert shamir.combine(shares[1:]) == secret
    assert shamir.combine(shares) == secret
    with pytest.raises(errors.FormatError):
        shamir.split(secret, 3, 1)
