"""Azure Key Vault plumbing shared by keys (``kvsops.keys.azure_kv``) and secrets (``kvsops.azure.secrets``).

Settings from the injected environment (``ctx.env``, see docs/azure.md), the lazy SDK import with
its install hint, the transport, the deadline-bounded retry policy (429 with Retry-After, 408/5xx,
connection errors), credential selection (``KVSOPS_AZURE_CREDENTIAL``), the per-process state (one
credential, one client per vault and client class), deadline helpers, and the classification of
SDK errors into public messages with anything token-shaped scrubbed.

The Azure SDKs are an optional extra and are imported only inside functions, so importing this
module (as an age-only decrypt does, through the keys backend) never imports them. Note that
azure-identity itself reads ``os.environ`` for its own variables (``AZURE_*``, ``IDENTITY_*``,
``MSI_*``) inside ``DefaultAzureCredential`` and ``ManagedIdentityCredential``: where a constructor
takes a value explicitly we pass the one from ``ctx.env``, elsewhere the SDK's own reading applies.

One credential per process (per Session's KeyContext state and per settings), shared by key
operations and secret reads, so one token serves both; one client (HTTP pipeline, challenge and
token cache, connection pool) per vault and client class. The first use of each resource is
serialized per vault so that concurrent callers produce one challenge and one token request, later
calls run in parallel.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

from kvsops import errors
from kvsops.context import KeyContext
from kvsops.errors import KeyFailure

DEFAULT_DEADLINE_SECONDS = 60.0
# Retries and per-try timeouts: bounded so that one render stays well inside Argo CD's 60 s.
RETRY_TOTAL = 4
RETRY_BACKOFF_FACTOR = 0.5
RETRY_BACKOFF_MAX = 8.0
# In the agent (a Limiter paces every caller of the vault), a 429 with Retry-After does not use the
# retry budget above: it is retried until the deadline, at most this many times.
THROTTLE_RETRIES = 30
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
POOL_SIZE = 32
# A long-running process (the agent) keeps clients for the vaults and keys files name: bounded,
# since file metadata (repository content) chooses them. The oldest goes first.
MAX_VAULTS = 64
MAX_KEY_CLIENTS = 256
# KeyContext.state key of a process-wide Limiter (set by the agent; in-process renders have none).
LIMITER_KEY = "azure.limiter"

CREDENTIAL_KINDS = ("default", "environment", "workload_identity", "managed_identity", "azure_cli")
INSTALL_HINT = "pip install 'kvsops[azure]'"
CREDENTIAL_HINT = (
    "give the process an Azure identity: AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or "
    "AZURE_CLIENT_CERTIFICATE_PATH) for a service principal, AZURE_FEDERATED_TOKEN_FILE too for workload "
    "identity, or 'az login'; KVSOPS_AZURE_CREDENTIAL=environment|workload_identity|managed_identity|azure_cli "
    "tries that one alone (docs/azure.md)"
)

_JWT_RE = re.compile(r"eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*")
_STATE_KEY = "azure"

T = TypeVar("T")


# ----------------------------------------------------------------------------- settings


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise errors.ConfigError(f"{name} must be true or false")


@dataclass(frozen=True)
class Settings:
    credential: str
    verify_challenge_resource: bool
    disable_instance_discovery: bool
    ca_bundle: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Settings":
        kind = env.get("KVSOPS_AZURE_CREDENTIAL", "").strip().lower().replace("-", "_") or "default"
        if kind not in CREDENTIAL_KINDS:
            raise errors.ConfigError(
                f"KVSOPS_AZURE_CREDENTIAL must be one of {', '.join(CREDENTIAL_KINDS)}"
            )
        ca = env.get("REQUESTS_CA_BUNDLE") or env.get("CURL_CA_BUNDLE") or env.get("SSL_CERT_FILE") or None
        return cls(
            credential=kind,
            verify_challenge_resource=flag(env, "KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE", True),
            disable_instance_discovery=flag(env, "KVSOPS_AZURE_DISABLE_INSTANCE_DISCOVERY", False),
            ca_bundle=ca,
        )


# ----------------------------------------------------------------------------- SDK plumbing


# The SDK modules kvsops uses (with the attribute azure-core loads lazily on first access), all loaded
# by import_sdk before any use.
_SDK_MODULES = (
    ("azure.core.exceptions", ""),
    ("azure.core.pipeline.policies", ""),
    ("azure.core.pipeline.transport", "RequestsTransport"),
    ("azure.core.rest", ""),
    ("azure.identity", ""),
)
_IMPORT_LOCK = threading.Lock()


def import_sdk(client_module: str, message: str) -> None:
    """Import the SDK (the modules above, azure-identity and ``client_module``), or fail with the
    install hint. Under one lock: threads that unwrap several files' data keys at once, and the
    agent's warm-up thread beside its request threads, would otherwise import the SDK concurrently
    and in different orders, and a concurrent import of packages with import cycles fails at random
    (an ImportError from a partially initialised module, which read as "not installed", or
    importlib's _DeadlockError)."""
    import importlib

    with _IMPORT_LOCK:  # once imported, each call is a few sys.modules look-ups
        try:
            for name, attr in (*_SDK_MODULES, (client_module, "")):
                module = importlib.import_module(name)
                if attr:
                    getattr(module, attr)
        except ImportError:
            raise errors.MissingDependency(message, hint=INSTALL_HINT) from None
        sdk_logging()


def sdk_logging() -> None:
    """The SDKs log through ``logging``; with no handler configured, Python prints their warnings
    (azure-identity's whole credential chain, twice) on stderr beside kvsops' one message. kvsops
    says what failed itself (see explain), so their loggers get a NullHandler, or with --debug /
    KVSOPS_DEBUG a stderr handler in kvsops' voice. Once per process; an application that
    configured logging itself still receives the records (they propagate)."""
    import logging

    from kvsops import report

    log = logging.getLogger("azure")
    if any(h.get_name() == "kvsops" for h in log.handlers):
        return
    handler: logging.Handler
    if report.debug_mode:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("kvsops: debug: %(name)s: %(message)s"))
    else:
        handler = logging.NullHandler()
    handler.set_name("kvsops")
    log.addHandler(handler)


class DeadlineExceeded(Exception):
    """Raised from inside the SDK pipeline when waiting longer would pass the deadline."""


def retry_policy_class() -> type:
    from azure.core.pipeline.policies import RetryPolicy

    class DeadlineRetryPolicy(RetryPolicy):  # type: ignore[type-arg]
        """azure-core's retry policy (429 with Retry-After, 408/5xx, connection errors), bounded by
        the caller's deadline: a wait that would end after it fails at once, and each try's read
        timeout is capped at what is left."""

        def send(self, request: Any) -> Any:
            # The Limiter's policy runs per try, after this one has taken the option: keep it.
            request.context["kvsops_deadline"] = request.context.options.get("kvsops_deadline")
            return super().send(request)

        throttle_retries = 0

        def increment(self, settings: dict[str, Any], response: Any = None, error: Any = None) -> bool:
            http = getattr(response, "http_response", None)
            if (error is None and http is not None and http.status_code == 429
                    and settings.get("throttled", 0) < self.throttle_retries):
                settings["throttled"] = settings.get("throttled", 0) + 1
                settings["total"] += 1  # given back: only the deadline bounds waiting out throttling
                settings["status"] += 1
            return bool(super().increment(settings, response, error))

        def configure_retries(self, options: dict[str, Any]) -> dict[str, Any]:
            deadline = options.pop("kvsops_deadline", None)
            settings: dict[str, Any] = super().configure_retries(options)
            settings["kvsops_deadline"] = deadline
            return settings

        def _configure_timeout(self, request: Any, absolute_timeout: float, is_response_error: bool) -> None:
            super()._configure_timeout(request, absolute_timeout, is_response_error)
            read = request.context.options.get("read_timeout", READ_TIMEOUT)
            request.context.options["read_timeout"] = max(0.05, min(read, absolute_timeout))

        def sleep(self, settings: dict[str, Any], transport: Any, response: Any = None) -> None:
            wait = (self.get_retry_after(response) if response is not None else None) or self.get_backoff_time(settings)
            deadline = settings.get("kvsops_deadline")
            if deadline is not None and time.monotonic() + wait >= deadline:
                raise DeadlineExceeded()
            if wait > 0:
                transport.sleep(wait)

    return DeadlineRetryPolicy


def retry_policy(throttle_retries: int = 0) -> Any:
    """The retry policy of a vault client: RETRY_TOTAL tries, bounded by the call's deadline; plus
    ``throttle_retries`` for 429 answers (see THROTTLE_RETRIES)."""
    policy = retry_policy_class()(
        retry_total=RETRY_TOTAL,
        retry_connect=2,
        retry_read=2,
        retry_status=RETRY_TOTAL,
        retry_backoff_factor=RETRY_BACKOFF_FACTOR,
        retry_backoff_max=RETRY_BACKOFF_MAX,
    )
    policy.throttle_retries = throttle_retries
    return policy


def transport(settings: Settings) -> Any:
    import requests
    from azure.core.pipeline.transport import RequestsTransport

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    kwargs: dict[str, Any] = {"session": session, "session_owner": False}
    kwargs["connection_timeout"] = CONNECT_TIMEOUT
    kwargs["read_timeout"] = READ_TIMEOUT
    if settings.ca_bundle:
        kwargs["connection_verify"] = settings.ca_bundle
    return RequestsTransport(**kwargs)


def credential_kwargs(settings: Settings) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "retry_total": 3,
        "retry_backoff_factor": RETRY_BACKOFF_FACTOR,
        "retry_backoff_max": RETRY_BACKOFF_MAX,
        "connection_timeout": CONNECT_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
    }
    if settings.ca_bundle:
        kw["connection_verify"] = settings.ca_bundle
    return kw


def make_credential(settings: Settings, env: Mapping[str, str]) -> Any:
    """The credential ``KVSOPS_AZURE_CREDENTIAL`` names; KeyFailure when its variables are missing."""
    import azure.identity as ai

    kw = credential_kwargs(settings)
    authority = env.get("AZURE_AUTHORITY_HOST") or None
    tenant, client = env.get("AZURE_TENANT_ID") or None, env.get("AZURE_CLIENT_ID") or None
    kind = settings.credential
    if kind == "default":
        if settings.disable_instance_discovery:
            kw["disable_instance_discovery"] = True
        return ai.DefaultAzureCredential(authority=authority, **kw)
    if kind == "environment":
        if not (tenant and client):
            raise KeyFailure("the environment credential needs AZURE_TENANT_ID and AZURE_CLIENT_ID")
        if settings.disable_instance_discovery:
            kw["disable_instance_discovery"] = True
        if env.get("AZURE_CLIENT_SECRET"):
            return ai.ClientSecretCredential(tenant, client, env["AZURE_CLIENT_SECRET"], authority=authority, **kw)
        if env.get("AZURE_CLIENT_CERTIFICATE_PATH"):
            return ai.CertificateCredential(
                tenant,
                client,
                env["AZURE_CLIENT_CERTIFICATE_PATH"],
                password=env.get("AZURE_CLIENT_CERTIFICATE_PASSWORD") or None,
                authority=authority,
                **kw,
            )
        raise KeyFailure("the environment credential needs AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH")
    if kind == "workload_identity":
        token_file = env.get("AZURE_FEDERATED_TOKEN_FILE")
        if not (tenant and client and token_file):
            raise KeyFailure(
                "the workload identity credential needs AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_FEDERATED_TOKEN_FILE"
            )
        return ai.WorkloadIdentityCredential(
            tenant_id=tenant, client_id=client, token_file_path=token_file, authority=authority, **kw
        )
    if kind == "managed_identity":
        return ai.ManagedIdentityCredential(client_id=client, **kw)
    return ai.AzureCliCredential(tenant_id=tenant or "", process_timeout=10)


# ----------------------------------------------------------------------------- call limits


class Limiter:
    """A bound on Key Vault requests for the whole process (every vault, key and secret client):
    at most ``concurrency`` at once and ``rate`` started in any window of WINDOW seconds; after a 429 with
    ``Retry-After``, every request to that vault waits until it has passed (not only the one that
    was refused). Waits end at the request's deadline (DeadlineExceeded). Key Vault allows 4,000
    operations per 10 s per vault for RSA-2048 software keys (2,000 for HSM keys, fewer for larger
    keys, see docs/azure.md); the default rate leaves room for everything else using the vault.

    Requests to one vault go in arrival order: a request retried after a 429 queues behind those
    that were already waiting, so no one request spends its retries while others get through."""

    # The window is a little longer than a second: what the vault sees in one second must stay
    # within the rate although a request's way to it varies (a new TLS connection, a busy machine).
    WINDOW = 1.1

    def __init__(self, rate: int, concurrency: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate < 1 or concurrency < 1:
            raise errors.ConfigError("the Key Vault call rate and concurrency must be at least 1")
        self.rate, self.concurrency = rate, concurrency
        self._clock = clock
        self._cond = threading.Condition()
        self._starts: deque[float] = deque()
        self._active = 0
        self._hold: dict[str, float] = {}
        self._queues: dict[str, deque[object]] = {}
        self.calls = self.throttled = 0
        self.waited = 0.0

    def acquire(self, vault: str, deadline: float | None) -> None:
        ticket = object()
        with self._cond:
            queue = self._queues.setdefault(vault, deque())
            queue.append(ticket)
            try:
                self._wait_turn(vault, queue, ticket, deadline)
            finally:
                queue.remove(ticket)
                if not queue:
                    del self._queues[vault]
                self._cond.notify_all()

    def _wait_turn(self, vault: str, queue: deque[object], ticket: object, deadline: float | None) -> None:
        first = now = self._clock()
        while True:
            while self._starts and self._starts[0] <= now - self.WINDOW:
                self._starts.popleft()
            ready = self._hold.get(vault, 0.0)
            if len(self._starts) >= self.rate:
                ready = max(ready, self._starts[0] + self.WINDOW)
            if ready <= now and self._active < self.concurrency and queue[0] is ticket:
                break
            if deadline is not None and max(ready, now) >= deadline:
                raise DeadlineExceeded()
            wake = ready if ready > now else deadline
            self._cond.wait(None if wake is None else wake - now)
            now = self._clock()
        self._starts.append(now)
        self._active += 1
        self.calls += 1
        self.waited += now - first

    def release(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def hold(self, vault: str, seconds: float) -> None:
        with self._cond:
            now = self._clock()
            self.throttled += 1
            if len(self._hold) > MAX_VAULTS:
                self._hold = {v: t for v, t in self._hold.items() if t > now}
            self._hold[vault] = max(self._hold.get(vault, 0.0), now + seconds)
            self._cond.notify_all()

    def stats(self) -> dict[str, object]:
        with self._cond:
            return {"rate": self.rate, "concurrency": self.concurrency, "calls": self.calls,
                    "throttled": self.throttled, "waited_ms": int(self.waited * 1000)}


def limit_policy(limiter: Limiter, vault_url: str) -> Any:
    """A per-try pipeline policy (the client's ``custom_hook_policy`` slot, after retries and the
    challenge) that runs every request to ``vault_url`` through ``limiter``."""
    from azure.core.pipeline.policies import HTTPPolicy, RetryPolicy

    retry_after = RetryPolicy(retry_total=0).get_retry_after

    class LimitPolicy(HTTPPolicy):  # type: ignore[type-arg]
        def send(self, request: Any) -> Any:
            limiter.acquire(vault_url, request.context.get("kvsops_deadline"))
            try:
                response = self.next.send(request)
            finally:
                limiter.release()
            if response.http_response.status_code == 429:
                limiter.hold(vault_url, retry_after(response) or 1.0)
            return response

    return LimitPolicy()


# ----------------------------------------------------------------------------- per-process state


class Vault:
    """One vault client (one pipeline: challenge cache, token cache, connection pool), its
    sub-clients (e.g. cryptography clients per key), and which resources have been used once."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.first_use = threading.Lock()
        self.warm: set[object] = set()
        self._lock = threading.Lock()
        self._children: OrderedDict[object, Any] = OrderedDict()

    def child(self, key: object, make: Callable[[Any], Any]) -> Any:
        """A sub-client made once per key from this vault's client (the oldest of more than
        MAX_KEY_CLIENTS goes)."""
        with self._lock:
            c = self._children.get(key)
            if c is None:
                c = self._children[key] = make(self.client)
                if len(self._children) > MAX_KEY_CLIENTS:
                    self._children.popitem(last=False)
            return c

    def once_first(self, resource: object, fn: Callable[[], T]) -> T:
        """Run ``fn``; the first call for ``resource`` in this vault waits for any other first call,
        so that concurrent callers share one challenge and one token request."""
        if resource in self.warm:
            return fn()
        with self.first_use:
            try:
                return fn()
            finally:
                self.warm.add(resource)


class State:
    """Per-process, per-settings: the credential, the vault clients, and a sticky auth failure."""

    def __init__(self, settings: Settings, env: Mapping[str, str], limiter: Limiter | None = None) -> None:
        import_sdk("azure.core", "Azure Key Vault needs the Azure SDK, which is not installed")
        self.settings = settings
        self.env = env
        self.limiter = limiter
        self._lock = threading.Lock()
        self._credential: Any = None
        self._vaults: OrderedDict[tuple[type, str], Vault] = OrderedDict()
        self.auth_failure: str | None = None

    @property
    def credential(self) -> Any:
        with self._lock:
            if self._credential is None:
                self._credential = make_credential(self.settings, self.env)
            return self._credential

    def identity(self) -> str:
        """The identity kind, for messages (never a client id, secret or token)."""
        names = {
            "default": "DefaultAzureCredential",
            "environment": "environment service principal",
            "workload_identity": "workload identity",
            "managed_identity": "managed identity",
            "azure_cli": "Azure CLI login",
        }
        label = names[self.settings.credential]
        used = getattr(self._credential, "_successful_credential", None)  # set by the chain on success
        if used is not None:
            label += f" ({type(used).__name__})"
        return label

    def vault(self, client_class: type, vault_url: str) -> Vault:
        """The one ``client_class`` (KeyClient, SecretClient) for this vault, on the shared credential."""
        cred = self.credential
        with self._lock:
            v = self._vaults.get((client_class, vault_url))
            if v is None:
                extra = {} if self.limiter is None else {"custom_hook_policy": limit_policy(self.limiter, vault_url)}
                client = client_class(
                    vault_url,
                    cred,
                    verify_challenge_resource=self.settings.verify_challenge_resource,
                    transport=transport(self.settings),
                    retry_policy=retry_policy(0 if self.limiter is None else THROTTLE_RETRIES),
                    **extra,
                )
                v = self._vaults[(client_class, vault_url)] = Vault(client)
                if len(self._vaults) > MAX_VAULTS:
                    self._vaults.popitem(last=False)
            return v

    def client_count(self) -> int:
        with self._lock:
            return len(self._vaults)


_STATE_LOCK = threading.Lock()


def state(ctx: KeyContext) -> State:
    """The Azure state of ``ctx`` (its Session) for the settings its environment names."""
    settings = Settings.from_env(ctx.env)
    with _STATE_LOCK:
        bucket = ctx.state.setdefault(_STATE_KEY, {})
        assert isinstance(bucket, dict)
        st = bucket.get(settings)
        if st is None:
            limiter = ctx.state.get(LIMITER_KEY)
            st = bucket[settings] = State(settings, ctx.env, limiter if isinstance(limiter, Limiter) else None)
        return st


def client_count(shared: Mapping[str, object]) -> int:
    """Vault clients held in a KeyContext state (for the agent's status)."""
    bucket = shared.get(_STATE_KEY)
    return sum(st.client_count() for st in bucket.values()) if isinstance(bucket, dict) else 0


# ----------------------------------------------------------------------------- calls and faults


def deadline(ctx: KeyContext) -> float:
    return ctx.deadline if ctx.deadline is not None else time.monotonic() + DEFAULT_DEADLINE_SECONDS


def call_kwargs(deadline: float) -> dict[str, Any]:
    """Per-call SDK options: the deadline for the retry policy and timeouts capped at what is left."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded()
    return {
        "kvsops_deadline": deadline,
        "timeout": left,
        "connection_timeout": min(CONNECT_TIMEOUT, left),
        "read_timeout": min(READ_TIMEOUT, left),
    }


def scrub(text: str, limit: int = 300) -> str:
    """One line of SDK/identity text, with anything token-shaped removed; a long text is shortened
    at a word boundary (never mid-word) and says so."""
    text = _JWT_RE.sub("<redacted>", " ".join(str(text).split()))
    text = re.sub(r"(?i)(access_token|client_secret|client_assertion)[\"'=: ]+[^\s,&\"']+", r"\1=<redacted>", text)
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:") + " (shortened)"


# DefaultAzureCredential's sources (azure-identity class names) in kvsops' words.
_SOURCES = {
    "EnvironmentCredential": "environment (service principal)",
    "WorkloadIdentityCredential": "workload identity",
    "ManagedIdentityCredential": "managed identity",
    "SharedTokenCacheCredential": "shared token cache",
    "VisualStudioCodeCredential": "VS Code",
    "AzureCliCredential": "Azure CLI",
    "AzurePowerShellCredential": "Azure PowerShell",
    "AzureDeveloperCliCredential": "Azure Developer CLI",
    "BrokerCredential": "broker",
    "InteractiveBrowserCredential": "browser",
}
# Why a source was unavailable, from azure-identity's wording (first match, lower case) to ours.
_REASONS = (
    ("environment variables are not fully configured",
     "AZURE_TENANT_ID, AZURE_CLIENT_ID and a secret or certificate not set"),
    ("missing required arguments", "AZURE_FEDERATED_TOKEN_FILE, AZURE_TENANT_ID and AZURE_CLIENT_ID not set"),
    ("not fully configured", "not configured"),
    ("no response from the imds endpoint", "no endpoint answered (not on an Azure host?)"),
    ("imds", "no endpoint answered"),
    ("no accounts were found", "no signed-in account"),
    ("azure-identity-broker", "needs the azure-identity-broker package"),
    ("not found on path", "not installed"),
    ("not installed", "not installed"),
    ("could not be found", "not installed"),
    ("az login", "not logged in (az login)"),
    ("azd auth login", "not logged in (azd auth login)"),
    ("connect-azaccount", "not logged in (Connect-AzAccount)"),
    ("timed out", "timed out"),
)


def credential_summary(text: str) -> str:
    """What a failed credential tried and why each source failed, in kvsops' words: one short line
    instead of azure-identity's multi-line chain report (which is logged, not printed)."""
    tried = []
    for line in str(text).splitlines():
        name, sep, reason = line.strip().partition(": ")
        if line.startswith(("\t", " ")) and sep and name in _SOURCES:
            tried.append(f"{_SOURCES[name]}: {_reason(reason)}")
    if tried:
        return "tried " + "; ".join(tried)
    return _reason(text)


def _reason(text: str) -> str:
    low = text.lower()
    for needle, ours in _REASONS:
        if needle in low:
            return ours
    first = re.sub(r"^\w*Credential:?\s*", "", scrub(text, 200))  # the SDK names the class first
    return first.split(". ", 1)[0].rstrip(".") or "failed"


def error_codes(exc: Any) -> tuple[str, str]:
    """The Key Vault error code and inner error code of an HttpResponseError ("" when absent)."""
    err = getattr(exc, "error", None)
    code = str(getattr(err, "code", "") or "")
    inner = getattr(err, "innererror", None) or {}
    inner_code = str(inner.get("code", "") if isinstance(inner, dict) else getattr(inner, "code", "") or "")
    return code, inner_code


# (status, code, inner code, " [code/inner]" or "", exc) -> the resource's own error, or None
Specific = Callable[[int, str, str, str, BaseException], "Exception | None"]


def explain(exc: BaseException, where: str, st: State, deadline: float, fail: Callable[..., Exception],
            specific: Specific, alias_hint: str = "a private DNS alias") -> Exception:
    """Turn an SDK exception into a public, precise error; never SDK stack text or secrets.

    ``where`` names the operation and resource; ``fail`` builds the caller's error type from a
    message; ``specific`` explains the statuses whose meaning depends on the resource (403, 404).
    A token failure is remembered on ``st`` so later calls fail at once."""
    from azure.core import exceptions as ae

    who = st.identity()
    timed_out = isinstance(exc, (DeadlineExceeded, ae.ServiceRequestTimeoutError, ae.ServiceResponseTimeoutError))
    unreachable = isinstance(exc, (ae.ServiceRequestError, ae.ServiceResponseError))
    if timed_out or (unreachable and time.monotonic() >= deadline - 0.05):
        return errors.Timeout(
            f"{where} did not finish before the deadline",
            hint="raise KVSOPS_DEADLINE_SECONDS, or check the vault's throttling and network path",
        )
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ae.ClientAuthenticationError) and status is None:
        # Raised by the credential, before any vault answer: no token could be obtained.
        why = credential_summary(getattr(exc, "message", None) or str(exc))
        msg = f"{where}: could not get a token with {who} ({why})"
        st.auth_failure = msg
        return fail(msg, hint=CREDENTIAL_HINT)
    if isinstance(exc, ae.HttpResponseError) and status is not None:
        code, inner = error_codes(exc)
        detail = "/".join(c for c in (code, inner) if c)
        detail = f" [{detail}]" if detail else ""
        if status == 401:
            return fail(
                f"{where}: the vault rejected the token of {who} (HTTP 401{detail}); "
                "check that the identity's tenant is the vault's tenant"
            )
        own = specific(status, code, inner, detail, exc)
        if own is not None:
            return own
        if status == 429:
            retries = RETRY_TOTAL + (0 if st.limiter is None else THROTTLE_RETRIES)
            return fail(f"{where}: still throttled after {retries} retries (HTTP 429{detail})")
        return fail(f"{where}: the vault answered HTTP {status}{detail} after retries")
    if isinstance(exc, (ae.ServiceRequestError, ae.ServiceResponseError)):
        return fail(f"{where}: could not reach the vault ({type(exc).__name__})")
    if isinstance(exc, ValueError) and "challenge resource" in str(exc):
        return fail(
            f"{where}: the vault host is not under the domain its authentication challenge names; "
            f"for {alias_hint} set KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE=false"
        )
    return fail(f"{where}: {type(exc).__name__}: {scrub(str(exc))}")


def guarded(ctx: KeyContext, st: State, client_class: type, vault_url: str, resource: object,
            fn: Callable[[Vault, dict[str, Any]], T], on_error: Callable[[BaseException, float], Exception],
            fail: Callable[..., Exception]) -> T:
    """Run one SDK call on the vault's ``client_class`` client within the deadline of ``ctx``; the
    first call per ``resource`` of a vault is serialized (see Vault.once_first). A remembered token
    failure fails at once; SDK errors go through ``on_error(exc, deadline)`` (see explain). A credential that
    cannot be built raises KeyFailure."""
    from azure.core.exceptions import AzureError

    if st.auth_failure:
        raise fail(st.auth_failure, hint=CREDENTIAL_HINT)
    dl = deadline(ctx)
    try:
        vault = st.vault(client_class, vault_url)
        return vault.once_first(resource, lambda: fn(vault, call_kwargs(dl)))
    except (AzureError, DeadlineExceeded, ValueError) as exc:
        raise on_error(exc, dl) from None
