"""Test keys, one module for every suite: throwaway age identities and GnuPG homes with a fresh key.

Never the demo key: tests must not depend on it. Nothing here imports kvsops at module level (a
broken package must not stop collection of every other test).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent


class AgeKey:
    """A fresh X25519 identity: ``identity`` (AGE-SECRET-KEY-1...), ``recipient`` (age1...), and,
    given a ``directory``, a key ``file`` in it (named after the recipient, so keys can share one)."""

    def __init__(self, directory: Path | None = None) -> None:
        import pyrage

        ident = pyrage.x25519.Identity.generate()
        self.identity = str(ident)
        self.recipient = str(ident.to_public())
        self.file: Path | None = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self.file = directory / f"age-{self.recipient[-8:]}.txt"
            self.file.write_text(f"# test key\n{self.identity}\n")

    @classmethod
    def from_age_keygen(cls, keygen: str, out: Path, *flags: str) -> AgeKey:
        """A key made by the real ``age-keygen`` (``-pq`` for a post-quantum one) into ``out``;
        its notice on stderr names the recipient, as age prints it."""
        proc = subprocess.run([keygen, *flags, "-o", str(out)], capture_output=True, text=True, timeout=60, check=True)
        text = out.read_text()
        key = cls.__new__(cls)
        key.identity = text.strip().splitlines()[-1]
        key.recipient = next(ln for ln in text.splitlines() if ln.startswith("# public key: ")).split(": ", 1)[1]
        key.file = out
        assert proc.stderr.strip() == f"Public key: {key.recipient}"
        return key

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with only this key, by file, and the venv's
        commands first on PATH."""
        assert self.file is not None, "AgeKey(directory) writes the key file env() names"
        env = dict(os.environ if base is None else base)
        for k in ("SOPS_AGE_KEY", "SOPS_AGE_KEY_CMD", "KVSOPS_ALLOW_OUTSIDE_ROOT"):
            env.pop(k, None)
        env["SOPS_AGE_KEY_FILE"] = str(self.file)
        env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
        return env

    def session(self, **kw: Any) -> Any:
        """A kvsops Session holding this identity (and nothing from the environment)."""
        from kvsops import api

        return api.Session(env={"SOPS_AGE_KEY": self.identity, "HOME": "/nonexistent"}, **kw)

    def master_key(self) -> Any:
        """This recipient as kvsops encrypts to it."""
        from kvsops import api

        return api.Session(env={"HOME": "/nonexistent"}).recipient("age", self.recipient)

    def encrypt(self, plain: bytes, fmt: str, **kw: Any) -> bytes:
        """``plain`` encrypted by kvsops to this key alone."""
        from kvsops import api

        return api.encrypt_bytes(plain, fmt, [[self.master_key()]], **kw)

    def write(self, path: Path, plain: bytes | str, fmt: str | None = None) -> Path:
        """``plain`` encrypted to ``path`` (format from its name unless given)."""
        from kvsops.sops import stores

        data = plain.encode() if isinstance(plain, str) else plain
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.encrypt(data, fmt or stores.detect(str(path))))
        return path


class PgpKey:
    """A GnuPG home with a fresh RSA key (sign + encryption subkey, no passphrase): ``home``, ``fp``."""

    def __init__(self, gpg: str, home: Path) -> None:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = dict(os.environ, GNUPGHOME=str(home))
        subprocess.run(
            [gpg, "--batch", "--passphrase", "", "--quick-gen-key", "kvsops test <test@kvsops.invalid>",
             "rsa2048", "default", "never"],
            env=env, check=True, capture_output=True,
        )
        subprocess.run(
            [gpg, "--batch", "--passphrase", "", "--quick-add-key", _fingerprint(gpg, env), "rsa2048", "encr", "never"],
            env=env, check=True, capture_output=True,
        )
        self.home = str(home)
        self.fp = _fingerprint(gpg, env)


def _fingerprint(gpg: str, env: dict[str, str]) -> str:
    out = subprocess.run([gpg, "--batch", "--with-colons", "--list-secret-keys"], env=env,
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("fpr:"):
            return line.split(":")[9]
    raise RuntimeError("no fingerprint")
