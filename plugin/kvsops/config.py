""".sops.yaml creation rules, as sops' ``config/config.go`` reads them.

Everything here is pure (config bytes and paths in, rules out); finding and reading the file is
the CLI's (``kvsops.cli.common.find_config`` / ``load_config``), which keeps this module, its
dataclasses and PyYAML off the ``kvsops decrypt`` start-up path. Key groups come back as tuples
of ``(kind, spec)`` pairs, ``kind`` being a metadata list name (``age``, ``pgp``, ``azure_kv``,
and the sops kinds kvsops cannot wrap for: ``kms``, ``gcp_kms``, ``hckms``, ``hc_vault``); the
caller turns them into recipients with ``Session.recipient(kind, spec)``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Mapping

from kvsops.errors import ConfigError
from kvsops.sops.rules import RULE_KINDS, SelectionRule, compile_re2ish

CONFIG_NAME = ".sops.yaml"
MAX_CONFIG_BYTES = 1 << 20

KeySpec = tuple[str, str]
KeyGroup = tuple[KeySpec, ...]

# Flat rule keys in sops' group construction order (config.go: getKeyGroupsFromCreationRule).
_FLAT_KEYS = (
    ("age", "age"),
    ("pgp", "pgp"),
    ("kms", "kms"),
    ("gcp_kms", "gcp_kms"),
    ("hckms", "hckms"),
    ("azure_keyvault", "azure_kv"),
    ("hc_vault_transit_uri", "hc_vault"),
)


@dataclass(frozen=True)
class CreationRule:
    """One creation rule, resolved: key groups, threshold, selection rule, MAC mode."""

    path_regex: str = ""
    key_groups: tuple[KeyGroup, ...] = ()
    shamir_threshold: int = 0
    rule: SelectionRule | None = None  # None: no rule set (callers apply the default)
    mac_only_encrypted: bool = False

    def matches(self, relative_path: str) -> bool:
        # An empty path_regex matches everything; otherwise RE2 MatchString, an unanchored search.
        return not self.path_regex or compile_re2ish(self.path_regex).search(relative_path) is not None


@dataclass(frozen=True)
class StoreSettings:
    yaml_indent: int | None = None
    json_indent: int | None = None
    json_binary_indent: int | None = None


@dataclass(frozen=True)
class Config:
    """A parsed config file. ``rules is None`` means no ``creation_rules`` key (sops: no config)."""

    path: str
    rules: tuple[CreationRule, ...] | None
    stores: StoreSettings = StoreSettings()
    warnings: tuple[str, ...] = ()  # unknown keys (sops ignores them; the CLI prints these)

    @property
    def directory(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))


# Every key sops 3.x reads (config/config.go, all releases up to 3.11 and its main branch), for the
# unknown-key warnings: sops ignores a misspelt key silently, which can mean a rule without keys or a
# file encrypted in full instead of by its selection rule.
_ANY = None
_KMS = {"arn": _ANY, "role": _ANY, "context": _ANY, "aws_profile": _ANY}
_GROUP: dict[str, object] = {
    "merge": _ANY, "kms": [_KMS], "gcp_kms": [{"resource_id": _ANY}], "hckms": [{"key_id": _ANY}],
    "azure_keyvault": [{"vaultUrl": _ANY, "key": _ANY, "version": _ANY}], "hc_vault": _ANY, "age": _ANY,
    "pgp": _ANY,
}
_GROUP["merge"] = [_GROUP]
_RULE: dict[str, object] = {
    **dict.fromkeys(("path_regex", "kms", "aws_profile", "age", "pgp", "gcp_kms", "hckms", "azure_keyvault",
                     "hc_vault_transit_uri", "shamir_threshold", "unencrypted_suffix", "encrypted_suffix",
                     "unencrypted_regex", "encrypted_regex", "unencrypted_comment_regex", "encrypted_comment_regex",
                     "mac_only_encrypted"), _ANY),
    "key_groups": [_GROUP],
}
_DESTINATION = {
    **dict.fromkeys(("path_regex", "s3_bucket", "s3_prefix", "gcs_bucket", "gcs_prefix", "vault_path",
                     "vault_address", "vault_kv_mount_name", "vault_kv_version", "omit_extensions"), _ANY),
    "recreation_rule": _RULE,
}
_INDENT = {"indent": _ANY}
SCHEMA = {
    "creation_rules": [_RULE],
    "destination_rules": [_DESTINATION],
    "stores": {"yaml": _INDENT, "json": _INDENT, "json_binary": _INDENT, "dotenv": {}, "ini": {}},
}


def unknown_keys(doc: Mapping[str, object], limit: int = 10) -> tuple[str, ...]:
    """One warning per key sops would ignore, with the closest valid name (the first ``limit``)."""
    from itertools import islice

    from kvsops import _schema

    found = [f"{f.message()} (sops ignores it)" for f in islice(_schema.findings(doc, SCHEMA), limit + 1)]
    if len(found) > limit:
        found[limit:] = ["more unknown keys follow (only the first ones are listed)"]
    return tuple(found)


# ----------------------------------------------------------------------------- pure parsing


def _load_yaml(data: bytes) -> object:
    import yaml  # lazy: only commands that need a config pay for it

    # All scalars as strings (yaml.v3 decoding into typed Go fields never turns a
    # fingerprint like 0123... into a number); ints and bools are converted below.
    loader = getattr(yaml, "CBaseLoader", yaml.BaseLoader)
    try:
        return yaml.load(data, Loader=loader)  # noqa: S506 - BaseLoader builds only str/list/dict
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"could not parse the config file{where}") from None


def _is_null(value: object) -> bool:
    return value is None or value in ("", "~", "null", "Null", "NULL")


def _as_str(value: object, name: str) -> str:
    if _is_null(value):
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string")
    return value


def _as_int(value: object, name: str) -> int:
    if _is_null(value):
        return 0
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        return int(value)
    raise ConfigError(f"{name} must be an integer")


def _as_bool(value: object, name: str) -> bool:
    if _is_null(value):
        return False
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "yes", "on", "y"):
            return True
        if low in ("false", "no", "off", "n"):
            return False
    raise ConfigError(f"{name} must be true or false")


def _as_list(value: object, name: str) -> list[object]:
    if _is_null(value):
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{name} must be a list")
    return value


def split_keys(value: object, name: str) -> list[str]:
    """A key field: a comma-separated string (trimmed, empties skipped) or a list of strings."""
    if _is_null(value):
        return []
    if isinstance(value, str):
        return [k.strip() for k in value.split(",") if k.strip()]
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"invalid {name} key configuration: expected strings in the list")
        return [str(v) for v in value]
    raise ConfigError(f"invalid {name} key configuration: expected a string or a list of strings")


def azure_spec(vault_url: str, key: str, version: str = "") -> str:
    """The azure_kv recipient spec: ``https://VAULT/keys/NAME[/VERSION]``."""
    spec = f"{vault_url.rstrip('/')}/keys/{key}"
    return f"{spec}/{version}" if version else spec


def _dedup(keys: list[KeySpec]) -> KeyGroup:
    seen: set[KeySpec] = set()
    out = []
    for k in keys:
        if k not in seen:
            seen.add(k)
            out.append(k)
    return tuple(out)


def _group_keys(raw: object, depth: int = 0) -> list[KeySpec]:
    """One ``key_groups`` item (``merge`` first, then age, pgp, kms, gcp_kms, hckms, azure, vault)."""
    if depth > 20:
        raise ConfigError("key group merge is nested too deeply")
    if not isinstance(raw, dict):
        raise ConfigError("a key_groups item must be a mapping")
    keys: list[KeySpec] = []
    for sub in _as_list(raw.get("merge"), "merge"):
        keys.extend(_group_keys(sub, depth + 1))
    for item in _as_list(raw.get("age"), "key_groups age"):
        keys.extend(("age", k) for k in split_keys(item, "age"))  # sops splits each item on commas
    for item in _as_list(raw.get("pgp"), "key_groups pgp"):
        keys.append(("pgp", _as_str(item, "pgp fingerprint")))
    for item in _as_list(raw.get("kms"), "key_groups kms"):
        keys.append(("kms", _as_str(item.get("arn") if isinstance(item, dict) else None, "kms arn")))
    for item in _as_list(raw.get("gcp_kms"), "key_groups gcp_kms"):
        keys.append(("gcp_kms", _as_str(item.get("resource_id") if isinstance(item, dict) else None, "resource_id")))
    for item in _as_list(raw.get("hckms"), "key_groups hckms"):
        keys.append(("hckms", _as_str(item.get("key_id") if isinstance(item, dict) else None, "key_id")))
    for item in _as_list(raw.get("azure_keyvault"), "key_groups azure_keyvault"):
        keys.append(("azure_kv", _azure_item(item)))
    for item in _as_list(raw.get("hc_vault"), "key_groups hc_vault"):
        keys.append(("hc_vault", _as_str(item, "hc_vault")))
    return keys


def _azure_item(item: object) -> str:
    if not isinstance(item, dict):
        raise ConfigError("an azure_keyvault entry must be a mapping with vaultUrl, key and version")
    url = _as_str(item.get("vaultUrl"), "azure_keyvault vaultUrl")
    key = _as_str(item.get("key"), "azure_keyvault key")
    if not url or not key:
        raise ConfigError("an azure_keyvault entry needs vaultUrl and key")
    return azure_spec(url, key, _as_str(item.get("version"), "azure_keyvault version"))


def _flat_group(raw: Mapping[str, object]) -> KeyGroup:
    keys: list[KeySpec] = []
    for name, kind in _FLAT_KEYS:
        keys.extend((kind, k) for k in split_keys(raw.get(name), name))
    return _dedup(keys)


def _selection_rule(raw: Mapping[str, object]) -> SelectionRule | None:
    given = [(k, _as_str(raw.get(k), k)) for k in RULE_KINDS]
    given = [(k, v) for k, v in given if v]
    if len(given) > 1:
        raise ConfigError(
            "cannot use more than one of " + ", ".join(RULE_KINDS) + " in the same creation rule"
        )
    return SelectionRule(*given[0]) if given else None


def parse_rule(raw: object, index: int = 0) -> CreationRule:
    """One ``creation_rules`` item."""
    if not isinstance(raw, dict):
        raise ConfigError(f"creation rule {index + 1} is not a mapping")
    try:
        path_regex = _as_str(raw.get("path_regex"), "path_regex")
        if path_regex:
            compile_re2ish(path_regex)
        groups_raw = _as_list(raw.get("key_groups"), "key_groups")
        if groups_raw:
            groups = tuple(_dedup(_group_keys(g)) for g in groups_raw)
        else:
            flat = _flat_group(raw)
            groups = (flat,) if flat else ()
        return CreationRule(
            path_regex=path_regex,
            key_groups=groups,
            shamir_threshold=_as_int(raw.get("shamir_threshold"), "shamir_threshold"),
            rule=_selection_rule(raw),
            mac_only_encrypted=_as_bool(raw.get("mac_only_encrypted"), "mac_only_encrypted"),
        )
    except ConfigError as exc:
        raise ConfigError(f"creation rule {index + 1}: {exc.message}", hint=exc.hint) from None


def _indent(stores: Mapping[str, object], name: str) -> int | None:
    section = stores.get(name)
    if not isinstance(section, dict) or _is_null(section.get("indent")):
        return None
    return _as_int(section.get("indent"), f"stores.{name}.indent")


def parse_config(data: bytes, path: str = CONFIG_NAME) -> Config:
    """Parse the bytes of a ``.sops.yaml`` found at ``path``."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: the config file is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        doc = _load_yaml(data)
        if _is_null(doc):
            doc = {}
        if not isinstance(doc, dict):
            raise ConfigError("the config file is not a mapping")
        raw_rules = doc.get("creation_rules")
        rules = None if _is_null(raw_rules) else tuple(
            parse_rule(r, i) for i, r in enumerate(_as_list(raw_rules, "creation_rules"))
        )
        stores = doc.get("stores")
        if not isinstance(stores, dict):
            stores = {}
        settings = StoreSettings(
            yaml_indent=_indent(stores, "yaml"),
            json_indent=_indent(stores, "json"),
            json_binary_indent=_indent(stores, "json_binary"),
        )
    except ConfigError as exc:
        raise exc.with_where(path) from None
    return Config(path=path, rules=rules, stores=settings, warnings=unknown_keys(doc))


def relative_to_config(config_dir: str, target_abs: str) -> str:
    """sops strips ``configDir + "/"``; a file outside that directory keeps its absolute path."""
    prefix = config_dir.rstrip(os.sep) + os.sep
    return target_abs[len(prefix):] if target_abs.startswith(prefix) else target_abs


def match_rule(config: Config, target_abs: str) -> CreationRule | None:
    """The first creation rule matching the target (an absolute path); None when the config has
    no ``creation_rules``. No match is an error, as in sops."""
    if config.rules is None:
        return None
    rel = relative_to_config(config.directory, target_abs)
    for rule in config.rules:
        if rule.matches(rel):
            return rule
    raise ConfigError(
        f"{config.path}: no matching creation rules found for {rel}",
        hint="add a creation rule whose path_regex matches this file, or a final rule without path_regex",
    )
