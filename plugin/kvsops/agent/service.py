"""The agent's side of a request: the Session the client would have built, over shared state.

Every request builds a fresh :class:`kvsops.api.Session` from the agent's environment plus the
run's settings the request carries (decryption order, deadline, Argo CD policy inputs), with the
key policy applied exactly as ``policy.session_from_env`` applies it in-process, so a refused key is
refused here too, before any call. What survives between requests is what a render may share:

* the Azure state (``KeyContext.state``): one credential per identity with its token cache, one
  client (connection pool, challenge) per vault, bounded, and the global call :class:`Limiter`;
* the age identities, held per key environment and re-read when a key file changes;
* the data-key cache, when the agent's environment turns it on (``KVSOPS_DATA_KEY_CACHE_TTL``).

A request whose key-locating variables differ from the agent's (see ``client.identity``) is not
served: the client then works in-process with its own keys.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any, Mapping

from kvsops import api, errors, keycache, manifests, policy
from kvsops.agent import client
from kvsops.azure import common as azure_common
from kvsops.sops.metadata import KeyEntry, Metadata

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kvsops.keys.base import Unwrapper

MAX_AGE_KEYRINGS = 8  # distinct age key environments held (the policy's restricted one, mostly)
_AGE_VARIABLES = ("HOME", "XDG_CONFIG_HOME")
_AGE_COMMANDS = ("SOPS_AGE_KEY_CMD", "SOPS_AGE_SSH_PRIVATE_KEY_CMD")


class Service:
    def __init__(self, env: Mapping[str, str], *, rate: int, concurrency: int) -> None:
        self.base = {k: v for k, v in env.items() if k not in client.RUN_VARIABLES}
        self.identity = client.identity(env)
        self.limiter = azure_common.Limiter(rate, concurrency)
        self.state: dict[str, object] = {azure_common.LIMITER_KEY: self.limiter}
        self._lock = threading.Lock()
        self._age: OrderedDict[str, tuple[tuple[object, ...], Unwrapper]] = OrderedDict()
        self.counts: dict[str, int] = {}
        # The data keys this agent's Sessions share (on with KVSOPS_DATA_KEY_CACHE_TTL): held here,
        # for the agent's lifetime, not by a module.
        self.data_keys = keycache.DataKeyCache()
        self.ready = False  # set once warm() has imported what requests need

    # ------------------------------------------------------------------ sessions

    def session(self, spec: object) -> api.Session:
        if not isinstance(spec, dict):
            raise errors.UsageError("malformed agent request (session)")
        self._check_identity(spec.get("identity"))
        env = dict(self.base)
        run = spec.get("env") or {}
        if isinstance(run, dict):
            env.update({k: str(v) for k, v in run.items() if k in client.RUN_VARIABLES})
        order = spec.get("order")
        deadline_ms = spec.get("deadline_ms")
        kwargs: dict[str, Any] = {
            "order": [str(k) for k in order] if isinstance(order, list) and order else None,
            "deadline_seconds": deadline_ms / 1000 if isinstance(deadline_ms, int) and deadline_ms > 0 else None,
        }
        # what policy.session_from_env does in-process (or api.Session for the CLI: no policy)
        allowed = policy.child_allowance(env) if spec.get("policy") else None
        return policy.session_for(env, allowed, session_class=lambda **kw: _Session(self, **kw), **kwargs)

    def _check_identity(self, theirs: object) -> None:
        if theirs == self.identity:
            return
        names = set(self.identity) | (set(theirs) if isinstance(theirs, dict) else set())
        differ = sorted(n for n in names if not isinstance(theirs, dict) or theirs.get(n) != self.identity.get(n))
        raise client.Unavailable(
            "the agent holds the keys of another environment ("
            + (", ".join(differ[:8]) or "malformed request") + " differ)"
        )

    def age_unwrapper(self, ctx: Any) -> Unwrapper:
        """The age identities for this key environment, loaded once and re-read when a key file
        changes; key commands (``SOPS_AGE_KEY_CMD``) run again for every request, as in-process."""
        from kvsops.keys import age

        env = ctx.env
        if any(env.get(n) for n in _AGE_COMMANDS):
            return age.Unwrapper(ctx)
        slot = client.sha256_hex("\0".join(
            f"{k}={v}" for k, v in sorted(env.items()) if k.startswith("SOPS_AGE_") or k in _AGE_VARIABLES
        ).encode("utf-8", "surrogateescape"))
        stamp = _age_stamp(env)
        with self._lock:
            held = self._age.get(slot)
            if held is not None and held[0] == stamp:
                self._age.move_to_end(slot)
                return held[1]
            unwrapper = age.Unwrapper(ctx)
            self._age[slot] = (stamp, unwrapper)
            while len(self._age) > MAX_AGE_KEYRINGS:
                self._age.popitem(last=False)
            return unwrapper

    # ------------------------------------------------------------------ operations

    def handle(self, request: dict[str, object]) -> object:
        op = str(request.get("op") or "")
        handler = _OPS.get(op)
        if handler is None:  # a newer client than this agent: it works in-process (or fails if required)
            raise client.Unavailable(f"this agent does not serve {op[:40]!r} (an older kvsops; restart the agent)")
        try:
            return handler(self, request)
        except client.Unavailable:
            op = "declined"  # not served: the client works in-process
            raise
        finally:
            with self._lock:
                self.counts[op] = self.counts.get(op, 0) + 1

    def decrypt(self, req: dict[str, object]) -> bytes:
        """A whole file: what ``kvsops decrypt FILE`` and the Helm downloader print."""
        data, fmt, out = _bytes(req, "data"), _text(req, "fmt"), _text(req, "out")
        where = req.get("where")
        where = str(where) if where else None
        session = self.session(req.get("session"))
        dec = api.decrypt(data, fmt, session=session, ignore_mac=bool(req.get("ignore_mac")), where=where,
                          keep_ivs=False)
        indent = req.get("indent")
        config = req.get("config")
        if isinstance(config, dict):  # .sops.yaml's stores.<format>.indent, read after the decrypt as the CLI does
            from kvsops import config as sops_config

            parsed = sops_config.parse_config(_bytes(config, "data"), _text(config, "path"))
            indent = getattr(parsed.stores, _text(config, "attr"))
        return api.emit_plain(dec.docs, out, where=where, indent=indent if isinstance(indent, int) else None)

    def render_plain(self, req: dict[str, object]) -> bytes:
        """An Argo CD plain-mode render of the files a client read (kvsops.hosts.argocd.render):
        the SOPS files among them decrypted together as in-process (the first error in input
        order), every file checked and assembled (kvsops.manifests.plain_stream), and with
        ``finish`` the stream checked whole as the render's output. The client then imports no
        YAML or crypto."""
        raw = req.get("files")
        if not isinstance(raw, list):
            raise errors.UsageError("malformed agent request (files)")
        files = [_file_pair(f) for f in raw]
        what = _text(req, "what")
        session = self.session(req.get("session"))
        candidates = manifests.sops_candidates(files)
        plain = api.decrypt_files(candidates, "yaml", session=session)
        decrypted = {c[0]: p for c, p in zip(candidates, plain, strict=True) if p is not None}
        stream = manifests.plain_stream(files, decrypted)
        if req.get("finish") is True:
            return manifests.finish(stream, allow_empty=req.get("allow_empty") is True, what=what)
        manifests.check_size(stream, what)  # what the client's own checks would refuse first
        return stream

    def recover(self, req: dict[str, object]) -> bytes:
        """The data key of one file's key groups (policy, order and report as in-process)."""
        groups = req.get("groups")
        if not isinstance(groups, list):
            raise errors.UsageError("malformed agent request (groups)")
        threshold = req.get("threshold")
        md = Metadata(key_groups=tuple(_group(g) for g in groups),
                      shamir_threshold=threshold if isinstance(threshold, int) else 0)
        return api.recover_data_key(md, self.session(req.get("session")))

    def check_secret(self, req: dict[str, object]) -> str | None:
        """The key policy's refusal for a ``ref+azurekeyvault://`` secret, or None."""
        from kvsops.refs import resolve

        return resolve.secret_refusal(self.session(req.get("session")), _text(req, "vault_url"), _text(req, "name"),
                                      _text(req, "version"))

    def secret(self, req: dict[str, object]) -> str:
        from kvsops.azure import secrets
        from kvsops.refs import resolve

        session = self.session(req.get("session"))
        vault, name, version = _text(req, "vault_url"), _text(req, "name"), _text(req, "version")
        refusal = resolve.secret_refusal(session, vault, name, version)
        if refusal:
            raise errors.PolicyRefused(f"{vault}/secrets/{name}: refused by policy ({refusal})")
        return secrets.get_secret(session.ctx, vault, name, version).value

    def status(self) -> dict[str, object]:
        with self._lock:
            counts = dict(self.counts)
            keyrings = len(self._age)
        cache = self.data_keys  # the cache the Sessions use
        return {"ready": self.ready, "requests": counts, "age_keyrings": keyrings,
                "vault_clients": azure_common.client_count(self.state),
                "data_keys_cached": len(cache), "limiter": self.limiter.stats()}


_OPS = {"decrypt": Service.decrypt, "render_plain": Service.render_plain, "recover": Service.recover,
        "secret": Service.secret, "check_secret": Service.check_secret}


class _Session(api.Session):
    """A request's Session: the agent's shared state and held age identities."""

    def __init__(self, service: Service, **kwargs: Any) -> None:
        super().__init__(data_keys=service.data_keys, **kwargs)
        self.ctx.state = service.state
        self._service = service

    def unwrapper(self, kind: str) -> Unwrapper:
        if kind == "age":
            return self._service.age_unwrapper(self.ctx)
        return super().unwrapper(kind)


def _age_stamp(env: Mapping[str, str]) -> tuple[object, ...]:
    """The state of every file the age key ring reads (keyring.load_age): a change reloads it."""
    from kvsops.keys import keyring

    home = keyring.home_dir(env)
    paths = [env.get("SOPS_AGE_SSH_PRIVATE_KEY_FILE") or "", os.path.join(home, ".ssh", "id_ed25519"),
             os.path.join(home, ".ssh", "id_rsa"), env.get("SOPS_AGE_KEY_FILE") or "",
             os.path.join(keyring.user_config_dir(env), "sops", "age", "keys.txt")]
    out: list[object] = []
    for path in paths:
        try:
            st = os.stat(path) if path else None
        except OSError:
            st = None
        out.append(None if st is None else (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


def _group(raw: object) -> tuple[KeyEntry, ...]:
    if not isinstance(raw, list):
        raise errors.UsageError("malformed agent request (key group)")
    out = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], list)):
            raise errors.UsageError("malformed agent request (key entry)")
        fields = tuple((str(k), v) for k, v in (f for f in item[1] if isinstance(f, list) and len(f) == 2))
        out.append(KeyEntry(item[0], fields))
    return tuple(out)


def _file_pair(raw: object) -> tuple[str, bytes]:
    """``[where, data]``."""
    if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], str) and isinstance(raw[1], bytes)):
        raise errors.UsageError("malformed agent request (files)")
    return raw[0], raw[1]


def _bytes(req: Mapping[str, object], name: str) -> bytes:
    value = req.get(name)
    if not isinstance(value, bytes):
        raise errors.UsageError(f"malformed agent request ({name})")
    return value


def _text(req: Mapping[str, object], name: str) -> str:
    value = req.get(name)
    if not isinstance(value, str):
        raise errors.UsageError(f"malformed agent request ({name})")
    return value


def warm() -> None:
    """Import what requests will need, so that the first one does not pay for it (the Azure SDK
    only when it is installed)."""
    from kvsops.keys import age, pgp  # noqa: F401
    from kvsops.sops import values  # noqa: F401
    from kvsops.sops.stores import json_store, yaml_store  # noqa: F401

    try:
        azure_common.import_sdk("azure.keyvault.keys.crypto", "")
        azure_common.import_sdk("azure.keyvault.secrets", "")
        from kvsops.keys import azure_kv  # noqa: F401
    except errors.MissingDependency:
        pass
