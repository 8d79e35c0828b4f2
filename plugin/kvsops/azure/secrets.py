"""Azure Key Vault *secrets* for ``ref+azurekeyvault://`` references (azure-keyvault-secrets).

The same extra, settings and plumbing as the keys backend, from ``kvsops.azure.common``: the one
credential of the process (shared with key unwraps, so one token serves both), the same transport,
deadline-bounded retry policy (429 with Retry-After, 408/5xx, connection errors) and error
scrubbing. One SecretClient per vault per process; the first call per vault is serialized so that
concurrent references produce one challenge and one token request, later calls run in parallel.

Errors name the secret URL and what is missing (which permission, which version), never a value.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvsops import errors
from kvsops.azure import common as ac
from kvsops.context import KeyContext
from kvsops.errors import KeyFailure

INSTALL_HINT = ac.INSTALL_HINT
ROLE = "Key Vault Secrets User"


@dataclass(frozen=True)
class Secret:
    value: str
    content_type: str | None
    version: str


def _import_sdk() -> None:
    ac.import_sdk(
        "azure.keyvault.secrets",
        "a ref+azurekeyvault:// reference needs the Azure SDK (azure-keyvault-secrets), which is not installed",
    )


def get_secret(ctx: KeyContext, vault_url: str, name: str, version: str = "") -> Secret:
    """Read one secret (``version`` "" = latest). Raises ReferenceFailed, Timeout or MissingDependency."""
    _import_sdk()
    from azure.keyvault.secrets import SecretClient

    url = f"{vault_url}/secrets/{name}" + (f"/{version}" if version else "")
    st = ac.state(ctx)
    try:
        secret = ac.guarded(
            ctx, st, SecretClient, vault_url, None,  # first call serialized per vault, not per secret
            lambda vault, kw: vault.client.get_secret(name, version or None, **kw),
            lambda exc, deadline: _explain(exc, url, st, deadline), errors.ReferenceFailed,
        )
    except KeyFailure as exc:  # the credential could not be built (missing variables)
        raise errors.ReferenceFailed(f"Azure Key Vault get secret {url}: {exc}") from None
    props = secret.properties
    if props.enabled is False:
        raise errors.ReferenceFailed(
            f"Azure Key Vault secret {url}: the secret is disabled; enable it or pin another version"
        )
    if secret.value is None:
        raise errors.ReferenceFailed(f"Azure Key Vault secret {url}: the answer has no value")
    return Secret(str(secret.value), props.content_type, str(props.version or ""))


def _explain(exc: BaseException, url: str, st: ac.State, deadline: float) -> Exception:
    """An SDK exception as a public, precise error (never SDK stack text, tokens or values). What a
    403 or 404 means is specific to secrets; everything else is common to keys and secrets."""
    where = f"Azure Key Vault get secret {url}"

    def specific(status: int, code: str, inner: str, detail: str, exc: BaseException) -> Exception | None:
        if status == 403 and (inner == "SecretDisabled" or "disabled" in str(getattr(exc, "message", "")).lower()):
            return errors.ReferenceFailed(
                f"{where}: the secret is disabled (HTTP 403{detail}); enable it or pin another version"
            )
        if status == 403:
            return errors.ReferenceFailed(
                f"{where}: {st.identity()} is not allowed (HTTP 403{detail}); it needs the 'get' secret permission "
                f"(RBAC role {ROLE}, or an access policy with secrets/get)"
            )
        if status == 404:
            versioned = url.count("/secrets/") and url.split("/secrets/")[1].count("/")
            what = "version of the secret" if versioned else "secret"
            return errors.ReferenceFailed(f"{where}: no such {what} in the vault (HTTP 404{detail})")
        return None

    return ac.explain(exc, where, st, deadline, errors.ReferenceFailed, specific,
                      alias_hint="the emulator or a private DNS alias")
