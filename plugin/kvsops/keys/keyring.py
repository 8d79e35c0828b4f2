"""Where decryption keys come from: the only reader of SOPS_AGE_KEY*, GNUPGHOME and friends.

Everything takes the environment as an argument (a Mapping), so tests and hosts inject it.
Discovery follows sops (age/keysource.go: loadIdentities): every source is collected, none wins.
"""

from __future__ import annotations

import os

from kvsops._record import Record
from kvsops.errors import KeyServiceError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

_AGE_PREFIXES = ("AGE-SECRET-KEY-1", "AGE-SECRET-KEY-PQ-1", "AGE-PLUGIN-")


class AgeKeyMaterial(Record):
    """Identity strings (private) and SSH key buffers, with where each came from (public)."""

    __slots__ = _fields = ("identities", "ssh_keys", "problems")
    identities: tuple[tuple[str, str], ...]  # (origin, identity string)
    ssh_keys: tuple[tuple[str, bytes], ...]  # (origin, PEM/OpenSSH private key bytes)
    problems: tuple[str, ...]  # public notes: unreadable files, encrypted identity files, ...

    @property
    def sources(self) -> list[str]:
        return sorted({o for o, _ in self.identities} | {o for o, _ in self.ssh_keys})


def home_dir(env: Mapping[str, str]) -> str:
    return env.get("HOME") or os.path.expanduser("~")


def user_config_dir(env: Mapping[str, str]) -> str:
    xdg = env.get("XDG_CONFIG_HOME")
    return xdg if xdg else os.path.join(home_dir(env), ".config")


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def parse_identities(text: str, origin: str, problems: list[str]) -> list[tuple[str, str]]:
    """Identity lines (one per line, or whitespace separated as sops 3.13 accepts)."""
    stripped = text.lstrip()
    if stripped.startswith("age-encryption") or stripped.startswith("-----BEGIN AGE"):
        problems.append(f"{origin}: passphrase-protected identity files are not supported")
        return []
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for token in line.split():
            if token.startswith(_AGE_PREFIXES):
                found.append((origin, token))
    return found


def _read(path: str, origin: str, problems: list[str], required: bool) -> str | None:
    try:
        return _read_bytes(path).decode("utf-8")
    except FileNotFoundError:
        if required and not os.path.isabs(path):
            # kustomize runs generators in the kustomization root, so a relative path set for the
            # shell that started kustomize points somewhere else there.
            problems.append(f"{origin}: file {path} does not exist in {os.getcwd()} (a relative path is resolved "
                            "from the working directory, which under kustomize is the kustomization root: "
                            "use an absolute path)")
        elif required:
            problems.append(f"{origin}: file {path} does not exist")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{origin}: cannot read {path} ({type(exc).__name__})")
    return None


def _run_key_cmd(cmd: str, env: Mapping[str, str], recipient: str, origin: str, problems: list[str]) -> str:
    import shlex
    import subprocess

    try:
        argv = shlex.split(cmd)
    except ValueError:
        problems.append(f"{origin}: cannot parse the command")
        return ""
    if not argv:
        return ""
    child_env = dict(env)
    child_env["SOPS_AGE_RECIPIENT"] = recipient
    try:
        proc = subprocess.run(argv, env=child_env, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KeyServiceError(f"{origin}: the command failed to run ({type(exc).__name__})") from None
    if proc.returncode != 0:
        raise KeyServiceError(f"{origin}: the command exited with status {proc.returncode}")
    return proc.stdout.decode("utf-8", "replace")


def load_age(env: Mapping[str, str], recipient: str = "") -> AgeKeyMaterial:
    problems: list[str] = []
    identities: list[tuple[str, str]] = []
    ssh: list[tuple[str, bytes]] = []

    ssh_file = env.get("SOPS_AGE_SSH_PRIVATE_KEY_FILE")
    if ssh_file:
        try:
            ssh.append(("SOPS_AGE_SSH_PRIVATE_KEY_FILE", _read_bytes(ssh_file)))
        except OSError as exc:
            problems.append(f"SOPS_AGE_SSH_PRIVATE_KEY_FILE: cannot read it ({type(exc).__name__})")
    ssh_cmd = env.get("SOPS_AGE_SSH_PRIVATE_KEY_CMD")
    if ssh_cmd:
        out = _run_key_cmd(ssh_cmd, env, recipient, "SOPS_AGE_SSH_PRIVATE_KEY_CMD", problems)
        if out:
            ssh.append(("SOPS_AGE_SSH_PRIVATE_KEY_CMD", out.encode()))
    for name in ("id_ed25519", "id_rsa"):
        path = os.path.join(home_dir(env), ".ssh", name)
        if os.path.isfile(path):
            try:
                ssh.append((f"~/.ssh/{name}", _read_bytes(path)))
            except OSError:
                problems.append(f"~/.ssh/{name}: cannot read it")

    if env.get("SOPS_AGE_KEY"):
        identities += parse_identities(env["SOPS_AGE_KEY"], "SOPS_AGE_KEY", problems)
    if env.get("SOPS_AGE_KEY_FILE"):
        text = _read(env["SOPS_AGE_KEY_FILE"], "SOPS_AGE_KEY_FILE", problems, required=True)
        if text is not None:
            identities += parse_identities(text, "SOPS_AGE_KEY_FILE", problems)
    if env.get("SOPS_AGE_KEY_CMD"):
        out = _run_key_cmd(env["SOPS_AGE_KEY_CMD"], env, recipient, "SOPS_AGE_KEY_CMD", problems)
        identities += parse_identities(out, "SOPS_AGE_KEY_CMD", problems)
    default = os.path.join(user_config_dir(env), "sops", "age", "keys.txt")
    text = _read(default, "sops/age/keys.txt", problems, required=False)
    if text is not None:
        identities += parse_identities(text, str(default), problems)
    return AgeKeyMaterial(tuple(identities), tuple(ssh), tuple(problems))


def gnupg_home(env: Mapping[str, str]) -> str:
    return env.get("GNUPGHOME") or os.path.join(home_dir(env), ".gnupg")


def gpg_exec(env: Mapping[str, str]) -> str:
    return env.get("SOPS_GPG_EXEC") or "gpg"
