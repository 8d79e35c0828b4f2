"""``kvsops+refs://FILE``: a Helm values file whose ``ref+`` references are resolved in memory.

FILE may be SOPS-encrypted (decrypted first, MAC verified) or plain: the scheme itself is the
opt-in, so a plain file is not "an unencrypted secret passed through" — its secrets come from the
references. ``ref+sops://OTHER`` reads OTHER through the same path policy as values files
(``downloader.read_values``: beneath the root, race-free) and decrypts it with the same Session
(key policy included).
"""

from __future__ import annotations

from typing import Callable, Mapping

from kvsops import errors, fs
from kvsops.hosts.helm import urls as helmurl
from kvsops.hosts.helm.urls import Policy


def _reader(pol: Policy, limit: int) -> Callable[[str], bytes]:
    from kvsops.hosts.helm.downloader import read_values

    return lambda path: read_values(pol, path, limit)


def render(where: str, data: bytes, pol: Policy, env: Mapping[str, str]) -> bytes:
    from kvsops import report

    report.full_site()  # the shim may have started Python without site (see report.full_site)
    from kvsops import api
    from kvsops.agent.session import session_from_env
    from kvsops.refs import resolve as references
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
    references.resolve([(where, d) for d in docs], session, _reader(pol, fs.max_bytes(env)))
    return api.emit_plain(docs, fmt, where=where)
