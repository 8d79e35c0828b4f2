"""Key types: ONE table of kinds and a lazy registry of their backend modules.

Adding a key type is one backend module (the :class:`kvsops.keys.base.KeyBackend` protocol;
``kvsops.keys.age`` is the example) and one :class:`KindInfo` row in :data:`KINDS`. Everything
else reads the table: the CLI's flags and environment variables, ``.sops.yaml`` keys, the key
policy's lists, the decryption order, which kinds may run on threads. A backend module is imported
only when a key of its kind is used (its import must stay light: no SDK, no ``re`` at import time).
"""

from __future__ import annotations

import sys

from kvsops._record import Record
from kvsops.keys.base import one_string

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

    from kvsops.keys.base import KeyBackend


class KindInfo(Record):
    """One key type: the metadata list name ``kind`` and everything the layers above need to know.

    ``module``        the backend module ("" for the sops kinds kvsops cannot use: their entries
                      are parsed and kept, never tried, and ``foreign`` says how to name them)
    ``local``         unwrapped without network: tried before the others, in sops' default order
    ``in_process``    unwrapped by CPU work in this process (nothing to wait for: no thread for it)
    ``flag``          the CLI flag (``--age``; rotate's ``--add-age``/``--rm-age``), ``short`` its
                      short form, ``noun`` what its comma list holds (help texts)
    ``env``           the environment variable read when the flag is absent
    ``flag_rank``     the position of its keys in the group sops builds from flags
    ``config_key``    the ``.sops.yaml`` key in a key group; ``config_flat`` in a creation rule;
                      ``config_schema`` what its value may hold (None: anything), for the unknown-key
                      warnings
    ``policy``        the key policy's list for it ("" if a policy cannot allow it)
    ``foreign``       for a kind without module: (its public name as a format of the entry's fields,
                      the field a ``.sops.yaml`` key-group mapping names it by ("": the item is a
                      string), that field's name in messages)
    ``extra``         the optional dependency set (``pip install 'kvsops[extra]'``) its backend needs
    ``entry_fields``  for a kind sops' format does not know (one :func:`register` adds): its
                      metadata entries' fields in the order they are written
    """

    __slots__ = _fields = ("kind", "module", "local", "in_process", "flag", "short", "noun", "env", "flag_rank",
                           "config_key", "config_flat", "config_schema", "policy", "foreign", "extra", "entry_fields")
    _defaults = {"module": "", "local": False, "in_process": False, "flag": "", "short": "", "noun": "",
                 "env": "", "flag_rank": 0, "config_flat": "", "config_schema": None, "policy": "",
                 "foreign": ("", "", ""), "extra": "", "entry_fields": ()}
    kind: str
    module: str
    local: bool
    in_process: bool
    flag: str
    short: str
    noun: str
    env: str
    flag_rank: int
    config_key: str
    config_flat: str
    config_schema: object
    policy: str
    foreign: tuple[str, str, str]
    extra: str
    entry_fields: tuple[str, ...]

    @property
    def flat_key(self) -> str:
        return self.config_flat or self.config_key

    @property
    def dest(self) -> str:
        """The argparse attribute of ``--flag``."""
        return self.flag.replace("-", "_")


# Rows in sops' configuration order (config.go: getKeyGroupsFromCreationRule), which is also the
# order kinds are read from a .sops.yaml key group.
KINDS: tuple[KindInfo, ...] = (
    KindInfo("age", "kvsops.keys.age", local=True, in_process=True, flag="age", short="-a",
             noun="age recipients", env="SOPS_AGE_RECIPIENTS", flag_rank=5, config_key="age", policy="age"),
    KindInfo("pgp", "kvsops.keys.pgp", local=True, flag="pgp", short="-p", noun="PGP fingerprints",
             env="SOPS_PGP_FP", flag_rank=3, config_key="pgp", policy="pgp"),
    KindInfo("kms", config_key="kms",
             config_schema=[{"arn": None, "role": None, "context": None, "aws_profile": None}],
             foreign=("{arn}", "arn", "kms arn")),
    KindInfo("gcp_kms", config_key="gcp_kms", config_schema=[{"resource_id": None}],
             foreign=("{resource_id}", "resource_id", "resource_id")),
    KindInfo("hckms", config_key="hckms", config_schema=[{"key_id": None}], foreign=("{key_id}", "key_id", "key_id")),
    KindInfo("azure_kv", "kvsops.keys.azure_kv", flag="azure-kv", noun="Key Vault key URLs",
             env="SOPS_AZURE_KEYVAULT_URLS", flag_rank=2, config_key="azure_keyvault",
             config_schema=[{"vaultUrl": None, "key": None, "version": None}], policy="azure_kv", extra="azure"),
    KindInfo("hc_vault", config_key="hc_vault", config_flat="hc_vault_transit_uri",
             foreign=("{vault_address}/v1/{engine_path}/keys/{key_name}", "", "hc_vault")),
)
_BY_KIND = {k.kind: k for k in KINDS}


def register(row: KindInfo) -> None:
    """Add a key type from outside this table (a plugin, a test): its row, whose ``module`` must
    be importable and implement KeyBackend, and whose ``entry_fields`` tell the format its entries."""
    global KINDS
    from kvsops.sops import metadata

    if row.kind in _BY_KIND or not row.module:
        raise ValueError(f"cannot register key type {row.kind!r}: taken, or no backend module")
    metadata.add_kind(row.kind, row.entry_fields)
    KINDS = (*KINDS, row)
    _BY_KIND[row.kind] = row


def info(kind: str) -> KindInfo | None:
    return _BY_KIND.get(kind)


def usable(kind: str) -> bool:
    """A kind kvsops can wrap and unwrap for (it has a backend)."""
    row = _BY_KIND.get(kind)
    return row is not None and bool(row.module)


def backends() -> tuple[KindInfo, ...]:
    """The rows with a backend, in table order."""
    return tuple(k for k in KINDS if k.module)


def default_order() -> tuple[str, ...]:
    """sops' default decryption order: the local kinds."""
    return tuple(k.kind for k in KINDS if k.local)


def backend(kind: str) -> KeyBackend:
    row = _BY_KIND.get(kind)
    if row is None or not row.module:
        raise ValueError(f"unsupported key type {kind!r}")
    __import__(row.module)  # importlib.import_module, without importing importlib (and warnings)
    module: Any = sys.modules[row.module]  # a module is checked against KeyBackend by the tests
    found: KeyBackend = module
    return found


def entry_spec(kind: str, fields: Mapping[str, object]) -> str:
    """The public identity of a metadata key entry, as sops' ``ToString`` writes it."""
    if usable(kind):
        return backend(kind).entry_spec(fields)
    row = _BY_KIND.get(kind)
    template = row.foreign[0] if row is not None else "{key_id}"
    return template.format_map({k: str(v or "") for k, v in _with_blanks(template, fields).items()})


def _with_blanks(template: str, fields: Mapping[str, object]) -> dict[str, object]:
    """``fields`` with every name ``template`` uses (a missing field formats as "")."""
    names = [part.split("}", 1)[0] for part in template.split("{")[1:]]
    return {**dict.fromkeys(names, ""), **fields}


def same_key(kind: str, have: str, want: str) -> bool:
    """Whether a key given as ``want`` (a flag, a rule) is the entry ``have`` names."""
    return backend(kind).same_key(have, want) if usable(kind) else have == want


def config_specs(kind: str, item: object) -> list[str]:
    """One item of a ``.sops.yaml`` key group's list for ``kind``, as key specs; ValueError when
    it has not the shape the kind needs."""
    if usable(kind):
        return backend(kind).config_specs(item)
    _template, field, name = _BY_KIND[kind].foreign
    value = (item.get(field) if isinstance(item, dict) else None) if field else item
    return [one_string(value, name)]
