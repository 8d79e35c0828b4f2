"""KSOPS' own kustomize test suite (../shared/conformance/ksops), with kvsops found as ``ksops``.

KRM cases run under the real kustomize 5.6 and 5.8 (``exec: {path: ksops}`` resolved on PATH to the
shim from ``kvsops install-plugins``); legacy cases run under ``kubectl kustomize
--enable-alpha-plugins`` and ``kustomize build --enable-alpha-plugins`` with the legacy plugin tree.
Every output must equal the case's want.yaml, as parsed documents and byte for byte (KSOPS' harness
compares stdout+stderr bytes; we also require stderr to be empty).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import SHARED_CONFORMANCE, tool_dirs
from tests.krm_support import VENV_BIN
from tests.processes import stop_gpg

KSOPS = SHARED_CONFORMANCE / "ksops"


def _cases(mode: str) -> list[str]:
    d = KSOPS / mode
    return sorted(p.name for p in d.iterdir() if (p / "want.yaml").is_file()) if d.is_dir() else []


@pytest.fixture(scope="module")
def ksops_dir(conformance_dir: Path) -> Path:
    if not KSOPS.is_dir():
        pytest.skip(f"{KSOPS} absent")
    return KSOPS


@pytest.fixture(scope="module")
def gnupg(ksops_dir: Path, tools) -> "Path":  # type: ignore[no-untyped-def]
    home = Path(tempfile.mkdtemp(prefix="kvg"))  # short: gpg-agent's socket path has a length limit
    home.chmod(0o700)
    env = tools.env(GNUPGHOME=str(home))
    subprocess.run([tools.gpg, "--batch", "--import", str(ksops_dir / "key.asc")], env=env,
                   check=True, capture_output=True)
    yield home
    stop_gpg(home, tools.gpg)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def plugin_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kvsops.hosts.kustomize.install import install

    home = tmp_path_factory.mktemp("plugins")
    install(home)
    return home


def _env(tools, gnupg: Path, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = tools.env(GNUPGHOME=str(gnupg), **extra)
    for k in ("SOPS_AGE_KEY", "SOPS_AGE_KEY_FILE", "KUSTOMIZE_PLUGIN_HOME", "XDG_CONFIG_HOME"):
        env.pop(k, None)
    env.update(extra)
    return env


def _check(proc: subprocess.CompletedProcess[bytes], case: Path) -> None:
    want = (case / "want.yaml").read_bytes()
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b""
    assert list(yaml.safe_load_all(proc.stdout)) == list(yaml.safe_load_all(want))
    assert proc.stdout == want


@pytest.mark.parametrize("case", _cases("krm"))
@pytest.mark.parametrize("version", ["kustomize56", "kustomize58"])
def test_krm_case(case: str, version: str, tools, gnupg: Path, plugin_home: Path, ksops_dir: Path) -> None:  # type: ignore[no-untyped-def]
    env = _env(tools, gnupg)
    env["PATH"] = f"{plugin_home}:{VENV_BIN}:{env['PATH']}"
    proc = subprocess.run([tools[version], "build", "--enable-alpha-plugins", "--enable-exec", "."],
                          cwd=ksops_dir / "krm" / case, env=env, capture_output=True, timeout=120)
    _check(proc, ksops_dir / "krm" / case)


@pytest.mark.parametrize("case", _cases("legacy"))
def test_legacy_case_kubectl(case: str, tools, gnupg: Path, plugin_home: Path, ksops_dir: Path) -> None:  # type: ignore[no-untyped-def]
    env = _env(tools, gnupg, KUSTOMIZE_PLUGIN_HOME=str(plugin_home))
    proc = subprocess.run([tools.kubectl, "kustomize", "--enable-alpha-plugins", "."],
                          cwd=ksops_dir / "legacy" / case, env=env, capture_output=True, timeout=120)
    _check(proc, ksops_dir / "legacy" / case)


@pytest.mark.parametrize("case", _cases("legacy"))
@pytest.mark.parametrize("version", ["kustomize56", "kustomize58"])
def test_legacy_case_xdg(case: str, version: str, tools, gnupg: Path, tmp_path: Path, ksops_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """The layout KSOPS documents for Argo CD: $XDG_CONFIG_HOME/kustomize/plugin/viaduct.ai/v1/ksops/ksops."""
    from kvsops.hosts.kustomize.install import install

    install(tmp_path / "kustomize" / "plugin")
    env = _env(tools, gnupg, XDG_CONFIG_HOME=str(tmp_path))
    proc = subprocess.run([tools[version], "build", "--enable-alpha-plugins", "."],
                          cwd=ksops_dir / "legacy" / case, env=env, capture_output=True, timeout=120)
    _check(proc, ksops_dir / "legacy" / case)


# ----------------------------------------------------------------------------- under Argo CD


@pytest.mark.parametrize("mode_case", [f"{m}/{c}" for m in ("krm", "legacy") for c in _cases(m)])
@pytest.mark.parametrize("version", ["kustomize56", "kustomize58"])
def test_case_under_argocd(mode_case: str, version: str, tools, gnupg: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                           ksops_dir: Path) -> None:
    """The same case rendered by ``kvsops argocd generate`` as argocd-cmp-server runs it (a private
    0644 copy, the sidecar's env): kustomize without --enable-exec, kvsops' configs served from its
    plugin home. The output is what plain kustomize gives (want.yaml), byte for byte."""
    from tests.cmp_harness import Cmp

    cmp = Cmp(tmp_path, tools)
    path = os.pathsep.join([str(VENV_BIN), *(str(d) for d in tool_dirs()), "/usr/local/bin", "/usr/bin", "/bin"])
    proc = cmp.run(ksops_dir, mode_case, sidecar={"GNUPGHOME": str(gnupg), "KVSOPS_KUSTOMIZE_BIN": tools[version],
                                                  "PATH": path, "SOPS_AGE_KEY_FILE": ""})
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == (ksops_dir / mode_case / "want.yaml").read_bytes()
