"""``kvsops check``: a team guard (and pre-commit hook) against plaintext secrets and stale keys.

A file fails when
  * a ``.sops.yaml`` creation rule with a ``path_regex`` matches it and it is not encrypted;
  * it is a Kubernetes Secret manifest with data/stringData in plaintext (encrypted or not:
    a selection rule can leave ``stringData`` plain);
  * it is encrypted and its keys differ from what its creation rule names (updatekeys is due).
It warns (without failing) about an encrypted file with ``mac_only_encrypted: true`` that holds
Kubernetes objects: its MAC does not cover their unencrypted fields or documents added to it.
The config is the ``.sops.yaml`` nearest to each file (or ``--config``). Nothing is decrypted.
When no checked file has a config, a tree walk (directories, or no argument) fails: the guard
cannot say which files must be encrypted. A list of files (pre-commit passes the staged ones)
only warns, since the config may cover other parts of the tree.
"""

from __future__ import annotations

import os

from kvsops import errors, report
from kvsops.cli import common
from kvsops.sops.tree import Branch

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kvsops.cli.common import Args
    from kvsops.config import Config

MAX_BYTES = 16 << 20  # larger files are skipped: not configuration


class CheckFailed(errors.KvsopsError):
    code = "CHECK_FAILED"
    exit_code = 1


class _Configs:
    """The nearest .sops.yaml per directory (cached), or the one given with --config."""

    def __init__(self, explicit: str | None) -> None:
        self.explicit = explicit
        self._cache: dict[str, Config | None] = {}
        self._warned: set[str] = set()

    def found_any(self) -> bool:
        return any(cfg is not None for cfg in self._cache.values())

    def for_file(self, path: str) -> Config | None:
        directory = os.path.dirname(path)
        if directory not in self._cache:
            cfg, warnings = common.load_config(directory, common.environ(), self.explicit)
            for w in warnings:  # once per config file, however many directories it covers
                if w not in self._warned:
                    self._warned.add(w)
                    common.warn(w)
            self._cache[directory] = cfg
        return self._cache[directory]


def _secret_values_plain(doc: Branch) -> bool:
    """A Secret manifest whose data/stringData holds a value that is neither ENC[...] nor a template."""
    if doc.get("kind") != "Secret":
        return False
    for section in ("data", "stringData"):
        values = doc.get(section)
        if isinstance(values, Branch):
            for _k, v in values:
                if isinstance(v, str) and v and not v.startswith("ENC[AES256_GCM,") and "{{" not in v:
                    return True
    return False


def _docs(data: bytes, fmt: str, encrypted: bool) -> list[Branch]:
    from kvsops.sops import stores

    store = stores.get(fmt)
    try:
        return store.load_encrypted(data)[0] if encrypted else store.load_plain(data)
    except Exception:  # noqa: BLE001 - templates and other non-manifests are not our concern
        return []


MAC_ONLY_WARNING = ("mac_only_encrypted is set and the file holds Kubernetes objects: its MAC does not cover "
                    "their unencrypted fields (a namespace, labels, the kind) nor documents added to the file; "
                    "drop mac_only_encrypted and re-encrypt to cover them")


def _kubernetes(doc: Branch) -> bool:
    return doc.get("apiVersion") is not None and doc.get("kind") is not None


def _reasons(path: str, configs: _Configs, warnings: list[str]) -> list[str]:
    from kvsops import api, config

    if (os.path.basename(path) in (common.CONFIG_NAME, common.ALTERNATE_NAME) or not os.path.isfile(path)
            or os.path.getsize(path) > MAX_BYTES):
        return []
    data = common.read_file(path)
    fmt = common.fmt_for(None, path)
    encrypted = api.is_encrypted(data, fmt)
    cfg = configs.for_file(path)
    rule = config.match_rule(cfg, path) if cfg is not None and _has_match(cfg, path) else None
    reasons = []
    if cfg is not None and rule is not None and rule.path_regex and not encrypted:
        reasons.append(f"not encrypted, but {common.display(cfg.path)} says files matching {rule.path_regex} must be")
    docs = _docs(data, fmt, encrypted) if fmt in ("yaml", "json") else []
    if any(_secret_values_plain(d) for d in docs):
        reasons.append("a Kubernetes Secret with plaintext data/stringData values")
    if encrypted and any(_kubernetes(d) for d in docs) and api.load_encrypted(data, fmt)[1].mac_only_encrypted:
        warnings.append(MAC_ONLY_WARNING)
    if encrypted and rule is not None and rule.key_groups:
        _docs_, md = api.load_encrypted(data, fmt)
        diff = common.diff_groups(common.group_specs(md), [list(g) for g in rule.key_groups])
        if any(a or r for a, r in diff):
            reasons.append("its keys differ from .sops.yaml: run 'kvsops updatekeys " + common.display(path) + "'")
    return reasons


def _has_match(cfg: Config, path: str) -> bool:
    from kvsops import config

    if cfg.rules is None:
        return False
    rel = config.relative_to_config(cfg.directory, path)
    return any(r.matches(rel) for r in cfg.rules)


def check(args: Args) -> int:
    paths = args.paths or ["."]
    for p in paths:
        if not os.path.exists(p):
            raise errors.NoFileSpecified(f"{p} does not exist")
    configs = _Configs(args.config)
    failed = 0
    checked = 0
    for path in common.iter_files(paths):
        checked += 1
        warnings: list[str] = []
        for reason in _reasons(os.path.abspath(path), configs, warnings):
            report.print_error(CheckFailed(reason, where=common.display(path)))
            failed += 1
        for warning in warnings:
            common.warn(f"{common.display(path)}: {warning}")
    if not configs.found_any():
        _no_config(paths)
    if failed:
        raise CheckFailed(f"{failed} problem(s) in {checked} file(s) checked",
                          hint="encrypt the files with 'kvsops encrypt -i FILE', or run 'kvsops updatekeys FILE'")
    return 0


def _no_config(paths: list[str]) -> None:
    where = f"no {common.CONFIG_NAME} found for {', '.join(common.display(os.path.abspath(p)) for p in paths)} or above"
    if all(os.path.isfile(p) for p in paths):
        common.warn(f"{where}: only Kubernetes Secrets were checked")
        return
    raise errors.ConfigError(
        f"{where}: check needs its creation rules to know which files must be encrypted",
        hint=f"run it inside the repository that holds {common.CONFIG_NAME} (see 'Team workflow' in the README), "
             "or pass --config FILE",
    )
