"""``kvsops`` entry point: our own subcommands through argparse, the hosts' ones through DISPATCH.

Startup time matters (every Helm values file is a new process), so this module imports only the
standard library's light parts, ``errors`` and ``report``; everything else is imported by the
command that needs it.
"""

from __future__ import annotations

import sys

from kvsops import report
from kvsops.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Sequence

    from kvsops.cli.common import Args

# Subcommands owned by other modules: name -> (module, function), imported only when used.
DISPATCH: dict[str, tuple[str, str] | None] = {
    "krm": ("kvsops.hosts.kustomize.krm", "main"),
    "install-plugins": ("kvsops.hosts.kustomize.krm", "install_plugins_main"),
    "helm": ("kvsops.hosts.helm.main", "main"),
    "argocd": ("kvsops.hosts.argocd.main", "main"),
    "agent": ("kvsops.agent.server", "main"),
}


def _dispatched(name: str) -> Callable[[list[str]], int]:
    target = DISPATCH[name]
    if target is None:
        raise UsageError(f"the {name!r} command is not available in this build")
    module_name, func = target
    try:
        __import__(module_name)  # importlib.import_module, without importing importlib (and warnings)
        module = sys.modules[module_name]
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(f"the {name!r} command is not available in this build") from None
        raise
    found: Callable[[list[str]], int] = getattr(module, func)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = bool(args) and args[0] == "--debug"
    rest = args[1:] if debug else args
    if len(args) == 2 and args[0] in _DECRYPT and not args[1].startswith("-"):
        if argv is None:
            report.one_file_process()
        code = report.guarded(lambda: _decrypt_file(args[1]))
        return report.finish(code) if argv is None else code  # argv None: we are the process
    if rest and rest[0] in DISPATCH:
        try:
            func = _dispatched(rest[0])
        except UsageError as exc:
            unavailable = exc  # `exc` is unbound after the except block; keep the error explicitly
            return report.guarded(lambda: _raise(unavailable), debug=debug)
        return int(func(rest[1:]) or 0)
    return report.guarded(lambda: _own_command(args), debug="--debug" in args)


# `kvsops decrypt FILE` and sops' `-d FILE`: the same work (a missing file 100, a directory 2,
# plaintext on stdout), on the path that builds no parser.
_DECRYPT = ("decrypt", "-d", "--decrypt")


def _raise(exc: BaseException) -> int:
    raise exc


def _decrypt_file(path: str) -> int:
    """``kvsops decrypt FILE``, the form hosts run per file, without building the argparse tree
    (argparse and the parser definitions cost more start-up than the decryption of a small
    file). The namespace carries exactly what the parser gives for that command line."""
    import os

    from kvsops.agent import client

    link = client.from_env(os.environ)
    if link is not None:
        from kvsops.cli import remote

        if remote.decrypt_file(link, path):
            return 0
    from kvsops.cli import commands

    # with a link, the agent declined this request: the rest works in-process
    return int(commands.decrypt(decrypt_args(path, use_agent=link is None)) or 0)


def decrypt_args(path: str, *, use_agent: bool = True) -> Args:
    """What the parser gives for ``kvsops decrypt FILE``: every other field keeps its default."""
    from kvsops.cli.common import Args

    ns = Args()
    ns.command = "decrypt"
    ns.file = path
    ns.use_agent = use_agent
    return ns


def _own_command(args: list[str]) -> int:
    """sops' flag-driven forms (kvsops.cli.legacy, no argparse), else the subcommands."""
    from kvsops.cli import legacy

    code = legacy.main(args)
    if code is not None:
        return code
    from kvsops.cli import parser

    ns = parser.parse(legacy.for_argparse(args))
    if ns is None:  # --help or --version was printed
        return 0
    return int(ns.func(ns) or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
