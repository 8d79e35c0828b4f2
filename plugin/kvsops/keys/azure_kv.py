"""Azure Key Vault keys (sops ``azure_kv``): RSA-OAEP-256 over a Key Vault RSA key.

Wire compatibility with sops: ``enc`` is base64url *without padding* of the raw RSA-OAEP-256
ciphertext; entries carry ``vault_url, name, version, created_at, enc`` (sops <= 3.12 struct order);
decryption uses the Key Vault **decrypt** operation, because sops' documented keys are created with
``--ops encrypt decrypt`` (no unwrapKey).

The team workflow this module serves: developers only need to *read* the key (``get``), because
encryption happens locally with the public key; only the renderer's identity holds ``decrypt``.
When the key cannot be read, encryption falls back to the remote ``encrypt`` operation.

The Azure SDKs are an optional extra and are imported only inside functions, so an age-only
decrypt never imports them. Settings, credential, clients, retries, deadline and the common error
classification live in ``kvsops.azure.common`` (shared with Key Vault secrets, see docs/azure.md):
one credential per process, shared with secret references, and one KeyClient per vault, shared by
every file; first use of each key is serialized per vault so that concurrent files produce one
challenge and one token request, later calls run in parallel.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, TypeVar

from kvsops.azure import common as ac
from kvsops.keys.base import KeyContext, KeyFailure

KIND = "azure_kv"
LOCAL = False

ALGORITHM = "RSA-OAEP-256"

# sops: ^(https://[^/]+)/keys/([^/]+)(/[^/]*)?$
_SPEC_RE = re.compile(r"^(https://[^/\s]+)/keys/([^/\s]+)(?:/([^/\s]*))?$")
_NAME_RE = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_VERSION_RE = re.compile(r"^[0-9A-Za-z]*$")

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


# ----------------------------------------------------------------------------- calls and faults


def _import_sdk() -> None:
    ac.import_sdk("azure.keyvault.keys", "this file uses Azure Key Vault keys (azure_kv) but the Azure SDK is not installed")


def _key_client() -> type:
    from azure.keyvault.keys import KeyClient

    return KeyClient


def _explain(exc: BaseException, op: str, ref: KeyRef, st: ac.State, deadline: float) -> Exception:
    """Turn an SDK exception into a public, precise error; never SDK stack text or secrets. What a
    403 or 404 means is specific to keys; everything else is common to keys and secrets."""
    where = f"Azure Key Vault {op} with key {ref.url}"

    def specific(status: int, code: str, inner: str, detail: str, exc: BaseException) -> Exception | None:
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
                f"{where}: {st.identity()} is not allowed (HTTP 403{detail}); it needs the '{perm}' key permission "
                f"(RBAC role {role}, or an access policy with keys/{perm})"
            )
        if status == 404:
            return KeyFailure(f"{where}: no such key or version in the vault (HTTP 404{detail})")
        return None

    return ac.explain(exc, where, st, deadline, KeyFailure, specific)


def _guarded(op: str, ref: KeyRef, ctx: KeyContext, st: ac.State, fn: Callable[[dict[str, Any]], T]) -> T:
    """Run one SDK call with the deadline; serialize the first call per key within a vault."""
    return ac.guarded(
        ctx, st, _key_client(), ref.vault_url, (ref.name, ref.version), lambda _vault, kw: fn(kw),
        lambda exc, deadline: _explain(exc, op, ref, st, deadline), KeyFailure,
    )


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

            st = ac.state(self._ctx)
            client = st.vault(_key_client(), self.ref.vault_url).client

            def get_or_none(kw: dict[str, Any]) -> Any:
                try:
                    return client.get_key(self.ref.name, self.ref.version or None, **kw)
                except HttpResponseError as exc:
                    if exc.status_code == 403 and ac.error_codes(exc)[1] != "KeyDisabled":
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

        st = ac.state(self._ctx)
        ref = self.ref
        client = st.vault(_key_client(), ref.vault_url).client

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

        st = ac.state(self._ctx)
        cc = st.vault(_key_client(), ref.vault_url).child(
            (ref.name, ref.version), lambda client: client.get_cryptography_client(ref.name, key_version=ref.version or None)
        )
        result = _guarded(
            "decrypt", ref, self._ctx, st,
            lambda kw: cc.decrypt(EncryptionAlgorithm.rsa_oaep_256, ciphertext, **kw),
        )
        return bytes(result.plaintext)
