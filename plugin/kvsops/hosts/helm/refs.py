"""``kvsops+refs://FILE``: a Helm values file whose ``ref+`` references are resolved in memory.

FILE may be SOPS-encrypted (decrypted first, MAC verified) or plain: the scheme itself is the
opt-in, so a plain file is not "an unencrypted secret passed through" — its secrets come from the
references. ``ref+sops://OTHER`` reads OTHER through the same path policy as values files
(``helmurl.resolve_values_path``) and decrypts it with the same Session (key policy included).
"""

from __future__ import annotations

import os
import stat
from typing import Mapping

from kvsops import errors
from kvsops.hosts.helm import urls as helmurl
from kvsops.hosts.helm.urls import Policy

MAX_FILE_BYTES = 64 * 1024 * 1024


def _reader(pol: Policy):  # type: ignore[no-untyped-def]
    def read(path: str) -> bytes:
        real = helmurl.resolve_values_path(pol, path)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise errors.InputError(f"{path}: file does not exist") from None
        except OSError as exc:
            raise errors.InputError(f"{path}: cannot read it ({type(exc).__name__})") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
                raise errors.InputError(f"{path}: not a regular file of at most {MAX_FILE_BYTES} bytes")
            with os.fdopen(fd, "rb", closefd=False) as fh:
                return fh.read(MAX_FILE_BYTES + 1)
        finally:
            os.close(fd)

    return read


def render(where: str, data: bytes, pol: Policy, env: Mapping[str, str]) -> bytes:
    from kvsops import api
    from kvsops.refs import resolve as references
    from kvsops.policy import session_from_env
    from kvsops.sops import stores

    fmt = helmurl.sniff_format(where, data)
    if fmt == "binary":
        raise errors.InputError(f"{where}: kvsops+refs:// needs a YAML, JSON, dotenv or INI values file")
    session = session_from_env(env)
    try:
        docs = api.decrypt(data, fmt, session=session, where=where).docs
    except errors.MetadataNotFound:
        try:
            docs = stores.get(fmt).load_plain(data)
        except errors.KvsopsError as exc:
            raise exc.with_where(where) from None
    references.resolve([(where, d) for d in docs], session, _reader(pol))
    return api.emit_plain(docs, fmt, where=where)
