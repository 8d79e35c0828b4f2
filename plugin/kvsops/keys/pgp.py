"""PGP keys through the ``gpg`` binary, as sops does (``SOPS_GPG_EXEC``, ``GNUPGHOME``)."""

from __future__ import annotations

from kvsops.keys import keyring
from kvsops.keys.base import KeyContext, KeyFailure, NotMyKey, one_string
from kvsops.sops.metadata import now_rfc3339

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

KIND = "pgp"
_TIMEOUT = 60


def describe(fields: Mapping[str, object]) -> str:
    return f"pgp key {fields.get('fp', '?')}"


def entry_spec(fields: Mapping[str, object]) -> str:
    return str(fields.get("fp", "") or "")


def _fp(text: str) -> str:
    return text.replace(" ", "").strip().upper().removeprefix("0X")


def same_key(have: str, want: str) -> bool:
    return have.replace(" ", "").upper() == want.replace(" ", "").upper()


def config_specs(item: object) -> list[str]:
    return [one_string(item, "pgp fingerprint")]


def policy_key(text: str) -> str:
    return _fp(text)


def policy_allows(allowed: frozenset[str], fields: Mapping[str, object]) -> bool:
    return _fp(str(fields.get("fp", ""))) in allowed


def _gpg(ctx: KeyContext, args: list[str], data: bytes) -> tuple[int, bytes, bytes]:
    env = dict(ctx.env)
    env["GNUPGHOME"] = keyring.gnupg_home(ctx.env)
    argv = [keyring.gpg_exec(ctx.env), "--batch", "--no-tty", "--quiet", *args]
    try:
        return ctx.run(argv, data, env, _TIMEOUT)
    except FileNotFoundError:
        raise KeyFailure(f"the gpg program ({argv[0]}) was not found; install GnuPG or set SOPS_GPG_EXEC") from None
    except TimeoutError:
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
        self._ctx = ctx

    @property
    def id(self) -> str:
        return self.fp

    def wrap(self, data_key: bytes) -> dict[str, str]:
        fp = self.fp.rstrip("!")
        args = ["--no-default-recipient", "--yes", "--encrypt", "-a", "-r", self.fp,
                "--trusted-key", fp[-16:], "--no-encrypt-to"]
        rc, out, err = _gpg(self._ctx, args, data_key)
        if rc != 0 or not out.strip():
            raise KeyFailure(f"gpg could not encrypt to {self.fp}: {_gpg_reason(err)}")
        return {"created_at": now_rfc3339(), "enc": out.decode().strip(), "fp": self.fp}


def recipient(spec: str, ctx: KeyContext) -> Recipient:
    return Recipient(spec, ctx)


class Unwrapper:
    def __init__(self, ctx: KeyContext) -> None:
        self._ctx = ctx

    def unwrap(self, fields: Mapping[str, object]) -> bytes:
        enc = str(fields.get("enc", ""))
        if "-----BEGIN PGP MESSAGE-----" not in enc:
            raise KeyFailure("the wrapped data key is not a PGP message")
        rc, out, err = _gpg(self._ctx, ["--decrypt"], enc.encode())
        if rc == 0 and out:
            return out
        reason = _gpg_reason(err)
        if "No secret key" in reason or "no secret key" in reason.lower():
            raise NotMyKey(f"no secret key for {fields.get('fp', '?')} in {keyring.gnupg_home(self._ctx.env)}")
        raise KeyFailure(f"gpg could not decrypt: {reason}")


if TYPE_CHECKING:  # mypy checks this module against the backend protocol
    from kvsops.keys import pgp as _this
    from kvsops.keys.base import KeyBackend

    _CONFORMS: KeyBackend = _this
