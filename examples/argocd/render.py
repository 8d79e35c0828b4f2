#!/usr/bin/env python3
"""Run the Argo CD plugin on the example apps the way argocd-cmp-server does, and print the output.

For each example Application (applications/*.yaml): copy the repository's examples into a fresh
0700 temp dir (files 0644), build the env the cmp-server would (ARGOCD_APP_*, KUBE_VERSION,
ARGOCD_ENV_* from plugin.env, ARGOCD_APP_PARAMETERS from plugin.parameters), then run
``kvsops argocd init`` and ``kvsops argocd generate`` in the app directory without a shell.

Uses the PUBLIC DEMO age key in examples/keys/ (never use it for real secrets).
    python examples/argocd/render.py [plain|helm|kustomize ...]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent
ROOT = EXAMPLES.parent
DEMO_KEY = EXAMPLES / "keys" / "demo-age-key.txt"


def kvsops() -> str:
    local = Path(sys.executable).parent / "kvsops"
    return str(local) if local.exists() else (shutil.which("kvsops") or "kvsops")


def request_env(app: dict, workdir: Path) -> dict[str, str]:
    src = app["spec"]["source"]
    plugin = src.get("plugin") or {}
    params = plugin.get("parameters") or []
    env = {
        "PATH": os.pathsep.join(
            [str(Path(sys.executable).parent), str(ROOT / ".tools" / "bin"), os.environ.get("PATH", "")]
        ),
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "SOPS_AGE_KEY_FILE": str(DEMO_KEY),
        "ARGOCD_APP_NAME": app["metadata"]["name"],
        "ARGOCD_APP_NAMESPACE": app["spec"]["destination"].get("namespace", ""),
        "ARGOCD_APP_PROJECT_NAME": app["spec"].get("project", "default"),
        "ARGOCD_APP_REVISION": "0" * 40,
        "ARGOCD_APP_SOURCE_REPO_URL": src["repoURL"],
        "ARGOCD_APP_SOURCE_PATH": src["path"],
        "ARGOCD_APP_SOURCE_TARGET_REVISION": src.get("targetRevision", "HEAD"),
        "KUBE_VERSION": "1.31.0",
        "KUBE_API_VERSIONS": "v1,apps/v1",
        "ARGOCD_APP_PARAMETERS": json.dumps(params),
    }
    for item in plugin.get("env") or []:
        env[f"ARGOCD_ENV_{item['name']}"] = item["value"]
    for p in params:
        name = re.sub(r"[^A-Z0-9_]", "_", p["name"].upper())
        if "string" in p:
            env[f"PARAM_{name}"] = p["string"]
        for i, v in enumerate(p.get("array") or []):
            env[f"PARAM_{name}_{i}"] = v
    if os.environ.get("KVSOPS_KUSTOMIZE_BIN"):
        env["KVSOPS_KUSTOMIZE_BIN"] = os.environ["KVSOPS_KUSTOMIZE_BIN"]
    return env


def render(app_file: Path) -> str:
    import yaml

    app = yaml.safe_load(app_file.read_text())
    with tempfile.TemporaryDirectory(prefix="cmp-") as tmp:
        repo = Path(tmp) / "repo"
        shutil.copytree(EXAMPLES, repo / "examples", ignore=shutil.ignore_patterns("__pycache__"))
        for dirpath, _dirs, files in os.walk(repo):
            for f in files:
                os.chmod(Path(dirpath) / f, 0o644)
        env = request_env(app, Path(tmp))
        cwd = repo / app["spec"]["source"]["path"]
        for cmd in ("init", "generate"):
            proc = subprocess.run([kvsops(), "argocd", cmd], cwd=cwd, env=env, capture_output=True, timeout=60)
            sys.stderr.write(proc.stderr.decode())
            if proc.returncode != 0:
                raise SystemExit(f"{app_file.name}: kvsops argocd {cmd} failed (exit {proc.returncode})")
        return proc.stdout.decode()


def main(argv: list[str]) -> int:
    wanted = argv or ["plain", "helm", "kustomize"]
    for name in wanted:
        app_file = HERE / "applications" / f"{name}.yaml"
        print(f"# ---- Application {app_file.relative_to(ROOT)} (kvsops argocd generate)")
        print(render(app_file), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
