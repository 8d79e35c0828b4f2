"""Resolving ``ref+`` references for a host: fetchers built from a Session (see ``kvsops.refs.grammar``).

A host (Helm downloader, kustomize generator, Argo CD generate) calls :func:`resolve` with its trees
and a ``read_file`` that applies *its* path policy; ``ref+sops://FILE`` then reads FILE through that
policy and decrypts it with the same Session (so the Argo CD key policy applies to its keys too).

Per render (per Session): one cache of fetched sources, so each distinct reference is fetched once
even when many files name it. Key Vault references are checked against the Session's
``allowed_secret`` policy hook before anything is fetched; a Session with a key policy
(``allowed_entry``) but no secret hook refuses every Key Vault reference (fail closed).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Sequence

from kvsops import errors
from kvsops.refs import grammar as refs

if TYPE_CHECKING:
    from kvsops.session import Session

ReadFile = Callable[[str], bytes]
DEFAULT_WORKERS = 8
_LOCK = threading.Lock()


def enabled(value: str | None) -> bool:
    text = (value or "").strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise errors.ConfigError("the references setting must be true or false")


def _cache(session: Session) -> refs.Cache:
    with _LOCK:
        cache = session.ctx.state.get("refs.cache")
        if not isinstance(cache, refs.Cache):  # None: the Session's first references
            cache = session.ctx.state["refs.cache"] = refs.Cache()
        return cache


def secret_refusal(session: Session, vault_url: str, name: str, version: str) -> str | None:
    """Why the Session's key policy refuses a Key Vault secret, or None when it allows it."""
    if session.allowed_secret is not None:
        return session.allowed_secret(vault_url, name, version)
    if session.allowed_entry is not None:
        return "secret not allowed for this Argo CD project"
    return None


def _check(session: Session) -> refs.Check:
    # A Session served by the agent (kvsops.agent.session) asks it: the agent applies the policy.
    remote = session.remote

    def check(ref: refs.Ref) -> str | None:
        if ref.backend != "azurekeyvault":
            return None  # ref+sops: the file's keys go through the key policy when it is decrypted
        if remote is not None:
            return remote.secret_refusal(ref.vault_url, ref.name, ref.version)
        return secret_refusal(session, ref.vault_url, ref.name, ref.version)

    return check


def _azure(session: Session) -> refs.Fetcher:
    remote = session.remote

    def fetch(ref: refs.Ref) -> refs.Fetched:
        if remote is not None:
            return refs.Fetched(remote.secret(ref.vault_url, ref.name, ref.version))
        from kvsops.azure import secrets as azure_secrets

        return refs.Fetched(azure_secrets.get_secret(session.ctx, ref.vault_url, ref.name, ref.version).value)

    return fetch


def _sops(session: Session, read_file: ReadFile | None) -> refs.Fetcher:
    def fetch(ref: refs.Ref) -> refs.Fetched:
        from kvsops import api
        from kvsops.sops import stores
        from kvsops.sops.tree import to_plain

        if read_file is None:
            raise errors.ReferenceFailed("ref+sops:// references are not available here")
        data = read_file(ref.path)
        fmt = stores.detect(ref.path)
        dec = api.decrypt(data, fmt, session=session, where=ref.path)
        text = api.emit_plain(dec.docs, fmt, where=ref.path).decode("utf-8", "replace")
        doc = to_plain(dec.docs[0]) if dec.docs and fmt != "binary" else None
        return refs.Fetched(text, doc, parsed=fmt != "binary")

    return fetch


def resolver(session: Session, read_file: ReadFile | None, *, workers: int = DEFAULT_WORKERS) -> refs.Resolver:
    return refs.Resolver(
        {"azurekeyvault": _azure(session), "sops": _sops(session, read_file)},
        check=_check(session),
        cache=_cache(session),
        workers=workers,
    )


def resolve(items: Sequence[tuple[str | None, Any]], session: Session, read_file: ReadFile | None,
            *, workers: int = DEFAULT_WORKERS) -> int:
    """Resolve every reference in ``items`` (``(where, tree)``) in place; returns strings changed."""
    return resolver(session, read_file, workers=workers).resolve(items)
