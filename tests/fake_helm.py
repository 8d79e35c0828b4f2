#!/usr/bin/env python3
"""A test double of the Helm 3 CLI for ``helm template`` (no real helm can be installed here).

What is faithful (shared reference helm-plugins.md 1.4, 1.6, 2.1-2.3; tests/helm_harness.py):

- getters: built-ins http/https/oci first, then every ``downloaders[]`` entry of the plugins found by
  globbing ``$HELM_PLUGINS/*/plugin.yaml`` (a path list, lexical order); the first provider listing the
  scheme wins. A plugin.yaml Helm 3 cannot load (unknown key, e.g. a v1 ``apiVersion``) or two plugins
  with one name make discovery fail, and that error is swallowed: no plugin getter at all.
- ``-f/--values HREF`` (in order): scheme (lower-cased, helm_harness.scheme_of) handled by a plugin ->
  the downloader runs exactly as Helm 3 runs it (helm_harness.run_downloader: plugin dir + command word
  0, args ``"" "" "" HREF``, Helm's env, cwd, stdin /dev/null, stdout captured); its stderr goes to ours;
  a non-zero exit is ``Error: plugin "<command>" exited with error``, exit 1 and NOTHING on stdout.
  No getter for the scheme -> the string is read as a file (``open X: no such file or directory``).
  Each result is parsed by Helm's YAML loader and deep-merged, later wins.
- then ``--set``, ``--set-string`` (Helm's strvals parsers through helm_python), into the merged values.
- the chart (``CHART``, usually ``.``) is rendered by Helm's real engine (helm_python) with the release
  name and namespace; output as ``helm template``: CRDs first with ``--include-crds``, manifests split per
  document and stably sorted by kind in Helm's InstallOrder, each ``---\\n# Source: PATH\\n<doc>\\n``, then
  hooks; NOTES.txt and empty documents dropped.

Not modelled: ``--kube-version``/``--api-versions`` are accepted and ignored (helm_python renders with its
default capabilities), ``--set-file``/``--set-json``, http(s)/oci downloads, Helm 4 plugins.

Test hook: when ``FAKE_HELM_LOG`` names a file, one JSON line per downloader call is appended to it
(argv, cwd, and the HELM_* / KVSOPS_POLICY_GRANT variables the plugin received, exit status).
"""

from __future__ import annotations

import glob
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402

from tests import helm_harness as hh  # noqa: E402

LEGACY_KEYS = {"name", "version", "usage", "description", "command", "platformCommand", "ignoreFlags", "hooks",
               "platformHooks", "downloaders", "useTunnel"}
BUILTIN_SCHEMES = ("http", "https", "oci")
# helm/pkg/release/util/kind_sorter.go InstallOrder
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole", "ClusterRoleList",
    "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList",
    "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]


class HelmFailure(Exception):
    pass


def fail(msg: str) -> None:
    raise HelmFailure(msg)


# ----------------------------------------------------------------------------- flags


FLAGS_WITH_VALUE = {"-f": "values", "--values": "values", "-n": "namespace", "--namespace": "namespace",
                    "--set": "set", "--set-string": "set_string", "--kube-version": "kube_version",
                    "--api-versions": "api_versions", "-a": "api_versions"}
BOOL_FLAGS = {"--include-crds", "--debug", "--skip-crds", "--no-hooks"}


def parse_args(argv: list[str]) -> dict[str, Any]:
    if not argv or argv[0] != "template":
        fail(f"fake helm implements only 'helm template', got {argv[:1]}")
    opts: dict[str, Any] = {"values": [], "set": [], "set_string": [], "api_versions": [], "namespace": "",
                            "kube_version": "", "bools": set(), "positional": []}
    i = 1
    while i < len(argv):
        a = argv[i]
        name, eq, inline = a.partition("=") if a.startswith("--") else (a, "", "")
        if name in FLAGS_WITH_VALUE:
            if eq:
                value = inline
            else:
                i += 1
                if i >= len(argv):
                    fail(f"flag needs an argument: {a}")
                value = argv[i]
            key = FLAGS_WITH_VALUE[name]
            if isinstance(opts[key], list):
                # StringSlice (-f, --api-versions) splits on commas; StringArray (--set*) does not
                opts[key] += value.split(",") if key in ("values", "api_versions") else [value]
            else:
                opts[key] = value
        elif a in BOOL_FLAGS:
            opts["bools"].add(a)
        elif a.startswith("-") and a != "-":
            fail(f"unknown flag: {a}")
        else:
            opts["positional"].append(a)
        i += 1
    pos = opts["positional"]
    if len(pos) == 1:
        pos = ["release-name", pos[0]]  # --generate-name is not modelled; helm uses RELEASE-NAME here
    if len(pos) != 2:
        fail(f'"helm template" requires at most 2 arguments, received {len(pos)}')
    opts["name"], opts["chart"] = pos
    return opts


# ----------------------------------------------------------------------------- settings and getters


def _home() -> Path:
    return Path(os.environ.get("HOME") or "/")


def helm_plugins_dirs() -> list[str]:
    raw = os.environ.get("HELM_PLUGINS", "")
    if not raw:
        data = os.environ.get("HELM_DATA_HOME") or os.path.join(
            os.environ.get("XDG_DATA_HOME") or str(_home() / ".local/share"), "helm")
        raw = os.path.join(data, "plugins")
    return [p for p in raw.split(os.pathsep) if p]


def settings_env(namespace: str) -> dict[str, str]:
    """EnvSettings.EnvVars(): helm_harness.settings_env's defaults, overridden as Helm's envOr does."""
    env = hh.settings_env(Path(os.pathsep.join(helm_plugins_dirs())), _home())
    cache = os.environ.get("HELM_CACHE_HOME") or (os.environ.get("XDG_CACHE_HOME") and
                                                  os.path.join(os.environ["XDG_CACHE_HOME"], "helm"))
    config = os.environ.get("HELM_CONFIG_HOME") or (os.environ.get("XDG_CONFIG_HOME") and
                                                    os.path.join(os.environ["XDG_CONFIG_HOME"], "helm"))
    data = os.environ.get("HELM_DATA_HOME") or (os.environ.get("XDG_DATA_HOME") and
                                                os.path.join(os.environ["XDG_DATA_HOME"], "helm"))
    if cache:
        env["HELM_CACHE_HOME"], env["HELM_REPOSITORY_CACHE"] = cache, os.path.join(cache, "repository")
    if config:
        env["HELM_CONFIG_HOME"] = config
        env["HELM_REGISTRY_CONFIG"] = os.path.join(config, "registry/config.json")
        env["HELM_REPOSITORY_CONFIG"] = os.path.join(config, "repositories.yaml")
    if data:
        env["HELM_DATA_HOME"] = data
    for key in ("HELM_REGISTRY_CONFIG", "HELM_REPOSITORY_CACHE", "HELM_REPOSITORY_CONFIG", "HELM_MAX_HISTORY",
                "HELM_BURST_LIMIT", "HELM_KUBECONTEXT", "HELM_KUBETOKEN", "HELM_KUBEASUSER",
                "HELM_KUBEAPISERVER", "HELM_KUBECAFILE", "HELM_KUBETLS_SERVER_NAME"):
        if os.environ.get(key):
            env[key] = os.environ[key]
    env["HELM_DEBUG"] = "true" if "--debug" in OPTS.get("bools", ()) or os.environ.get("HELM_DEBUG") == "true" else "false"
    env["HELM_BIN"] = sys.argv[0]
    env["HELM_NAMESPACE"] = namespace or "default"
    return env


def plugin_getters() -> list[tuple[Path, list[str]]]:
    """(globbed plugin dir, protocols) per downloader entry, in discovery order; [] if discovery fails."""
    found: list[tuple[Path, dict[str, Any]]] = []
    try:
        for base in helm_plugins_dirs():
            for meta_path in sorted(glob.glob(os.path.join(base, "*", "plugin.yaml"))):
                meta = yaml.safe_load(Path(meta_path).read_text())
                if not isinstance(meta, dict) or set(meta) - LEGACY_KEYS:
                    raise ValueError(f"failed to load plugin at {meta_path}")
                found.append((Path(meta_path).parent, meta))
    except (OSError, ValueError, yaml.YAMLError):
        return []  # getter.All: pluginDownloaders, _ := collectPlugins(settings)
    names = [m.get("name") for _d, m in found]
    if len(names) != len(set(names)):
        return []  # "two plugins claim the name": every plugin fails to load
    return [(d, list(dl.get("protocols") or [])) for d, m in found for dl in (m.get("downloaders") or [])]


def getter_for(scheme: str) -> Path | None:
    if scheme in BUILTIN_SCHEMES:
        fail(f"fake helm: the built-in {scheme} getter is not modelled")
    for plugin_dir, protocols in plugin_getters():
        if scheme in protocols:
            return plugin_dir
    return None


def read_values(href: str, namespace: str) -> bytes:
    """pkg/cli/values/options.go readFile."""
    if href.strip() == "-":
        return sys.stdin.buffer.read()
    scheme = hh.scheme_of(href)
    plugin_dir = getter_for(scheme) if scheme else None
    if plugin_dir is None:
        try:
            return Path(href).read_bytes()
        except FileNotFoundError:
            fail(f"open {href}: no such file or directory")
        except OSError as exc:
            fail(f"open {href}: {exc.strerror}")
    assert plugin_dir is not None
    res = hh.run_downloader(plugin_dir, href, cwd=Path.cwd(), major="helm3", base_env=os.environ,
                            extra_env=settings_env(namespace), home=_home())
    sys.stderr.buffer.write(res.stderr)
    sys.stderr.flush()
    log = os.environ.get("FAKE_HELM_LOG")
    if log:
        env_seen = {k: v for k, v in settings_env(namespace).items() if k in ("HELM_PLUGINS", "HELM_NAMESPACE")}
        env_seen["KVSOPS_POLICY_GRANT"] = os.environ.get("KVSOPS_POLICY_GRANT", "")
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"argv": res.argv, "cwd": os.getcwd(), "returncode": res.returncode,
                                 "env": env_seen}) + "\n")
    if res.returncode != 0:
        meta = yaml.safe_load((plugin_dir / "plugin.yaml").read_text())
        command = next(d["command"] for d in meta["downloaders"] if scheme in d["protocols"])
        fail(f'plugin "{command}" exited with error')
    return res.stdout


# ----------------------------------------------------------------------------- values and render


def merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    """pkg/cli/values/options.go mergeMaps."""
    out = dict(dst)
    for k, v in src.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def kind_key(doc: str) -> tuple[int, str]:
    try:
        head = yaml.safe_load(doc) or {}
    except yaml.YAMLError as exc:
        fail(f"YAML parse error: {exc}")
    kind = head.get("kind", "") if isinstance(head, dict) else ""
    if kind in INSTALL_ORDER:
        return INSTALL_ORDER.index(kind), ""
    return len(INSTALL_ORDER), kind


def is_hook(doc: str) -> bool:
    head = yaml.safe_load(doc) or {}
    ann = ((head.get("metadata") or {}).get("annotations") or {}) if isinstance(head, dict) else {}
    return "helm.sh/hook" in ann


def template(opts: dict[str, Any]) -> str:
    import helm_python as helm

    ns = opts["namespace"]
    values: dict[str, Any] = {}
    for href in opts["values"]:
        data = read_values(href, ns)
        try:
            current = helm.values_from_yaml(data.decode("utf-8")) or {}
        except (helm.HelmError, UnicodeDecodeError) as exc:
            fail(f"failed to parse {href}: {exc}")
        values = merge(values, current)
    for s in opts["set"]:
        values = merge(values, helm.parse_set_string(s))
    for s in opts["set_string"]:
        values = merge(values, helm.parse_set_string_values(s))
    with helm.Chart.load(opts["chart"]) as chart:
        chart_name = chart.metadata["name"]
        crds = [(f"{chart_name}/{Path(str(c['filename'])).name}" if "/" not in str(c["filename"])
                 else str(c["filename"]), c["data"]) for c in chart.crds]
        rendered = chart.render(values, name=opts["name"], namespace=ns or "default", is_install=True)
    manifests: list[tuple[str, str]] = []
    hooks: list[tuple[str, str]] = []
    for path in sorted(rendered):
        base = os.path.basename(path)
        if base == "NOTES.txt" or base.startswith("_"):
            continue
        for doc in ("\n" + rendered[path]).split("\n---"):
            doc = doc.strip("\n")
            if not doc.strip():
                continue
            (hooks if is_hook(doc) else manifests).append((path, doc))
    manifests.sort(key=lambda m: kind_key(m[1]))
    out = []
    if "--include-crds" in opts["bools"]:
        for name, data in crds:
            text = data if isinstance(data, str) else bytes(data).decode()
            out.append(f"---\n# Source: {name}\n{text}\n")
    out += [f"---\n# Source: {name}\n{doc}\n" for name, doc in manifests]
    text = "".join(out).strip()
    result = text + "\n" if text else ""
    if "--no-hooks" not in opts["bools"]:
        result += "".join(f"---\n# Source: {name}\n{doc}\n" for name, doc in hooks)
    return result


OPTS: dict[str, Any] = {}


def main(argv: list[str]) -> int:
    try:
        OPTS.update(parse_args(argv))
        out = template(OPTS)
    except HelmFailure as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
