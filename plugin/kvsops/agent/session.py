"""A Session served by the agent, for hosts that need the plaintext tree (the KRM function, Argo
CD, references, ``kvsops decrypt`` with options).

Parsing, value decryption and the MAC check stay in the client; recovering data keys and reading
Key Vault secrets happen in the agent, which builds the same Session the host would have built
(key policy, grant, decryption order, deadline) and checks the policy itself. When the agent is lost
(not running, killed mid-render, other keys), the rest of the run works in-process with the
Session the host would have built, or fails with ``[AGENT]`` when ``KVSOPS_AGENT=required``.
"""

from __future__ import annotations

import os
import time
from _thread import allocate_lock

from kvsops import api, policy
from kvsops.agent import client

# The KRM function and the Helm downloader import this module on every run: typing and threading
# stay off that path (see kvsops.api).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping

    from kvsops.sops.metadata import Metadata


class AgentSession(api.Session):
    def __init__(self, link: client.Link, env: Mapping[str, str], *, apply_policy: bool,
                 fallback: Callable[[], api.Session], order: Any = None,
                 deadline_seconds: float | None = None) -> None:
        super().__init__(env, order=order, deadline_seconds=deadline_seconds)
        self.remote = Remote(self, link, apply_policy, fallback)


class Remote:
    """What an :class:`AgentSession` asks the agent (``api.recover_data_key`` and the reference
    resolver call it through ``session.remote``)."""

    def __init__(self, session: api.Session, link: client.Link, apply_policy: bool,
                 fallback: Callable[[], api.Session]) -> None:
        self.session = session
        self.link = link
        self.apply_policy = apply_policy
        self._fallback = fallback
        self._local: api.Session | None = None
        self._lock = allocate_lock()

    def recover_data_key(self, md: Metadata) -> bytes:
        groups = [[[e.kind, [[k, _wire(v)] for k, v in e.fields]] for e in g] for g in md.key_groups]
        key = self._ask({"op": "recover", "groups": groups, "threshold": md.shamir_threshold})
        if isinstance(key, bytes):
            return key
        return api.recover_data_key(md, self._local_session())

    def secret_refusal(self, vault_url: str, name: str, version: str) -> str | None:
        from kvsops.refs import resolve

        found = self._ask({"op": "check_secret", "vault_url": vault_url, "name": name, "version": version})
        if found is _LOST:
            return resolve.secret_refusal(self._local_session(), vault_url, name, version)
        return None if found is None else str(found)

    def secret(self, vault_url: str, name: str, version: str) -> str:
        value = self._ask({"op": "secret", "vault_url": vault_url, "name": name, "version": version})
        if value is _LOST:
            from kvsops.azure import secrets

            return secrets.get_secret(self._local_session().ctx, vault_url, name, version).value
        return str(value)

    # ------------------------------------------------------------------ plumbing

    def spec(self) -> dict[str, object]:
        deadline = self.session.ctx.deadline
        ms = None if deadline is None else max(1, int((deadline - time.monotonic()) * 1000))
        return client.session_spec(self.session.ctx.env, policy=self.apply_policy, order=list(self.session.order),
                                   deadline_ms=ms)

    def _ask(self, request: dict[str, object]) -> object:
        """The agent's answer, or _LOST once the agent could not serve (then everything of this
        Session works in-process)."""
        if self._local is not None:
            return _LOST
        spec = self.spec()
        request["session"] = spec
        try:
            deadline_ms = spec["deadline_ms"]
            return self.link.call(request, client.wait_for(deadline_ms if isinstance(deadline_ms, int) else None))
        except client.Unavailable as exc:
            self.link.lost(exc)
            return _LOST

    def _local_session(self) -> api.Session:
        with self._lock:
            if self._local is None:
                self._local = self._fallback()
            return self._local


_LOST = object()


def _wire(value: object) -> object:
    """A key entry field for the wire: the backends read every field with ``str()``."""
    return value if value is None or isinstance(value, (str, int, bool)) else str(value)


# ----------------------------------------------------------------------------- for the hosts


def session_from_env(env: Mapping[str, str] | None = None, *, deadline_seconds: float | None = None) -> api.Session:
    """``policy.session_from_env`` (the key policy of a child of ``kvsops argocd generate``), served
    by the agent when ``KVSOPS_AGENT_SOCK`` names one."""
    env = dict(os.environ if env is None else env)
    link = client.from_env(env)
    if link is None:
        return policy.session_from_env(env, deadline_seconds=deadline_seconds)
    return AgentSession(link, env, apply_policy=True, deadline_seconds=deadline_seconds,
                        fallback=lambda: policy.session_from_env(env, deadline_seconds=deadline_seconds))


def plain_session(env: Mapping[str, str] | None = None, *, order: Any = None) -> api.Session:
    """``api.Session`` (the CLI's: no key policy), served by the agent when one is configured."""
    env = dict(os.environ if env is None else env)
    link = client.from_env(env)
    if link is None:
        return api.Session(env, order=order)
    return AgentSession(link, env, apply_policy=False, fallback=lambda: api.Session(env, order=order), order=order)
