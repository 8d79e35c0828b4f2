"""Fixtures of the security suite (the counters and the summary table live in plugin.py)."""

from __future__ import annotations

import compileall
from pathlib import Path

import pytest

from tests.security.support import REPO, Age, clean_env, strace_path


@pytest.fixture(scope="session")
def precompiled() -> None:
    """Bytecode for the package exists before any traced run, so Python has nothing to write
    (the traced runs also set PYTHONDONTWRITEBYTECODE=1)."""
    compileall.compile_dir(str(REPO / "plugin" / "kvsops"), quiet=1)


@pytest.fixture
def age(tmp_path: Path) -> Age:
    return Age(tmp_path / "keys")


@pytest.fixture
def env(tmp_path: Path, age: Age) -> dict[str, str]:
    return clean_env(tmp_path / "home", age=age)


@pytest.fixture(scope="session")
def strace(tools: object) -> str:
    found = strace_path()
    if not found:
        tools.missing("strace")  # type: ignore[attr-defined]
    return found  # type: ignore[return-value]
