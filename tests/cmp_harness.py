"""argocd-cmp-server, as far as ``kvsops argocd init/generate`` can tell: the harness the Argo CD
tests share.

It reproduces the contract read from Argo CD's source (shared reference, part A4): a fresh 0700
directory per request under ``$TMPDIR/_cmp_server/`` holding a copy of the repo with files 0644 and
dirs 0755 (symlinks leaving it dropped), the sidecar env plus the request env (``ARGOCD_APP_*``,
``KUBE_VERSION``, ``KUBE_API_VERSIONS``, ``ARGOCD_ENV_*``, ``ARGOCD_APP_PARAMETERS`` and the ``PARAM_*``
derived from it), cwd at the app path, no shell, and a deadline.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
DEMO_KEY = EXAMPLES / "keys" / "demo-age-key.txt"
BIN = Path(sys.executable).parent
KVSOPS = str(BIN / "kvsops")


def _param_env(params: list[dict[str, Any]]) -> dict[str, str]:
    """ARGOCD_APP_PARAMETERS plus PARAM_* exactly as types.go Environ() derives them."""
    env = {"ARGOCD_APP_PARAMETERS": json.dumps(params)}
    for p in params:
        name = re.sub(r"[^A-Z0-9_]", "_", p["name"].upper())
        if "string" in p:
            env[f"PARAM_{name}"] = p["string"]
        for i, v in enumerate(p.get("array") or []):
            env[f"PARAM_{name}_{i}"] = v
        for k, v in (p.get("map") or {}).items():
            env[f"PARAM_{name}_{re.sub(r'[^A-Z0-9_]', '_', k.upper())}"] = v
    return env


class Cmp:
    """One fake argocd-cmp-server: copies a repo per request and runs the plugin commands."""

    def __init__(self, tmp: Path, tools: Any) -> None:
        self.tmp = tmp
        self.tools = tools
        self.sidecar_tmp = tmp / "sidecar-tmp"  # the sidecar's own /tmp emptyDir
        self.sidecar_tmp.mkdir()
        self.home = tmp / "home"
        self.home.mkdir()

    def copy_repo(self, src: Path) -> Path:
        root = self.sidecar_tmp / "_cmp_server" / secrets.token_hex(8)
        root.parent.mkdir(exist_ok=True)
        root.mkdir(mode=0o700)
        shutil.copytree(src, root, dirs_exist_ok=True, symlinks=True,
                        ignore=shutil.ignore_patterns(".git", "__pycache__"))
        for dirpath, dirnames, filenames in os.walk(root):
            for d in dirnames:
                os.chmod(Path(dirpath) / d, 0o755)
            for f in filenames:
                p = Path(dirpath) / f
                if p.is_symlink():
                    target = os.path.realpath(p)
                    if not target.startswith(str(root) + os.sep):
                        p.unlink()  # tar.go: symlinks that leave the destination are skipped
                    continue
                os.chmod(p, 0o644)
        return root

    def env(self, *, app: str, project: str = "default", repo_url: str = "https://github.com/example/apps.git",
            params: list[dict[str, Any]] | None = None, plugin_env: dict[str, str] | None = None,
            sidecar: dict[str, str] | None = None) -> dict[str, str]:
        rev = secrets.token_hex(20)
        env = {
            "PATH": os.pathsep.join([str(BIN), "/usr/local/bin", "/usr/bin", "/bin"]),
            "HOME": str(self.home),
            "TMPDIR": str(self.sidecar_tmp),
            "LANG": "C.UTF-8",
            "SOPS_AGE_KEY_FILE": str(DEMO_KEY),
            "KVSOPS_KUSTOMIZE_BIN": self.tools.kustomize58,
        }
        env.update(sidecar or {})
        env.update({
            "ARGOCD_APP_NAME": "web",
            "ARGOCD_APP_NAMESPACE": "demo",
            "ARGOCD_APP_PROJECT_NAME": project,
            "ARGOCD_APP_REVISION": rev,
            "ARGOCD_APP_REVISION_SHORT": rev[:7],
            "ARGOCD_APP_REVISION_SHORT_8": rev[:8],
            "ARGOCD_APP_SOURCE_REPO_URL": repo_url,
            "ARGOCD_APP_SOURCE_PATH": app,
            "ARGOCD_APP_SOURCE_TARGET_REVISION": "HEAD",
            "KUBE_VERSION": "1.31.2",
            "KUBE_API_VERSIONS": "v1,apps/v1,batch/v1,networking.k8s.io/v1",
        })
        for k, v in (plugin_env or {}).items():
            env[f"ARGOCD_ENV_{k}"] = v
        if params is not None:
            env.update(_param_env(params))
        return env

    def run(self, src: Path, app: str, *, timeout: float = 90, init: bool = True, copy: Path | None = None,
            **kw: Any) -> subprocess.CompletedProcess[bytes]:
        root = copy or self.copy_repo(src)
        env = self.env(app=app, **kw)
        cwd = root / app
        if init:
            first = subprocess.run([KVSOPS, "argocd", "init"], cwd=cwd, env=env, capture_output=True,
                                   timeout=timeout, start_new_session=True)
            if first.returncode != 0:
                return first
        return subprocess.run([KVSOPS, "argocd", "generate"], cwd=cwd, env=env, capture_output=True,
                              timeout=timeout, start_new_session=True)


def objs(out: bytes) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(out) if d]


def secret_value(obj: dict[str, Any], key: str) -> str:
    if key in (obj.get("stringData") or {}):
        return str(obj["stringData"][key])
    return base64.b64decode(obj["data"][key]).decode()


def failed(proc: subprocess.CompletedProcess[bytes], code: str | None = None) -> str:
    """A failure: non-zero exit, NOTHING on stdout, one-voice error; returns stderr."""
    err = proc.stderr.decode()
    assert proc.returncode != 0, err
    assert proc.stdout == b"", "a failed render must leave stdout empty"
    assert "kvsops: error:" in err
    if code:
        assert f"[{code}]" in err, err
    assert "Traceback" not in err
    return err


def policy(*rules: dict[str, Any]) -> str:
    return json.dumps({"rules": list(rules)})
