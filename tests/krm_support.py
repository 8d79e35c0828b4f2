"""Helpers for the kustomize tests: a throwaway age identity and encrypted inputs made by kvsops."""

from __future__ import annotations

import os
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


class AgeKey:
    """A fresh X25519 identity per test session (never the demo key: tests must not depend on it)."""

    def __init__(self, directory: Path) -> None:
        import pyrage

        ident = pyrage.x25519.Identity.generate()
        self.public = str(ident.to_public())
        self.file = directory / "age-key.txt"
        self.file.write_text(f"# test key\n{ident}\n")

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        for k in ("SOPS_AGE_KEY", "SOPS_AGE_KEY_CMD", "KVSOPS_ALLOW_OUTSIDE_ROOT"):
            env.pop(k, None)
        env["SOPS_AGE_KEY_FILE"] = str(self.file)
        env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
        return env

    def encrypt(self, plain: bytes, fmt: str) -> bytes:
        from kvsops import api

        session = api.Session(env={})
        return api.encrypt_bytes(plain, fmt, [[session.recipient("age", self.public)]])

    def write(self, path: Path, plain: bytes | str, fmt: str | None = None) -> Path:
        from kvsops.sops import stores

        data = plain.encode() if isinstance(plain, str) else plain
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.encrypt(data, fmt or stores.detect(str(path))))
        return path


def docs(text: str) -> list[dict]:
    import yaml

    return [d for d in yaml.safe_load_all(text) if d is not None]


def by_name(objs: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objs}


def b64d(value: str) -> bytes:
    import base64

    return base64.b64decode(value)
