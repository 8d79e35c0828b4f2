"""The client side of the agent, for every entry point: find it, ask it, or say why not.

Imported on the start-up path of ``kvsops decrypt`` and the Helm downloader, so it imports only
``_socket`` (not ``socket``: that module imports ``enum`` and ``selectors``, ~10 ms) and this
package; errors are rebuilt with :mod:`kvsops.errors`, which imports nothing.

The environment decides:

``KVSOPS_AGENT_SOCK``  the agent's socket (``eval "$(kvsops agent --start)"`` sets it)
``KVSOPS_AGENT``       ``auto`` (default: use the agent when the socket is set, else work
                       in-process), ``required`` (a missing or unreachable agent is an error) or
                       ``off`` (never use it)

Whose keys: the agent holds the keys of the environment it was started in (age identities, GnuPG
home, Azure identity). Every request carries a digest of each key-locating variable of the client's
environment (:data:`KEY_VARIABLES`, never their values: ``SOPS_AGE_KEY`` holds a private key); when
they differ from the agent's, the agent does not serve the request and the client works in-process,
so the answer never depends on whether an agent was running. Settings that belong to one run (the
decryption order, the deadline, the Argo CD key policy and grant) travel with the request instead.
"""

from __future__ import annotations

import _socket
import sys

from kvsops.agent import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

    from kvsops.errors import KvsopsError

SOCK_ENV = "KVSOPS_AGENT_SOCK"
PID_ENV = "KVSOPS_AGENT_PID"
MODE_ENV = "KVSOPS_AGENT"
MODES = ("auto", "required", "off")

# Variables that say where keys and credentials come from (compared by digest, see the docstring).
KEY_PREFIXES = ("SOPS_AGE_", "SOPS_GPG_", "AZURE_", "IDENTITY_", "MSI_", "KVSOPS_AZURE_")
KEY_NAMES = frozenset({
    "HOME", "XDG_CONFIG_HOME", "GNUPGHOME", "IMDS_ENDPOINT",
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "no_proxy", "all_proxy",
})
# Variables of one run, sent with the request and used by the agent instead of its own.
RUN_VARIABLES = (
    "SOPS_DECRYPTION_ORDER", "KVSOPS_DEADLINE_SECONDS",
    "KVSOPS_POLICY", "KVSOPS_POLICY_FILE", "KVSOPS_POLICY_GRANT", "ARGOCD_APP_PROJECT_NAME",
    "ARGOCD_APP_SOURCE_REPO_URL",
)
# When the run sets no deadline, Key Vault calls in the agent get the default one (60 s); the
# client waits that long plus a margin before it calls the agent lost.
DEFAULT_WAIT = 70.0


class Unavailable(Exception):
    """No agent answered this request (not running, killed, another version or user, other keys):
    the caller works in-process, or fails when the agent is required. The message is public."""


def mode(env: Mapping[str, str]) -> str:
    raw = (env.get(MODE_ENV) or "").strip().lower() or "auto"
    if raw in ("0", "false", "no"):
        raw = "off"
    if raw not in MODES:
        from kvsops.errors import ConfigError

        raise ConfigError(f"{MODE_ENV} must be auto, required or off")
    return raw


def from_env(env: Mapping[str, str]) -> Link | None:
    """The agent to use, or None: working in-process is the answer (no socket set, or ``off``)."""
    how = mode(env)
    if how == "off":
        return None
    path = (env.get(SOCK_ENV) or "").strip()
    if not path:
        if how == "required":
            from kvsops.errors import AgentError

            raise AgentError(f"{MODE_ENV}=required but {SOCK_ENV} is not set",
                             hint='start one with eval "$(kvsops agent --start)"')
        return None
    return Link(path, required=how == "required")


class Link:
    """One agent: ``call`` sends a request on a new connection and returns the answer's value."""

    __slots__ = ("path", "required")

    def __init__(self, path: str, *, required: bool = False) -> None:
        self.path = path
        self.required = required

    def call(self, request: Mapping[str, object], wait: float = DEFAULT_WAIT) -> object:
        """The answer's value; a KvsopsError as the agent raised it; or Unavailable."""
        answer = self._exchange(protocol.frame(request), wait)
        if not isinstance(answer, dict):
            raise Unavailable("the agent sent a malformed answer")
        if "ok" in answer:
            return answer["ok"]
        if "error" in answer and isinstance(answer["error"], dict):
            raise rebuild(answer["error"])
        raise Unavailable(str(answer.get("unavailable") or "the agent sent a malformed answer"))

    def answer_bytes(self, request: Mapping[str, object], wait: float = DEFAULT_WAIT) -> bytes | None:
        """A request answered with bytes (a decrypted file); None when the agent could not serve
        it (the caller works in-process; see :meth:`lost`)."""
        try:
            out = self.call(request, wait)
            if not isinstance(out, bytes):
                raise Unavailable("the agent sent a malformed answer")
            return out
        except Unavailable as exc:
            self.lost(exc)
            return None

    def lost(self, exc: Unavailable) -> None:
        """After an Unavailable: return (the caller works in-process), or raise when required."""
        if self.required:
            from kvsops.errors import AgentError

            raise AgentError(f"the agent at {self.path} did not serve the request: {exc}",
                             hint=f'start one with eval "$(kvsops agent --start)", or unset {MODE_ENV}=required')

    def _exchange(self, data: bytes, wait: float) -> object:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(wait)
            try:
                sock.connect(self.path)
            except OSError as exc:
                raise Unavailable(f"cannot connect ({_reason(exc)})") from None
            if not hasattr(_socket, "SO_PEERCRED"):
                raise Unavailable("this platform cannot tell who serves a socket (no SO_PEERCRED)")
            if peer_uid(sock) != _uid():
                raise Unavailable("the socket is served by another user")
            try:
                sock.sendall(data)
                head = _recv(sock, protocol.HEADER)
                body = _recv(sock, protocol.payload_length(head, protocol.MAX_ANSWER))
                return protocol.decode(body)
            except OSError as exc:
                raise Unavailable(f"the connection failed ({_reason(exc)})") from None
            except protocol.ProtocolError as exc:
                raise Unavailable(str(exc)) from None
        finally:
            sock.close()


def _recv(sock: _socket.socket, n: int) -> bytes:
    parts: list[bytes] = []
    while n > 0:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise Unavailable("the agent closed the connection before answering")
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError) or type(exc).__name__ == "timeout":
        return "timed out"
    return exc.strerror or type(exc).__name__


def _uid() -> int:
    import posix

    return posix.geteuid()


def peer_uid(sock: _socket.socket) -> int:
    """The effective uid of the process at the other end of a Unix socket (SO_PEERCRED, Linux)."""
    cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)  # struct ucred: pid, uid, gid
    return int.from_bytes(cred[4:8], sys.byteorder)


def rebuild(info: dict[str, object]) -> BaseException:
    """A KvsopsError as the agent raised it (code, message, hint, where, exit code); an unexpected
    error of the agent as an exception of the same type name (reported as ``[INTERNAL]``)."""
    from kvsops import errors

    code = str(info.get("code") or "")
    if code == "INTERNAL":
        name = str(info.get("type") or "Exception")
        internal: type[Exception] = type(name if name.isidentifier() else "Exception", (Exception,), {})
        return internal()
    classes = _classes(errors.KvsopsError)
    cls = classes.get(str(info.get("class") or "")) or next(
        (c for c in classes.values() if c.code == code), errors.KvsopsError)
    hint, where = info.get("hint"), info.get("where")
    exc: errors.KvsopsError = cls(str(info.get("message") or ""), hint=str(hint) if hint else None,
                                  where=str(where) if where else None)
    exit_code = info.get("exit")
    if code and code != exc.code:  # a class this client does not know: the agent's code and exit code
        exc.code = code
    if isinstance(exit_code, int) and exit_code != exc.exit_code:
        exc.exit_code = exit_code
    return exc


def _classes(root: type[KvsopsError]) -> dict[str, type[KvsopsError]]:
    """Every subclass of ``root`` by class name (the closest to the root first)."""
    out: dict[str, type[KvsopsError]] = {}
    for sub in root.__subclasses__():
        out.setdefault(sub.__name__, sub)
    for sub in root.__subclasses__():
        for name, cls in _classes(sub).items():
            out.setdefault(name, cls)
    return out


def error_info(exc: BaseException) -> dict[str, object]:
    """The wire form of an error (the agent's side of :func:`rebuild`): public fields only."""
    from kvsops.errors import KvsopsError

    if isinstance(exc, KvsopsError):
        return {"class": type(exc).__name__, "code": exc.code, "message": exc.message, "hint": exc.hint,
                "where": exc.where, "exit": exc.exit_code}
    return {"code": "INTERNAL", "type": type(exc).__name__}


# ----------------------------------------------------------------------------- what a request carries


def sha256_hex(data: bytes) -> str:
    try:
        from _sha256 import sha256  # type: ignore[import-not-found, unused-ignore]  # CPython 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # type: ignore[import-not-found, no-redef, unused-ignore]  # CPython >= 3.12
        except ImportError:
            from hashlib import sha256  # type: ignore[no-redef, unused-ignore]
    return str(sha256(data).hexdigest())


def is_key_variable(name: str) -> bool:
    return name in KEY_NAMES or name.startswith(KEY_PREFIXES)


def identity(env: Mapping[str, str]) -> dict[str, str]:
    """A digest of each key-locating variable set in ``env`` (never the values themselves)."""
    return {k: sha256_hex(v.encode("utf-8", "surrogateescape")) for k, v in env.items() if is_key_variable(k)}


def run_settings(env: Mapping[str, str]) -> dict[str, str]:
    return {k: env[k] for k in RUN_VARIABLES if k in env}


def session_spec(env: Mapping[str, str], *, policy: bool, order: list[str] | None = None,
                 deadline_ms: int | None = None) -> dict[str, object]:
    """What the agent needs to build the Session this client would have built: the run's settings,
    whether the Argo CD key policy applies (``policy.session_from_env``) and whose keys to use."""
    return {"env": run_settings(env), "policy": policy, "order": order, "deadline_ms": deadline_ms,
            "identity": identity(env)}


def wait_for(deadline_ms: int | None) -> float:
    """How long a client waits for the agent: the run's deadline (the agent's calls end there)
    plus a margin, or the default."""
    return DEFAULT_WAIT if deadline_ms is None else deadline_ms / 1000 + 10.0


def env_deadline_ms(env: Mapping[str, str]) -> int | None:
    """``KVSOPS_DEADLINE_SECONDS`` in milliseconds (None when unset or invalid: the agent reports a
    bad value, as the Session does in-process)."""
    try:
        seconds = float(env.get("KVSOPS_DEADLINE_SECONDS") or "")
    except ValueError:
        return None
    return int(seconds * 1000) if seconds > 0 else None
