"""Fixtures of the security suite (the counters and the summary table live in plugin.py)."""

from __future__ import annotations

import compileall
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.keys import AgeKey
from tests.security.support import REPO, clean_env, strace_path


@pytest.fixture(scope="session")
def precompiled() -> None:
    """Bytecode for the package exists before any traced run, so Python has nothing to write
    (the traced runs also set PYTHONDONTWRITEBYTECODE=1)."""
    compileall.compile_dir(str(REPO / "plugin" / "kvsops"), quiet=1)


@pytest.fixture
def age(tmp_path: Path) -> AgeKey:
    return AgeKey(tmp_path / "keys")


@pytest.fixture
def env(tmp_path: Path, age: AgeKey) -> dict[str, str]:
    return clean_env(tmp_path / "home", age=age)


@pytest.fixture(scope="session")
def strace(tools: object) -> str:
    found = strace_path()
    if not found:
        tools.missing("strace")  # type: ignore[attr-defined]
    return found  # type: ignore[return-value]


@pytest.fixture
def kv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, dict[str, str]]]:
    """The Key Vault emulator with key ``k`` and a workload identity; azure-identity reads
    os.environ itself, so the environment is also set there for in-process wrapping."""
    pytest.importorskip("azure.keyvault.keys")
    from tests.azure_emulator import KeyVaultEmulator

    for name in list(os.environ):
        if name.startswith(("AZURE_", "IDENTITY_", "MSI_", "KVSOPS_")) or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name, raising=False)
    with KeyVaultEmulator() as emu:
        emu.create_key("k")
        env = emu.base_env()
        env.update(emu.workload_identity_env("renderer", tmp_path / "token"))
        env["KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE"] = "false"
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        yield emu, env
