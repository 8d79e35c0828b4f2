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

from _thread import allocate_lock

from kvsops._record import Record
from kvsops.keys.base import KeyContext, KeyFailure, one_string

# Importing this module stays light (kvsops.keys' table reads specs and policies through it on
# every path): re, base64, datetime, the Azure plumbing and the SDK are imported where used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping, TypeVar

    from kvsops.azure import common as ac

    T = TypeVar("T")

KIND = "azure_kv"

ALGORITHM = "RSA-OAEP-256"

# sops: ^(https://[^/]+)/keys/([^/]+)(/[^/]*)?$
_SPEC_RE = r"^(https://[^/\s]+)/keys/([^/\s]+)(?:/([^/\s]*))?$"
_NAME_RE = r"^[0-9A-Za-z-]{1,127}$"
_VERSION_RE = r"^[0-9A-Za-z]*$"
# A key policy's item: a key URL whose name may be "*", with or without a version.
_POLICY_RE = r"^(https://[^/\s]+)/keys/([^/\s]+)(?:/([^/\s]*))?/?$"

# operation -> (access-policy permission, RBAC role that grants it)
_PERMISSION = {
    "get": ("get", "Key Vault Crypto User, or Key Vault Reader"),
    "encrypt": ("encrypt", "Key Vault Crypto User"),
    "decrypt": ("decrypt", "Key Vault Crypto User"),
}

# ----------------------------------------------------------------------------- key references


class KeyRef(Record):
    __slots__ = _fields = ("vault_url", "name", "version")
    vault_url: str
    name: str
    version: str  # "" = latest (resolved before anything is written)

    @property
    def url(self) -> str:
        base = f"{self.vault_url}/keys/{self.name}"
        return f"{base}/{self.version}" if self.version else base


def parse_spec(spec: str) -> KeyRef:
    """``https://VAULT/keys/NAME[/VERSION]`` (a trailing ``/`` means latest), any cloud or Managed HSM."""
    import re

    m = re.match(_SPEC_RE, spec.strip())
    if not m:
        raise ValueError(
            f"invalid Azure Key Vault key URL {spec.strip()!r}: expected https://VAULT/keys/NAME[/VERSION]"
        )
    vault, name, version = m.group(1), m.group(2), m.group(3) or ""
    if not re.match(_NAME_RE, name) or not re.match(_VERSION_RE, version):
        raise ValueError(f"invalid Azure Key Vault key URL {spec.strip()!r}: bad key name or version")
    return KeyRef(vault.rstrip("/").lower().removesuffix(":443"), name, version)


def _ref_from_fields(fields: Mapping[str, object]) -> KeyRef:
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


def key_url(vault_url: str, name: str, version: str = "") -> str:
    """The spec of a key: ``https://VAULT/keys/NAME[/VERSION]``."""
    spec = f"{vault_url.rstrip('/')}/keys/{name}"
    return f"{spec}/{version}" if version else spec


def entry_spec(fields: Mapping[str, object]) -> str:
    return key_url(*(str(fields.get(k, "") or "") for k in ("vault_url", "name", "version")))


def same_key(have: str, want: str) -> bool:
    if want.count("/keys/") == 1 and want.rstrip("/").count("/") == 4:
        return have.startswith(want.rstrip("/") + "/") or have == want  # no version: any version
    return have == want


def config_specs(item: object) -> list[str]:
    """A ``.sops.yaml`` key-group item: ``{vaultUrl, key, version}``."""
    if not isinstance(item, dict):
        raise ValueError("an azure_keyvault entry must be a mapping with vaultUrl, key and version")
    url = one_string(item.get("vaultUrl"), "azure_keyvault vaultUrl")
    key = one_string(item.get("key"), "azure_keyvault key")
    if not url or not key:
        raise ValueError("an azure_keyvault entry needs vaultUrl and key")
    return [key_url(url, key, one_string(item.get("version"), "azure_keyvault version"))]


def _policy_vault(url: str) -> str:
    url = url.strip().rstrip("/").lower()
    return url[:-4] if url.endswith(":443") else url


def policy_key(text: str) -> str:
    """``https://VAULT/keys/NAME[/VERSION]`` (NAME may be ``*``): vault, name and version lowercased."""
    import re

    m = re.match(_POLICY_RE, text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a Key Vault key URL (https://VAULT/keys/NAME[/VERSION])")
    return key_url(_policy_vault(m.group(1)), m.group(2).lower(), (m.group(3) or "").lower())


def policy_allows(allowed: frozenset[str], fields: Mapping[str, object]) -> bool:
    """Same vault, the name or ``*``, and the version when the item names one."""
    vault = _policy_vault(str(fields.get("vault_url", "")))
    name, version = str(fields.get("name", "")).lower(), str(fields.get("version", "")).lower()
    for item in allowed:
        v, _, rest = item.partition("/keys/")
        n, _, pv = rest.partition("/")
        if v == vault and n in ("*", name) and (not pv or pv == version):
            return True
    return False


def b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    import base64
    import binascii

    text = text.strip()
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise KeyFailure("azure_kv entry has a malformed 'enc' (expected base64url)") from None


def _now_rfc3339() -> str:
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------- calls and faults


def _import_sdk() -> None:
    from kvsops.azure import common as ac

    message = "this file uses Azure Key Vault keys (azure_kv) but the Azure SDK is not installed"
    for module in ("azure.keyvault.keys", "azure.keyvault.keys.crypto"):  # both under import_sdk's lock
        ac.import_sdk(module, message)


def _key_client() -> type:
    from azure.keyvault.keys import KeyClient

    return KeyClient


def _explain(exc: BaseException, op: str, ref: KeyRef, st: ac.State, deadline: float) -> Exception:
    """Turn an SDK exception into a public, precise error; never SDK stack text or secrets. What a
    403 or 404 means is specific to keys; everything else is common to keys and secrets."""
    from kvsops.azure import common as ac

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
    from kvsops.azure import common as ac

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
        self._lock = allocate_lock()
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

            from kvsops.azure import common as ac

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
        import datetime as _dt

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
            raise KeyFailure(
                f"{where}: the key itself does not allow 'encrypt'; its key operations must include encrypt"
            )
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

        from kvsops.azure import common as ac

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

    def unwrap(self, fields: Mapping[str, object]) -> bytes:
        ref = _ref_from_fields(fields)
        ciphertext = _b64url_decode(str(fields.get("enc") or ""))
        if not ciphertext:
            raise KeyFailure("azure_kv entry has an empty 'enc'")
        _import_sdk()
        from azure.keyvault.keys.crypto import EncryptionAlgorithm

        from kvsops.azure import common as ac

        st = ac.state(self._ctx)
        cc = st.vault(_key_client(), ref.vault_url).child(
            (ref.name, ref.version),
            lambda client: client.get_cryptography_client(ref.name, key_version=ref.version or None),
        )
        result = _guarded(
            "decrypt", ref, self._ctx, st,
            lambda kw: cc.decrypt(EncryptionAlgorithm.rsa_oaep_256, ciphertext, **kw),
        )
        return bytes(result.plaintext)


if TYPE_CHECKING:  # mypy checks this module against the backend protocol
    from kvsops.keys import azure_kv as _this
    from kvsops.keys.base import KeyBackend

    _CONFORMS: KeyBackend = _this
