"""Shared helpers for tests that run the real sops binary beside kvsops."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus"


@dataclass
class AgeKey:
    identity: str
    recipient: str


@dataclass
class PgpKey:
    home: str
    fp: str


def make_age_key() -> AgeKey:
    import pyrage

    ident = pyrage.x25519.Identity.generate()
    return AgeKey(str(ident), str(ident.to_public()))


def make_pgp_key(gpg: str, home: Path) -> PgpKey:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = dict(os.environ, GNUPGHOME=str(home))
    subprocess.run(
        [gpg, "--batch", "--passphrase", "", "--quick-gen-key", "kvsops test <test@kvsops.invalid>",
         "rsa2048", "default", "never"],
        env=env, check=True, capture_output=True,
    )
    subprocess.run(
        [gpg, "--batch", "--passphrase", "", "--quick-add-key",
         _fingerprint(gpg, env), "rsa2048", "encr", "never"],
        env=env, check=True, capture_output=True,
    )
    return PgpKey(str(home), _fingerprint(gpg, env))


def _fingerprint(gpg: str, env: dict[str, str]) -> str:
    out = subprocess.run([gpg, "--batch", "--with-colons", "--list-secret-keys"], env=env,
                         check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("fpr:"):
            return line.split(":")[9]
    raise RuntimeError("no fingerprint")


def run_sops(sops: str, args: list[str], env: dict[str, str], cwd: Path, stdin: bytes | None = None,
             check: bool = True) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([sops, *args], env=env, cwd=cwd, input=stdin, capture_output=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"sops {' '.join(args)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return proc


def copy_corpus(name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copyfile(CORPUS / name, target)
    return target
