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

from kvsops import keys as key_types
from kvsops.errors import ConfigError
from kvsops.sops.rules import RULE_KINDS, SelectionRule, compile_re2ish

CONFIG_NAME = ".sops.yaml"
MAX_CONFIG_BYTES = 1 << 20

KeySpec = tuple[str, str]
KeyGroup = tuple[KeySpec, ...]


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
# The keys of each kind come from kvsops.keys' table (config_key, config_flat, config_schema), read
# when a config is checked (a key type may be registered after this module is imported).
_ANY = None
_RULE_FIELDS = ("path_regex", "aws_profile", "shamir_threshold", "unencrypted_suffix", "encrypted_suffix",
                "unencrypted_regex", "encrypted_regex", "unencrypted_comment_regex", "encrypted_comment_regex",
                "mac_only_encrypted")
_DESTINATION_FIELDS = ("path_regex", "s3_bucket", "s3_prefix", "gcs_bucket", "gcs_prefix", "vault_path",
                       "vault_address", "vault_kv_mount_name", "vault_kv_version", "omit_extensions")
_INDENT = {"indent": _ANY}


def schema() -> dict[str, object]:
    """Every key sops reads, as kvsops._schema takes it."""
    group: dict[str, object] = {"merge": _ANY, **{row.config_key: row.config_schema for row in key_types.KINDS}}
    group["merge"] = [group]
    rule: dict[str, object] = {
        **dict.fromkeys((*_RULE_FIELDS, *(row.flat_key for row in key_types.KINDS)), _ANY),
        "key_groups": [group],
    }
    return {
        "creation_rules": [rule],
        "destination_rules": [{**dict.fromkeys(_DESTINATION_FIELDS, _ANY), "recreation_rule": rule}],
        "stores": {"yaml": _INDENT, "json": _INDENT, "json_binary": _INDENT, "dotenv": {}, "ini": {}},
    }


def unknown_keys(doc: Mapping[str, object], limit: int = 10) -> tuple[str, ...]:
    """One warning per key sops would ignore, with the closest valid name (the first ``limit``)."""
    from itertools import islice

    from kvsops import _schema

    found = [f"{f.message()} (sops ignores it)" for f in islice(_schema.findings(doc, schema()), limit + 1)]
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
    from kvsops.keys.base import comma_list

    try:
        return comma_list(value, name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _dedup(keys: list[KeySpec]) -> KeyGroup:
    seen: set[KeySpec] = set()
    out = []
    for k in keys:
        if k not in seen:
            seen.add(k)
            out.append(k)
    return tuple(out)


def _group_keys(raw: object, depth: int = 0) -> list[KeySpec]:
    """One ``key_groups`` item: ``merge`` first, then each kind in sops' order."""
    if depth > 20:
        raise ConfigError("key group merge is nested too deeply")
    if not isinstance(raw, dict):
        raise ConfigError("a key_groups item must be a mapping")
    keys: list[KeySpec] = []
    for sub in _as_list(raw.get("merge"), "merge"):
        keys.extend(_group_keys(sub, depth + 1))
    for row in key_types.KINDS:
        for item in _as_list(raw.get(row.config_key), f"key_groups {row.config_key}"):
            try:
                keys.extend((row.kind, spec) for spec in key_types.config_specs(row.kind, item))
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
    return keys


def _flat_group(raw: Mapping[str, object]) -> KeyGroup:
    keys: list[KeySpec] = []
    for row in key_types.KINDS:
        keys.extend((row.kind, k) for k in split_keys(raw.get(row.flat_key), row.flat_key))
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
