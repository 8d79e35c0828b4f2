"""decrypt, encrypt, set, unset, filestatus, keygen: each a short translation to kvsops.api."""

from __future__ import annotations

import os
import sys

from kvsops import errors
from kvsops.cli import common, treepath
from kvsops.sops.rules import RULE_KINDS, SelectionRule
from kvsops.sops.tree import Branch

TYPE_CHECKING = False  # argparse, json and datetime stay off the `kvsops decrypt` start-up path
if TYPE_CHECKING:
    from typing import Callable, NoReturn

    from kvsops.api import Decrypted, Session
    from kvsops.cli.common import Args
    from kvsops.keys.base import Recipient

    # what encrypt, -e and a new file's edit wrap with: (recipient groups, Shamir threshold,
    # selection rule, MAC over encrypted values only)
    Settings = tuple[list[list[Recipient]], int, SelectionRule | None, bool]

# ----------------------------------------------------------------------------- decrypt


def _need_file(args: Args) -> None:
    """``kvsops decrypt`` alone: no file and nothing that says stdin is meant (sops would read stdin
    as JSON). ``encrypt`` keeps sops' own refusal (exit 8, --filename-override)."""
    if args.file is None and not (args.input_type or args.filename_override):
        raise errors.NoFileSpecified("no file given: kvsops decrypt FILE",
                                     hint="use - (with --input-type or --filename-override) to read stdin")


def decrypt(args: Args) -> int:
    _need_file(args)
    stdin = args.file in (None, "-")
    common.check_destination(args, stdin)
    path = None if stdin else common.existing_file(args.file)
    name = os.path.abspath(args.filename_override) if args.filename_override else path
    if stdin and not (args.input_type or name):
        raise errors.ConflictingParameters("reading from stdin needs --input-type or --filename-override")
    common.deliver(decrypt_output(args, path, name), args, path, plaintext=True)
    return 0


def decrypt_output(args: Args, path: str | None, name: str | None) -> bytes:
    """The plaintext of ``path`` (None: stdin) with ``--extract``; ``name`` picks the formats."""
    from kvsops import api

    fmt_in, fmt_out = common.formats(args, name)
    extract = treepath.parse(args.extract) if args.extract else None
    data = common.read_stdin() if path is None else common.read_file(path)
    where = common.display(path)
    dec = api.decrypt(data, fmt_in, session=common.session(args, agent=args.use_agent), ignore_mac=args.ignore_mac,
                      where=where, keep_ivs=False)  # nothing is re-encrypted: no per-value IV map
    indent = common.output_indent(args, fmt_out)
    if extract is None:
        return api.emit_plain(dec.docs, fmt_out, where=where, indent=indent)
    return _extract(dec.docs, extract, fmt_out, indent)


def _extract(docs: list[Branch], path: list[str | int], fmt: str, indent: int | None) -> bytes:
    from kvsops import api
    from kvsops.sops import stores

    value = treepath.truncate(docs[0] if docs else Branch(), path)
    if isinstance(value, Branch):
        return api.emit_plain([value], fmt, indent=indent)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")  # raw, no trailing newline (as sops)
    return bytes(stores.get(fmt).emit_value(value, indent))


# ----------------------------------------------------------------------------- encrypt


def selection_rule(args: Args) -> SelectionRule | None:
    given = [(k, getattr(args, k)) for k in RULE_KINDS if getattr(args, k, None)]
    if len(given) > 1:
        raise errors.ConflictingParameters("cannot use more than one of " + ", ".join(
            "--" + k.replace("_", "-") for k, _ in given))
    return SelectionRule(*given[0]) if given else None


def merged_rule(flag: SelectionRule | None, conf: SelectionRule | None) -> SelectionRule | None:
    """sops' precedence, field by field: a flag replaces .sops.yaml's value of the same field; a
    flag and a different field of the creation rule are two rules, which sops refuses (exit 8)."""
    if flag is None or conf is None or flag.kind == conf.kind:
        return flag or conf
    raise errors.ConflictingParameters(
        f"cannot use more than one of --{flag.kind.replace('_', '-')} and the creation rule's {conf.kind} "
        "(.sops.yaml)", hint=f"drop the flag, or remove {conf.kind} from the creation rule")


def encryption_settings(args: Args, target: str, sess: Session) -> Settings:
    """(recipient groups, threshold, rule, mac_only) from flags, env and .sops.yaml (sops' precedence)."""
    env = common.environ()
    flag_rule = selection_rule(args)
    conf = common.creation_rule(args, env, target)
    keys = common.flag_keys(args, env)
    groups = [keys] if keys else list(conf.key_groups) if conf else []
    if not groups:
        raise errors.UsageError(
            "no keys to encrypt with: no .sops.yaml creation rule names keys, and no --age/--pgp/--azure-kv given",
            hint="pass --age/--pgp/--azure-kv, set SOPS_AGE_RECIPIENTS, or add a creation rule to .sops.yaml",
        )
    threshold = args.shamir_secret_sharing_threshold or (conf.shamir_threshold if conf else 0)
    rule = merged_rule(flag_rule, conf.rule if conf else None)
    mac_only = bool(args.mac_only_encrypted or (conf and conf.mac_only_encrypted))
    return common.recipients(sess, groups), threshold, rule, mac_only


def encrypt(args: Args) -> int:
    stdin = args.file in (None, "-")
    common.check_destination(args, stdin)
    if stdin and not args.filename_override:
        raise errors.ConflictingParameters("must specify --filename-override when reading from stdin")
    path = None if stdin else common.existing_file(args.file)
    name = os.path.abspath(args.filename_override) if args.filename_override else path
    assert name is not None
    settings = encryption_settings(args, name, common.session(args))  # keys and config first, as sops
    common.deliver(encrypt_output(args, path, name, settings), args, path, plaintext=False)
    return 0


def encrypt_output(args: Args, path: str | None, name: str, settings: Settings) -> bytes:
    """``path`` (None: stdin) encrypted with ``settings`` (:func:`encryption_settings`); ``name``
    picks the formats."""
    from kvsops import api

    fmt_in, fmt_out = common.formats(args, name)
    data = common.read_stdin() if path is None else common.read_file(path)
    groups, threshold, rule, mac_only = settings
    try:
        return api.encrypt_bytes(data, fmt_in, groups, rule=rule, threshold=threshold,
                                 mac_only_encrypted=mac_only, output_fmt=fmt_out,
                                 indent=common.output_indent(args, fmt_out))
    except errors.KvsopsError as exc:
        raise exc.with_where(common.display(path)) from None


# ----------------------------------------------------------------------------- set / unset


def json_value(text: str) -> object:
    """sops 3.11's jsonValueToTreeInsertableValue: a scalar as Go's encoding/json decodes it into an
    interface{} (a number is a float64), an object through the JSON store (its numbers floats too),
    and an array refused ("Invalid --set value format": the JSON store loads objects only)."""
    def bad_constant(_name: str) -> NoReturn:
        raise ValueError("not JSON")

    try:
        import json

        value = json.loads(text, object_pairs_hook=Branch, parse_int=float, parse_constant=bad_constant)
    except (ValueError, RecursionError):
        raise errors.InvalidSetFormat("the value is not valid JSON") from None
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        raise errors.InvalidSetFormat("the value is a number out of range")
    if isinstance(value, Branch):  # before list: a Branch is a list of pairs
        from kvsops.sops.stores import json_store

        try:
            return json_store.load_plain(text.encode("utf-8", "surrogateescape"))[0]
        except errors.KvsopsError:
            raise errors.InvalidSetFormat("invalid value format") from None
    if isinstance(value, list):
        raise errors.InvalidSetFormat("invalid value format: a JSON array cannot be set as a whole (as in sops 3.11)",
                                      hint="set its items one by one, e.g. '[\"key\"][0]'")
    return value


def _set_inputs(args: Args) -> tuple[str, list[str | int], object]:
    if args.value_file and args.value_stdin:  # sops: a generic error (1), not ConflictingParameters
        raise errors.UsageError("cannot use both --value-file and --value-stdin")
    need_value = not args.value_stdin
    if not args.file or not args.index or (need_value and args.value is None):
        raise errors.NoFileSpecified("set needs FILE, INDEX and VALUE (or --value-stdin)")
    if args.value_stdin and args.value is not None:
        raise errors.NoFileSpecified("set with --value-stdin takes FILE and INDEX only")
    path = common.existing_file(args.file, missing=errors.InputError)
    index = _index(args.index, "set")
    if args.value is None:  # --value-stdin (the checks above)
        raw = common.read_stdin()
    elif args.value_file:
        raw = common.read_file(args.value, errors.KvsopsError)  # sops: the os error, exit 1
    else:
        raw = args.value.encode("utf-8", "surrogateescape")
    return path, index, json_value(raw.decode("utf-8", "replace"))


def _index(text: str, command: str) -> list[str | int]:
    try:
        index = treepath.parse(text)
    except errors.InvalidTreePath as exc:
        raise errors.InvalidSetFormat(f"invalid {command} index format: {exc.message}") from None
    if not index:
        raise errors.InvalidSetFormat(f"the {command} index is empty")
    return index


def _rewrite(args: Args, path: str, change: Callable[[Decrypted, str], bool]) -> int:
    """set/unset: decrypt ``path``, let ``change`` edit the documents (False: nothing to write),
    re-encrypt in place."""
    from kvsops import api

    fmt, fmt_out = common.formats(args, path)
    where = common.display(path)
    dec = api.decrypt(common.read_file(path), fmt, session=common.session(args),
                      ignore_mac=args.ignore_mac, where=where)
    if change(dec, where):
        common.write_file(path, api.reencrypt(dec, fmt=fmt_out, indent=common.output_indent(args, fmt_out)))
    return 0


def set_value(args: Args) -> int:
    path, index, value = _set_inputs(args)
    out, changed = set_output(args, path, path, index, value)
    if not changed and args.idempotent:
        common.info(f"{common.display(path)}: value unchanged, file not written")
        return 0
    common.write_file(path, out)
    return 0


def set_output(args: Args, path: str, name: str, index: list[str | int],
               value: object) -> tuple[bytes, bool]:
    """``path`` re-encrypted with ``value`` at ``index`` (formats from ``name``), and whether
    the value changed."""
    from kvsops import api

    fmt, fmt_out = common.formats(args, name)
    dec = api.decrypt(common.read_file(path), fmt, session=common.session(args), ignore_mac=args.ignore_mac,
                      where=common.display(path))
    docs = dec.docs or [Branch()]
    changed = treepath.set_in_document(docs[0], index, value)
    dec.docs = docs
    return api.reencrypt(dec, fmt=fmt_out, indent=common.output_indent(args, fmt_out)), changed


def unset_value(args: Args) -> int:
    if not args.file or not args.index:
        raise errors.NoFileSpecified("unset needs FILE and INDEX")
    path = common.existing_file(args.file, missing=errors.InputError)
    index = _index(args.index, "unset")
    return _rewrite(args, path, lambda dec, where: _unset(dec, where, index, args.idempotent))


def _unset(dec: Decrypted, where: str, index: list[str | int], idempotent: bool) -> bool:
    try:
        treepath.unset_in_document(dec.docs[0] if dec.docs else Branch(), index)
    except errors.KeyNotFoundInTree as exc:
        if idempotent:
            return False
        raise exc.with_where(where) from None
    return True


# ----------------------------------------------------------------------------- filestatus / keygen


def filestatus(args: Args) -> int:
    """sops' filestatus: no sops metadata is ``false``; any other failure (a missing or unparsable
    file, malformed metadata) is an error, exit 1 ("cannot check file status")."""
    from kvsops import api

    if not args.file:
        raise errors.NoFileSpecified("no file specified")
    try:
        path = common.existing_file(args.file, missing=errors.InputError)
        encrypted = api.file_status(common.read_file(path), common.fmt_for(args.input_type, path))
    except errors.KvsopsError as exc:
        exc.exit_code = 1
        raise
    import json

    common.write_stdout(json.dumps({"encrypted": encrypted}, separators=(",", ":")).encode() + b"\n")
    return 0


def keygen(args: Args) -> int:
    from kvsops.keys import age

    identity, public = age.generate(pq=args.pq)
    import datetime as _dt

    created = _dt.datetime.now().astimezone().replace(microsecond=0).isoformat()
    if created.endswith("+00:00"):
        created = created[:-6] + "Z"
    text = f"# created: {created}\n# public key: {public}\n{identity}\n".encode()
    if args.output:
        common.make_private_parents(args.output)
        common.write_new_private(args.output, text)
    else:
        common.write_stdout(text)
    if args.output or not sys.stdout.isatty():
        sys.stderr.write(f"Public key: {public}\n")
    return 0
