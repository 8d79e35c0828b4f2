"""kustomize entry point: an exec KRM function, and (given one argument) a legacy exec plugin.

    kvsops-krm                  ResourceList on stdin -> ResourceList on stdout (KRM function)
    kvsops krm                  the same, for kustomize >= 5.7 (``exec: {path: kvsops, args: [krm]}``)
    kvsops-krm CONFIG           legacy exec plugin: generator YAML file -> YAML stream on stdout

kustomize starts one process per generator, so this module imports only what a run needs. The
whole output is built in memory first: on failure stdout carries no object (in KRM mode only a
ResourceList holding the error as a ``results`` entry; kustomize shows stderr), and the exit code
is non-zero.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing costs milliseconds of every kustomize generator's start-up
if TYPE_CHECKING:
    from typing import Any, BinaryIO, TextIO

# The essentials (an installed package has no kustomize/README.md to point at).
USAGE = """\
usage: kvsops-krm              KRM function: a ResourceList on stdin, the generated objects on stdout
       kvsops-krm CONFIG       legacy exec plugin: CONFIG is the generator YAML, a YAML stream on stdout
       kvsops krm [CONFIG]     the same (kustomize >= 5.7: exec: {path: kvsops, args: [krm]})
       kvsops install-plugins DIR   the legacy plugin tree under DIR, and DIR/ksops for exec: {path: ksops}

generator kinds: kvsops/v1 SopsGenerator, viaduct.ai/v1 ksops, goabout.com/v1beta1 SopsSecretGenerator
(SopsSecret). A SopsGenerator, listed under `generators:` in kustomization.yaml:

  apiVersion: kvsops/v1
  kind: SopsGenerator
  metadata:
    name: app-secrets
    annotations:
      config.kubernetes.io/function: |
        exec:
          path: kvsops-krm
  options: {disableNameSuffixHash: false, behavior: create}   # defaults for every Secret below
  files: [manifests/pull-secret.enc.yaml]   # whole encrypted manifests, emitted decrypted
  secrets:
    - name: db                              # one Secret (type Opaque, base64 data, name hash)
      envs: [db.enc.env]                    # every KEY=value of a dotenv or flat YAML/JSON map
      files: [tls.crt=tls.enc.crt]          # data[key] = the decrypted file
      literals: [password=app.enc.yaml#/db/password]   # one value, by JSON pointer

Build with: kustomize build --enable-alpha-plugins --enable-exec DIR
Paths are relative to the kustomization root and may not leave it. Keys are found as sops finds
them (SOPS_AGE_KEY, SOPS_AGE_KEY_FILE as an absolute path, ~/.config/sops/age/keys.txt, GNUPGHOME,
Azure credentials). Unknown fields are refused. Every field: kustomize/README.md in kvsops' sources.
"""


def _yaml() -> Any:
    import yaml

    return yaml


def _loader() -> Any:
    yaml = _yaml()
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _dumper() -> Any:
    yaml = _yaml()
    base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

    class Dumper(base):  # type: ignore[misc, valid-type]
        pass

    from kvsops.sops.stores.yaml_store import resolve_plain

    def text(dumper: Any, value: str) -> Any:
        # PyYAML quotes by YAML 1.1 rules; kustomize reads YAML 1.2 (go-yaml v3), where "1e3" or
        # "0o17" left plain would turn a string into a number. Quote whatever v3 would not read
        # back as this string. A block literal keeps multi-line values readable (PyYAML falls
        # back to quoting when "|" cannot hold the value).
        style = "|" if "\n" in value else None
        if style is None:
            try:
                plain = resolve_plain(value) == value
            except Exception:  # noqa: BLE001 - anything odd is simply quoted
                plain = False
            style = None if plain else "'"
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return Dumper


def dump(obj: Any, *, many: bool = False) -> bytes:
    yaml = _yaml()
    opts = {"Dumper": _dumper(), "sort_keys": False, "default_flow_style": False,
            "allow_unicode": True, "encoding": "utf-8", "width": 1 << 30}
    out: bytes = yaml.dump_all(obj, **opts) if many else yaml.dump(obj, **opts)  # bytes: opts has an encoding
    return out


def _parse(data: bytes, what: str) -> list[Any]:
    from kvsops import errors

    yaml = _yaml()
    try:
        return [d for d in yaml.load_all(data, Loader=_loader()) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise errors.InputError(f"{what} is not valid YAML{at}") from None
    except ValueError:  # an integer longer than Python reads (4,300 digits)
        from kvsops.sops.stores import long_number_error

        raise long_number_error(data, f"{what}: ") or errors.InputError(f"{what} is not valid YAML") from None


DEFAULT_DEADLINE_SECONDS = 60.0  # KVSOPS_DEADLINE_SECONDS overrides it


def _env() -> dict[str, str]:
    return dict(os.environ)


def _generate(configs: list[Any], *, legacy: bool = False) -> list[dict[str, Any]]:
    # Argo CD key policy (the grant from `kvsops argocd generate`); data keys from the agent when one runs
    from kvsops.agent.session import session_from_env
    from kvsops.api import deadline_from_env
    from kvsops.hosts.kustomize.generate import generate

    env = _env()
    # One deadline for the whole run (Key Vault calls, templates): kustomize has none of its own.
    deadline = deadline_from_env(env, DEFAULT_DEADLINE_SECONDS)
    root = _legacy_root(env) if legacy else os.getcwd()
    return generate(configs, root=root, env=env, session=session_from_env(env, deadline_seconds=deadline))


def _legacy_root(env: dict[str, str]) -> str:
    """The kustomization root of a legacy plugin run. The Argo CD sidecar has kustomize build a
    private localized copy of the checkout and names both (kvsops.plugin_home.COPY_ENV/SOURCE_ENV):
    the encrypted files are read from the checkout, below the same relative directory. Only in
    legacy mode: a legacy plugin's environment is kustomize's own, which no config can change
    (a KRM function's ``exec.envs`` could)."""
    from kvsops.plugin_home import COPY_ENV, SOURCE_ENV

    cwd = os.getcwd()
    copy, source = env.get(COPY_ENV, ""), env.get(SOURCE_ENV, "")
    if not (copy and source and os.path.isabs(copy) and os.path.isabs(source)):
        return cwd
    rel = os.path.relpath(os.path.realpath(cwd), os.path.realpath(copy))
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return cwd
    target = os.path.normpath(os.path.join(source, rel))
    if not os.path.isdir(target):
        from kvsops import errors

        raise errors.GeneratorError(
            f"{rel}: this kustomization is not part of the checkout (a remote base?); "
            "kvsops serves generators of the application's repository only"
        )
    return target


def run_krm(stdin: BinaryIO, stdout: BinaryIO) -> int:
    from kvsops import errors, fs
    from kvsops.hosts.kustomize.generate import is_config

    docs = _parse(fs.read_stream(stdin, "the ResourceList on stdin", fs.max_bytes(_env())), "the ResourceList on stdin")
    rl = docs[0] if len(docs) == 1 and isinstance(docs[0], dict) else None
    if rl is None or rl.get("kind") not in ("ResourceList", "List"):
        raise errors.InputError("stdin does not hold a single ResourceList",
                                hint="kvsops-krm without arguments is a KRM function run by kustomize")
    items = rl.get("items") or []
    if not isinstance(items, list):
        raise errors.InputError("ResourceList.items is not a list")
    fc = rl.get("functionConfig")
    if isinstance(fc, dict) and fc:
        configs, keep = [fc], items
    else:  # no functionConfig: every generator config among the items is one (as KSOPS does)
        configs = [i for i in items if is_config(i)]
        keep = [i for i in items if not is_config(i)]
    if not configs:
        raise errors.GeneratorError("no generator config in the ResourceList")
    out = {"apiVersion": rl.get("apiVersion") or "config.kubernetes.io/v1", "kind": "ResourceList",
           "items": keep + _generate(configs)}
    stdout.write(dump(out))
    return 0


def run_legacy(config_path: str, stdout: BinaryIO) -> int:
    from kvsops import errors, fs

    # kustomize's own temp file (not repository content): unconfined, but a regular file and capped
    data = fs.read_path(config_path, f"the generator config {fs.show(config_path)}", limit=fs.max_bytes(_env()))
    configs = _parse(data, "the generator config")
    if not configs:
        raise errors.GeneratorError("the generator config is empty")
    stdout.write(dump(_generate(configs, legacy=True), many=True))
    return 0


def _results(stdout: BinaryIO, exc: BaseException) -> None:
    """The KRM error channel: a ResourceList with no items and the message as an error result."""
    from kvsops.errors import KvsopsError

    msg = exc.render() if isinstance(exc, KvsopsError) else f"internal error ({type(exc).__name__})"
    rl = {"apiVersion": "config.kubernetes.io/v1", "kind": "ResourceList", "items": [],
          "results": [{"message": f"kvsops: {msg}", "severity": "error"}]}
    try:
        stdout.write(dump(rl))
        stdout.flush()
    except OSError:
        pass


def main(argv: list[str] | None = None, *, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
         stderr: TextIO | None = None) -> int:
    from kvsops.report import DEBUG_BY_ENV, env_debug, guarded

    process = argv is None and stdin is None and stdout is None and stderr is None
    if process:  # the process kustomize started: one run, then finish (see report.one_file_process)
        from kvsops.report import one_file_process

        one_file_process()
    args = sys.argv[1:] if argv is None else list(argv)
    out = stdout or sys.stdout.buffer
    debug = env_debug(os.environ)
    if args and args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if len(args) > 1:
        (stderr or sys.stderr).write("kvsops: error: too many arguments [USAGE]\n" + USAGE)
        return 2
    if args:
        return guarded(lambda: run_legacy(args[0], out), debug=debug, stream=stderr, debug_hint=DEBUG_BY_ENV)
    src = stdin or sys.stdin.buffer
    if stdin is None and sys.stdin.isatty():
        (stderr or sys.stderr).write(USAGE)
        return 2

    def work() -> int:
        try:
            return run_krm(src, out)
        except Exception as exc:
            _results(out, exc)
            raise

    code = guarded(work, debug=debug, stream=stderr, debug_hint=DEBUG_BY_ENV)
    if process:
        from kvsops.report import finish  # the process kustomize started: skip interpreter teardown

        return finish(code)
    return code


def install_plugins_main(argv: list[str] | None = None) -> int:
    from kvsops.hosts.kustomize.install import main as install

    return install(sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    raise SystemExit(main())
