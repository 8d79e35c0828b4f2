"""Shared fixtures: the real peer tools installed by scripts/setup.sh.

Tools are looked up in $KVSOPS_TOOLS, then <repo>/.tools/bin, then PATH.
A missing tool skips the test on a developer machine, but FAILS it when the
CI environment variable is set: on CI a missing tool means the install step
(scripts/setup.sh) is broken, and a silent skip would hide that.

Do not import kvsops at module level here: a broken package must not stop
collection of every other test.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

# The security suite's counters and summary table; loaded here so the xdist controller has it too.
pytest_plugins = ["tests.security.plugin", "tests.processes"]

if TYPE_CHECKING:
    from tests.azure_emulator import KeyVaultEmulator
    from tests.keys import AgeKey

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_CONFORMANCE = REPO_ROOT.parent / "shared" / "conformance"

# fixture attribute -> executable name
TOOL_NAMES = {
    "sops": "sops",
    "age": "age",
    "age_keygen": "age-keygen",
    "age13": "age-1.3",  # post-quantum age (Debian sid), see scripts/setup.sh
    "age_keygen13": "age-keygen-1.3",
    "age_plugin_pq": "age-plugin-pq",
    "gpg": "gpg",
    "kustomize56": "kustomize-5.6",
    "kustomize58": "kustomize-5.8",
    "kubectl": "kubectl",
    "helm3": "helm3",
    "helm4": "helm4",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def tool_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("KVSOPS_TOOLS"):
        dirs.append(Path(os.environ["KVSOPS_TOOLS"]))
    dirs.append(REPO_ROOT / ".tools" / "bin")
    return dirs


def find_tool(exe: str) -> str | None:
    """Absolute path of a peer tool, or None."""
    for d in tool_dirs():
        p = d / exe
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return shutil.which(exe)


def missing_tool(what: str) -> None:
    """Skip (developer machine) or fail (CI) because a peer tool is absent."""
    if in_ci():
        pytest.fail(
            f"{what} not found in {[str(d) for d in tool_dirs()]} or PATH although CI is set: "
            "the install step (scripts/setup.sh) is broken",
            pytrace=False,
        )
    pytest.skip(f"{what} not installed (run scripts/setup.sh)")


class Tools:
    """Paths of the peer tools: ``tools.sops``, ``tools["kustomize-5.8"]``, ...

    Looking up a tool that is not installed skips (or, on CI, fails) the
    calling test, so a test only depends on the tools it actually uses.
    """

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def path(self, name: str) -> str:
        exe = TOOL_NAMES.get(name, name)
        if exe not in self._cache:
            found = find_tool(exe)
            if found is None:
                missing_tool(f"peer tool {exe!r}")
            self._cache[exe] = found
        return self._cache[exe]

    __getitem__ = path
    missing = staticmethod(missing_tool)

    def __getattr__(self, name: str) -> str:
        if name.startswith("_") or name not in TOOL_NAMES:
            raise AttributeError(name)
        return self.path(name)

    def env(self, **extra: str) -> dict[str, str]:
        """os.environ with the tool dirs first on PATH and sops' update check off."""
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([*(str(d) for d in tool_dirs()), env.get("PATH", "")])
        env.setdefault("SOPS_DISABLE_VERSION_CHECK", "1")
        env.update(extra)
        return env


@pytest.fixture(scope="session")
def tools() -> Tools:
    return Tools()


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    """The peers' own test fixtures in ../shared/conformance (read only; never copy them)."""
    if not SHARED_CONFORMANCE.is_dir():
        pytest.skip(f"{SHARED_CONFORMANCE} absent")
    return SHARED_CONFORMANCE


@pytest.fixture
def key(tmp_path: Path) -> AgeKey:
    """A fresh age key (identity file under tmp_path/keys) for the test."""
    from tests.keys import AgeKey

    d = tmp_path / "keys"
    d.mkdir()
    return AgeKey(d)


@pytest.fixture
def emu() -> Iterator[KeyVaultEmulator]:
    """A running HTTPS Key Vault emulator (tests/azure_emulator) for the test."""
    pytest.importorskip("azure.identity")
    pytest.importorskip("azure.keyvault.keys")
    from tests.azure_emulator import KeyVaultEmulator

    with KeyVaultEmulator() as e:
        yield e


@pytest.fixture
def shm_dir(tmp_path: Path) -> Iterator[Path]:
    """A private RAM directory for this test (``KVSOPS_SHM_DIR``), so checks for files left in RAM
    see only what this test's processes wrote, never another worker's or another program's."""
    import tempfile

    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK) else str(tmp_path)
    d = Path(tempfile.mkdtemp(prefix="kvsops-test-", dir=base))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """On CI every peer tool and Python dependency is installed, so a skip (an importorskip of the
    Azure SDK or Helm's engine, a missing console script, a root-only test run without root) means
    the install step is broken: report it as a failure. Only the peers' conformance fixtures may be
    absent (they live outside the project)."""
    outcome = yield
    report = outcome.get_result()
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
    if "absent" in reason:
        return
    report.outcome = "failed"
    report.longrepr = f"skipped on CI, which means an install step is broken: {reason}"
