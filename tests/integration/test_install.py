"""kvsops as a new user gets it: a wheel built from the sources, installed into a fresh venv (not the
editable install every other test uses), and the README's runnable shell blocks run as written.

README blocks meant to run are marked by an HTML comment on the line before the fence (invisible
when rendered):

    <!-- readme-test: run -->           in an empty temp directory, with a fresh HOME, against the
                                         wheel-installed kvsops (first on PATH)
    <!-- readme-test: run in repo -->   in the repository root (the demo)

Each block runs under ``bash -euo pipefail``: any failing command fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, tool_dirs

MARK = re.compile(r"^<!-- readme-test: (run(?: in repo)?) -->\n```(?:sh|bash)\n(.*?)^```", re.M | re.S)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel --no-deps`` of a copy of the sources (building in the checkout would leave build/
    and egg-info behind); no build isolation, so no package index is needed."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, src / name)
    shutil.copytree(REPO_ROOT / "plugin", src / "plugin", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = out.glob("kvsops-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; its bin directory. The dependencies (PyYAML, pyrage, ...)
    come from the test venv through a .pth path entry, which adds that site-packages directory
    after the venv's own without running its .pth files: the editable install stays out of it."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "kvsops-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                           "-q", str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return venv / "bin"


def _env(bin_dir: Path, home: Path) -> dict[str, str]:
    """A new user's shell: an empty HOME, no sops/kvsops settings, the installed kvsops first on PATH."""
    keep = ("LANG", "LC_ALL", "TMPDIR", "TERM", "PYTEST_KVSOPS_RUN")
    env = {k: v for k, v in os.environ.items() if k in keep}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), SOPS_DISABLE_VERSION_CHECK="1",
               PATH=os.pathsep.join([str(bin_dir), *(str(d) for d in tool_dirs()),
                                     "/usr/local/bin", "/usr/bin", "/bin"]))
    return env


def test_the_wheel_is_complete(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "kvsops/py.typed" in names and "kvsops/hosts/kustomize/krm.py" in names
    assert any(n.endswith(".data/scripts/kvsops") for n in names)  # plugin/bin/kvsops, without pip's wrapper
    meta = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    for extra in ("azure", "templates", "helm-engine"):
        assert f"Provides-Extra: {extra}" in meta, extra
    assert 'helm-python-sdk>=0.2; extra == "helm-engine"' in meta
    assert not any("tests/" in n for n in names)


def test_the_installed_wheel_runs(installed: Path, tmp_path: Path) -> None:
    env = _env(installed, tmp_path / "home")
    where = subprocess.run([str(installed / "python"), "-c", "import kvsops; print(kvsops.__file__)"], env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(installed.parent)), where  # the wheel's copy, not the checkout's
    version = subprocess.run(["kvsops", "--version"], env=env, capture_output=True, text=True, check=True).stdout
    assert re.fullmatch(r"kvsops \d+\.\d+\.\d+\n", version)
    key = tmp_path / "key.txt"
    subprocess.run(["kvsops", "keygen", "-o", str(key)], env=env, capture_output=True, check=True)
    public = next(ln.split(": ")[1] for ln in key.read_text().splitlines() if ln.startswith("# public key: "))
    (tmp_path / "s.yaml").write_text("password: installed\n")
    enc = subprocess.run(["kvsops", "encrypt", "--age", public, "s.yaml"], cwd=tmp_path, env=env,
                         capture_output=True, check=True).stdout
    (tmp_path / "s.enc.yaml").write_bytes(enc)
    dec = subprocess.run(["kvsops", "decrypt", "s.enc.yaml"], cwd=tmp_path, env=dict(env, SOPS_AGE_KEY_FILE=str(key)),
                         capture_output=True, check=True)
    assert dec.stdout == b"password: installed\n" and dec.stderr == b""
    krm = subprocess.run(["kvsops-krm", "--help"], env=env, capture_output=True, text=True, check=True).stdout
    assert "kind: SopsGenerator" in krm


def _blocks(kind: str) -> list[str]:
    return [body for how, body in MARK.findall((REPO_ROOT / "README.md").read_text()) if how == kind]


def _run_block(body: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def test_readme_marks_the_blocks_it_means_to_run() -> None:
    assert len(_blocks("run")) >= 1 and len(_blocks("run in repo")) == 1


def test_readme_cli_walkthrough_runs_as_written(installed: Path, tmp_path: Path) -> None:
    """Every command of the README's CLI session, in an empty directory and a fresh HOME."""
    for i, body in enumerate(_blocks("run")):
        work = tmp_path / f"block{i}"
        work.mkdir()
        proc = _run_block(body, work, _env(installed, tmp_path / f"home{i}"))
        assert proc.returncode == 0, f"README block {i} failed:\n{body}\n--- stderr:\n{proc.stderr}"
        assert "kvsops: error" not in proc.stderr, proc.stderr
    # what the first session leaves behind is what the README says it does
    work = tmp_path / "block0"
    key = tmp_path / "home0" / ".config" / "sops" / "age" / "keys.txt"
    assert oct(key.stat().st_mode & 0o777) == "0o600" and oct(key.parent.stat().st_mode & 0o777) == "0o700"
    for name in ("secrets.yaml", "secrets.enc.yaml"):
        assert b"sops:" in (work / name).read_bytes() and b"hunter" not in (work / name).read_bytes()


def test_readme_quick_start_demo_runs(tmp_path: Path) -> None:
    """The README's first command, from the repository root; the kustomize step shows a decoded value."""
    (body,) = _blocks("run in repo")
    env = dict(os.environ, HOME=str(tmp_path / "home"))
    proc = _run_block(body, REPO_ROOT, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"^# Secret prod-app-[\w-]+: data\.[\w.-]+ is base64; decoded, as the cluster will see it:"
                     r"\n#   '.+'$", proc.stdout, re.M), proc.stdout[-3000:]
