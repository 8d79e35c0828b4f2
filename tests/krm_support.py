"""Helpers for the kustomize tests (keys: tests/keys.py)."""

from __future__ import annotations

import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def docs(text: str) -> list[dict]:
    import yaml

    return [d for d in yaml.safe_load_all(text) if d is not None]


def by_name(objs: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objs}


def b64d(value: str) -> bytes:
    import base64

    return base64.b64decode(value)
