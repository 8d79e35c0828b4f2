"""sops' own command line: the flag-driven forms next to the subcommands.

    kvsops -d FILE            kvsops -e -i FILE          kvsops -r -i --add-age age1... FILE
    kvsops --set '["a"] 1' FILE                          kvsops FILE   (edit)

sops 3.11 (urfave/cli v1 on Go's ``flag`` package) reads its global flags up to the first argument
that is not a flag; that argument is the file, or a subcommand's name. Flags after the file are not
flags: they are extra arguments, ignored with a warning (``sops FILE -d`` edits FILE). The mode is
``--decrypt``, ``--encrypt``, ``--rotate`` or ``--set``; none of them is edit. Each mode is the
matching kvsops command's own work (kvsops.cli.commands, keycmds, edit), so both spellings behave
and fail the same way; what differs is sops': where the output goes (``--set`` and edit write the
file, the others stdout, ``--output`` or ``-i``) and which checks come first.

No argparse here: ``kvsops -d FILE`` starts as fast as ``kvsops decrypt FILE``.
"""

from __future__ import annotations

import os
import sys

from kvsops import errors
from kvsops.cli.common import Args

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence

BOOL, STR, INT, LIST = "bool", "str", "int", "list"

# sops 3.11's global flags (`sops --help`), by name and alias -> (kind, attribute). The attribute
# names are argparse's, so the namespace suits kvsops' command functions.
_SPEC: tuple[tuple[str, str, str], ...] = (
    ("decrypt,d", BOOL, "decrypt"),
    ("encrypt,e", BOOL, "encrypt"),
    ("rotate,r", BOOL, "rotate"),
    ("disable-version-check", BOOL, "disable_version_check"),
    ("check-for-updates", BOOL, "check_for_updates"),
    ("kms,k", STR, "kms"),
    ("aws-profile", STR, "aws_profile"),
    ("gcp-kms", STR, "gcp_kms"),
    ("hckms", STR, "hckms"),
    ("azure-kv", STR, "azure_kv"),
    ("hc-vault-transit", STR, "hc_vault_transit"),
    ("pgp,p", STR, "pgp"),
    ("age,a", STR, "age"),
    ("in-place,i", BOOL, "in_place"),
    ("extract", STR, "extract"),
    ("input-type", STR, "input_type"),
    ("output-type", STR, "output_type"),
    ("show-master-keys,s", BOOL, "show_master_keys"),
    ("add-gcp-kms", STR, "add_gcp_kms"),
    ("rm-gcp-kms", STR, "rm_gcp_kms"),
    ("add-hckms", STR, "add_hckms"),
    ("rm-hckms", STR, "rm_hckms"),
    ("add-azure-kv", STR, "add_azure_kv"),
    ("rm-azure-kv", STR, "rm_azure_kv"),
    ("add-kms", STR, "add_kms"),
    ("rm-kms", STR, "rm_kms"),
    ("add-hc-vault-transit", STR, "add_hc_vault_transit"),
    ("rm-hc-vault-transit", STR, "rm_hc_vault_transit"),
    ("add-age", STR, "add_age"),
    ("rm-age", STR, "rm_age"),
    ("add-pgp", STR, "add_pgp"),
    ("rm-pgp", STR, "rm_pgp"),
    ("ignore-mac", BOOL, "ignore_mac"),
    ("mac-only-encrypted", BOOL, "mac_only_encrypted"),
    ("unencrypted-suffix", STR, "unencrypted_suffix"),
    ("encrypted-suffix", STR, "encrypted_suffix"),
    ("unencrypted-regex", STR, "unencrypted_regex"),
    ("encrypted-regex", STR, "encrypted_regex"),
    ("unencrypted-comment-regex", STR, "unencrypted_comment_regex"),
    ("encrypted-comment-regex", STR, "encrypted_comment_regex"),
    ("config", STR, "config"),
    ("encryption-context", STR, "encryption_context"),
    ("set", STR, "set"),
    ("shamir-secret-sharing-threshold", INT, "shamir_secret_sharing_threshold"),
    ("indent", INT, "indent"),
    ("verbose", BOOL, "verbose"),
    ("output", STR, "output"),
    ("filename-override", STR, "filename_override"),
    ("decryption-order", STR, "decryption_order"),
    ("enable-local-keyservice", BOOL, "enable_local_keyservice"),
    ("keyservice", LIST, "keyservice"),
    ("help,h", BOOL, "help"),
    ("version,v", BOOL, "version"),
    ("debug", BOOL, "debug"),  # kvsops' own: stack frames on errors
)
FLAGS: dict[str, tuple[str, str]] = {name: (kind, dest) for names, kind, dest in _SPEC for name in names.split(",")}

# kvsops' subcommands (kvsops.cli.parser) and sops' help command: a first argument naming one of
# them is a subcommand, as in sops. Kept here so that telling the forms apart needs no argparse.
COMMANDS = frozenset({"decrypt", "encrypt", "edit", "set", "unset", "updatekeys", "rotate", "filestatus",
                      "keygen", "check", "help", "h"})
# Key types kvsops cannot wrap for or reach: their flags are accepted and refused when used.
_FOREIGN_KEYS = ("kms", "gcp_kms", "hckms", "hc_vault_transit")
_KEY_CHANGES = tuple(f"{op}_{kind}" for op in ("add", "rm") for kind in ("kms", "gcp_kms", "hckms", "azure_kv",
                                                                          "hc_vault_transit", "age", "pgp"))
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class Namespace(Args):
    """The parsed flags: kvsops' command functions take it as the parser's :class:`Args`; sops'
    own flags are the fields below (tests/unit/test_cli_args.py: every flag has one)."""

    # the modes
    decrypt: bool
    encrypt: bool
    rotate: bool
    set: str | None
    # accepted, refused when used: key types kvsops cannot wrap for, sops key services
    kms: str | None
    aws_profile: str | None
    gcp_kms: str | None
    hckms: str | None
    hc_vault_transit: str | None
    encryption_context: str | None
    enable_local_keyservice: bool
    keyservice: list[str]
    # accepted, no effect
    disable_version_check: bool
    check_for_updates: bool
    verbose: bool
    # handed to argparse
    help: bool
    version: bool

    def __init__(self) -> None:
        for kind, dest in FLAGS.values():
            setattr(self, dest, False if kind == BOOL else 0 if kind == INT else [] if kind == LIST else None)
        self.enable_local_keyservice = True  # a BoolT flag in sops
        self.indent = None  # sops asks IsSet("indent"): not given is not 0
        self.file = None


def parse(args: Sequence[str]) -> tuple[Namespace, list[str]]:
    """Go's ``flag.FlagSet.Parse``: flags up to the first non-flag argument or ``--``; ``-x`` and
    ``--x`` alike; ``-x=v`` or ``-x v`` for values; a bool takes ``=`` only. Errors say what Go's
    says (sops exits 1 on them)."""
    ns = Namespace()
    i = 0
    while i < len(args):
        arg = args[i]
        if len(arg) < 2 or arg[0] != "-":
            break
        if arg == "--":
            i += 1
            break
        name = arg[2:] if arg[1] == "-" else arg[1:]
        if not name or name[0] in "-=":
            raise errors.UsageError(f"bad flag syntax: {arg}")
        name, eq, value = name.partition("=")
        spec = FLAGS.get(name)
        if spec is None:
            raise errors.UsageError(f"flag provided but not defined: -{name}", hint="run 'kvsops --help' for usage")
        kind, dest = spec
        i += 1
        if kind == BOOL:
            if eq and value not in _GO_TRUE | _GO_FALSE:
                raise errors.UsageError(f"invalid boolean value for -{name}")
            setattr(ns, dest, not eq or value in _GO_TRUE)
        else:
            if not eq:
                if i >= len(args):
                    raise errors.UsageError(f"flag needs an argument: -{name}")
                value = args[i]
                i += 1
            if kind == INT:
                setattr(ns, dest, _go_int(value, name))
            elif kind == LIST:
                getattr(ns, dest).append(value)
            else:
                setattr(ns, dest, value)
    return ns, list(args[i:])


def _go_int(text: str, name: str) -> int:
    """strconv.ParseInt(text, 0, 64), as Go's flag package reads an int: an optional sign, a
    0x/0o/0b prefix or a leading 0 for octal, underscores between digits."""
    body = text[1:] if text[:1] in "+-" else text
    try:
        if not body or not body.isascii() or body != body.strip():
            raise ValueError(text)
        if len(body) > 1 and body[0] == "0" and body[1] not in "xXoObB":
            n = int("0o" + body[1:], 0)  # Go's leading-zero octal (Python wants 0o)
        else:
            n = int(body, 0)
    except ValueError:
        raise errors.UsageError(f"invalid value for flag -{name}: parse error") from None
    n = -n if text.startswith("-") else n
    if not -(1 << 63) <= n < (1 << 63):
        raise errors.UsageError(f"invalid value for flag -{name}: value out of range")
    return n


def is_legacy(ns: Namespace, rest: Sequence[str]) -> bool:
    """False when the command line is a subcommand's (or a request for help or the version)."""
    if ns.help or ns.version:
        return False
    from kvsops.cli.main import DISPATCH  # the hosts' commands (loaded: main is what called us)

    return not (rest and (rest[0] in COMMANDS or rest[0] in DISPATCH))


def for_argparse(args: Sequence[str]) -> list[str]:
    """A subcommand line as kvsops' parser spells it: sops' ``-v`` is ``--version``, its ``help``
    (``h``) command is ``--help`` (``help CMD``: ``CMD --help``)."""
    ns, rest = parse(args)
    if ns.help:
        return ["--help"]
    if ns.version:
        return ["--version"]
    if rest and rest[0] in ("help", "h"):
        return [rest[1], "--help"] if len(rest) > 1 and rest[1] in COMMANDS else ["--help"]
    return list(args)


def main(args: Sequence[str]) -> int | None:
    """Run a legacy command line; None when it is not one (the caller hands it to argparse)."""
    ns, rest = parse(args)
    if not is_legacy(ns, rest):
        return None
    return run(ns, rest)


# ----------------------------------------------------------------------------- the action


def _warn(message: str) -> None:
    sys.stderr.write(f"kvsops: warning: {message}\n")


def run(ns: Namespace, rest: list[str]) -> int:
    """sops' app.Action, step by step."""
    from kvsops.cli import common

    modes = [m for m in ("encrypt", "decrypt", "rotate") if getattr(ns, m)] + (["set"] if ns.set else [])
    if not rest:
        raise errors.NoFileSpecified("no file specified",
                                     hint="kvsops FILE edits it; kvsops --help shows the other forms")
    if len(rest) > 1:
        flagged = [a for a in rest[1:] if a.startswith("-")]
        _warn("more than one positional argument provided; only the first one is used"
              + (f" ({flagged[-1]!r} looks like a flag: flags go before the file)" if flagged else ""))
    ns.file = rest[0]
    if ns.in_place and ns.output:
        raise errors.ConflictingParameters("cannot operate on both --output and --in-place")
    path = os.path.abspath(rest[0])
    if not os.path.exists(path):
        if any(getattr(ns, k) for k in _KEY_CHANGES):
            raise errors.CannotChangeKeys(f"cannot add or remove keys on non-existent file {rest[0]}",
                                          hint="use --age/--pgp/--azure-kv to create a new file")
        if {"encrypt", "decrypt", "rotate"} & set(modes):
            raise errors.NoFileSpecified(f"cannot operate on non-existent file {rest[0]}")
    if len(modes) > 1:
        _warn("more than one command (--encrypt, --decrypt, --rotate, --set) was given: only the changes made "
              "by the last one are visible (sops deprecates this)")
    if ns.keyservice:
        raise errors.UsageError("--keyservice: kvsops does not use sops key services")
    name = os.path.abspath(ns.filename_override) if ns.filename_override else path
    env = common.environ()
    if modes != ["decrypt"]:  # sops loads the creation rule first, except for a plain decrypt (sops#868)
        common.creation_rule(ns, env, name)
    if ns.decryption_order:
        from kvsops import api

        api.decryption_order(ns.decryption_order)
    out = _outputs(ns, modes, path, name)
    if ns.in_place or not modes or "set" in modes:
        common.write_file(path, out, private=modes[-1:] == ["decrypt"])
    else:
        common.deliver(out, ns, path, plaintext=modes[-1:] == ["decrypt"])
    return 0


def _refuse_foreign(ns: Namespace, dests: Sequence[str]) -> None:
    """Keys kvsops cannot wrap for (AWS/GCP/HuaweiCloud KMS, Vault transit), where they would be used."""
    for dest in dests:
        if getattr(ns, dest):
            flag = "--" + dest.replace("_", "-")
            raise errors.UsageError(f"{flag}: kvsops handles age, PGP and Azure Key Vault keys only")


def _outputs(ns: Namespace, modes: list[str], path: str, name: str) -> bytes:
    """What to write. Several modes run in sops' order (encrypt, decrypt, rotate, set), each on
    the file as it is on disk; the last one's output wins, and errors follow sops' scoping:
    encrypt's is dropped when another mode follows (its key and rule checks are not), decrypt's
    stands unless --set runs, rotate's and a malformed --set stop at once."""
    from kvsops.cli import commands, common

    sess = common.session(ns)
    out = b""
    failed: errors.KvsopsError | None = None
    if "encrypt" in modes or not (modes or os.path.exists(path)):  # encrypt, or edit a new file
        _refuse_foreign(ns, _FOREIGN_KEYS)
    if "rotate" in modes:
        _refuse_foreign(ns, [k for k in _KEY_CHANGES if k.endswith(tuple(_FOREIGN_KEYS))])
    if "encrypt" in modes:
        settings = commands.encryption_settings(ns, name, sess)
        try:
            out = commands.encrypt_output(ns, path, name, settings)
        except errors.KvsopsError:
            if modes == ["encrypt"]:
                raise
    if "decrypt" in modes:
        try:
            out = commands.decrypt_output(ns, path, name)
        except errors.KvsopsError as exc:
            out, failed = b"", exc
    if "rotate" in modes:
        from kvsops.cli import keycmds

        out = keycmds.rotated(path, ns, sess, name)
    if "set" in modes:
        index, value = set_arguments(ns.set or "")
        failed = None
        try:
            out = commands.set_output(ns, path, name, index, value)[0]
        except errors.KvsopsError as exc:
            out, failed = b"", exc
    if not modes:
        from kvsops.cli import edit  # subprocess, tempfile, signal...: only to edit

        out = edit.edit_output(ns, path, name)
    if failed is not None:
        raise failed
    return out


def set_arguments(text: str) -> tuple[list[str | int], object]:
    """sops' extractSetArguments: ``PATH VALUE`` split after the first ``"] "``; the value is
    checked before the path."""
    from kvsops.cli import commands, treepath

    head, sep, value = text.partition("] ")
    if not sep:
        raise errors.InvalidSetFormat("invalid --set format: expected '[\"path\"] VALUE'")
    parsed = commands.json_value(value)
    try:
        index = treepath.parse(head + "]")
    except errors.InvalidTreePath:
        raise errors.InvalidSetFormat("invalid --set format: the path does not parse") from None
    return index, parsed
