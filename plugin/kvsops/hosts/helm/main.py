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
    from typing import Mapping, Sequence

USAGE = """\
usage: kvsops helm -- HELM-COMMAND [ARGS...]     (template, install, upgrade, lint, diff ...)
       helm kvsops HELM-COMMAND [ARGS...]        (the same, as a Helm plugin: helm-plugin/kvsops)
       kvsops helm downloader CERT KEY CA URL    (what Helm runs for -f secrets://...; URL is last)

The wrapper rewrites every SOPS-encrypted -f/--values/--set-file file into a kvsops:// URL and runs
helm ($HELM_BIN, else helm on PATH); the getter plugin (helm-plugin/kvsops-getter-legacy) must be
installed. Nothing decrypted is written to disk.

URLs: kvsops://FILE, secrets://FILE, secrets://?FILE (an optional file: missing -> empty values),
      secrets+age-import://KEYFILE?FILE, secrets+gpg-import://KEYFILE?FILE,
      secrets+literal://VALUE, kvsops+refs://FILE (resolve ref+ references; SOPS or plain)
Settings (environment): KVSOPS_HELM_ALLOW_UNENCRYPTED, KVSOPS_HELM_ALLOW_ABSOLUTE_PATH,
      KVSOPS_HELM_ALLOW_PATH_TRAVERSAL, KVSOPS_HELM_ALLOW_SYMLINKS_OUTSIDE, KVSOPS_HELM_ROOT,
      KVSOPS_HELM_KEY_PREFIX, KVSOPS_HELM_ALLOW_REPO_EXECUTABLES, KVSOPS_HELM_STRICT,
      KVSOPS_REFS=true (wrapper: values files with references go through kvsops+refs://),
      KVSOPS_DEBUG=1 (stack frames on errors, never secret text; Helm passes it to the plugin)
      (see helm-plugin/README.md; relaxing settings are ignored when ARGOCD_APP_NAME is set)
"""

HELM_COMMANDS = ("template", "install", "upgrade", "lint", "diff", "package")


def main(argv: Sequence[str] | None = None) -> int:
    from kvsops.report import env_debug

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["helm"]:
        args = args[1:]
    # --debug cannot be given where Helm runs us (Helm keeps its own --debug): KVSOPS_DEBUG=1 can.
    debug = env_debug(os.environ)
    if args[:1] == ["--debug"]:
        debug, args = True, args[1:]
    if args[:1] == ["downloader"]:
        return _downloader(args[1:], debug, process=argv is None)
    wrapper = args[:1] == ["--"]  # `helm kvsops ARGS` runs the shim with `-- ARGS`
    if wrapper:
        args = args[1:]
    if args[:1] in (["-h"], ["--help"], ["help"]):
        sys.stdout.write(USAGE)
        return 0
    if not args or not (wrapper or args[0] in HELM_COMMANDS):
        sys.stderr.write(USAGE)
        return 2
    from kvsops.report import DEBUG_BY_ENV, full_site, guarded

    full_site()  # the wrapper works in-process (see report.full_site)
    return guarded(lambda: wrap(args), debug=debug, debug_hint=DEBUG_BY_ENV)


def _downloader(args: list[str], debug: bool, *, process: bool) -> int:
    from kvsops.report import DEBUG_BY_ENV, guarded

    if process:  # the process Helm started for this one file
        from kvsops.report import one_file_process

        one_file_process()
    code = guarded(lambda: download(args), debug=debug, debug_hint=DEBUG_BY_ENV)
    if process:  # skip interpreter teardown
        from kvsops.report import finish

        return finish(code)
    return code


def _note(text: str) -> None:
    sys.stderr.write(f"kvsops: note: {text}\n")


def download(args: Sequence[str]) -> int:
    from kvsops.errors import UsageError
    from kvsops.hosts.helm import downloader as helmget, urls as helmurl

    if not args:
        raise UsageError("the downloader needs the URL as its last argument",
                         hint="kvsops helm downloader CERT KEY CA URL")
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

    schemes: set[str] = set()

    def route(path: str) -> bool | str:
        got = is_encrypted(path)
        if got:
            schemes.add(got if isinstance(got, str) else "kvsops")
        return got

    new_args = helmurl.rewrite_args(args, route)
    if vetted:
        env[helmurl.WRAPPER_FILES] = json.dumps(sorted(set(vetted)))
    helm = _helm_binary(env, pol)
    if schemes:
        _require_getter(env, schemes)
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


def helm_plugin_dirs(env: Mapping[str, str]) -> list[str]:
    """Where Helm looks for plugins (helmpath): $HELM_PLUGINS (a path list for Helm 3), else
    $HELM_DATA_HOME/plugins, else $XDG_DATA_HOME/helm/plugins, else the platform's data dir."""
    raw = env.get("HELM_PLUGINS", "")
    if not raw:
        data = env.get("HELM_DATA_HOME", "")
        if not data:
            home = env.get("HOME") or os.path.expanduser("~")
            base = env.get("XDG_DATA_HOME", "")
            if not base:
                if sys.platform == "darwin":
                    base = os.path.join(home, "Library")
                elif sys.platform == "win32":
                    base = env.get("APPDATA", home)
                else:
                    base = os.path.join(home, ".local", "share")
            data = os.path.join(base, "helm")
        raw = os.path.join(data, "plugins")
    return [p for p in raw.split(os.pathsep) if p]


def getter_protocols(dirs: Sequence[str]) -> set[str]:
    """The protocols the getter plugins in ``dirs`` register (legacy ``downloaders`` and v1
    ``config.protocols``), read from each ``*/plugin.yaml`` as Helm finds them."""
    import glob

    import yaml

    found: set[str] = set()
    for d in dirs:
        for meta_path in sorted(glob.glob(os.path.join(glob.escape(d), "*", "plugin.yaml"))):
            try:
                with open(meta_path, "rb") as fh:
                    meta = yaml.safe_load(fh.read(1 << 20))
            except (OSError, yaml.YAMLError):
                continue
            if not isinstance(meta, dict):
                continue
            lists = [dl.get("protocols") for dl in meta.get("downloaders") or [] if isinstance(dl, dict)]
            if meta.get("type") == "getter/v1" and isinstance(meta.get("config"), dict):
                lists.append(meta["config"].get("protocols"))
            found.update(str(p).lower() for ps in lists if isinstance(ps, list) for p in ps)
    return found


def _require_getter(env: Mapping[str, str], schemes: set[str]) -> None:
    """Fail before helm runs when no plugin handles the URLs we wrote: Helm itself would read
    ``kvsops://...`` as a file name and say only "no such file or directory"."""
    from kvsops.errors import MissingDependency

    dirs = helm_plugin_dirs(env)
    missing = sorted(schemes - getter_protocols(dirs))
    if not missing:
        return
    checkout = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "helm-plugin"))
    source = checkout if os.path.isdir(checkout) else "<kvsops checkout>/helm-plugin"
    raise MissingDependency(
        f"no Helm getter plugin for {', '.join(s + '://' for s in missing)} is installed in {os.pathsep.join(dirs)}",
        hint=f"helm plugin install {source}/kvsops-getter-legacy (Helm 3 and 4; see helm-plugin/README.md)")


def _helm_binary(env: dict[str, str], pol: object) -> str:
    import shutil

    from kvsops.errors import PathRefused, UsageError
    from kvsops.hosts.helm import urls as helmurl

    assert isinstance(pol, helmurl.Policy)
    name = env.get("HELM_BIN") or "helm"
    safe = helmurl.executable_env(env, pol)
    if os.sep in name:
        found = os.path.realpath(os.path.join(pol.cwd, name))
        if not pol.allow_executables and (not os.path.isabs(name) or helmurl.inside(found, pol.root)):
            raise PathRefused(
                f"HELM_BIN={name}: a helm inside the repository (or a relative path) is never run",
                hint=f"use an absolute path outside the checkout, or set {helmurl.ALLOW_EXECUTABLES}=true",
            )
    else:
        found = shutil.which(name, path=safe.get("PATH")) or ""
    if not found or not os.access(found, os.X_OK):
        raise UsageError(f"helm not found ({name})", hint="install helm, or set HELM_BIN to its absolute path")
    return found


if __name__ == "__main__":
    raise SystemExit(main())
