"""Invoke a Helm downloader plugin exactly as Helm 3 and Helm 4 do (reference/helm-plugins.md 2.2, 3.3).

- install: ``helm plugin install <dir>`` symlinks ``$HELM_PLUGINS/<basename>`` to the dir; Helm
  then globs ``$HELM_PLUGINS/*/plugin.yaml`` and uses the *globbed* path as HELM_PLUGIN_DIR.
- command: Helm 3 splits the legacy ``downloaders[].command`` on single spaces and joins word 0 to
  the plugin dir (no $VAR expansion); Helm 4 picks the ``protocolCommands`` entry listing the scheme,
  splits ``platformCommand[].command`` on spaces, expands $VARS in the executable only, appends
  ``args`` unexpanded, then joins the executable to the plugin dir.
- argv: command words + ``certFile keyFile caFile href`` (the TLS three are "" for -f/--set-file;
  href is the user's raw string).
- env: os.environ + Helm's settings (Helm 3 and Helm >= 4.1: EnvVars(); Helm 4.0: only the five
  HELM_PLUGIN_* variables) + HELM_PLUGIN_NAME/DIR + HELM_PLUGIN_USERNAME/PASSWORD/PASS_CREDENTIALS_ALL.
- cwd: Helm's own; stdin: /dev/null; stdout: captured whole; stderr: Helm's.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import yaml

REPO = Path(__file__).resolve().parent.parent
PLUGINS = REPO / "helm-plugin"
LEGACY_GETTER = PLUGINS / "kvsops-getter-legacy"
V1_GETTER = PLUGINS / "kvsops-getter"
CLI = PLUGINS / "kvsops"  # legacy format: `helm kvsops` on Helm 3 and Helm 4 (inferred cli/v1)

HELM_MAJORS = ("helm3", "helm4.0", "helm4.1")


def install(plugin_src: Path, helm_plugins: Path) -> Path:
    """``helm plugin install <local dir>``: a symlink named after the source dir."""
    helm_plugins.mkdir(parents=True, exist_ok=True)
    link = helm_plugins / plugin_src.name
    if not link.exists():
        link.symlink_to(plugin_src, target_is_directory=True)
    return link


def settings_env(helm_plugins: Path, home: Path) -> dict[str, str]:
    """Helm's EnvSettings.EnvVars() (pkg/cli/environment.go), defaults as Helm computes them."""
    data, cache, config = home / ".local/share/helm", home / ".cache/helm", home / ".config/helm"
    return {
        "HELM_BIN": "helm",
        "HELM_CACHE_HOME": str(cache),
        "HELM_CONFIG_HOME": str(config),
        "HELM_DATA_HOME": str(data),
        "HELM_DEBUG": "false",
        "HELM_PLUGINS": str(helm_plugins),
        "HELM_REGISTRY_CONFIG": str(config / "registry/config.json"),
        "HELM_REPOSITORY_CACHE": str(cache / "repository"),
        "HELM_REPOSITORY_CONFIG": str(config / "repositories.yaml"),
        "HELM_NAMESPACE": "default",
        "HELM_MAX_HISTORY": "10",
        "HELM_BURST_LIMIT": "100",
        "HELM_QPS": "0.00",
        "HELM_KUBECONTEXT": "",
        "HELM_KUBETOKEN": "",
        "HELM_KUBEASUSER": "",
        "HELM_KUBEASGROUPS": "",
        "HELM_KUBEAPISERVER": "",
        "HELM_KUBECAFILE": "",
        "HELM_KUBEINSECURE_SKIP_TLS_VERIFY": "false",
        "HELM_KUBETLS_SERVER_NAME": "",
    }


@dataclass
class Result:
    returncode: int
    stdout: bytes
    stderr: bytes
    argv: list[str]


def _legacy_command(meta: dict, scheme: str) -> list[str]:  # type: ignore[type-arg]
    for d in meta["downloaders"]:
        if scheme in d["protocols"]:
            return d["command"].split(" ")
    raise LookupError(f"no downloader for {scheme}")


def _v1_command(meta: dict, scheme: str, env: Mapping[str, str]) -> list[str]:  # type: ignore[type-arg]
    for pc in meta["runtimeConfig"]["protocolCommands"]:
        if scheme in pc["protocols"]:
            cmd = pc["platformCommand"][0]  # no os/arch selector in ours: the "empty" entry
            parts = cmd["command"].split(" ")
            exe = _go_expand(parts[0], env)
            return [exe, *parts[1:], *cmd.get("args", [])]
    raise LookupError(f"no downloader found for protocol {scheme!r}")


def _go_expand(s: str, env: Mapping[str, str]) -> str:
    """os.Expand with a map lookup: unknown variables become empty strings."""
    import re

    return re.sub(r"\$\{([^}]*)\}|\$([A-Za-z0-9_]+)", lambda m: env.get(m.group(1) or m.group(2), ""), s)


def scheme_of(href: str) -> str:
    """url.Parse(href).Scheme, lower-cased as Go does."""
    return href.split("://", 1)[0].lower() if "://" in href else ""


def run_downloader(
    installed: Path,
    href: str,
    *,
    cwd: Path,
    major: str = "helm3",
    extra_env: Mapping[str, str] | None = None,
    home: Path | None = None,
    tls: tuple[str, str, str] = ("", "", ""),
    base_env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> Result:
    """Run the getter of the plugin installed at ``installed`` for ``href`` the way ``major`` does."""
    meta = yaml.safe_load((installed / "plugin.yaml").read_text())
    helm_plugins = installed.parent
    env = dict(os.environ if base_env is None else base_env)
    home = home or Path(env.get("HOME", "/tmp"))
    if major in ("helm3", "helm4.1"):
        env.update(settings_env(helm_plugins, home))
    env.update(extra_env or {})
    env["HELM_PLUGIN_NAME"] = meta["name"]
    env["HELM_PLUGIN_DIR"] = str(installed)  # the globbed path, not resolved
    env["HELM_PLUGIN_USERNAME"] = ""
    env["HELM_PLUGIN_PASSWORD"] = ""
    env["HELM_PLUGIN_PASS_CREDENTIALS_ALL"] = "false"
    scheme = scheme_of(href)
    if meta.get("apiVersion") == "v1":
        if major == "helm3":
            raise ValueError("Helm 3 cannot load a v1 plugin")
        words = _v1_command(meta, scheme, env)
    else:
        words = _legacy_command(meta, scheme)
    argv = [os.path.join(str(installed), words[0]), *words[1:], *tls, href]
    proc = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr, argv)


# ------------------------------------------------------------------------------------ the real CLI

ISOLATED_PREFIXES = ("HELM_", "KVSOPS_", "SOPS_", "ARGOCD_", "XDG_", "GNUPG")


class HelmCLI:
    """A real helm binary (.tools/bin/helm3 or helm4) with homes of its own under ``root``:
    HELM_DATA_HOME, HELM_PLUGINS (= $HELM_DATA_HOME/plugins: Helm 4 installs local plugins into
    the data home whatever HELM_PLUGINS says), HELM_CONFIG_HOME, HELM_CACHE_HOME, HOME and TMPDIR.
    The developer's HELM_*, KVSOPS_*, SOPS_*, XDG_* and GNUPG* variables are dropped; ``kvsops``
    (the venv's bin) is on PATH for plugins installed from a tarball, which have no venv beside them."""

    def __init__(self, binary: str, root: Path, **extra: str) -> None:
        import sys

        self.binary = binary
        self.major = Path(binary).name  # helm3 | helm4
        self.root = root
        self.data = root / "data"
        self.plugins = self.data / "plugins"
        self.tmp = root / "tmp"
        for d in (self.tmp, root / "home"):
            d.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(ISOLATED_PREFIXES)}
        env.update(HOME=str(root / "home"), HELM_DATA_HOME=str(self.data), HELM_PLUGINS=str(self.plugins),
                   HELM_CONFIG_HOME=str(root / "config"), HELM_CACHE_HOME=str(root / "cache"), TMPDIR=str(self.tmp),
                   SOPS_DISABLE_VERSION_CHECK="1",
                   PATH=os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]))
        env.update(extra)
        self.env = env

    def run(self, *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([self.binary, *args], cwd=cwd or self.root, env={**self.env, **(env or {})},
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)

    def install(self, source: Path, *flags: str) -> subprocess.CompletedProcess[bytes]:
        proc = self.run("plugin", "install", str(source), *flags)
        assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()
        return proc

    def plugin_list(self) -> dict[str, dict[str, str]]:
        """``helm plugin list`` by name: Helm 3 has NAME VERSION DESCRIPTION, Helm 4 NAME VERSION
        TYPE APIVERSION PROVENANCE SOURCE (tab-separated; a wrapped description continues on a row
        whose name is empty)."""
        proc = self.run("plugin", "list")
        assert proc.returncode == 0, proc.stderr.decode()
        rows = [[c.strip() for c in line.split("\t")] for line in proc.stdout.decode().splitlines() if line.strip()]
        head, out = rows[0], {}
        for row in rows[1:]:
            if row[0]:
                out[row[0]] = dict(zip(head, row, strict=True))
        return out
