"""Our plugin.yaml files against the rules Helm's loaders apply (encoded from Helm's source).

Helm 3 (pkg/plugin/plugin.go, release-3.16 and release-3.21): sigs.k8s.io/yaml UnmarshalStrict into
Metadata: an unknown key or a wrong type (YAML -> JSON -> struct) fails the plugin, and a failing
plugin silently disables every downloader. `platformCommand[].args` and `platformHooks` exist only
since 3.18; 3.18.0 rejects command + platformCommand. Downloader commands are split on " " and
word 0 is joined to the plugin dir without $VAR expansion.

Helm 4 (internal/plugin/loader.go, metadata*.go, config.go, runtime_subprocess*.go,
subprocess_commands.go): no apiVersion -> legacy, non-strict decode, then MetadataLegacy.Validate
(name regex, strict semver when set, not both command and platformCommand, non-empty downloader
command/protocols); apiVersion v1 -> KnownFields(true) on the top level, MetadataV1.Validate (name,
required strict semver, apiVersion "v1", type, runtime), type-specific config (getter: non-empty
protocols), subprocess runtimeConfig. Getters run the protocolCommands entry listing the scheme,
joined to the plugin dir after $VAR expansion; cli commands are expanded but NOT joined (Helm 3's
legacy cli commands neither: split on spaces, each word expanded).

The real Helm 3.17 and 4.1 load, list and run every plugin in tests/integration/test_helm_cli.py;
these rules also cover the versions not installed here (3.0, 3.18's command rules, 3.21, 4.0).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kvsops.hosts.helm import urls as helmurl
from tests import helm_harness as hh

NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# Masterminds/semver StrictNewVersion
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
                    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$")

H3_TOP_OLD = {"name": str, "version": str, "usage": str, "description": str, "command": str,
              "platformCommand": list, "ignoreFlags": bool, "hooks": dict, "downloaders": list, "useTunnel": bool}
H3_TOP_318 = {**H3_TOP_OLD, "platformHooks": dict}
H3_PLATFORM_OLD = {"os": str, "arch": str, "command": str}
H3_PLATFORM_318 = {**H3_PLATFORM_OLD, "args": list}
DOWNLOADER = {"command": str, "protocols": list}
V1_TOP = {"apiVersion", "name", "type", "runtime", "version", "sourceURL", "config", "runtimeConfig"}
V1_CONFIG = {"cli/v1": {"usage", "shortHelp", "longHelp", "ignoreFlags"}, "getter/v1": {"protocols"},
             "postrenderer/v1": set()}
V1_SUBPROCESS = {"platformCommand", "platformHooks", "protocolCommands"}


def _strict(obj: dict[str, Any], schema: dict[str, type], where: str) -> list[str]:
    errs = []
    for k, v in obj.items():
        if k not in schema:
            errs.append(f"{where}: unknown field {k!r}")
        elif v is not None and not isinstance(v, schema[k]):
            errs.append(f"{where}: {k} must be {schema[k].__name__}")
    return errs


def helm3_errors(meta: dict[str, Any], plugin_dir: Path, minor: int) -> list[str]:
    """Helm 3.<minor> loading a plugin.yaml (strict)."""
    top, plat = (H3_TOP_318, H3_PLATFORM_318) if minor >= 18 else (H3_TOP_OLD, H3_PLATFORM_OLD)
    errs = _strict(meta, top, "plugin.yaml")
    for i, pc in enumerate(meta.get("platformCommand") or []):
        errs += _strict(pc, plat, f"platformCommand[{i}]")
    for i, d in enumerate(meta.get("downloaders") or []):
        errs += _strict(d, DOWNLOADER, f"downloaders[{i}]")
        errs += [f"downloaders[{i}]: {e}" for e in _exe_errors(d.get("command", ""), plugin_dir, join=True, env={})]
        if not all(isinstance(p, str) and p for p in d.get("protocols") or []):
            errs.append(f"downloaders[{i}]: protocols must be non-empty strings")
    if meta.get("command"):
        env = {"HELM_PLUGIN_DIR": str(plugin_dir), "HELM_PLUGIN_NAME": str(meta.get("name"))}
        errs += [f"command: {e}" for e in _exe_errors(meta["command"], plugin_dir, join=False, env=env)]
    if minor >= 5 and not NAME.match(str(meta.get("name", ""))):
        errs.append("invalid plugin name")
    if minor == 18 and meta.get("command") and meta.get("platformCommand"):
        errs.append("both platformCommand and command are set")
    return errs


def _exe_errors(command: str, plugin_dir: Path, *, join: bool, env: dict[str, str]) -> list[str]:
    words = command.split(" ")
    exe = words[0]
    if not exe:
        return ["empty command"]
    if join:
        if "$" in exe and not env:
            return [f"{exe}: Helm 3 does not expand variables in a downloader command"]
        exe = hh._go_expand(exe, env) if env else exe
        if os.path.isabs(exe):
            return [f"{exe}: joined to the plugin dir it would not exist"]
        path = plugin_dir / exe
    else:
        path = Path(hh._go_expand(exe, env))
        if not path.is_absolute():
            return [f"{exe}: a relative cli command resolves against the user's cwd"]
    if not path.is_file() or not os.access(path, os.X_OK):
        return [f"{path}: not an executable file"]
    if not path.read_bytes().startswith(b"#!"):
        return [f"{path}: no shebang"]
    return []


def helm4_errors(meta: dict[str, Any], plugin_dir: Path) -> list[str]:
    api = meta.get("apiVersion", "")
    errs: list[str] = []
    env = {"HELM_PLUGIN_DIR": str(plugin_dir), "HELM_PLUGIN_NAME": str(meta.get("name"))}
    if api == "":
        if not NAME.match(str(meta.get("name", ""))):
            errs.append("invalid plugin name")
        if meta.get("version") and not SEMVER.match(str(meta["version"])):
            errs.append("invalid plugin version: must be valid semver")
        if meta.get("command") and meta.get("platformCommand"):
            errs.append("both platformCommand and command are set")
        if meta.get("command") and not meta.get("downloaders"):  # inferred cli/v1: expanded, not joined
            errs += [f"command: {e}" for e in _exe_errors(meta["command"], plugin_dir, join=False, env=env)]
        for i, d in enumerate(meta.get("downloaders") or []):
            if not d.get("command"):
                errs.append(f"downloader {i} has empty command")
            if not d.get("protocols") or not all(d["protocols"]):
                errs.append(f"downloader {i} has no/empty protocols")
            errs += _exe_errors(d.get("command", ""), plugin_dir, join=True, env=env)
        return errs
    if api != "v1":
        return [f"invalid plugin apiVersion: {api!r}"]
    errs += [f"unknown field {k!r}" for k in meta if k not in V1_TOP]
    if not NAME.match(str(meta.get("name", ""))):
        errs.append("invalid plugin `name`")
    if not meta.get("version") or not SEMVER.match(str(meta["version"])):
        errs.append("plugin `version` is required and must be valid semver")
    typ, runtime = meta.get("type"), meta.get("runtime")
    if typ not in V1_CONFIG:
        errs.append(f"unknown plugin type {typ!r}")
        return errs
    if runtime != "subprocess":
        errs.append(f"runtime {runtime!r} (ours are subprocess)")
    cfg, rc = meta.get("config"), meta.get("runtimeConfig")
    if cfg is None or rc is None:
        return errs + ["missing config/runtimeConfig field"]
    # config and runtimeConfig are decoded non-strictly: an unknown key would be silently ignored
    errs += [f"config: field {k!r} would be ignored" for k in cfg if k not in V1_CONFIG[typ]]
    errs += [f"runtimeConfig: field {k!r} would be ignored" for k in rc if k not in V1_SUBPROCESS]
    if typ == "getter/v1":
        protocols = cfg.get("protocols") or []
        if not protocols or not all(protocols):
            errs.append("getter has no protocols / an empty protocol")
        served = {p for pc in rc.get("protocolCommands") or [] for p in pc.get("protocols") or []}
        errs += [f"no downloader found for protocol {p!r}" for p in protocols if p not in served]
        for pc in rc.get("protocolCommands") or []:
            for c in pc.get("platformCommand") or []:
                errs += _exe_errors(c.get("command", ""), plugin_dir, join=True, env=env)
    if typ == "cli/v1":
        cmds = rc.get("platformCommand") or []
        if not cmds:
            errs.append("no plugin command is applicable")
        for c in cmds:
            errs += _exe_errors(c.get("command", ""), plugin_dir, join=False, env=env)
    return errs


def load(plugin_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((plugin_dir / "plugin.yaml").read_text())


@pytest.mark.parametrize("minor", [0, 5, 16, 17, 18, 21])
@pytest.mark.parametrize("plugin", [hh.LEGACY_GETTER, hh.CLI], ids=lambda p: p.name)
def test_legacy_plugins_load_on_every_helm3(plugin: Path, minor: int) -> None:
    assert helm3_errors(load(plugin), plugin, minor) == []


def test_legacy_getter_loads_on_helm4_as_getter() -> None:
    meta = load(hh.LEGACY_GETTER)
    assert helm4_errors(meta, hh.LEGACY_GETTER) == []
    assert "downloaders" in meta and "command" not in meta and "platformCommand" not in meta  # inferred getter/v1


def test_cli_plugin_loads_on_helm4_as_cli() -> None:
    """Legacy with a command and no downloaders: Helm 4 infers cli/v1, so the one file serves both."""
    meta = load(hh.CLI)
    assert helm4_errors(meta, hh.CLI) == []
    assert "command" in meta and "downloaders" not in meta and "platformCommand" not in meta


def test_v1_getter_loads_on_helm4() -> None:
    assert helm4_errors(load(hh.V1_GETTER), hh.V1_GETTER) == []


def test_v1_getter_is_rejected_by_helm3() -> None:
    """Why it must never sit where Helm 3 scans: Helm 3's strict parser fails on apiVersion/type/runtime."""
    assert any("unknown field 'apiVersion'" in e for e in helm3_errors(load(hh.V1_GETTER), hh.V1_GETTER, 21))


def test_names_unique_and_types() -> None:
    dirs = (hh.LEGACY_GETTER, hh.V1_GETTER, hh.CLI)
    metas = [load(p) for p in dirs]
    assert len({m["name"] for m in metas}) == 3
    assert [m.get("type") for m in metas] == [None, "getter/v1", None]
    assert all(m["name"] == p.name for m, p in zip(metas, dirs, strict=True))


def test_protocols_match_what_the_downloader_handles() -> None:
    legacy = {p for d in load(hh.LEGACY_GETTER)["downloaders"] for p in d["protocols"]}
    v1 = set(load(hh.V1_GETTER)["config"]["protocols"])
    assert legacy == v1 == set(helmurl.PROTOCOLS)
    assert all(p == p.lower() for p in legacy)  # Go lower-cases the scheme before matching


def test_shims_identical_posix_sh() -> None:
    shims = [(p / "bin/kvsops-helm").read_bytes() for p in (hh.LEGACY_GETTER, hh.V1_GETTER, hh.CLI)]
    assert shims[0] == shims[1] == shims[2]
    assert shims[0].startswith(b"#!/bin/sh\n")


# ------------------------------------------------------------------------ the rules catch real mistakes


@pytest.mark.parametrize("mutate,minor,expect", [
    (lambda m: m.update(apiVersion="v1"), 21, "unknown field 'apiVersion'"),
    (lambda m: m["downloaders"][0].update(args=["x"]), 21, "unknown field 'args'"),
    (lambda m: m.update(platformHooks={}), 17, "unknown field 'platformHooks'"),
    (lambda m: m.update(platformCommand=[{"os": "linux", "command": "x", "args": []}]), 17, "unknown field 'args'"),
    (lambda m: m.update(version=1.0), 21, "version must be str"),
    (lambda m: m["downloaders"][0].update(command="$HELM_PLUGIN_DIR/bin/kvsops-helm downloader"), 21,
     "does not expand"),
    (lambda m: m.update(command="x", platformCommand=[{"command": "y"}]), 18, "both platformCommand and command"),
    (lambda m: m.update(name="kvsops getter"), 21, "invalid plugin name"),
])
def test_helm3_rules_reject(mutate: Any, minor: int, expect: str) -> None:
    meta = load(hh.LEGACY_GETTER)
    mutate(meta)
    assert any(expect in e for e in helm3_errors(meta, hh.LEGACY_GETTER, minor))


@pytest.mark.parametrize("mutate,expect", [
    (lambda m: m.update(version="v0.1.0"), "semver"),
    (lambda m: m.update(version="0.1"), "semver"),
    (lambda m: m.update(extra=1), "unknown field 'extra'"),
    (lambda m: m.update(apiVersion="v2"), "invalid plugin apiVersion"),
    (lambda m: m["config"].update(protocols=[]), "no protocols"),
    (lambda m: m["config"]["protocols"].append("s3"), "no downloader found for protocol 's3'"),
    (lambda m: m["runtimeConfig"]["protocolCommands"][0]["platformCommand"][0].update(
        command="${HELM_PLUGIN_DIR}/bin/kvsops-helm"), "would not exist"),
])
def test_helm4_rules_reject_getter(mutate: Any, expect: str) -> None:
    meta = load(hh.V1_GETTER)
    mutate(meta)
    assert any(expect in e for e in helm4_errors(meta, hh.V1_GETTER)), helm4_errors(meta, hh.V1_GETTER)


def test_rules_reject_relative_cli_command() -> None:
    meta = load(hh.CLI)
    meta["command"] = "bin/kvsops-helm --"
    assert any("resolves against the user's cwd" in e for e in helm3_errors(meta, hh.CLI, 21))
    assert any("resolves against the user's cwd" in e for e in helm4_errors(meta, hh.CLI))
