"""Azure Key Vault keys (sops ``azure_kv``): RSA-OAEP-256 over a Key Vault RSA key.

Wire compatibility with sops: ``enc`` is base64url *without padding* of the raw RSA-OAEP-256
ciphertext; entries carry ``vault_url, name, version, created_at, enc`` (sops <= 3.12 struct order);
decryption uses the Key Vault **decrypt** operation, because sops' documented keys are created with
``--ops encrypt decrypt`` (no unwrapKey).

The team workflow this module serves: developers only need to *read* the key (``get``), because
encryption happens locally with the public key; only the renderer's identity holds ``decrypt``.
When the key cannot be read, encryption falls back to the remote ``encrypt`` operation.

The Azure SDKs are an optional extra and are imported only inside functions, so an age-only
decrypt never imports them. Configuration comes from ``ctx.env`` (see docs/azure.md); note that
azure-identity itself reads ``os.environ`` for its own variables (``AZURE_*``, ``IDENTITY_*``,
``MSI_*``) inside ``DefaultAzureCredential`` and ``ManagedIdentityCredential``: where a constructor
takes a value explicitly we pass the one from ``ctx.env``, elsewhere the SDK's own reading applies.

One credential per process and one Key Vault client (HTTP pipeline, challenge and token cache) per
vault, shared by every file; first use of each key is serialized per vault so that concurrent
files produce one challenge and one token request, later calls run in parallel.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

from kvsops import errors
from kvsops.keys.base import KeyContext, KeyFailure

KIND = "azure_kv"
LOCAL = False

ALGORITHM = "RSA-OAEP-256"
DEFAULT_DEADLINE_SECONDS = 60.0
# Retries and per-try timeouts: bounded so that one render stays well inside Argo CD's 60 s.
RETRY_TOTAL = 4
RETRY_BACKOFF_FACTOR = 0.5
RETRY_BACKOFF_MAX = 8.0
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
POOL_SIZE = 32

CREDENTIAL_KINDS = ("default", "environment", "workload_identity", "managed_identity", "azure_cli")
INSTALL_HINT = "pip install 'kvsops[azure]'"

# sops: ^(https://[^/]+)/keys/([^/]+)(/[^/]*)?$
_SPEC_RE = re.compile(r"^(https://[^/\s]+)/keys/([^/\s]+)(?:/([^/\s]*))?$")
_NAME_RE = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_VERSION_RE = re.compile(r"^[0-9A-Za-z]*$")
_JWT_RE = re.compile(r"eyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]*")

# operation -> (access-policy permission, RBAC role that grants it)
_PERMISSION = {
    "get": ("get", "Key Vault Crypto User, or Key Vault Reader"),
    "encrypt": ("encrypt", "Key Vault Crypto User"),
    "decrypt": ("decrypt", "Key Vault Crypto User"),
}

T = TypeVar("T")


# ----------------------------------------------------------------------------- key references


@dataclass(frozen=True)
class KeyRef:
    vault_url: str
    name: str
    version: str  # "" = latest (resolved before anything is written)

    @property
    def url(self) -> str:
        base = f"{self.vault_url}/keys/{self.name}"
        return f"{base}/{self.version}" if self.version else base


def parse_spec(spec: str) -> KeyRef:
    """``https://VAULT/keys/NAME[/VERSION]`` (a trailing ``/`` means latest), any cloud or Managed HSM."""
    m = _SPEC_RE.match(spec.strip())
    if not m:
        raise ValueError(
            f"invalid Azure Key Vault key URL {spec.strip()!r}: expected https://VAULT/keys/NAME[/VERSION]"
        )
    vault, name, version = m.group(1), m.group(2), m.group(3) or ""
    if not _NAME_RE.match(name) or not _VERSION_RE.match(version):
        raise ValueError(f"invalid Azure Key Vault key URL {spec.strip()!r}: bad key name or version")
    return KeyRef(vault.rstrip("/").lower().removesuffix(":443"), name, version)


def spec_from_config(entry: Mapping[str, object]) -> str:
    """A ``.sops.yaml`` key-group entry ``{vaultUrl, key, version}`` as a key URL spec."""
    vault = str(entry.get("vaultUrl") or entry.get("vault_url") or "").rstrip("/")
    name = str(entry.get("key") or entry.get("name") or "")
    version = str(entry.get("version") or "")
    if not vault or not name:
        raise ValueError("azure_keyvault entries need vaultUrl and key")
    return f"{vault}/keys/{name}/{version}" if version else f"{vault}/keys/{name}"


def _ref_from_fields(fields: Mapping[str, str]) -> KeyRef:
    try:
        vault, name, version = str(fields["vault_url"]), str(fields["name"]), str(fields["version"])
    except KeyError as exc:
        raise KeyFailure(f"azure_kv entry lacks the {exc.args[0]!r} field") from None
    if not version:
        raise KeyFailure("azure_kv entry has an empty version")
    return parse_spec(f"{vault.rstrip('/')}/keys/{name}/{version}")


def describe(fields: Mapping[str, object]) -> str:
    vault = str(fields.get("vault_url", "?")).rstrip("/")
    version = fields.get("version") or ""
    return f"azure_kv {vault}/keys/{fields.get('name', '?')}" + (f"/{version}" if version else "")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    text = text.strip()
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise KeyFailure("azure_kv entry has a malformed 'enc' (expected base64url)") from None


def _now_rfc3339() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------- settings


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
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
            verify_challenge_resource=_flag(env, "KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE", True),
            disable_instance_discovery=_flag(env, "KVSOPS_AZURE_DISABLE_INSTANCE_DISCOVERY", False),
            ca_bundle=ca,
        )


# ----------------------------------------------------------------------------- SDK plumbing


def _import_sdk() -> None:
    try:
        import azure.identity  # noqa: F401
        import azure.keyvault.keys  # noqa: F401
    except ImportError:
        raise errors.MissingDependency(
            "this file uses Azure Key Vault keys (azure_kv) but the Azure SDK is not installed",
            hint=INSTALL_HINT,
        ) from None


class _DeadlineExceeded(Exception):
    """Raised from inside the SDK pipeline when waiting longer would pass the deadline."""


def _retry_policy_class() -> type:
    from azure.core.pipeline.policies import RetryPolicy

    class DeadlineRetryPolicy(RetryPolicy):  # type: ignore[misc]
        """azure-core's retry policy (429 with Retry-After, 408/5xx, connection errors), bounded by
        the caller's deadline: a wait that would end after it fails at once, and each try's read
        timeout is capped at what is left."""

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
                raise _DeadlineExceeded()
            if wait > 0:
                transport.sleep(wait)

    return DeadlineRetryPolicy


def _transport(settings: Settings) -> Any:
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


def _credential_kwargs(settings: Settings) -> dict[str, Any]:
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


def _make_credential(settings: Settings, env: Mapping[str, str]) -> Any:
    import azure.identity as ai

    kw = _credential_kwargs(settings)
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


class _Vault:
    """One Key Vault client (one pipeline: challenge cache, token cache, connection pool)."""

    def __init__(self, key_client: Any) -> None:
        self.client = key_client
        self.first_use = threading.Lock()
        self.crypto: dict[tuple[str, str], Any] = {}
        self.warm: set[tuple[str, str]] = set()


class _AzureState:
    """Per-process, per-settings: the credential, the vault clients, and a sticky auth failure."""

    def __init__(self, settings: Settings, env: Mapping[str, str]) -> None:
        _import_sdk()
        self.settings = settings
        self.env = env
        self._lock = threading.Lock()
        self._credential: Any = None
        self._vaults: dict[str, _Vault] = {}
        self.auth_failure: str | None = None

    @property
    def credential(self) -> Any:
        with self._lock:
            if self._credential is None:
                self._credential = _make_credential(self.settings, self.env)
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

    def vault(self, vault_url: str) -> _Vault:
        cred = self.credential
        with self._lock:
            v = self._vaults.get(vault_url)
            if v is None:
                from azure.keyvault.keys import KeyClient

                client = KeyClient(
                    vault_url,
                    cred,
                    verify_challenge_resource=self.settings.verify_challenge_resource,
                    transport=_transport(self.settings),
                    retry_policy=_retry_policy_class()(
                        retry_total=RETRY_TOTAL,
                        retry_connect=2,
                        retry_read=2,
                        retry_status=RETRY_TOTAL,
                        retry_backoff_factor=RETRY_BACKOFF_FACTOR,
                        retry_backoff_max=RETRY_BACKOFF_MAX,
                    ),
                )
                v = self._vaults[vault_url] = _Vault(client)
            return v

    def crypto_client(self, ref: KeyRef) -> tuple[_Vault, Any]:
        vault = self.vault(ref.vault_url)
        key = (ref.name, ref.version)
        with self._lock:
            cc = vault.crypto.get(key)
            if cc is None:
                cc = vault.client.get_cryptography_client(ref.name, key_version=ref.version or None)
                vault.crypto[key] = cc
        return vault, cc


_STATE_LOCK = threading.Lock()


def _state(ctx: KeyContext) -> _AzureState:
    settings = Settings.from_env(ctx.env)
    with _STATE_LOCK:
        bucket = ctx.state.setdefault("azure_kv", {})
        assert isinstance(bucket, dict)
        st = bucket.get(settings)
        if st is None:
            st = bucket[settings] = _AzureState(settings, ctx.env)
        return st


# ----------------------------------------------------------------------------- calls and faults


def _deadline(ctx: KeyContext) -> float:
    return ctx.deadline if ctx.deadline is not None else time.monotonic() + DEFAULT_DEADLINE_SECONDS


def _call_kwargs(deadline: float) -> dict[str, Any]:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _DeadlineExceeded()
    return {
        "kvsops_deadline": deadline,
        "timeout": left,
        "connection_timeout": min(CONNECT_TIMEOUT, left),
        "read_timeout": min(READ_TIMEOUT, left),
    }


def _scrub(text: str) -> str:
    """One line of SDK/identity text, shortened, with anything token-shaped removed."""
    text = _JWT_RE.sub("<redacted>", " ".join(str(text).split()))
    text = re.sub(r"(?i)(access_token|client_secret|client_assertion)[\"'=: ]+[^\s,&\"']+", r"\1=<redacted>", text)
    return text[:300] + ("..." if len(text) > 300 else "")


def _error_codes(exc: Any) -> tuple[str, str]:
    err = getattr(exc, "error", None)
    code = str(getattr(err, "code", "") or "")
    inner = getattr(err, "innererror", None) or {}
    inner_code = str(inner.get("code", "") if isinstance(inner, dict) else getattr(inner, "code", "") or "")
    return code, inner_code


def _explain(exc: BaseException, op: str, ref: KeyRef, st: _AzureState, deadline: float) -> Exception:
    """Turn an SDK exception into a public, precise error; never SDK stack text or secrets."""
    from azure.core import exceptions as ae

    where = f"Azure Key Vault {op} with key {ref.url}"
    who = st.identity()
    timed_out = isinstance(exc, (_DeadlineExceeded, ae.ServiceRequestTimeoutError, ae.ServiceResponseTimeoutError))
    if timed_out or (isinstance(exc, (ae.ServiceRequestError, ae.ServiceResponseError)) and time.monotonic() >= deadline - 0.05):
        return errors.Timeout(
            f"{where} did not finish before the deadline",
            hint="raise KVSOPS_DEADLINE_SECONDS, or check the vault's throttling and network path",
        )
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ae.ClientAuthenticationError) and status is None:
        # Raised by the credential, before any vault answer: no token could be obtained.
        msg = f"{where}: could not get a token with {who}: {_scrub(getattr(exc, 'message', None) or str(exc))}"
        st.auth_failure = msg
        return KeyFailure(msg)
    if isinstance(exc, ae.HttpResponseError) and status is not None:
        code, inner = _error_codes(exc)
        detail = "/".join(c for c in (code, inner) if c)
        detail = f" [{detail}]" if detail else ""
        if status == 401:
            return KeyFailure(
                f"{where}: the vault rejected the token of {who} (HTTP 401{detail}); "
                "check that the identity's tenant is the vault's tenant"
            )
        if status == 403 and (inner == "KeyDisabled" or "disabled" in str(getattr(exc, "message", "")).lower()):
            return KeyFailure(f"{where}: the key is disabled (HTTP 403{detail}); enable it or use another version")
        if status == 403 and inner == "KeyOperationForbidden":
            return KeyFailure(
                f"{where}: the key itself does not allow '{op}' (HTTP 403{detail}); "
                f"its key operations must include {op}"
            )
        if status == 403:
            perm, role = _PERMISSION.get(op, (op, "Key Vault Crypto User"))
            return KeyFailure(
                f"{where}: {who} is not allowed (HTTP 403{detail}); it needs the '{perm}' key permission "
                f"(RBAC role {role}, or an access policy with keys/{perm})"
            )
        if status == 404:
            return KeyFailure(f"{where}: no such key or version in the vault (HTTP 404{detail})")
        if status == 429:
            return KeyFailure(f"{where}: still throttled after {RETRY_TOTAL} retries (HTTP 429{detail})")
        return KeyFailure(f"{where}: the vault answered HTTP {status}{detail} after retries")
    if isinstance(exc, (ae.ServiceRequestError, ae.ServiceResponseError)):
        return KeyFailure(f"{where}: could not reach the vault ({type(exc).__name__})")
    if isinstance(exc, ValueError) and "challenge resource" in str(exc):
        return KeyFailure(
            f"{where}: the vault host is not under the domain its authentication challenge names; "
            "for a private DNS alias set KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE=false"
        )
    return KeyFailure(f"{where}: {type(exc).__name__}: {_scrub(str(exc))}")


def _guarded(op: str, ref: KeyRef, ctx: KeyContext, st: _AzureState, fn: Callable[[dict[str, Any]], T]) -> T:
    """Run one SDK call with the deadline; serialize the first call per key within a vault."""
    from azure.core.exceptions import AzureError

    if st.auth_failure:
        raise KeyFailure(st.auth_failure)
    deadline = _deadline(ctx)
    try:
        vault = st.vault(ref.vault_url)
        key = (ref.name, ref.version)
        if key in vault.warm:
            return fn(_call_kwargs(deadline))
        with vault.first_use:
            try:
                return fn(_call_kwargs(deadline))
            finally:
                vault.warm.add(key)
    except (AzureError, _DeadlineExceeded, ValueError) as exc:
        raise _explain(exc, op, ref, st, deadline) from None


# ----------------------------------------------------------------------------- encryption


class Recipient:
    """Wraps data keys for one Key Vault key; the version is resolved (and stored) on first use."""

    kind = KIND

    def __init__(self, ref: KeyRef, ctx: KeyContext) -> None:
        self.ref = ref
        self._ctx = ctx
        self._lock = threading.Lock()
        self._public: Any = None  # cryptography RSAPublicKey, once read
        self._get_forbidden = False

    @property
    def id(self) -> str:
        """The key URL with its version; resolving a versionless URL reads the key (``get``)."""
        if not self.ref.version and not self._get_forbidden:
            self._resolve()
        return self.ref.url

    def _resolve(self) -> None:
        with self._lock:
            if self._public is not None or self._get_forbidden:
                return
            _import_sdk()
            from azure.core.exceptions import HttpResponseError

            st = _state(self._ctx)
            client = st.vault(self.ref.vault_url).client

            def get_or_none(kw: dict[str, Any]) -> Any:
                try:
                    return client.get_key(self.ref.name, self.ref.version or None, **kw)
                except HttpResponseError as exc:
                    if exc.status_code == 403 and _error_codes(exc)[1] != "KeyDisabled":
                        return None  # no read permission: encrypt remotely instead
                    raise

            key = _guarded("get", self.ref, self._ctx, st, get_or_none)
            if key is None:
                self._get_forbidden = True
                return
            self._public = self._public_key(key)
            self.ref = KeyRef(self.ref.vault_url, self.ref.name, str(key.properties.version))

    def _public_key(self, key: Any) -> Any:
        from cryptography.hazmat.primitives.asymmetric import rsa

        where = f"Azure Key Vault key {self.ref.url}"
        props = key.properties
        if props.enabled is False:
            raise KeyFailure(f"{where}: the key is disabled; enable it or use another version")
        now = _dt.datetime.now(_dt.timezone.utc)
        if (props.not_before and props.not_before > now) or (props.expires_on and props.expires_on < now):
            raise KeyFailure(f"{where}: the key is not valid now (not-before/expiry)")
        jwk = key.key
        if str(getattr(jwk.kty, "value", jwk.kty)) not in ("RSA", "RSA-HSM"):
            raise KeyFailure(f"{where}: sops needs an RSA key, this one is {jwk.kty}")
        ops = [str(getattr(o, "value", o)) for o in (jwk.key_ops or [])]
        if "encrypt" not in ops:
            raise KeyFailure(f"{where}: the key itself does not allow 'encrypt'; its key operations must include encrypt")
        return rsa.RSAPublicNumbers(int.from_bytes(jwk.e, "big"), int.from_bytes(jwk.n, "big")).public_key()

    def wrap(self, data_key: bytes) -> dict[str, str]:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        self._resolve()
        if self._public is not None:
            ct = self._public.encrypt(
                data_key, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
            )
        else:
            ct = self._remote_encrypt(data_key)
        return {
            "vault_url": self.ref.vault_url,
            "name": self.ref.name,
            "version": self.ref.version,
            "created_at": _now_rfc3339(),
            "enc": b64url(ct),
        }

    def _remote_encrypt(self, data_key: bytes) -> bytes:
        """The Key Vault encrypt operation, sent through the vault client's own pipeline (same
        challenge, token, retries): its answer's ``kid`` names the version a versionless URL used,
        which CryptographyClient's result does not report."""
        _import_sdk()
        from azure.core.exceptions import HttpResponseError
        from azure.core.rest import HttpRequest
        from azure.keyvault.keys import KeyVaultKeyIdentifier

        st = _state(self._ctx)
        ref = self.ref
        client = st.vault(ref.vault_url).client

        def encrypt(kw: dict[str, Any]) -> Any:
            # An empty version segment means "latest", as the SDK itself sends it.
            request = HttpRequest(
                "POST",
                f"{ref.vault_url}/keys/{ref.name}/{ref.version}/encrypt",
                params={"api-version": client.api_version},
                json={"alg": ALGORITHM, "value": b64url(data_key)},
            )
            response = client.send_request(request, **kw)
            if response.status_code != 200:
                raise HttpResponseError(response=response)
            return response.json()

        body = _guarded("encrypt", ref, self._ctx, st, encrypt)
        try:
            ciphertext = _b64url_decode(str(body["value"]))
            version = KeyVaultKeyIdentifier(str(body["kid"])).version or ""
        except (KeyError, TypeError, ValueError, KeyFailure):
            raise KeyFailure(f"Azure Key Vault encrypt with key {ref.url}: malformed answer") from None
        with self._lock:
            if not self.ref.version:
                self.ref = KeyRef(ref.vault_url, ref.name, version)
        if not self.ref.version:
            raise KeyFailure(f"Azure Key Vault encrypt with key {ref.url}: the answer did not name the key version")
        return ciphertext


def recipient(spec: str, ctx: KeyContext) -> Recipient:
    return Recipient(parse_spec(spec), ctx)


# ----------------------------------------------------------------------------- decryption


class Unwrapper:
    """Decrypts ``enc`` with the Key Vault decrypt operation; safe to call from many threads."""

    def __init__(self, ctx: KeyContext) -> None:
        self._ctx = ctx

    def unwrap(self, fields: Mapping[str, str]) -> bytes:
        ref = _ref_from_fields(fields)
        ciphertext = _b64url_decode(str(fields.get("enc") or ""))
        if not ciphertext:
            raise KeyFailure("azure_kv entry has an empty 'enc'")
        _import_sdk()
        from azure.keyvault.keys.crypto import EncryptionAlgorithm

        st = _state(self._ctx)
        _, cc = st.crypto_client(ref)
        result = _guarded(
            "decrypt", ref, self._ctx, st,
            lambda kw: cc.decrypt(EncryptionAlgorithm.rsa_oaep_256, ciphertext, **kw),
        )
        return bytes(result.plaintext)
