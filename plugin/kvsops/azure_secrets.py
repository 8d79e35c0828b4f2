"""Azure Key Vault *secrets* for ``ref+azurekeyvault://`` references (azure-keyvault-secrets).

The same extra, settings and plumbing as the keys backend (``kvsops.keys.azure_kv``): the one
credential of the process (shared with key unwraps), the same transport, deadline-bounded retry
policy (429 with Retry-After, 408/5xx, connection errors) and error scrubbing. One SecretClient per
vault per process; the first call per vault is serialized so that concurrent references produce one
challenge and one token request, later calls run in parallel.

Errors name the secret URL and what is missing (which permission, which version), never a value.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from kvsops import errors
from kvsops.keys import azure_kv as akv
from kvsops.keys.base import KeyContext, KeyFailure

INSTALL_HINT = akv.INSTALL_HINT
ROLE = "Key Vault Secrets User"

_LOCK = threading.Lock()


@dataclass(frozen=True)
class Secret:
    value: str
    content_type: str | None
    version: str


def _import_sdk() -> None:
    try:
        import azure.identity  # noqa: F401
        import azure.keyvault.secrets  # noqa: F401
    except ImportError:
        raise errors.MissingDependency(
            "a ref+azurekeyvault:// reference needs the Azure SDK (azure-keyvault-secrets), which is not installed",
            hint=INSTALL_HINT,
        ) from None


class _SecretVault:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.first_use = threading.Lock()
        self.warm = False


def _shared(ctx: KeyContext) -> Any:
    """The keys backend's per-process Azure state (credential, settings, sticky auth failure)."""
    try:
        return akv._state(ctx)
    except KeyFailure as exc:
        raise errors.ReferenceFailed(str(exc)) from None


def _vault(ctx: KeyContext, st: Any, vault_url: str) -> _SecretVault:
    cred = st.credential
    with _LOCK:
        bucket = ctx.state.setdefault("azure_secrets", {})
        assert isinstance(bucket, dict)
        key = (st.settings, vault_url)
        v = bucket.get(key)
        if v is None:
            from azure.keyvault.secrets import SecretClient

            client = SecretClient(
                vault_url,
                cred,
                verify_challenge_resource=st.settings.verify_challenge_resource,
                transport=akv._transport(st.settings),
                retry_policy=akv._retry_policy_class()(
                    retry_total=akv.RETRY_TOTAL,
                    retry_connect=2,
                    retry_read=2,
                    retry_status=akv.RETRY_TOTAL,
                    retry_backoff_factor=akv.RETRY_BACKOFF_FACTOR,
                    retry_backoff_max=akv.RETRY_BACKOFF_MAX,
                ),
            )
            v = bucket[key] = _SecretVault(client)
        return v


def get_secret(ctx: KeyContext, vault_url: str, name: str, version: str = "") -> Secret:
    """Read one secret (``version`` "" = latest). Raises ReferenceFailed, Timeout or MissingDependency."""
    _import_sdk()
    from azure.core.exceptions import AzureError

    url = f"{vault_url}/secrets/{name}" + (f"/{version}" if version else "")
    st = _shared(ctx)
    if st.auth_failure:
        raise errors.ReferenceFailed(st.auth_failure)
    deadline = ctx.deadline if ctx.deadline is not None else time.monotonic() + akv.DEFAULT_DEADLINE_SECONDS
    try:
        vault = _vault(ctx, st, vault_url)

        def call() -> Any:
            return vault.client.get_secret(name, version or None, **akv._call_kwargs(deadline))

        if vault.warm:
            secret = call()
        else:
            with vault.first_use:
                try:
                    secret = call()
                finally:
                    vault.warm = True
    except KeyFailure as exc:  # the credential could not be built (missing variables)
        raise errors.ReferenceFailed(f"Azure Key Vault get secret {url}: {exc}") from None
    except (AzureError, akv._DeadlineExceeded, ValueError) as exc:
        raise _explain(exc, url, st, deadline) from None
    props = secret.properties
    if props.enabled is False:
        raise errors.ReferenceFailed(f"Azure Key Vault secret {url}: the secret is disabled; enable it or pin another version")
    if secret.value is None:
        raise errors.ReferenceFailed(f"Azure Key Vault secret {url}: the answer has no value")
    return Secret(str(secret.value), props.content_type, str(props.version or ""))


def _explain(exc: BaseException, url: str, st: Any, deadline: float) -> errors.KvsopsError:
    """An SDK exception as a public, precise error (never SDK stack text, tokens or values)."""
    from azure.core import exceptions as ae

    where = f"Azure Key Vault get secret {url}"
    who = st.identity()
    timed_out = isinstance(exc, (akv._DeadlineExceeded, ae.ServiceRequestTimeoutError, ae.ServiceResponseTimeoutError))
    if timed_out or (isinstance(exc, (ae.ServiceRequestError, ae.ServiceResponseError)) and time.monotonic() >= deadline - 0.05):
        return errors.Timeout(
            f"{where} did not finish before the deadline",
            hint="raise KVSOPS_DEADLINE_SECONDS, or check the vault's throttling and network path",
        )
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ae.ClientAuthenticationError) and status is None:
        msg = f"{where}: could not get a token with {who}: {akv._scrub(getattr(exc, 'message', None) or str(exc))}"
        st.auth_failure = msg
        return errors.ReferenceFailed(msg)
    if isinstance(exc, ae.HttpResponseError) and status is not None:
        code, inner = akv._error_codes(exc)
        detail = "/".join(c for c in (code, inner) if c)
        detail = f" [{detail}]" if detail else ""
        if status == 401:
            return errors.ReferenceFailed(
                f"{where}: the vault rejected the token of {who} (HTTP 401{detail}); "
                "check that the identity's tenant is the vault's tenant"
            )
        if status == 403 and (inner == "SecretDisabled" or "disabled" in str(getattr(exc, "message", "")).lower()):
            return errors.ReferenceFailed(f"{where}: the secret is disabled (HTTP 403{detail}); enable it or pin another version")
        if status == 403:
            return errors.ReferenceFailed(
                f"{where}: {who} is not allowed (HTTP 403{detail}); it needs the 'get' secret permission "
                f"(RBAC role {ROLE}, or an access policy with secrets/get)"
            )
        if status == 404:
            what = "version of the secret" if url.count("/secrets/") and url.split("/secrets/")[1].count("/") else "secret"
            return errors.ReferenceFailed(f"{where}: no such {what} in the vault (HTTP 404{detail})")
        if status == 429:
            return errors.ReferenceFailed(f"{where}: still throttled after {akv.RETRY_TOTAL} retries (HTTP 429{detail})")
        return errors.ReferenceFailed(f"{where}: the vault answered HTTP {status}{detail} after retries")
    if isinstance(exc, (ae.ServiceRequestError, ae.ServiceResponseError)):
        return errors.ReferenceFailed(f"{where}: could not reach the vault ({type(exc).__name__})")
    if isinstance(exc, ValueError) and "challenge resource" in str(exc):
        return errors.ReferenceFailed(
            f"{where}: the vault host is not under the domain its authentication challenge names; "
            "for the emulator or a private DNS alias set KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE=false"
        )
    return errors.ReferenceFailed(f"{where}: {type(exc).__name__}: {akv._scrub(str(exc))}")
