"""``kvsops helm``: Helm's downloader protocol, and a wrapper around the real helm.

    kvsops helm downloader CERT KEY CA URL      # what Helm runs for -f secrets://... (URL is last)
    kvsops helm -- template|install|upgrade|lint|diff ... -f secrets.yaml

The downloader writes only the plaintext to stdout (binary, nothing added), reads no stdin, and on
any failure leaves stdout empty and exits non-zero. The wrapper rewrites each encrypted
``-f/--values/--set-file`` file into a ``kvsops://`` URL and execs helm, so Helm calls the
downloader and no decrypted file is ever written. Heavy modules are imported only when needed:
Helm starts one process per values file.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Sequence

USAGE = """\
usage: kvsops helm downloader CERT KEY CA URL
       kvsops helm -- HELM-COMMAND [ARGS...]     (template, install, upgrade, lint, diff ...)

URLs: kvsops://FILE, secrets://FILE, secrets://?FILE (missing file -> empty),
      secrets+age-import://KEYFILE?FILE, secrets+gpg-import://KEYFILE?FILE,
      secrets+literal://VALUE, kvsops+refs://FILE (resolve ref+ references; SOPS or plain)
Settings (environment): KVSOPS_HELM_ALLOW_UNENCRYPTED, KVSOPS_HELM_ALLOW_ABSOLUTE_PATH,
      KVSOPS_HELM_ALLOW_PATH_TRAVERSAL, KVSOPS_HELM_ALLOW_SYMLINKS_OUTSIDE, KVSOPS_HELM_ROOT,
      KVSOPS_HELM_KEY_PREFIX, KVSOPS_HELM_ALLOW_REPO_EXECUTABLES, KVSOPS_HELM_STRICT,
      KVSOPS_REFS=true (wrapper: values files with references go through kvsops+refs://)
      (see helm-plugin/README.md; relaxing settings are ignored when ARGOCD_APP_NAME is set)
"""

HELM_COMMANDS = ("template", "install", "upgrade", "lint", "diff", "package")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["helm"]:
        args = args[1:]
    debug = "--debug" in args[:1]
    if debug:
        args = args[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    from kvsops.report import guarded

    if args[0] == "downloader":
        if argv is None:  # the process Helm started for this one file
            from kvsops.report import one_file_process

            one_file_process()
        code = guarded(lambda: download(args[1:]), debug=debug)
        if argv is None:  # the process Helm started for this one file: skip interpreter teardown
            from kvsops.report import finish

            return finish(code)
        return code
    if args[0] == "--":
        args = args[1:]
    elif args[0] not in HELM_COMMANDS:
        sys.stderr.write(USAGE)
        return 2
    return guarded(lambda: wrap(args), debug=debug)


def _note(text: str) -> None:
    sys.stderr.write(f"kvsops: note: {text}\n")


def download(args: Sequence[str]) -> int:
    from kvsops.hosts.helm import downloader as helmget
    from kvsops.hosts.helm import urls as helmurl
    from kvsops.errors import UsageError

    if not args:
        raise UsageError("the downloader needs the URL as its last argument", hint="kvsops helm downloader CERT KEY CA URL")
    env = dict(os.environ)
    pol = helmurl.policy_from_env(env, os.getcwd())
    for note in pol.notes:
        _note(note)
    data = helmget.fetch(helmurl.parse(args[-1]), pol, env)
    out = sys.stdout.buffer
    out.write(data)
    out.flush()
    return 0


def wrap(args: Sequence[str]) -> int:
    import json

    from kvsops.hosts.helm import urls as helmurl

    env = dict(os.environ)
    pol = helmurl.policy_from_env(env, os.getcwd())
    for note in pol.notes:
        _note(note)
    vetted: list[str] = []
    from kvsops.refs.resolve import enabled

    refs_on = enabled(env.get("KVSOPS_REFS"))

    def is_encrypted(path: str) -> bool | str:
        if _encrypted_file(path):
            vetted.append(os.path.realpath(path))
            return "kvsops+refs" if refs_on else True
        if refs_on and _has_refs(path):
            vetted.append(os.path.realpath(path))
            return "kvsops+refs"
        return False

    new_args = helmurl.rewrite_args(args, is_encrypted)
    if vetted:
        env[helmurl.WRAPPER_FILES] = json.dumps(sorted(set(vetted)))
    helm = _helm_binary(env, pol)
    sys.stderr.flush()
    os.execve(helm, [helm, *new_args], env)
    return 0  # pragma: no cover - execve does not return


def _encrypted_file(path: str) -> bool:
    """Detected by reading the sops metadata, never by the file name."""
    from kvsops import api
    from kvsops.hosts.helm import urls as helmurl

    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return False  # helm reports missing files itself
    return api.is_encrypted(data, helmurl.sniff_format(path, data))


def _has_refs(path: str) -> bool:
    from kvsops.refs.grammar import contains_ref

    try:
        with open(path, "rb") as fh:
            return contains_ref(fh.read().decode("utf-8", "replace"))
    except OSError:
        return False


def _helm_binary(env: dict[str, str], pol: object) -> str:
    import shutil

    from kvsops.hosts.helm import urls as helmurl
    from kvsops.errors import PathRefused, UsageError

    assert isinstance(pol, helmurl.Policy)
    name = env.get("HELM_BIN") or "helm"
    safe = helmurl.executable_env(env, pol)
    if os.sep in name:
        found = os.path.realpath(os.path.join(pol.cwd, name))
        if not pol.allow_executables and (not os.path.isabs(name) or helmurl._inside(found, pol.root)):
            raise PathRefused(f"HELM_BIN={name}: a helm inside the repository (or a relative path) is never run",
                              hint=f"use an absolute path outside the checkout, or set {helmurl.ALLOW_EXECUTABLES}=true")
    else:
        found = shutil.which(name, path=safe.get("PATH")) or ""
    if not found or not os.access(found, os.X_OK):
        raise UsageError(f"helm not found ({name})", hint="install helm, or set HELM_BIN to its absolute path")
    return found


if __name__ == "__main__":
    raise SystemExit(main())
