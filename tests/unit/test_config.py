""".sops.yaml creation rules: parsing, matching and lookup as sops' config/config.go does them."""

from __future__ import annotations

import os

import pytest

from kvsops import config, errors
from kvsops.cli import common
from kvsops.sops.rules import SelectionRule

AGE1 = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
AGE2 = "age1lzd99uklcjnc0e7d860axevet2cz99ce9pq6tzuzd05l5nr28ams36nvun"
FP1 = "FBC7B9E2A4F9289AC0C1D4843D16CEE4A27381B4"
FP2 = "D7229043384BCC60326C6FB9D8720D957C3D3074"


def parse(text: str, path: str = "/repo/.sops.yaml") -> config.Config:
    return config.parse_config(text.encode(), path)


def test_flat_keys_comma_strings_and_lists() -> None:
    cfg = parse(f"""
creation_rules:
  - age: "{AGE1} , {AGE2},"
    pgp: [{FP1}, {FP2}]
    azure_keyvault: https://v1.vault.azure.net/keys/k1/abc,https://v2.vault.azure.net/keys/k2
""")
    (rule,) = cfg.rules or ()
    assert rule.key_groups == ((
        ("age", AGE1), ("age", AGE2), ("pgp", FP1), ("pgp", FP2),
        ("azure_kv", "https://v1.vault.azure.net/keys/k1/abc"),
        ("azure_kv", "https://v2.vault.azure.net/keys/k2"),
    ),)
    assert rule.rule is None and rule.shamir_threshold == 0 and not rule.mac_only_encrypted


def test_flat_group_order_is_sops_order_whatever_the_yaml_order() -> None:
    cfg = parse(
        f"creation_rules:\n  - pgp: {FP1}\n    azure_keyvault: https://v.vault.azure.net/keys/k\n    age: {AGE1}\n"
    )
    assert [k for k, _ in cfg.rules[0].key_groups[0]] == ["age", "pgp", "azure_kv"]  # type: ignore[index]


def test_duplicates_within_a_group_are_removed() -> None:
    cfg = parse(f"creation_rules:\n  - age: {AGE1},{AGE1}\n    pgp: [{FP1}, {FP1}]\n")
    assert cfg.rules[0].key_groups == ((("age", AGE1), ("pgp", FP1)),)  # type: ignore[index]


def test_key_groups_with_merge_azure_and_threshold() -> None:
    cfg = parse(f"""
creation_rules:
  - path_regex: prod/.*
    shamir_threshold: 2
    age: {AGE2}            # ignored: key_groups wins
    key_groups:
      - age: [{AGE1}]
        merge:
          - pgp: [{FP1}]
      - azure_keyvault:
          - vaultUrl: https://team.vault.azure.net/
            key: sops
            version: ""
          - vaultUrl: https://team.vault.azure.net
            key: sops2
            version: 0123abcd
      - pgp: [{FP2}]
""")
    rule = cfg.rules[0]  # type: ignore[index]
    assert rule.shamir_threshold == 2
    assert rule.key_groups == (
        (("pgp", FP1), ("age", AGE1)),  # merge first
        (("azure_kv", "https://team.vault.azure.net/keys/sops"),
         ("azure_kv", "https://team.vault.azure.net/keys/sops2/0123abcd")),
        (("pgp", FP2),),
    )


def test_numeric_looking_fingerprints_stay_text() -> None:
    cfg = parse("creation_rules:\n  - pgp: 0123456789012345678901234567890123456789\n")
    assert cfg.rules[0].key_groups[0] == (("pgp", "0123456789012345678901234567890123456789"),)  # type: ignore[index]


@pytest.mark.parametrize("kind", ["unencrypted_suffix", "encrypted_suffix", "unencrypted_regex",
                                  "encrypted_regex", "unencrypted_comment_regex", "encrypted_comment_regex"])
def test_every_selection_rule(kind: str) -> None:
    cfg = parse(f"creation_rules:\n  - age: {AGE1}\n    {kind}: '^(data|stringData)$'\n")
    assert cfg.rules[0].rule == SelectionRule(kind, "^(data|stringData)$")  # type: ignore[index]


def test_two_selection_rules_are_refused() -> None:
    with pytest.raises(errors.ConfigError, match="more than one"):
        parse(f"creation_rules:\n  - age: {AGE1}\n    encrypted_regex: a\n    unencrypted_suffix: _p\n")


def test_mac_only_encrypted_and_stores() -> None:
    cfg = parse(f"""
stores:
  yaml: {{indent: 2}}
  json: {{indent: 4}}
creation_rules:
  - age: {AGE1}
    mac_only_encrypted: true
""")
    assert cfg.rules[0].mac_only_encrypted  # type: ignore[index]
    assert cfg.stores == config.StoreSettings(yaml_indent=2, json_indent=4, json_binary_indent=None)


def test_no_creation_rules_means_no_config() -> None:
    cfg = parse("destination_rules: []\n")
    assert cfg.rules is None
    assert config.match_rule(cfg, "/repo/a.yaml") is None
    assert parse("").rules is None


@pytest.mark.parametrize("text,match", [
    ("creation_rules: 5\n", "must be a list"),
    ("creation_rules:\n  - 5\n", "not a mapping"),
    ("creation_rules:\n  - path_regex: '(?=x)'\n", "lookarounds"),
    ("creation_rules:\n  - path_regex: '('\n", "invalid regex"),
    ("creation_rules:\n  - shamir_threshold: two\n", "integer"),
    ("creation_rules:\n  - age: {a: b}\n", "string or a list"),
    ("creation_rules:\n  - key_groups:\n      - azure_keyvault: [{key: k}]\n", "vaultUrl and key"),
    ("creation_rules: [\n", "could not parse"),
    ("- a\n- b\n", "not a mapping"),
])
def test_invalid_configs(text: str, match: str) -> None:
    with pytest.raises(errors.ConfigError, match=match) as info:
        parse(text)
    assert info.value.where == "/repo/.sops.yaml"


def test_first_match_wins_on_the_path_relative_to_the_config_dir() -> None:
    cfg = parse(f"""
creation_rules:
  - path_regex: ^secrets/dev/
    age: {AGE1}
  - path_regex: \\.enc\\.yaml$
    age: {AGE2}
  - pgp: {FP1}
""")
    first = lambda p: config.match_rule(cfg, p).key_groups[0][0][1]  # type: ignore[union-attr]  # noqa: E731
    assert first("/repo/secrets/dev/a.enc.yaml") == AGE1  # anchored on the relative path
    assert first("/repo/x/secrets/dev/a.enc.yaml") == AGE2
    assert first("/repo/other.yaml") == FP1  # a rule without path_regex matches everything


def test_unanchored_search_and_outside_paths_stay_absolute() -> None:
    cfg = parse(f"creation_rules:\n  - path_regex: dev\n    age: {AGE1}\n")
    assert config.match_rule(cfg, "/repo/a/devices.yaml") is not None  # search, not match
    cfg = parse(f"creation_rules:\n  - path_regex: ^/elsewhere/\n    age: {AGE1}\n")
    assert config.match_rule(cfg, "/elsewhere/x.yaml") is not None
    assert config.relative_to_config("/repo", "/repository/x") == "/repository/x"
    assert config.relative_to_config("/repo", "/repo/a/b") == "a/b"


def test_no_matching_rule_is_an_error() -> None:
    cfg = parse(f"creation_rules:\n  - path_regex: ^prod/\n    age: {AGE1}\n")
    with pytest.raises(errors.ConfigError, match="no matching creation rules"):
        config.match_rule(cfg, "/repo/dev/a.yaml")


def test_azure_key_url() -> None:
    from kvsops.keys import azure_kv

    assert azure_kv.key_url("https://v.vault.azure.net/", "k") == "https://v.vault.azure.net/keys/k"
    assert azure_kv.key_url("https://v.vault.azure.net", "k", "1") == "https://v.vault.azure.net/keys/k/1"


# ----------------------------------------------------------------------------- lookup


def test_lookup_walks_up_from_the_cwd(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / ".sops.yaml").write_text(f"creation_rules:\n  - age: {AGE1}\n")
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    path, warnings = common.find_config(str(deep), {})
    assert path == str(tmp_path / ".sops.yaml") and warnings == []
    cfg, _ = common.load_config(str(deep), {})
    assert cfg is not None and cfg.directory == str(tmp_path)


def test_sops_yml_is_ignored_with_a_warning(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / ".sops.yml").write_text(f"creation_rules:\n  - age: {AGE1}\n")
    path, warnings = common.find_config(str(tmp_path), {})
    assert path is None or not path.endswith(".sops.yml")
    assert any(".sops.yml" in w for w in warnings)


def test_sops_yml_warning_when_a_parent_has_sops_yaml(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / ".sops.yaml").write_text("creation_rules: []\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".sops.yml").write_text("creation_rules: []\n")
    path, warnings = common.find_config(str(tmp_path / "sub"), {})
    assert path == str(tmp_path / ".sops.yaml")
    assert len(warnings) == 1 and "using" in warnings[0]


def test_explicit_and_env_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    other = tmp_path / "other.yaml"
    other.write_text(f"creation_rules:\n  - age: {AGE2}\n")
    (tmp_path / ".sops.yaml").write_text(f"creation_rules:\n  - age: {AGE1}\n")
    assert common.find_config(str(tmp_path), {"SOPS_CONFIG": str(other)})[0] == str(other)
    assert common.find_config(str(tmp_path), {"SOPS_CONFIG": "/nope"}, str(other))[0] == str(other)
    with pytest.raises(errors.ConfigError, match="does not exist"):
        common.find_config(str(tmp_path), {}, str(tmp_path / "missing.yaml"))


def test_lookup_stops_after_100_levels(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / ".sops.yaml").write_text("creation_rules: []\n")
    deep = tmp_path
    for _ in range(100):  # the start directory and 99 parents are searched
        deep = deep / "d"
    os.makedirs(deep)
    assert common.find_config(str(deep), {})[0] is None
    assert common.find_config(str(deep.parent), {})[0] == str(tmp_path / ".sops.yaml")


# ----------------------------------------------------------------------------- unknown keys


def test_unknown_keys_are_warnings_with_the_closest_name() -> None:
    """sops ignores unknown keys, so a misspelt one silently changes what gets encrypted: kvsops
    parses the file as sops does and reports each such key (the CLI prints them on stderr)."""
    cfg = parse(
        "creation_rules:\n"
        "  - path_regx: ^secrets/\n"          # the rule would match every file
        "    age: age1x\n"
        "    encrypted_regexp: ^data$\n"      # every value would be encrypted
        "    key_groups:\n"
        "      - age: [age1y]\n"
        "        azure_keyvault: [{vaultUrl: https://v.vault.azure.net, key: k, verison: '1'}]\n"
        "        merge: [{pgpp: [FPR]}]\n"
        "stores:\n  yaml: {indnet: 2}\n"
        "destination_rules:\n  - {path_regex: x, s3_bucket: b, recreation_rule: {age: a, shamir: 2}}\n"
        "createion_rules: []\n"
    )
    assert cfg.rules is not None and cfg.rules[0].path_regex == ""  # parsed exactly as sops parses it
    assert cfg.warnings == (
        "unknown field `creation_rules[0].path_regx`; did you mean `path_regex`? (sops ignores it)",
        "unknown field `creation_rules[0].encrypted_regexp`; did you mean `encrypted_regex`? (sops ignores it)",
        "unknown field `creation_rules[0].key_groups[0].azure_keyvault[0].verison`; did you mean `version`? "
        "(sops ignores it)",
        "unknown field `creation_rules[0].key_groups[0].merge[0].pgpp`; did you mean `pgp`? (sops ignores it)",
        "unknown field `stores.yaml.indnet`; did you mean `indent`? (sops ignores it)",
        "unknown field `destination_rules[0].recreation_rule.shamir`; did you mean `shamir_threshold`? "
        "(sops ignores it)",
        "unknown field `createion_rules`; did you mean `creation_rules`? (sops ignores it)",
    )


def test_every_key_sops_reads_is_known() -> None:
    every = (
        "creation_rules:\n"
        "  - {path_regex: a, kms: k, aws_profile: p, age: a, pgp: p, gcp_kms: g, hckms: [h], azure_keyvault: z,\n"
        "     hc_vault_transit_uri: v, shamir_threshold: 1, unencrypted_suffix: _u, mac_only_encrypted: true,\n"
        "     key_groups: [{merge: [{age: [a]}], kms: [{arn: a, role: r, context: {k: v}, aws_profile: p}],\n"
        "                   gcp_kms: [{resource_id: r}], hckms: [{key_id: k}], hc_vault: [v], age: [a], pgp: [p],\n"
        "                   azure_keyvault: [{vaultUrl: https://v.vault.azure.net, key: k, version: ''}]}]}\n"
        "  - {encrypted_suffix: _e}\n  - {unencrypted_regex: u}\n  - {encrypted_regex: e}\n"
        "  - {unencrypted_comment_regex: u}\n  - {encrypted_comment_regex: e}\n"
        "destination_rules:\n"
        "  - {path_regex: a, s3_bucket: b, s3_prefix: p, gcs_bucket: g, gcs_prefix: p, vault_path: v,\n"
        "     vault_address: a, vault_kv_mount_name: m, vault_kv_version: 2, omit_extensions: true,\n"
        "     recreation_rule: {age: a}}\n"
        "stores: {yaml: {indent: 2}, json: {indent: 2}, json_binary: {indent: 2}, dotenv: {}, ini: {}}\n"
    )
    assert parse(every).warnings == ()


def test_many_unknown_keys_are_capped() -> None:
    cfg = parse("creation_rules:\n  - {" + ", ".join(f"k{i}: v" for i in range(50)) + "}\n")
    assert len(cfg.warnings) == 11 and cfg.warnings[-1].startswith("more unknown keys follow")


def test_the_cli_prints_each_warning_once(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / ".sops.yaml").write_text("creation_rules:\n  - path_regx: x\n    age: age1x\n")
    cfg, warnings = common.load_config(str(tmp_path), {})
    assert cfg is not None and len(warnings) == 1
    assert warnings[0].endswith(".sops.yaml: unknown field `creation_rules[0].path_regx`; did you mean "
                                "`path_regex`? (sops ignores it)")
