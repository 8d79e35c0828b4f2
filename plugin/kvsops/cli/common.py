"""What the commands share: reading inputs, formats, writing outputs, keys from flags and config."""

from __future__ import annotations

import os
import stat
import sys

from kvsops import errors
from kvsops.sops import stores

TYPE_CHECKING = False  # argparse, tempfile, pathlib, typing stay off the `kvsops decrypt` start-up path
if TYPE_CHECKING:
    from typing import Callable, Iterable, Mapping, Sequence

    from kvsops.api import Session
    from kvsops.config import Config, CreationRule
    from kvsops.keys.base import Recipient
    from kvsops.sops.metadata import Metadata

CONFIG_NAME = ".sops.yaml"
ALTERNATE_NAME = ".sops.yml"  # sops ignores it, with a warning; so do we
CONFIG_MAX_DEPTH = 100
_INDENT_STORES = {"yaml": "yaml_indent", "json": "json_indent", "binary": "json_binary_indent"}
SKIP_DIRS = frozenset({".git", ".hg", ".svn", ".venv", "venv", "node_modules", "__pycache__", ".tox",
                       ".mypy_cache", ".pytest_cache", ".terraform", ".tools", ".idea", ".vscode"})


def warn(message: str) -> None:
    from kvsops import report

    report.warn(message)


def info(message: str) -> None:
    sys.stderr.write(f"kvsops: {message}\n")
    sys.stderr.flush()


def environ() -> dict[str, str]:
    return dict(os.environ)


# ----------------------------------------------------------------------------- the command line


class Args:
    """The parsed command line every command function takes: one attribute per destination of
    kvsops' argparse definitions (kvsops.cli.parser), with argparse's default for it.

    The parser fills one (``parse_args(namespace=Args())``), sops' flag form (kvsops.cli.legacy)
    a subclass, and ``kvsops decrypt FILE`` one of its own without building the parser
    (kvsops.cli.main). tests/unit/test_cli_args.py ties the fields to the parser: a flag without
    a field here, or a field whose default is not argparse's, fails it.

    The key types' flags (``--age``, rotate's ``--add-age``...) are not fields: they come from the
    key table (kvsops.keys) and are read through it (``getattr(args, row.dest)``), so a new key
    type stays one module and one table row.

    A plain class in this module (no ``dataclasses``, ``typing`` or module of its own to import):
    ``kvsops decrypt FILE`` uses it.
    """

    # the command and the flags every command takes (the top-level parser's defaults)
    command: str | None = None
    debug: bool = False
    config: str | None = None
    indent: int | None = None
    func: Callable[[Args], int]  # set by the parser per subcommand; sops' flag form has none

    # files
    file: str | None = None
    paths: list[str] | None = None
    filename_override: str | None = None
    input_type: str | None = None
    output_type: str | None = None
    output: str | None = None
    in_place: bool = False

    # decrypting
    ignore_mac: bool = False
    decryption_order: str | None = None
    extract: str | None = None

    # encrypting (the key flags are not fields: see above)
    unencrypted_suffix: str | None = None
    encrypted_suffix: str | None = None
    unencrypted_regex: str | None = None
    encrypted_regex: str | None = None
    unencrypted_comment_regex: str | None = None
    encrypted_comment_regex: str | None = None
    mac_only_encrypted: bool = False
    shamir_secret_sharing_threshold: int = 0

    # set / unset
    index: str | None = None
    value: str | None = None
    value_file: bool = False
    value_stdin: bool = False
    idempotent: bool = False

    # updatekeys, keygen
    yes: bool = False
    pq: bool = False

    # not from the parser
    use_agent: bool = True  # decrypt through the kvsops agent when one is configured
    show_master_keys: bool = False  # sops' -s (edit shows the file's metadata)


# ----------------------------------------------------------------------------- inputs


def existing_file(path: str | None, missing: type[errors.KvsopsError] = errors.NoFileSpecified) -> str:
    """The absolute path of an existing file. sops checks existence (exit 100) before it decrypts
    or encrypts; set, unset and rotate only fail to read it (``missing=errors.InputError``: 2). A
    directory is a read error (2) everywhere."""
    if not path:
        raise errors.NoFileSpecified("no file specified")
    full = os.path.abspath(path)
    if not os.path.exists(full):
        if missing is errors.NoFileSpecified:
            raise errors.NoFileSpecified(f"cannot operate on non-existent file {path}")
        raise missing(f"cannot read {path}: no such file")
    if os.path.isdir(full):
        raise errors.InputError(f"cannot read {path}: it is a directory")
    return full


def read_file(path: str, error: type[errors.KvsopsError] = errors.InputError, what: str = "") -> bytes:
    """A file named on the command line: any readable file (``<(...)`` pipes too, like sops),
    capped like every input (kvsops.fs: ``KVSOPS_MAX_INPUT_BYTES``)."""
    from kvsops import fs

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            return fs.read_fd(fd, f"{what}{path}", fs.max_bytes(), st.st_size if stat.S_ISREG(st.st_mode) else 0)
        finally:
            os.close(fd)
    except OSError as exc:
        raise error(f"cannot read {what}{path} ({type(exc).__name__})") from None


def read_stdin() -> bytes:
    from kvsops import fs

    return fs.read_stream(sys.stdin.buffer, "stdin", fs.max_bytes())


def fmt_for(flag: str | None, name: str | None, fallback: str | None = None) -> str:
    """A format flag if valid, else detection by extension (sops ignores unknown values)."""
    if flag in stores.FORMATS:
        return flag
    if flag:
        warn(f"unknown format {flag!r}: detecting the format from the file name")
    if name:
        return stores.detect(name)
    return fallback or "binary"


def formats(args: Args, name: str | None) -> tuple[str, str]:
    """(input, output) formats: flags, else by extension; an explicit --input-type is also the
    default output type (sops would detect the output from the extension and then fail)."""
    fmt_in = fmt_for(args.input_type, name)
    explicit_in = args.input_type in stores.FORMATS
    out_name = None if explicit_in else name
    return fmt_in, fmt_for(args.output_type, out_name, fmt_in)


def display(path: str | None) -> str:
    if not path:
        return "(stdin)"
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


# ----------------------------------------------------------------------------- outputs


def write_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def write_file(path: str, data: bytes, *, private: bool = False) -> None:
    """Replace ``path`` atomically (temp file in the same directory, then rename), keeping the
    mode of an existing file; a new file gets 0600 when ``private`` (plaintext), else 0666-umask."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    try:
        st = os.stat(path)
        mode = st.st_mode & 0o7777
        if not stat.S_ISREG(st.st_mode):  # /dev/stdout, a FIFO: write through, no rename
            return _write_through(path, data)
    except FileNotFoundError:
        mode = 0o600 if private else 0o666 & ~_umask()
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(prefix=".kvsops-", dir=directory)
    except OSError as exc:  # e.g. the directory does not exist (sops: CouldNotWriteOutputFile)
        raise errors.OutputError(f"cannot write {display(path)} ({type(exc).__name__})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        raise errors.OutputError(f"cannot write {display(path)} ({type(exc).__name__})") from None
    except BaseException:
        _unlink(tmp)
        raise


def _write_through(path: str, data: bytes) -> None:
    try:
        with open(path, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise errors.OutputError(f"cannot write {display(path)} ({type(exc).__name__})") from None


def make_private_parents(path: str) -> None:
    """Create the missing parent directories of ``path`` with mode 0700 (``keygen -o
    ~/.config/sops/age/keys.txt`` on a fresh home: only the owner may list a key directory)."""
    missing = []
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(parent) and parent != os.path.dirname(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for directory in reversed(missing):  # os.makedirs would give the intermediate ones the umask's mode
        try:
            os.mkdir(directory, 0o700)
        except OSError as exc:
            raise errors.OutputError(
                f"cannot create the directory {display(directory)} ({type(exc).__name__})"
            ) from None


def write_new_private(path: str, data: bytes) -> None:
    """Create ``path`` with mode 0600; refuse to overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise errors.OutputError(f"{display(path)} already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise errors.OutputError(f"cannot create {display(path)} ({type(exc).__name__})") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def deliver(data: bytes, args: Args, path: str | None, *, plaintext: bool) -> None:
    """stdout, ``--output FILE`` or ``--in-place``, checked for conflicts beforehand."""
    if args.in_place:
        assert path is not None
        write_file(path, data, private=plaintext)
    elif args.output:
        write_file(args.output, data, private=plaintext)
    else:
        write_stdout(data)


def check_destination(args: Args, stdin: bool) -> None:
    if stdin and args.in_place:
        raise errors.ConflictingParameters("cannot use --in-place when reading from stdin")
    if args.in_place and args.output:
        raise errors.ConflictingParameters("cannot use both --output and --in-place")


# ----------------------------------------------------------------------------- sessions and keys


def session(args: Args, *, agent: bool = False) -> Session:
    """The command's Session; with ``agent``, served by the kvsops agent when one is configured
    (``decrypt``: data keys come from it, see kvsops.agent.session)."""
    from kvsops import api

    order = api.decryption_order(args.decryption_order) if args.decryption_order else None
    if agent:
        from kvsops.agent import client

        if client.from_env(os.environ) is not None:
            from kvsops.agent.session import plain_session

            return plain_session(order=order)
    return api.Session(order=order)


def recipient(sess: Session, kind: str, spec: str) -> Recipient:
    try:
        return sess.recipient(kind, spec)
    except ImportError:
        from kvsops import keys

        row = keys.info(kind)
        hint = f"pip install 'kvsops[{row.extra}]'" if row is not None and row.extra else None
        raise errors.MissingDependency(f"{kind} keys need an optional extra", hint=hint) from None


def recipients(sess: Session, groups: Sequence[Sequence[tuple[str, str]]]) -> list[list[Recipient]]:
    return [[recipient(sess, kind, spec) for kind, spec in group] for group in groups]


def split_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def flag_keys(args: Args, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """Keys from --age/--pgp/--azure-kv... (or their env vars): one group that overrides .sops.yaml,
    in the order sops builds it."""
    from kvsops import keys

    found: list[tuple[str, str]] = []
    for row in sorted((k for k in keys.backends() if k.flag), key=lambda k: k.flag_rank):
        found.extend((row.kind, k) for k in split_list(getattr(args, row.dest, None) or env.get(row.env)))
    return found


def find_config(cwd: str, env: Mapping[str, str], explicit: str | None = None) -> tuple[str | None, list[str]]:
    """The config path (``--config``, ``SOPS_CONFIG``, else ``.sops.yaml`` from ``cwd`` upward, at
    most 100 directories, as sops' LookupConfigFile) and any warnings. Only ``os.path``: decrypt
    looks for the file on every run."""
    chosen = explicit or env.get("SOPS_CONFIG")
    if chosen:
        if not os.path.isfile(chosen):
            raise errors.ConfigError(f"config file {chosen} does not exist")
        return chosen, []
    warnings: list[str] = []
    alternate = None
    here = os.path.normpath(cwd)
    for _ in range(CONFIG_MAX_DEPTH):
        candidate = os.path.join(here, CONFIG_NAME)
        if os.path.isfile(candidate):
            if alternate:
                warnings.append(
                    f"ignoring {alternate}: the config file must be called {CONFIG_NAME}; using {candidate}"
                )
            return candidate, warnings
        if alternate is None and os.path.isfile(os.path.join(here, ALTERNATE_NAME)):
            alternate = os.path.join(here, ALTERNATE_NAME)
        parent = os.path.dirname(here)
        if parent == here or not parent:
            break
        here = parent
    if alternate:
        warnings.append(f"ignoring {alternate}: the config file must be called {CONFIG_NAME}")
    return None, warnings


def load_config(cwd: str, env: Mapping[str, str], explicit: str | None = None) -> tuple[Config | None, list[str]]:
    """(the parsed config or None, warnings)."""
    from kvsops import config

    path, warnings = find_config(cwd, env, explicit)
    if path is None:
        return None, warnings
    cfg = config.parse_config(read_file(path, errors.ConfigError, "config file "), os.path.abspath(path))
    return cfg, warnings + [f"{display(cfg.path)}: {w}" for w in cfg.warnings]


def config_for(args: Args, env: Mapping[str, str], cwd: str | None = None) -> Config | None:
    cfg, warnings = load_config(cwd or os.getcwd(), env, args.config)
    for w in warnings:
        warn(w)
    return cfg


def output_indent(args: Args, fmt: str) -> int | None:
    """The indent for output in ``fmt``: ``--indent``, else ``.sops.yaml``'s ``stores.<store>.indent``
    (sops' outputStore), else None (the store's default). The config is parsed only when it
    mentions ``stores``: plain decrypts should not pay for PyYAML."""
    if args.indent is not None:
        return args.indent
    found = indent_config(fmt, args.config)
    if found is None:
        return None
    from kvsops import config

    path, data, store = found
    indent: int | None = getattr(config.parse_config(data, path).stores, store)
    return indent


def indent_config(fmt: str, explicit: str | None = None) -> tuple[str, bytes, str] | None:
    """The config that may set ``fmt``'s output indent: (absolute path, its bytes, the
    ``StoreSettings`` attribute), or None when no config mentions ``stores``."""
    store = _INDENT_STORES.get(fmt)
    if store is None:
        return None
    path, _warnings = find_config(os.getcwd(), environ(), explicit)
    if path is None:
        return None
    data = read_file(path, errors.ConfigError, "config file ")
    if b"stores" not in data:
        return None
    return os.path.abspath(path), data, store


def creation_rule(args: Args, env: Mapping[str, str], target: str) -> CreationRule | None:
    from kvsops import config

    cfg = config_for(args, env)
    return None if cfg is None else config.match_rule(cfg, target)


# ----------------------------------------------------------------------------- key identities


def group_specs(md: Metadata) -> list[list[tuple[str, str]]]:
    from kvsops import keys

    return [[(e.kind, keys.entry_spec(e.kind, e.as_dict())) for e in group] for group in md.key_groups]


def diff_groups(have: Sequence[Sequence[tuple[str, str]]], want: Sequence[Sequence[tuple[str, str]]]
                ) -> list[tuple[list[tuple[str, str]], list[tuple[str, str]]]]:
    """Per group index: (added, removed), as sops' DiffKeyGroups."""
    from kvsops.keys import same_key

    out = []
    for i in range(max(len(have), len(want))):
        old = list(have[i]) if i < len(have) else []
        new = list(want[i]) if i < len(want) else []
        added = [k for k in new if not any(k[0] == o[0] and same_key(k[0], o[1], k[1]) for o in old)]
        removed = [o for o in old if not any(k[0] == o[0] and same_key(k[0], o[1], k[1]) for k in new)]
        out.append((added, removed))
    return out


def describe_diff(diff: Sequence[tuple[list[tuple[str, str]], list[tuple[str, str]]]]) -> list[str]:
    lines = []
    for i, (added, removed) in enumerate(diff):
        lines.append(f"group {i + 1}:")
        lines.extend(f"    +++ {kind} {spec}" for kind, spec in added)
        lines.extend(f"    --- {kind} {spec}" for kind, spec in removed)
    return lines


# ----------------------------------------------------------------------------- trees of files


def iter_files(paths: Iterable[str]) -> Iterable[str]:
    """Files named, and files under directories named (sorted, skipping VCS and tool dirs)."""
    for p in paths:
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
                for name in sorted(files):
                    full = os.path.join(root, name)
                    if not os.path.islink(full) and os.path.isfile(full):  # no FIFOs, devices, links
                        yield full
        else:
            yield p


def run_each(items: Sequence[str], work: Callable[[str], None]) -> int:
    """Run ``work(path)`` for every item; report each failure and go on; fail at the end."""
    from kvsops import report

    failures: list[errors.KvsopsError] = []
    for item in items:
        try:
            work(item)
        except errors.KvsopsError as exc:
            if len(items) == 1:
                raise
            report.print_error(exc)
            failures.append(exc)
    if failures:
        first = failures[0]
        err = errors.KvsopsError(f"{len(failures)} of {len(items)} files failed")
        err.exit_code = first.exit_code
        raise err
    return 0
