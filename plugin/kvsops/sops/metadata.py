"""The ``sops`` metadata block: parse any layout (sops <= 3.12 and 3.13), write the <= 3.12 layout."""

from __future__ import annotations

from kvsops._record import Factory, Record
from kvsops.errors import FormatError, MetadataNotFound
from kvsops.sops.rules import DEFAULT_UNENCRYPTED_SUFFIX, RULE_KINDS, SelectionRule
from kvsops.sops.timestamps import RFC3339, scan, valid_date
from kvsops.sops.tree import Branch

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Iterator, Mapping

# The sops release whose file layout we write (struct order, omitempty rules). Must be strict
# semver: sops parses it on every decrypt and refuses the file otherwise.
WRITER_VERSION = "3.11.0"

KEY_KINDS: tuple[str, ...] = ("kms", "gcp_kms", "hckms", "azure_kv", "hc_vault", "pgp", "age")
# Top-level struct order of sops <= 3.12 for the key lists.
_TOP_ORDER_BEFORE: tuple[str, ...] = ("kms", "gcp_kms", "hckms", "azure_kv", "hc_vault", "age")
_GROUP_ORDER: tuple[str, ...] = ("pgp", "kms", "gcp_kms", "hckms", "azure_kv", "hc_vault", "age")
_GROUP_ALWAYS = ("hc_vault", "age")  # not omitempty inside key_groups
_ENTRY_ORDER = {
    "pgp": ("created_at", "enc", "fp"),
    "kms": ("arn", "role", "context", "created_at", "enc", "aws_profile"),
    "gcp_kms": ("resource_id", "created_at", "enc"),
    "azure_kv": ("vault_url", "name", "version", "created_at", "enc"),
    "hc_vault": ("vault_address", "engine_path", "key_name", "created_at", "enc"),
    "age": ("recipient", "enc"),
    "hckms": ("key_id", "created_at", "enc"),
}
MAX_KEYS = 1000  # recipients per file: a safety limit for hostile input


def add_kind(kind: str, fields: tuple[str, ...]) -> None:
    """A key type beyond sops' own (``kvsops.keys.register``): its list is read and written after
    sops' kinds, at the top level and in key groups, its entries' fields in ``fields`` order."""
    global KEY_KINDS, _TOP_ORDER_BEFORE, _GROUP_ORDER
    if kind in KEY_KINDS:
        raise ValueError(f"key type {kind!r} is already part of the format")
    KEY_KINDS = (*KEY_KINDS, kind)
    _TOP_ORDER_BEFORE = (*_TOP_ORDER_BEFORE, kind)
    _GROUP_ORDER = (*_GROUP_ORDER, kind)
    _ENTRY_ORDER[kind] = fields

# The version check was a regex; it is scanned by hand (_is_semver) so that a decrypt never imports
# ``re`` (~5 ms of start-up with enum and functools). tests/unit/test_scanners.py checks the scanner
# against it on generated and hostile inputs. ``\d`` is any Unicode decimal digit (category Nd, exactly what
# ``str.isdecimal`` tests) and ``$`` also matches before one final newline.
_SEMVER_RE = r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"
_SEMVER_IDENT = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.-")


def _is_semver(version: str) -> bool:
    """``bool(re.match(_SEMVER_RE, version))``."""
    if version.endswith("\n"):
        version = version[:-1]
    if version[:1] == "v":
        version = version[1:]
    head, plus, build = version.partition("+")
    if plus and not (build and _SEMVER_IDENT.issuperset(build)):
        return False
    core, dash, pre = head.partition("-")  # no "-" in the numbers: the first one starts pre
    if dash and not (pre and _SEMVER_IDENT.issuperset(pre)):
        return False
    nums = core.split(".")
    return len(nums) == 3 and all(
        n == "0" or (n[:1] in _NONZERO and (len(n) == 1 or n[1:].isdecimal())) for n in nums
    )


_NONZERO = frozenset("123456789")


def _is_int_text(text: str) -> bool:
    """``re.fullmatch(r"[+-]?\\d+", text)`` (Unicode digits, as before)."""
    if text[:1] in ("+", "-"):
        text = text[1:]
    return text.isdecimal()


def rfc3339_canonical(text: str) -> str:
    """Go's ``time.Parse(RFC3339)`` then ``Format(RFC3339)``: drops fractions, keeps offsets."""
    stamp = scan(text.strip(), RFC3339) if isinstance(text, str) else None
    clock = stamp[1] if stamp is not None else None  # the dialect needs a clock and a zone
    if stamp is None or clock is None or stamp[3] is None:
        raise FormatError("metadata timestamp is not RFC 3339")
    (y, mo, d), (_sep, hh, mm, ss), tz = stamp[0], clock, stamp[3]
    if not _valid_datetime(int(y), int(mo), int(d), int(hh), int(mm), int(ss)):
        raise FormatError("metadata timestamp is not a valid date")
    if tz in ("Z", "z", "+00:00", "-00:00"):
        tz = "Z"  # Go's Z07:00 layout writes Z for any zero offset
    return f"{y}-{mo}-{d}T{hh}:{mm}:{ss}{tz}"


def _valid_datetime(y: int, mo: int, d: int, hh: int, mm: int, ss: int) -> bool:
    """What ``datetime.datetime(...)`` accepts, without importing datetime on every decrypt."""
    return hh < 24 and mm < 60 and ss < 60 and valid_date(y, mo, d)


def now_rfc3339() -> str:
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class KeyEntry(Record):
    """One master key entry; ``fields`` keeps every field (known or not) in file order."""

    __slots__ = _fields = ("kind", "fields")
    kind: str
    fields: tuple[tuple[str, object], ...]

    def get(self, name: str, default: object = "") -> object:
        for k, v in self.fields:
            if k == name:
                return v
        return default

    @property
    def enc(self) -> str:
        return str(self.get("enc", ""))

    def as_dict(self) -> dict[str, object]:
        return dict(self.fields)

    @classmethod
    def make(cls, kind: str, fields: Mapping[str, object]) -> KeyEntry:
        return cls(kind, tuple(fields.items()))


class Metadata(Record):
    __slots__ = _fields = ("key_groups", "shamir_threshold", "lastmodified", "mac", "rule",
                           "mac_only_encrypted", "version")
    _defaults = {"key_groups": (), "shamir_threshold": 0, "lastmodified": "", "mac": "",
                 "rule": Factory(SelectionRule), "mac_only_encrypted": False, "version": WRITER_VERSION}
    key_groups: tuple[tuple[KeyEntry, ...], ...]
    shamir_threshold: int
    lastmodified: str
    mac: str
    rule: SelectionRule | None
    mac_only_encrypted: bool
    version: str

    def entries(self) -> Iterator[KeyEntry]:
        for group in self.key_groups:
            yield from group

    def with_(self, **changes: object) -> "Metadata":
        return self._replace(**changes)


def _as_int(value: object, name: str) -> int:
    if isinstance(value, bool):
        raise FormatError(f"metadata field {name} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _is_int_text(value.strip()):
        if len(value.strip().lstrip("+-")) > 20:  # past 64 bits; Python reads at most 4,300 digits
            raise FormatError(f"metadata field {name} is out of range")
        return int(value)
    if value in (None, ""):
        return 0
    raise FormatError(f"metadata field {name} is not an integer")


def _as_bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (None, ""):
        return False
    if isinstance(value, str) and value.lower() in ("true", "1", "t", "false", "0", "f"):
        return value.lower() in ("true", "1", "t")
    if isinstance(value, int):
        return value != 0
    raise FormatError(f"metadata field {name} is not a boolean")


def _parse_entries(kind: str, raw: object) -> list[KeyEntry]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise FormatError(f"metadata field {kind} is not a list")
    out = []
    for item in raw:
        if not isinstance(item, Branch):
            raise FormatError(f"metadata {kind} entry is not a mapping")
        fields = tuple((str(k), v) for k, v in item if isinstance(k, str))
        entry = KeyEntry(kind, fields)
        created = entry.get("created_at", None)
        if created not in (None, ""):
            rfc3339_canonical(str(created))
        if not isinstance(entry.get("enc", ""), str):
            raise FormatError(f"metadata {kind} entry has a non-string enc")
        out.append(entry)
    return out


def _group_from(raw: Branch) -> tuple[KeyEntry, ...]:
    entries: list[KeyEntry] = []
    for kind in KEY_KINDS:  # sops' internal order; decryption order is applied later
        entries.extend(_parse_entries(kind, raw.get(kind)))
    return tuple(entries)


def parse(raw: object) -> Metadata:
    """Build Metadata from the raw ``sops`` Branch a store returns."""
    if raw is None:
        raise MetadataNotFound("sops metadata not found", hint="the file is not encrypted")
    if not isinstance(raw, Branch):
        raise FormatError("found sops entry that is not a mapping")
    top = _group_from(raw)
    if top:
        groups: tuple[tuple[KeyEntry, ...], ...] = (top,)
    else:
        kg = raw.get("key_groups")
        if kg is not None and not isinstance(kg, list):
            raise FormatError("metadata field key_groups is not a list")
        groups = tuple(_group_from(g) for g in (kg or []) if isinstance(g, Branch))
        if kg and len(groups) != len(kg):
            raise FormatError("metadata key_groups entry is not a mapping")
    if not groups or not any(groups):
        raise FormatError("no keys found in file")
    if sum(len(g) for g in groups) > MAX_KEYS:
        raise FormatError(f"metadata lists more than {MAX_KEYS} keys")

    rules = [(k, raw.get(k)) for k in RULE_KINDS if raw.get(k) not in (None, "")]
    if len(rules) > 1:
        raise FormatError("cannot use more than one of " + ", ".join(k for k, _ in rules))
    rule = SelectionRule(rules[0][0], str(rules[0][1])) if rules else SelectionRule(
        "unencrypted_suffix", DEFAULT_UNENCRYPTED_SUFFIX
    )

    lastmodified = raw.get("lastmodified")
    if lastmodified in (None, ""):
        raise FormatError("metadata has no lastmodified")
    rfc3339_canonical(str(lastmodified))
    version = raw.get("version")
    version = "" if version is None else str(version)
    if not (_is_semver(version) or version.startswith("1.")):
        raise FormatError("metadata version is not a valid semantic version")
    mac = raw.get("mac")
    if mac is not None and not isinstance(mac, str):
        raise FormatError("metadata mac is not a string")
    return Metadata(
        key_groups=groups,
        shamir_threshold=_as_int(raw.get("shamir_threshold"), "shamir_threshold"),
        lastmodified=str(lastmodified),
        mac=mac or "",
        rule=rule,
        mac_only_encrypted=_as_bool(raw.get("mac_only_encrypted"), "mac_only_encrypted"),
        version=version,
    )


def _entry_branch(entry: KeyEntry) -> Branch:
    order = _ENTRY_ORDER.get(entry.kind, ())
    fields = entry.as_dict()
    out = Branch()
    for name in order:
        if name in fields:
            out.append((name, fields.pop(name)))
        elif entry.kind == "kms" and name == "aws_profile":
            out.append((name, ""))  # always written by sops
    out.extend(fields.items())
    return out


def _lists(group: tuple[KeyEntry, ...]) -> dict[str, list[Branch]]:
    lists: dict[str, list[Branch]] = {}
    for entry in group:
        lists.setdefault(entry.kind, []).append(_entry_branch(entry))
    return lists


def to_tree(md: Metadata, *, write_rule: bool = True) -> Branch:
    """The metadata Branch in sops <= 3.12 struct order (what sops 3.11 writes)."""
    out = Branch()
    multi = len(md.key_groups) > 1
    top: dict[str, list[Branch]] = {} if multi else _lists(md.key_groups[0] if md.key_groups else ())
    if multi:
        if md.shamir_threshold:
            out.append(("shamir_threshold", md.shamir_threshold))
        groups = []
        for group in md.key_groups:
            lists = _lists(group)
            gb = Branch()
            for kind in _GROUP_ORDER:
                if lists.get(kind) or kind in _GROUP_ALWAYS:
                    gb.append((kind, lists.get(kind, [])))
            groups.append(gb)
        out.append(("key_groups", groups))
    for kind in _TOP_ORDER_BEFORE:
        if top.get(kind):
            out.append((kind, top[kind]))
    out.append(("lastmodified", md.lastmodified))
    out.append(("mac", md.mac))
    if top.get("pgp"):
        out.append(("pgp", top["pgp"]))
    if write_rule and md.rule is not None:
        out.append((md.rule.kind, md.rule.value))
    if md.mac_only_encrypted:
        out.append(("mac_only_encrypted", True))
    out.append(("version", md.version))
    return out
