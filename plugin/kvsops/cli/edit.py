"""``kvsops edit``: decrypt to a private temp file, run the editor, re-encrypt what changed.

The plaintext lives only in a 0600 file inside a 0700 directory, on /dev/shm when it exists (RAM,
so it never reaches a disk; ``KVSOPS_SHM_DIR`` names another), and the directory is removed on
every way out: success, error, Ctrl-C, SIGTERM and SIGHUP.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING, Iterator

from kvsops import errors
from kvsops._ramdir import ram_dir
from kvsops.cli import common
from kvsops.sops.tree import Branch

if TYPE_CHECKING:
    from kvsops.api import Session
    from kvsops.cli.common import Args

_EXAMPLES = {
    "yaml": b"hello: Welcome to SOPS! Edit this file as you please!\nexample_key: example_value\n"
            b"# Example comment\nexample_array:\n    - example_value1\n    - example_value2\n"
            b"example_number: 1234.56789\nexample_booleans:\n    - true\n    - false\n",
    "json": b'{\n\t"hello": "Welcome to SOPS! Edit this file as you please!",\n\t"example_key": "example_value",\n'
            b'\t"example_array": [\n\t\t"example_value1",\n\t\t"example_value2"\n\t],\n'
            b'\t"example_number": 1234.56789,\n\t"example_booleans": [\n\t\ttrue,\n\t\tfalse\n\t]\n}\n',
    "dotenv": b"hello=Welcome to SOPS! Edit this file as you please!\nexample_key=example_value\n",
    "ini": b"[Section]\nhello = Welcome to SOPS! Edit this file as you please!\nexample_key = example_value\n",
    "binary": b"Welcome to SOPS! Edit this file as you please!\n",
}
PRESS_ENTER = "Press enter to return to the editor, or Ctrl+C to exit."


@contextlib.contextmanager
def private_file(basename: str) -> Iterator[str]:
    """A 0600 file in a fresh 0700 directory; both gone when the block exits, however it exits."""
    directory = tempfile.mkdtemp(prefix="kvsops-edit-", dir=ram_dir(common.environ()))
    path = os.path.join(directory, basename or "file")
    previous = {}

    def on_signal(signum: int, _frame: object) -> None:
        # Unwind through the finally below (removing the plaintext); report.guarded prints it.
        raise errors.Interrupted(f"terminated by {signal.Signals(signum).name}; the file was left unchanged")

    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous[sig] = signal.signal(sig, on_signal)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        yield path
    finally:
        _shred_dir(directory)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _shred_dir(directory: str) -> None:
    # Overwrite what we can before unlinking (editors may leave swap and backup files too).
    for root, _dirs, files in os.walk(directory):
        for name in files:
            p = os.path.join(root, name)
            with contextlib.suppress(OSError):
                size = os.path.getsize(p)
                with open(p, "r+b") as fh:
                    fh.write(b"\0" * size)
    shutil.rmtree(directory, ignore_errors=True)


def editor_argv(env: dict[str, str]) -> list[str]:
    for var in ("SOPS_EDITOR", "EDITOR"):
        if env.get(var):
            try:
                argv = shlex.split(env[var])
            except ValueError:
                raise errors.NoEditorFound(f"cannot parse ${var}") from None
            if argv:
                return argv
    for name in ("vim", "nano", "vi"):
        found = shutil.which(name)
        if found:
            return [found]
    raise errors.NoEditorFound("no editor found: set SOPS_EDITOR or EDITOR (vim, nano and vi are not installed)")


def run_editor(argv: list[str], path: str) -> None:
    try:
        proc = subprocess.Popen([*argv, path])
    except OSError as exc:
        raise errors.NoEditorFound(f"could not run the editor {argv[0]} ({type(exc).__name__})") from None
    try:
        rc = proc.wait()
    except BaseException:
        proc.terminate()
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)
        raise
    if rc != 0:
        raise errors.NoEditorFound(f"the editor {os.path.basename(argv[0])} exited with status {rc}")


def _sha256(path: str) -> bytes:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).digest()


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def _validate(data: bytes, fmt: str, shown_metadata: bool = False) -> list[Branch]:
    """The edited documents. The top-level sops key is reserved; with ``shown_metadata`` (``-s``)
    it is the block we showed, and is dropped: the file's metadata stays the file's."""
    from kvsops.sops import stores

    store = stores.get(fmt)
    docs = store.load_plain(data)
    if not docs:
        raise errors.NeedAtLeastOneDocument("the edited file has no documents")
    first = docs[0]
    if any(store.is_metadata_key(k) for k, _ in first):
        if not shown_metadata:
            raise errors.InputError("the edited file contains a top-level sops key, which is reserved")
        docs[0] = Branch((k, v) for k, v in first if not store.is_metadata_key(k))
    return docs


def edit_loop(path: str, fmt: str, plain: bytes, env: dict[str, str], shown_metadata: bool = False) -> list[Branch]:
    """Run the editor until the result parses; returns the new documents."""
    argv = editor_argv(env)
    _write(path, plain)
    original = _sha256(path)
    while True:
        run_editor(argv, path)
        if _sha256(path) == original:
            raise errors.FileNotModified("file has not changed, exiting")
        try:
            with open(path, "rb") as fh:
                return _validate(fh.read(), fmt, shown_metadata)
        except errors.KvsopsError as exc:
            if not (sys.stdin.isatty() and sys.stderr.isatty()):
                raise errors.InputError(
                    f"the edited file is not valid {fmt} ({exc.message}); the encrypted file was left unchanged"
                ) from None
            sys.stderr.write(f"kvsops: error: the edited file is not valid {fmt} ({exc.message}). {PRESS_ENTER}\n")
            sys.stdin.readline()


def _newer(a: str, b: str) -> bool:
    """semver a > b (sops' AIsNewerThanB); unparsable -> VersionError (202)."""
    def parts(v: str) -> tuple[int, ...]:
        core = v.lstrip("v").split("-")[0].split("+")[0].split(".")
        try:
            return tuple(int(x) for x in core)
        except ValueError:
            raise errors.VersionError(f"cannot compare the file's version {v!r}") from None

    return parts(a) > parts(b)


def edit(args: Args) -> int:
    if not args.file:
        raise errors.NoFileSpecified("no file specified")
    path = os.path.abspath(args.file)
    if os.path.isdir(path):
        raise errors.InputError(f"cannot read {args.file}: it is a directory")
    name = os.path.abspath(args.filename_override) if args.filename_override else path
    common.write_file(path, edit_output(args, path, name))
    return 0


def edit_output(args: Args, path: str, name: str) -> bytes:
    """The editor's work on ``path`` (an example for a new file), encrypted; ``name`` picks the
    format. ``show_master_keys`` (sops' ``-s``) shows the file's sops metadata under the values."""
    from kvsops import api
    from kvsops.sops import metadata

    fmt = common.fmt_for(args.input_type, name)
    env = common.environ()
    sess = common.session(args)
    indent = common.output_indent(args, fmt)  # sops edits and writes through its output store
    if not os.path.exists(path):
        return _edit_new(args, path, name, fmt, env, sess, indent)
    dec = api.decrypt(common.read_file(path), fmt, session=sess, ignore_mac=args.ignore_mac,
                      where=common.display(path))
    from kvsops.sops import stores

    show = args.show_master_keys and stores.get(fmt).STRUCTURED
    if show:
        shown = stores.get(fmt).emit_encrypted(dec.docs, metadata.to_tree(dec.metadata), indent)
    else:
        shown = api.emit_plain(dec.docs, fmt, indent=indent)
    with private_file(os.path.basename(path)) as tmp:
        docs = edit_loop(tmp, fmt, shown, env, show)
    version = dec.metadata.version
    if _newer(metadata.WRITER_VERSION, version):
        version = metadata.WRITER_VERSION
    return api.reencrypt(dec, docs, version=version, indent=indent)


def _edit_new(args: Args, path: str, name: str, fmt: str, env: dict[str, str], sess: Session,
              indent: int | None) -> bytes:
    from kvsops import api
    from kvsops.cli.commands import encryption_settings
    from kvsops.sops import stores
    from kvsops.sops.rules import SelectionRule

    groups, threshold, rule, mac_only = encryption_settings(args, name, sess)
    data_key = os.urandom(api.DATA_KEY_SIZE)
    try:
        key_groups, threshold = api.wrap_data_key(data_key, groups, threshold)
    except errors.KeyWrapFailed as exc:
        exc.exit_code = errors.NoKeyAvailable.exit_code  # sops' editExample: CouldNotRetrieveKey
        raise
    example = _EXAMPLES[fmt]
    if indent is not None:
        example = api.emit_plain(_validate(example, fmt), fmt, indent=indent)
    with private_file(os.path.basename(path)) as tmp:
        docs = edit_loop(tmp, fmt, example, env)
    if rule is None and stores.get(fmt).STRUCTURED:
        rule = SelectionRule()
    return api.encrypt_docs(docs, fmt, key_groups, data_key, rule=rule, threshold=threshold,
                            mac_only_encrypted=mac_only, indent=indent)

