"""Refuse kustomize function configs that would run anything but kvsops.

``kustomize build --enable-exec`` runs any ``exec.path`` a kustomization names, with any args and
env (kustomize's own help: "do not use for untrusted configs"). In the sidecar that process would
hold the age keys and the Key Vault identity, so one committed function config could print them.
Before kustomize runs, every file of the checkout that mentions a function annotation is parsed; a
function must be a bare ``kvsops-krm`` (or ``kvsops`` with first arg ``krm``), looked up on the PATH
we give kustomize, and may not set variables that steer kvsops, sops, Azure or Argo CD.

Limit (documented in argocd/README.md): remote bases are fetched by kustomize at build time and
are not scanned; the KRM function then still enforces the key policy through its grant.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from kvsops import errors

MARKERS = (b"config.kubernetes.io/function", b"config.k8s.io/function", b"configFn")
ALLOWED_EXEC = {"kvsops-krm": None, "kvsops": "krm"}  # name -> required first argument
_PROTECTED_ENV = re.compile(
    r"^(KVSOPS_|SOPS_|ARGOCD_|AZURE_|IDENTITY_|MSI_|IMDS_|GNUPG|GPG|KUSTOMIZE_|HELM_|PYTHON|LD_|XDG_|"
    r"HOME$|PATH$|TMPDIR$|SSL_|REQUESTS_CA|CURL_CA|HTTPS?_PROXY$|NO_PROXY$)",
    re.IGNORECASE,
)
MAX_FILES = 100000
MAX_SCAN_BYTES = 4 * 1024 * 1024


def scan_tree(root: Path) -> int:
    """Check every function config under ``root``; returns how many were found (all allowed)."""
    found = 0
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        for name in sorted(filenames):
            seen += 1
            if seen > MAX_FILES:
                raise errors.LimitExceeded(f"the checkout has more than {MAX_FILES} files to scan")
            path = Path(dirpath) / name
            found += _scan_file(path, root)
    return found


def _scan_file(path: Path, root: Path) -> int:
    try:
        if not path.is_file() or path.stat().st_size > MAX_SCAN_BYTES:
            return 0
        data = path.read_bytes()
    except OSError:
        return 0
    if not any(m in data for m in MARKERS):
        return 0
    rel = path.relative_to(root).as_posix()
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(data) if d is not None]
    except yaml.YAMLError:
        raise errors.GeneratorError(
            f"{rel}: mentions a kustomize function but is not valid YAML, so it cannot be checked"
        ) from None
    count = 0
    for doc in docs:
        for spec in _function_specs(doc, rel):
            check_spec(spec, rel)
            count += 1
    return count


def _function_specs(doc: object, rel: str) -> list[object]:
    import yaml

    if not isinstance(doc, dict):
        return []
    specs: list[object] = []
    if "configFn" in doc:
        specs.append(doc["configFn"])
    meta = doc.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if isinstance(annotations, dict):
        for key in ("config.kubernetes.io/function", "config.k8s.io/function"):
            if key in annotations:
                try:
                    specs.append(yaml.safe_load(str(annotations[key])))
                except yaml.YAMLError:
                    raise errors.GeneratorError(f"{rel}: the {key} annotation is not valid YAML") from None
    return specs


def check_spec(spec: object, rel: str) -> None:
    refuse = "only the kvsops KRM function may run here (exec path kvsops-krm, or kvsops with args [krm])"
    if not isinstance(spec, dict) or set(spec) - {"exec"} or not isinstance(spec.get("exec"), dict):
        raise errors.GeneratorError(f"{rel}: a kustomize function other than an exec function is refused", hint=refuse)
    ex = spec["exec"]
    path, args, envs = ex.get("path"), ex.get("args") or [], ex.get("envs") or []
    if set(ex) - {"path", "args", "envs"} or not isinstance(path, str) or path not in ALLOWED_EXEC:
        raise errors.GeneratorError(f"{rel}: exec function {str(path)[:80]!r} is refused", hint=refuse)
    need = ALLOWED_EXEC[path]
    if not isinstance(args, list) or (need and (not args or args[0] != need)):
        raise errors.GeneratorError(f"{rel}: exec function {path} must be called with args [{need}]", hint=refuse)
    if not isinstance(envs, list):
        raise errors.GeneratorError(f"{rel}: exec.envs must be a list")
    for item in envs:
        name = str(item).split("=", 1)[0]
        if _PROTECTED_ENV.match(name):
            raise errors.GeneratorError(
                f"{rel}: exec.envs may not set {name[:64]!r}",
                hint="keys, key policy and tool locations come from the sidecar, not from the repo",
            )
