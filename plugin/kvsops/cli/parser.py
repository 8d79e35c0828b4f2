"""The argparse definitions of kvsops' own subcommands (flags named as in sops)."""

from __future__ import annotations

import argparse
import importlib
from typing import Any, Callable, Sequence

from kvsops import __version__, keys
from kvsops.cli.common import Args
from kvsops.errors import UsageError

_SELECTION_FLAGS = (
    ("--unencrypted-suffix", "values under keys ending with this suffix stay plain (default _unencrypted)"),
    ("--encrypted-suffix", "only values under keys ending with this suffix are encrypted"),
    ("--unencrypted-regex", "values under keys matching this regex stay plain"),
    ("--encrypted-regex", "only values under keys matching this regex are encrypted"),
    ("--unencrypted-comment-regex", "values after a comment matching this regex stay plain"),
    ("--encrypted-comment-regex", "only values after a comment matching this regex are encrypted"),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one error voice: report.guarded prints it
        raise UsageError(message, hint=f"run '{self.prog} --help' for usage")

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if status:
            raise UsageError((message or "invalid usage").strip())
        raise _Done()


class _Done(Exception):
    """--help or --version was printed."""


def _lazy(module: str, func: str) -> Callable[[Args], int]:
    def run(ns: Args) -> int:
        command: Callable[[Args], int] = getattr(importlib.import_module(f"kvsops.cli.{module}"), func)
        return command(ns)

    return run


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show stack frames on errors")
    p.add_argument("--config", default=argparse.SUPPRESS, help="path to .sops.yaml (env SOPS_CONFIG)")


def _types(p: argparse.ArgumentParser, output: bool = True) -> None:
    p.add_argument("--input-type", help="yaml, json, dotenv, ini or binary (default: by extension)")
    if output:
        p.add_argument("--output-type", help="yaml, json, dotenv, ini or binary (default: by extension)")


def _indent(p: argparse.ArgumentParser, default: object = argparse.SUPPRESS) -> None:
    p.add_argument("--indent", type=int, metavar="N", default=default,
                   help="output indent: YAML 2-9 spaces (default 4); JSON N spaces, 0 none, -1 a tab (default)"
                   " (overrides .sops.yaml stores)")


def _decrypting(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ignore-mac", action="store_true", help="do not verify the MAC (only if you trust the file)")
    p.add_argument("--decryption-order", help="comma list of key types to try first (env SOPS_DECRYPTION_ORDER)")


def _keys(p: argparse.ArgumentParser) -> None:
    for row in keys.backends():
        if row.flag:
            names = [f"--{row.flag}", *([row.short] if row.short else [])]
            p.add_argument(*names, help=f"comma list of {row.noun} (env {row.env})")
    for flag, text in _SELECTION_FLAGS:
        p.add_argument(flag, help=text)
    p.add_argument("--mac-only-encrypted", action="store_true", help="the MAC covers encrypted values only")
    p.add_argument("--shamir-secret-sharing-threshold", type=int, default=0, metavar="N",
                   help="key groups needed to recover the data key")
    p.add_argument("--filename-override", help="path used for format detection and .sops.yaml matching")


def _add(sub: Any, name: str, func: tuple[str, str], text: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=text, description=text)
    _common(p)
    p.set_defaults(func=_lazy(*func))
    return p


def _decrypt(sub: Any) -> None:
    p = _add(sub, "decrypt", ("commands", "decrypt"), "decrypt a file (or stdin) to stdout")
    p.add_argument("file", nargs="?", help="the encrypted file, or - for stdin")
    _types(p)
    _indent(p)
    _decrypting(p)
    p.add_argument("--extract", help='print one value or branch, e.g. \'["a"]["b"][0]\'')
    p.add_argument("--output", help="write the plaintext to this file (mode 0600) instead of stdout")
    p.add_argument("--in-place", "-i", action="store_true", help="replace the file with its plaintext")
    p.add_argument("--filename-override", help="path used for format detection")


def _encrypt(sub: Any) -> None:
    p = _add(sub, "encrypt", ("commands", "encrypt"), "encrypt a file (or stdin) to stdout")
    p.add_argument("file", nargs="?", help="the plaintext file, or - for stdin (needs --filename-override)")
    _types(p)
    _indent(p)
    _keys(p)
    p.add_argument("--output", help="write the encrypted file here instead of stdout")
    p.add_argument("--in-place", "-i", action="store_true", help="replace the file with its encrypted form")


def _edit(sub: Any) -> None:
    p = _add(sub, "edit", ("edit", "edit"), "edit an encrypted file in $SOPS_EDITOR / $EDITOR")
    p.add_argument("file", nargs="?")
    _types(p, output=False)
    _indent(p)
    _decrypting(p)
    _keys(p)


def _set_unset(sub: Any) -> None:
    p = _add(sub, "set", ("commands", "set_value"), "set one value (JSON) in an encrypted file, in place")
    p.add_argument("file", nargs="?")
    p.add_argument("index", nargs="?", help='the path, e.g. \'["a"]["b"][0]\'')
    p.add_argument("value", nargs="?", help="a JSON value (or a file name with --value-file)")
    p.add_argument("--value-file", action="store_true", help="VALUE names a file holding the JSON value")
    p.add_argument("--value-stdin", action="store_true", help="read the JSON value from stdin")
    p.add_argument("--idempotent", action="store_true", help="do not write the file when nothing changes")
    _types(p)
    _indent(p)
    _decrypting(p)
    p = _add(sub, "unset", ("commands", "unset_value"), "remove one key or list item from an encrypted file")
    p.add_argument("file", nargs="?")
    p.add_argument("index", nargs="?", help='the path, e.g. \'["a"]["b"]\'')
    p.add_argument("--idempotent", action="store_true", help="a missing key is not an error")
    _types(p)
    _indent(p)
    _decrypting(p)


def _key_commands(sub: Any) -> None:
    p = _add(sub, "updatekeys", ("keycmds", "updatekeys"),
             "re-wrap the data key for the keys .sops.yaml now names (values stay as they are)")
    p.add_argument("paths", nargs="*", metavar="FILE|DIR")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--shamir-secret-sharing-threshold", type=int, default=0, metavar="N")
    _types(p, output=False)
    _indent(p)
    _decrypting(p)
    p = _add(sub, "rotate", ("keycmds", "rotate"), "generate a new data key and re-encrypt every value")
    p.add_argument("paths", nargs="*", metavar="FILE|DIR")
    p.add_argument("--in-place", "-i", action="store_true", help="write back (needed for several files)")
    p.add_argument("--output", help="write the rotated file here instead of stdout")
    for row in keys.backends():
        if row.flag:
            p.add_argument(f"--add-{row.flag}", help=f"comma list of {row.noun} to add (to group 1)")
            p.add_argument(f"--rm-{row.flag}", help=f"comma list of {row.noun} to remove")
    _types(p)
    _indent(p)
    _decrypting(p)


def _misc(sub: Any) -> None:
    p = _add(sub, "filestatus", ("commands", "filestatus"), 'print {"encrypted":true|false} for a file')
    p.add_argument("file", nargs="?")
    _types(p, output=False)
    p = _add(sub, "keygen", ("commands", "keygen"), "generate an age identity (age-keygen format)")
    p.add_argument("--output", "-o", help="write the identity to this file (mode 0600; never overwrites)")
    p.add_argument("--pq", "-pq", action="store_true",
                   help="a post-quantum (ML-KEM-768 + X25519) identity, as age-keygen -pq: "
                        "AGE-SECRET-KEY-PQ-1..., age1pq1...")
    p = _add(sub, "check", ("check", "check"),
             "fail when files .sops.yaml wants encrypted are plaintext, Secrets are plaintext, or keys are stale")
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or directories (default: .)")


# The host entry points, dispatched by cli.main before argparse runs; listed here for --help only.
_HOSTS = (
    ("krm", "kustomize: the exec KRM function and legacy plugin (kvsops krm --help)"),
    ("install-plugins", "kustomize: install the legacy plugin tree and the ksops shim into DIR"),
    ("helm", "Helm: the downloader plugin and a wrapper that writes no decrypted file (kvsops helm --help)"),
    ("argocd", "Argo CD: the config management plugin's init and generate (kvsops argocd --help)"),
    ("agent", "a long-running same-user agent that keeps keys and the Azure SDK warm (kvsops agent --help)"),
)


def _hosts(sub: Any) -> None:
    for name, text in _HOSTS:
        p = sub.add_parser(name, help=text, description=text, add_help=False)
        p.set_defaults(func=_dispatch(name))


def _dispatch(name: str) -> Callable[[Args], int]:
    def run(_ns: Args) -> int:
        raise UsageError(f"'{name}' takes its own arguments: run 'kvsops {name} --help'")

    return run


def build() -> argparse.ArgumentParser:
    parser = _Parser(prog="kvsops", description="SOPS-compatible secrets, decrypted in memory at render time.")
    parser.add_argument("--version", action="version", version=f"kvsops {__version__}")
    parser.add_argument("--debug", action="store_true", help="show stack frames on errors (never secret text)")
    parser.add_argument("--config", help="path to .sops.yaml (env SOPS_CONFIG)")
    _indent(parser, None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add in (_decrypt, _encrypt, _edit, _set_unset, _key_commands, _misc, _hosts):
        add(sub)
    return parser


def parse(argv: Sequence[str]) -> Args | None:
    """The command line as an :class:`Args` (argparse sets what the subcommand defines; the
    rest keeps the class's defaults, which are argparse's: tests/unit/test_cli_args.py)."""
    try:
        return build().parse_args(list(argv), namespace=Args())
    except _Done:
        return None
