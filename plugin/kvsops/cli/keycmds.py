"""``updatekeys`` (same data key, new recipients from .sops.yaml) and ``rotate`` (new data key)."""

from __future__ import annotations

import os
import sys

from kvsops import errors, keys
from kvsops.cli import common

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kvsops.api import Session
    from kvsops.cli.common import Args
    from kvsops.config import Config
    from kvsops.sops.metadata import Metadata
    from kvsops.sops.tree import Branch


def _targets(paths: list[str] | None, missing: type[errors.KvsopsError] = errors.InputError) -> tuple[list[str], bool]:
    """Files to work on, and whether a directory was walked (then unencrypted files are skipped).
    A missing path raises ``missing`` (sops: a read error, 2, for rotate; 1 for updatekeys)."""
    if not paths:
        raise errors.NoFileSpecified("no file specified")
    walked = any(os.path.isdir(p) for p in paths)
    files: list[str] = []
    for p in paths:
        if not os.path.exists(p):
            raise missing(f"cannot operate on non-existent file {p}")
        files.extend(common.iter_files([p]))
    return [os.path.abspath(f) for f in files], walked


def _load(path: str, fmt: str, walked: bool) -> tuple[list[Branch], Metadata] | None:
    """(docs, metadata), or None for a plaintext file found by walking a directory."""
    from kvsops import api

    try:
        return api.load_encrypted(common.read_file(path), fmt)
    except (errors.MetadataNotFound, errors.InputError, errors.FormatError) as exc:
        if walked and not api.is_encrypted(common.read_file(path), fmt):
            return None
        raise exc.with_where(common.display(path)) from None


# ----------------------------------------------------------------------------- updatekeys


def _confirm(question: str) -> bool:
    sys.stderr.write(question)
    sys.stderr.flush()
    while True:
        answer = sys.stdin.readline()
        if not answer:
            raise errors.UsageError("no answer on stdin", hint="pass -y to update without asking")
        if answer.strip() in ("y", "n"):
            return answer.strip() == "y"
        sys.stderr.write("Is this okay? (y/n): ")
        sys.stderr.flush()


def _update_one(path: str, args: Args, cfg: Config, sess: Session, walked: bool) -> None:
    from kvsops import api, config

    where = common.display(path)
    fmt = common.fmt_for(args.input_type, path)
    loaded = _load(path, fmt, walked)
    if loaded is None:
        return
    _docs, md = loaded
    rule = config.match_rule(cfg, path)
    if rule is None or not rule.key_groups:
        raise errors.ConfigError(f"{cfg.path} has no creation rule with keys for {where}")
    want = [list(g) for g in rule.key_groups]
    threshold = min(args.shamir_secret_sharing_threshold or md.shamir_threshold, len(want))
    diff = common.diff_groups(common.group_specs(md), want)
    if not any(a or r for a, r in diff) and threshold == md.shamir_threshold:
        common.info(f"{where}: already up to date")
        return
    lines = [f"{where}: the following changes will be made to the file's key groups:"]
    if threshold != md.shamir_threshold:
        lines.append(f"shamir threshold: {md.shamir_threshold} -> {threshold}")
    sys.stderr.write("\n".join(lines + common.describe_diff(diff)) + "\n")
    if not args.yes and not _confirm("Is this okay? (y/n): "):
        common.info(f"{where}: left unchanged")
        return
    out = api.rewrap(common.read_file(path), fmt, common.recipients(sess, want), threshold=threshold, session=sess,
                     indent=common.output_indent(args, fmt))
    common.write_file(path, out)
    common.info(f"{where}: synced with new keys")


def updatekeys(args: Args) -> int:
    cfg = common.config_for(args, common.environ())  # sops looks for the config first
    if cfg is None or cfg.rules is None:
        raise errors.ConfigError("updatekeys needs a .sops.yaml with creation_rules",
                                 hint="run it from the directory holding .sops.yaml, or pass --config")
    files, walked = _targets(args.paths, errors.KvsopsError)
    sess = common.session(args)
    return common.run_each(files, lambda p: _update_one(p, args, cfg, sess, walked))


# ----------------------------------------------------------------------------- rotate


def _key_changes(args: Args) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    adds, removes = [], []
    for row in keys.backends():
        if row.flag:
            adds += [(row.kind, k) for k in common.split_list(getattr(args, f"add_{row.dest}"))]
            removes += [(row.kind, k) for k in common.split_list(getattr(args, f"rm_{row.dest}"))]
    return adds, removes


def new_groups(
    md: Metadata, adds: list[tuple[str, str]], removes: list[tuple[str, str]]
) -> list[list[tuple[str, str]]]:
    """The file's key groups with additions (to group 1) and removals (from every group)."""
    groups = common.group_specs(md)
    for entry in md.entries():
        if not keys.usable(entry.kind):
            raise errors.UsageError(f"cannot rotate: the file uses {entry.kind} keys, which kvsops cannot wrap for")
    for key in adds:
        if not any(k[0] == key[0] and keys.same_key(k[0], k[1], key[1]) for k in groups[0]):
            groups[0].append(key)
    for i, group in enumerate(groups):
        groups[i] = [k for k in group if not any(r[0] == k[0] and keys.same_key(k[0], k[1], r[1]) for r in removes)]
        if not groups[i]:
            raise errors.UsageError(f"removing these keys would leave key group {i + 1} empty")
    return groups


def _rotate_one(path: str, args: Args, sess: Session, walked: bool) -> None:
    if walked and _load(path, common.formats(args, path)[0], walked) is None:
        return
    common.deliver(rotated(path, args, sess), args, path, plaintext=False)


def rotated(path: str, args: Args, sess: Session, name: str | None = None) -> bytes:
    """``path`` under a new data key, with --add-*/--rm-* applied; ``name`` picks the formats."""
    from kvsops import api

    fmt, fmt_out = common.formats(args, name or path)
    where = common.display(path)
    dec = api.decrypt(common.read_file(path), fmt, session=sess, ignore_mac=args.ignore_mac, where=where)
    adds, removes = _key_changes(args)
    groups = common.recipients(sess, new_groups(dec.metadata, adds, removes))
    data_key = os.urandom(api.DATA_KEY_SIZE)
    key_groups, _threshold = api.wrap_data_key(data_key, groups, dec.metadata.shamir_threshold)
    return api.reencrypt(dec, fmt=fmt_out, data_key=data_key, key_groups=key_groups,
                         indent=common.output_indent(args, fmt_out))


def rotate(args: Args) -> int:
    if not args.paths:
        raise errors.NoFileSpecified("no file specified")
    common.check_destination(args, stdin=False)
    adds, removes = _key_changes(args)
    files, walked = _targets(args.paths, errors.CannotChangeKeys if adds or removes else errors.InputError)
    if (walked or len(files) > 1) and not args.in_place:
        raise errors.ConflictingParameters("rotating several files needs --in-place")
    sess = common.session(args)
    return common.run_each(files, lambda p: _rotate_one(p, args, sess, walked))
