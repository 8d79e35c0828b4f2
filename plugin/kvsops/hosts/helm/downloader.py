"""The Helm downloader's work: one URL in, the plaintext bytes out (in memory, never on disk).

``fetch`` reads the file the policy allows, decrypts it with the keys of the injected environment
(plus an imported key for the ``+import`` schemes) and returns the bytes for stdout.

Key imports:
- age: the key file is handed to the key ring as ``SOPS_AGE_KEY_FILE`` in the injected env; nothing
  is copied.
- PGP: kvsops unwraps PGP data keys with ``gpg``, and gpg only reads secret keys from a home
  directory. The key is imported into a private ``GNUPGHOME`` (mode 0700, on ``/dev/shm`` when that
  is a writable tmpfs, or in ``KVSOPS_SHM_DIR``, so the key stays in memory), the agent of that home
  is stopped and the directory removed when the call ends, on SIGTERM/SIGHUP/SIGINT too. Only
  SIGKILL can leave it.
"""

from __future__ import annotations

import os

from kvsops import fs
from kvsops.errors import FileMissing, GeneratorError, InputError, KeyServiceError, MetadataNotFound
from kvsops.hosts.helm import urls as helmurl
from kvsops.hosts.helm.urls import Policy, Request

TYPE_CHECKING = False  # subprocess and signal are for PGP key imports only: off the common path
if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from signal import Handlers
    from types import FrameType
    from typing import Any, Callable, Iterator, Mapping

    _Handler = Callable[[int, FrameType | None], Any] | int | Handlers | None  # signal.signal's


def fetch(req: Request, pol: Policy, env: Mapping[str, str]) -> bytes:
    if req.kind == helmurl.LITERAL:
        return _literal(req.target, helmurl.executable_env(env, pol))
    try:
        data = read_values(pol, req.target, fs.max_bytes(env))
    except FileMissing:
        if req.ignore_missing:
            return b""
        # A typo must not be "fixed" with `?`: that would turn it into silently empty values.
        raise FileMissing(f"{req.target}: file does not exist",
                          hint=f"check the path (it is relative to {pol.cwd}); only for a file that may be absent "
                               f"on purpose, write {req.scheme}://?{req.target}") from None
    key_env = helmurl.executable_env(env, pol)
    if req.kind == helmurl.REFS:
        from kvsops.hosts.helm import refs as helmrefs

        return helmrefs.render(req.target, data, pol, key_env)
    # The +import schemes bring their own key: the agent (which holds its own keys) is not asked.
    if req.kind == helmurl.AGE_IMPORT:
        key_env["SOPS_AGE_KEY_FILE"] = helmurl.resolve_key_path(pol, req.key_file)
        return _decrypt_file(req.target, data, pol, key_env, agent=False)
    if req.kind == helmurl.GPG_IMPORT:
        key = helmurl.resolve_key_path(pol, req.key_file)
        with private_gnupghome(key, req.key_file, key_env) as home:
            key_env["GNUPGHOME"] = home
            return _decrypt_file(req.target, data, pol, key_env, agent=False)
    return _decrypt_file(req.target, data, pol, key_env)


def read_values(pol: Policy, path: str, limit: int) -> bytes:
    """A values file under the policy: beneath the root, race-free (kvsops.fs), unless a relaxing
    setting covers this path or the wrapper vetted it (then a plain, still regular-only read)."""
    real = helmurl.resolve_values_path(pol, path)  # refuses by policy, with the policy's hints
    if not helmurl.confined(pol, path, real):
        return fs.read_path(real, fs.show(path), limit=limit)
    cwd = os.path.relpath(os.path.realpath(pol.cwd), pol.root)
    with fs.Beneath(pol.root, label=pol.root, limit=limit,
                    hint=helmurl.symlink_hint(pol)) as root:
        return root.read(os.path.join(cwd, path) if cwd != "." else path, fs.show(path))


def _decrypt_file(where: str, data: bytes, pol: Policy, env: Mapping[str, str], *, agent: bool = True) -> bytes:
    fmt = helmurl.sniff_format(where, data)
    try:
        return _decrypt(data, fmt, where, env, agent=agent)
    except (MetadataNotFound, InputError) as exc:
        # helm-secrets decrypts only what looks like sops output and passes anything else through
        # (`.txt`/`.raw` files for --set-file, /etc/passwd): a file that does not even parse as its
        # format is "not encrypted" too, unless it carries sops' marks (then it is a broken one).
        if isinstance(exc, InputError) and _looks_encrypted(data):
            raise
        if pol.allow_unencrypted:
            return data
        raise MetadataNotFound(
            f"{where}: not encrypted (no sops metadata); refusing to pass it through as a secret",
            hint=f"encrypt it with sops/kvsops, use a plain -f {where}, "
                 f"or set {helmurl.ALLOW_UNENCRYPTED}=true to pass unencrypted files through",
        ) from None


def _looks_encrypted(data: bytes) -> bool:
    """sops output: an encrypted value and a sops key (helm-secrets greps ``mac.*,type:str]``)."""
    return b"ENC[AES256_GCM," in data and b"sops" in data


def _literal(value: str, env: Mapping[str, str]) -> bytes:
    """helm-secrets: a literal holding sops metadata is a sops JSON document; anything else is a
    plain value, returned as is (no newline added). A vals reference (``ref+...``) is such a value:
    helm-secrets' sops backend echoes it, and so does kvsops (with a note on stderr, since a
    reference deployed unresolved is a classic mistake; kvsops+refs:// resolves them in files)."""
    if value.startswith(("ref+", "secretref+")):
        import sys

        sys.stderr.write("kvsops: note: secrets+literal: a ref+ reference is passed through unresolved "
                         "(kvsops resolves references in files, with kvsops+refs://FILE)\n")
        return value.encode()
    if "ENC[" in value and '"sops"' in value and '"mac"' in value:
        return _decrypt(value.encode(), "json", "secrets+literal", env)
    return value.encode()


def _decrypt(data: bytes, fmt: str, where: str, env: Mapping[str, str], *, agent: bool = True) -> bytes:
    """The plaintext, by the agent when one is configured (it applies the Argo CD key policy, from
    the grant of `kvsops argocd generate`), else in-process with the same policy."""
    from kvsops.agent import client

    link = client.from_env(env) if agent else None
    if link is not None:
        request = {"op": "decrypt", "data": data, "fmt": fmt, "out": fmt, "where": where, "indent": None,
                   "config": None, "ignore_mac": False, "session": client.session_spec(env, policy=True)}
        out = link.answer_bytes(request, client.wait_for(client.env_deadline_ms(env)))
        if out is not None:
            return out
    from kvsops import report

    report.full_site()  # the shim may have started Python without site (see report.full_site)
    from kvsops import api
    from kvsops.policy import session_from_env

    return api.decrypt_bytes(data, fmt, session=session_from_env(env), where=where)


def _tmp_base() -> str | None:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def private_gnupghome(key_path: str, shown: str, env: Mapping[str, str]) -> AbstractContextManager[str]:
    """A private GNUPGHOME holding the key, removed on exit (contextlib only on this PGP path)."""
    from contextlib import contextmanager

    return contextmanager(_private_gnupghome)(key_path, shown, env)


def _private_gnupghome(key_path: str, shown: str, env: Mapping[str, str]) -> Iterator[str]:
    import shutil
    import signal
    import subprocess
    import tempfile

    from kvsops._ramdir import ram_dir
    from kvsops.keys import keyring

    home = tempfile.mkdtemp(prefix="kvsops-gnupg-", dir=ram_dir(env))
    gpg = keyring.gpg_exec(env)
    child_env = {**env, "GNUPGHOME": home}

    def _stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    old = _trap(_stop)
    try:
        try:
            proc = subprocess.run([gpg, "--batch", "--no-tty", "--quiet", "--no-permission-warning",
                                   "--homedir", home, "--import", key_path],
                                  stdin=subprocess.DEVNULL, capture_output=True, env=child_env, timeout=60, check=False)
        except FileNotFoundError:
            raise KeyServiceError(f"cannot import {shown}: the gpg program ({gpg}) was not found") from None
        except subprocess.TimeoutExpired:
            raise KeyServiceError(f"cannot import {shown}: gpg did not answer within 60s") from None
        if proc.returncode != 0:
            raise GeneratorError(f"cannot import the PGP key {shown} (gpg exited with {proc.returncode})")
        yield home
    finally:
        try:
            subprocess.run([_gpgconf(gpg, env), "--homedir", home, "--kill", "all"],
                           stdin=subprocess.DEVNULL, capture_output=True, env=child_env, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(home, ignore_errors=True)
        for s, h in old.items():
            signal.signal(s, h)


def _trap(handler: _Handler) -> dict[int, _Handler]:
    import signal

    old: dict[int, _Handler] = {}
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        try:
            old[s] = signal.signal(s, handler)
        except ValueError:  # not the main thread (library use): the finally block still cleans up
            pass
    return old


def _gpgconf(gpg: str, env: Mapping[str, str]) -> str:
    import shutil

    found = shutil.which(gpg, path=env.get("PATH"))
    if found:
        sibling = os.path.join(os.path.dirname(os.path.realpath(found)), "gpgconf")
        if os.access(sibling, os.X_OK):
            return sibling
    return shutil.which("gpgconf", path=env.get("PATH")) or "gpgconf"
