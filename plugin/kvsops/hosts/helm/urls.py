"""Helm downloader URLs (helm-secrets' grammar), the path policy, and the wrapper's argv rewrite.

Pure apart from ``os.path.realpath`` (injected where it matters): no file is read here, no process
is spawned, the environment is passed in. ``kvsops.hosts.helm.downloader`` does the I/O and ``kvsops.hosts.helm.main``
translates Helm's protocol.

Grammar, after ``scheme://`` and taken from the raw string Helm passes (no URL decoding, ``?``
and ``#`` kept): ``[?]`` ignore a missing file · ``[backend!]`` helm-secrets' per-file backend
override (only ``sops!`` is accepted: it is what kvsops implements) · payload. The import schemes'
payload is ``KEYFILE?FILE`` split on the first ``?``.
"""

from __future__ import annotations

import os

from kvsops._record import Factory, Record
from kvsops.errors import GeneratorError, InputError, PathRefused

# Helm starts the downloader once per values file: dataclasses, typing and json stay off that path.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Mapping, Sequence

FILE, AGE_IMPORT, GPG_IMPORT, LITERAL = "file", "age-import", "gpg-import", "literal"
REFS = "refs"  # kvsops+refs://FILE: a SOPS or plain file whose ref+ references are resolved (kvsops.hosts.helm.refs)

SCHEMES: dict[str, str] = {
    "kvsops": FILE,
    "kvsops+age-import": AGE_IMPORT,
    "kvsops+gpg-import": GPG_IMPORT,
    "kvsops+literal": LITERAL,
    "kvsops+refs": REFS,
    "secrets": FILE,
    "secrets+age-import": AGE_IMPORT,
    "secrets+gpg-import": GPG_IMPORT,
    "secrets+literal": LITERAL,
}
# Registered so that Helm hands them to us (and we can say why they fail) instead of reading a file
# literally named "secrets+age-import-kubernetes://...".
UNSUPPORTED = ("secrets+gpg-import-kubernetes", "secrets+age-import-kubernetes")
PROTOCOLS = tuple(SCHEMES) + UNSUPPORTED

TRUE = frozenset({"1", "true", "yes", "on"})

# Environment settings. Every relaxing one is ignored under Argo CD (or KVSOPS_HELM_STRICT=true).
ALLOW_UNENCRYPTED = "KVSOPS_HELM_ALLOW_UNENCRYPTED"
ALLOW_ABSOLUTE = "KVSOPS_HELM_ALLOW_ABSOLUTE_PATH"
ALLOW_TRAVERSAL = "KVSOPS_HELM_ALLOW_PATH_TRAVERSAL"
ALLOW_SYMLINKS = "KVSOPS_HELM_ALLOW_SYMLINKS_OUTSIDE"
ALLOW_EXECUTABLES = "KVSOPS_HELM_ALLOW_REPO_EXECUTABLES"
ROOT = "KVSOPS_HELM_ROOT"
KEY_PREFIX = "KVSOPS_HELM_KEY_PREFIX"
STRICT = "KVSOPS_HELM_STRICT"
WRAPPER_FILES = "KVSOPS_HELM_WRAPPER_FILES"  # set by our wrapper only: exact files named on helm's command line
RELAXING = (ALLOW_ABSOLUTE, ALLOW_TRAVERSAL, ALLOW_SYMLINKS, ALLOW_EXECUTABLES, ROOT)


class Request(Record):
    __slots__ = _fields = ("scheme", "kind", "target", "key_file", "ignore_missing")
    _defaults = {"key_file": "", "ignore_missing": False}
    scheme: str  # lower-cased, as Helm matches it
    kind: str  # FILE | AGE_IMPORT | GPG_IMPORT | LITERAL
    target: str  # the file path, or the literal (never printed: it may be a plaintext)
    key_file: str
    ignore_missing: bool


def parse(url: str) -> Request:
    head, sep, rest = url.partition("://")
    scheme = head.lower()
    if not sep or not head:
        raise GeneratorError("the downloader expects scheme://... as its last argument",
                             hint=f"kvsops handles: {', '.join(SCHEMES)}")
    if scheme in UNSUPPORTED:
        raise GeneratorError(f"{head}:// is not supported by kvsops (it would fetch a private key from the "
                             "cluster)", hint="mount the key and use secrets+age-import:// or secrets+gpg-import://")
    kind = SCHEMES.get(scheme)
    if kind is None:
        raise GeneratorError(f"unknown protocol {head}://", hint=f"kvsops handles: {', '.join(SCHEMES)}")
    ignore = rest.startswith("?") and kind != LITERAL
    if ignore:
        rest = rest[1:]
    rest = _strip_backend(rest)
    if kind == LITERAL:  # a vals reference (ref+...) too: helm-secrets' sops backend echoes it
        return Request(scheme, kind, rest)
    key = ""
    if kind in (AGE_IMPORT, GPG_IMPORT):
        key, sep, rest = rest.partition("?")
        if not sep or not key or not rest:
            raise GeneratorError(f"Invalid syntax: {head}://[path to key]?[path secrets.yaml]")
    if not rest:
        raise GeneratorError(f"{head}:// has no file path")
    if _has_url_scheme(rest):
        raise GeneratorError(f"remote values ({rest.split('://')[0]}://) are not fetched by kvsops",
                             hint="kvsops decrypts local files only; fetch remote files with Helm's own getters")
    return Request(scheme, kind, rest, key, ignore)


_ALPHA = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_SCHEME_CHARS = _ALPHA | frozenset("0123456789+.-")


def _has_url_scheme(text: str) -> bool:
    """``re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text)``: ":" ends the greedy run, so no backtracking.

    Scanned by hand (as the other checks on the downloader's path) so that ``re`` is not imported."""
    if text[:1] not in _ALPHA:
        return False
    i = 1
    while i < len(text) and text[i] in _SCHEME_CHARS:
        i += 1
    return text.startswith("://", i)


def _strip_backend(rest: str) -> str:
    name, bang, payload = rest.partition("!")
    if not bang:
        return rest
    if name == "sops":
        return payload
    if name in ("vals", "noop") or name.endswith((".sh", ".bash")):
        raise GeneratorError(f"backend {name!r} is not supported: kvsops is its own sops backend and never runs "
                             "a backend script", hint="drop the 'backend!' prefix")
    return rest  # a '!' that is part of a file name


# ------------------------------------------------------------------------------------- policy


class Policy(Record):
    __slots__ = _fields = ("cwd", "root", "key_prefix", "allow_unencrypted", "allow_absolute", "allow_traversal",
                           "allow_symlinks", "allow_executables", "strict", "notes", "wrapper_files")
    _defaults = {"allow_unencrypted": False, "allow_absolute": False, "allow_traversal": False,
                 "allow_symlinks": False, "allow_executables": False, "strict": "", "notes": (),
                 "wrapper_files": Factory(frozenset)}
    cwd: str
    root: str  # real path; values files must stay inside it
    key_prefix: str  # real path; key files must be inside it
    allow_unencrypted: bool
    allow_absolute: bool
    allow_traversal: bool
    allow_symlinks: bool
    allow_executables: bool
    strict: str  # why relaxing settings are ignored ("" when they are honoured)
    notes: tuple[str, ...]
    wrapper_files: frozenset[str]


def _on(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in TRUE


def policy_from_env(env: Mapping[str, str], cwd: str, realpath: Callable[[str], str] = os.path.realpath) -> Policy:
    strict = ""
    if env.get("ARGOCD_APP_NAME"):
        strict = "running under Argo CD (ARGOCD_APP_NAME is set)"
    elif _on(env, STRICT):
        strict = f"{STRICT}=true"
    notes: list[str] = []
    relax = {name: bool(env.get(name, "").strip()) for name in RELAXING}
    if strict:
        ignored = [n for n, v in relax.items() if v]
        if ignored:
            notes.append(f"{', '.join(ignored)} ignored: {strict}")
        relax = dict.fromkeys(relax, False)
    root = realpath(os.path.join(cwd, env[ROOT])) if relax[ROOT] else realpath(cwd)
    real_cwd = realpath(cwd)
    if not inside(real_cwd, root):
        raise PathRefused(f"{ROOT} must contain the current directory")
    prefix = env.get(KEY_PREFIX, "").strip()
    files: frozenset[str] = frozenset()
    if env.get(WRAPPER_FILES):
        import json

        try:
            files = frozenset(str(p) for p in json.loads(env[WRAPPER_FILES]))
        except (ValueError, TypeError):
            raise GeneratorError(f"{WRAPPER_FILES} is not a JSON list") from None
    return Policy(
        cwd=cwd, root=root,
        key_prefix=realpath(os.path.join(cwd, prefix)) if prefix else real_cwd,
        allow_unencrypted=_on(env, ALLOW_UNENCRYPTED),
        allow_absolute=relax[ALLOW_ABSOLUTE] and _on(env, ALLOW_ABSOLUTE),
        allow_traversal=relax[ALLOW_TRAVERSAL] and _on(env, ALLOW_TRAVERSAL),
        allow_symlinks=relax[ALLOW_SYMLINKS] and _on(env, ALLOW_SYMLINKS),
        allow_executables=relax[ALLOW_EXECUTABLES] and _on(env, ALLOW_EXECUTABLES),
        strict=strict, notes=tuple(notes), wrapper_files=files,
    )


def inside(path: str, root: str) -> bool:
    """``path`` is ``root`` or beneath it (a lexical test: resolve both first)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def is_absolute(path: str) -> bool:
    return path.startswith(("/", "\\")) or (path[1:2] == ":" and path[:1] in _ALPHA)  # [A-Za-z]:


def escapes_lexically(path: str) -> bool:
    """True when ``..`` climbs above the starting directory (``a/../b`` stays inside)."""
    depth = 0
    for part in path.replace("\\", "/").split("/"):  # re.split(r"[/\\]", path)
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def resolve_values_path(pol: Policy, path: str, realpath: Callable[[str], str] = os.path.realpath) -> str:
    """The real path to read for a values file, or PathRefused. Missing files resolve too."""
    try:
        real = realpath(os.path.join(pol.cwd, path))
    except OSError as exc:  # a path changing under us (realpath's lstat and readlink disagree)
        raise InputError(f"{path}: cannot resolve it ({exc.strerror or type(exc).__name__})") from None
    if real in pol.wrapper_files:
        return real
    absolute = is_absolute(path)
    if absolute and not pol.allow_absolute:
        raise PathRefused(f"{path}: absolute paths are not allowed",
                          hint=_hint("use a path relative to the chart directory", ALLOW_ABSOLUTE, pol))
    climbs = not absolute and escapes_lexically(path)
    if climbs and not pol.allow_traversal:
        raise PathRefused(f"{path}: the path leaves the current directory (..)",
                          hint=_hint("keep values files under the directory helm runs in", ALLOW_TRAVERSAL, pol))
    if not (absolute or climbs or pol.allow_symlinks) and not inside(real, pol.root):
        raise PathRefused(f"{path}: a symbolic link leads outside {pol.root}", hint=symlink_hint(pol))
    return real


def confined(pol: Policy, path: str, real: str) -> bool:
    """Whether a values file is read beneath the root (kvsops.fs): every file, except those the
    wrapper vetted and those a relaxing setting lets out."""
    if real in pol.wrapper_files:
        return False
    if is_absolute(path):
        return not pol.allow_absolute
    return not (pol.allow_symlinks or (pol.allow_traversal and escapes_lexically(path)))


def symlink_hint(pol: Policy) -> str:
    return _hint("replace the link by the file", ALLOW_SYMLINKS, pol)


def resolve_key_path(pol: Policy, path: str, realpath: Callable[[str], str] = os.path.realpath) -> str:
    real = realpath(os.path.join(pol.cwd, path))
    if not inside(real, pol.key_prefix):
        raise PathRefused(f"key file {path}: outside the allowed key location {pol.key_prefix}",
                          hint=f"put the key under it, or set {KEY_PREFIX} to the directory holding your keys")
    return real


def _hint(base: str, setting: str, pol: Policy) -> str:
    if pol.strict:
        return f"{base} ({setting} is ignored: {pol.strict})"
    return f"{base}, or set {setting}=true"


def executable_env(env: Mapping[str, str], pol: Policy) -> dict[str, str]:
    """The environment for key backends, with no way to run a program from the repository:
    PATH loses relative entries and entries inside the root; SOPS_GPG_EXEC and the key commands
    may not name a file inside it."""
    out = dict(env)
    if pol.allow_executables:
        return out
    parts = out.get("PATH", "").split(os.pathsep)
    out["PATH"] = os.pathsep.join(p for p in parts if os.path.isabs(p) and not inside(os.path.realpath(p), pol.root))
    for name in ("SOPS_GPG_EXEC", "SOPS_AGE_KEY_CMD", "SOPS_AGE_SSH_PRIVATE_KEY_CMD"):
        value = out.get(name, "").strip()
        if not value:
            continue
        exe = value.split()[0] if name != "SOPS_GPG_EXEC" else value
        if ("/" in exe or "\\" in exe) and (not os.path.isabs(exe) or inside(os.path.realpath(exe), pol.root)):
            raise PathRefused(f"{name} names a program inside the repository (or a relative path)",
                              hint=_hint("use an absolute path outside the checkout", ALLOW_EXECUTABLES, pol))
    return out


# ------------------------------------------------------------------------------------- formats


def sniff_format(path: str, data: bytes) -> str:
    """sops' extension rule, then helm-secrets' content rule for other names (``.gotpl``, ``.raw``)."""
    from kvsops.sops import stores

    fmt = stores.detect(path)
    if fmt != "binary":
        return fmt
    import re  # only for names without a known extension

    if re.search(rb"(?m)^sops:[ \t]*\r?$", data):
        return "yaml"
    if re.search(rb'"data":\s*"ENC\[', data):
        return "binary"
    if data.lstrip().startswith(b"{"):
        return "json"
    return "binary"


# ------------------------------------------------------------------------------------- wrapper

VALUE_FLAGS = {"-f": "values", "--values": "values", "--set-file": "set-file"}


def _split_flag(arg: str) -> tuple[str, str | None] | None:
    """(flag, attached value or None) for -f/--values/--set-file in their pflag spellings."""
    for flag in VALUE_FLAGS:
        if arg == flag:
            return flag, None
        if arg.startswith(flag + "="):
            return flag, arg[len(flag) + 1:]
        if flag == "-f" and arg.startswith("-f") and not arg.startswith("--"):
            return flag, arg[2:]
    return None


def downloader_url(path: str, scheme: str = "kvsops") -> str:
    """``kvsops://./rel`` keeps Go's url.Parse happy whatever the first segment holds (spaces,
    colons); absolute paths become ``kvsops:///abs``."""
    return f"{scheme}://" + (path if path.startswith("/") else "./" + path)


def _rewrite_item(item: str, is_encrypted: Callable[[str], "bool | str"]) -> str:
    """``is_encrypted`` may also answer a scheme (``kvsops+refs``) for the URL."""
    if not item or item == "-" or "://" in item:
        return item
    route = is_encrypted(item)
    if not route:
        return item
    return downloader_url(item, route if isinstance(route, str) else "kvsops")


def _rewrite_value(kind: str, value: str, is_encrypted: Callable[[str], "bool | str"]) -> str:
    if kind == "values":
        if '"' in value:  # pflag reads it as CSV: leave quoted lists to helm
            return value
        return ",".join(_rewrite_item(v, is_encrypted) for v in value.split(","))
    import re

    items = re.split(r"(?<!\\),", value)
    out = []
    for item in items:
        key, eq, path = item.partition("=")
        out.append(key + eq + _rewrite_item(path, is_encrypted) if eq else item)
    return ",".join(out)


def rewrite_args(args: Sequence[str], is_encrypted: Callable[[str], "bool | str"]) -> list[str]:
    """Replace each encrypted file given to -f/--values/--set-file by a kvsops:// URL."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out.extend(args[i:])
            break
        split = _split_flag(arg)
        if split is None:
            out.append(arg)
        elif split[1] is None:
            if i + 1 < len(args):
                out += [arg, _rewrite_value(VALUE_FLAGS[split[0]], args[i + 1], is_encrypted)]
                i += 1
            else:
                out.append(arg)
        else:
            prefix = arg[: len(arg) - len(split[1])]
            out.append(prefix + _rewrite_value(VALUE_FLAGS[split[0]], split[1], is_encrypted))
        i += 1
    return out
