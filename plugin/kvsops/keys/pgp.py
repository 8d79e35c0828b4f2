"""PGP keys through the ``gpg`` binary, as sops does (``SOPS_GPG_EXEC``, ``GNUPGHOME``)."""

from __future__ import annotations

import subprocess
from typing import Mapping

from kvsops.keys import keyring
from kvsops.keys.base import KeyContext, KeyFailure, NotMyKey
from kvsops.sops.metadata import now_rfc3339

KIND = "pgp"
LOCAL = True
_TIMEOUT = 60


def describe(fields: Mapping[str, object]) -> str:
    return f"pgp key {fields.get('fp', '?')}"


def _gpg(ctx_env: Mapping[str, str], args: list[str], data: bytes) -> subprocess.CompletedProcess[bytes]:
    env = dict(ctx_env)
    env["GNUPGHOME"] = keyring.gnupg_home(ctx_env)
    argv = [keyring.gpg_exec(ctx_env), "--batch", "--no-tty", "--quiet", *args]
    try:
        return subprocess.run(argv, input=data, capture_output=True, env=env, timeout=_TIMEOUT, check=False)
    except FileNotFoundError:
        raise KeyFailure(f"the gpg program ({argv[0]}) was not found; install GnuPG or set SOPS_GPG_EXEC") from None
    except subprocess.TimeoutExpired:
        raise KeyFailure(f"gpg did not answer within {_TIMEOUT}s") from None


def _gpg_reason(stderr: bytes) -> str:
    """A short public reason from gpg's stderr (gpg prints key ids and status, never plaintext)."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    keep = [ln for ln in lines if ln.startswith("gpg:")][-2:]
    return " / ".join(keep)[:300] or "gpg failed"


class Recipient:
    kind = KIND

    def __init__(self, fp: str, ctx: KeyContext) -> None:
        self.fp = fp.replace(" ", "").strip()
        if not self.fp:
            raise ValueError("empty PGP fingerprint")
        self._env = ctx.env

    @property
    def id(self) -> str:
        return self.fp

    def wrap(self, data_key: bytes) -> dict[str, str]:
        fp = self.fp.rstrip("!")
        args = ["--no-default-recipient", "--yes", "--encrypt", "-a", "-r", self.fp,
                "--trusted-key", fp[-16:], "--no-encrypt-to"]
        proc = _gpg(self._env, args, data_key)
        if proc.returncode != 0 or not proc.stdout.strip():
            raise KeyFailure(f"gpg could not encrypt to {self.fp}: {_gpg_reason(proc.stderr)}")
        return {"created_at": now_rfc3339(), "enc": proc.stdout.decode().strip(), "fp": self.fp}


def recipient(spec: str, ctx: KeyContext) -> Recipient:
    return Recipient(spec, ctx)


class Unwrapper:
    def __init__(self, ctx: KeyContext) -> None:
        self._env = ctx.env

    def unwrap(self, fields: Mapping[str, object]) -> bytes:
        enc = str(fields.get("enc", ""))
        if "-----BEGIN PGP MESSAGE-----" not in enc:
            raise KeyFailure("the wrapped data key is not a PGP message")
        proc = _gpg(self._env, ["--decrypt"], enc.encode())
        if proc.returncode == 0 and proc.stdout:
            return proc.stdout
        reason = _gpg_reason(proc.stderr)
        if "No secret key" in reason or "no secret key" in reason.lower():
            raise NotMyKey(f"no secret key for {fields.get('fp', '?')} in {keyring.gnupg_home(self._env)}")
        raise KeyFailure(f"gpg could not decrypt: {reason}")
