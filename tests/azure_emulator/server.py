"""An Azure Key Vault (keys) emulator: real HTTPS on loopback, challenge auth, real RSA keys.

It speaks the subset of the Key Vault REST API that azure-keyvault-keys (Python) and azkeys (Go,
used by sops) call, plus two token issuers so the real azure-identity credentials run unchanged:

* an Entra-ID-style authority on the same HTTPS port (``AZURE_AUTHORITY_HOST``):
  ``/{tenant}/v2.0/.well-known/openid-configuration``, ``/common/discovery/instance`` and
  ``POST /{tenant}/oauth2/v2.0/token`` (client secret or federated client assertion);
* the App Service managed-identity endpoint on a plain-HTTP port (``IDENTITY_ENDPOINT`` +
  ``IDENTITY_HEADER``, ``GET ?api-version=2019-08-01&resource=...`` with ``X-IDENTITY-HEADER``).

Tests steer it through Python attributes and methods (see ``KeyVaultEmulator``); nothing in the
product knows it exists. Tokens are opaque JWT-shaped strings the emulator issued itself; the vault
accepts only those, checks their audience and maps them back to a principal (the client id) for
per-principal permissions.
"""

from __future__ import annotations

import base64
import collections
import json
import secrets
import socket
import ssl
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .certs import DEFAULT_NAMES, make_test_pki
from .secrets_api import RBAC_ACTIONS as _SECRET_RBAC_ACTIONS, SecretsMixin, route_op as _secret_route_op

DEFAULT_TENANT = "11111111-1111-1111-1111-111111111111"
MI_PRINCIPAL = "system-assigned-managed-identity"
ALL_KEY_OPS = ("encrypt", "decrypt", "wrapKey", "unwrapKey", "sign", "verify")
# Permission names are Key Vault access-policy names; RBAC data actions are derived for messages.
ALL_PERMISSIONS = frozenset({"get", "list", "create", "update", "encrypt", "decrypt", "wrapKey", "unwrapKey"})
CRYPTO_OPS = {"encrypt": "encrypt", "decrypt": "decrypt", "wrapkey": "wrapKey", "unwrapkey": "unwrapKey"}
_RBAC_ACTION = {
    "get": "Microsoft.KeyVault/vaults/keys/read",
    "list": "Microsoft.KeyVault/vaults/keys/read",
    "create": "Microsoft.KeyVault/vaults/keys/create/action",
    "update": "Microsoft.KeyVault/vaults/keys/write",
    "encrypt": "Microsoft.KeyVault/vaults/keys/encrypt/action",
    "decrypt": "Microsoft.KeyVault/vaults/keys/decrypt/action",
    "wrapKey": "Microsoft.KeyVault/vaults/keys/wrap/action",
    "unwrapKey": "Microsoft.KeyVault/vaults/keys/unwrap/action",
    **_SECRET_RBAC_ACTIONS,
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def _oaep(alg: str) -> padding.AsymmetricPadding | None:
    if alg == "RSA-OAEP-256":
        return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    if alg == "RSA-OAEP":
        return padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    if alg == "RSA1_5":
        return padding.PKCS1v15()
    return None


@dataclass
class KeyVersion:
    name: str
    version: str
    private_key: rsa.RSAPrivateKey
    key_ops: list[str]
    enabled: bool = True
    created: int = field(default_factory=lambda: int(time.time()))

    def jwk(self, kid: str) -> dict[str, Any]:
        pub = self.private_key.public_key().public_numbers()
        return {
            "kid": kid,
            "kty": "RSA",
            "key_ops": list(self.key_ops),
            "n": b64url(_int_bytes(pub.n)),
            "e": b64url(_int_bytes(pub.e)),
        }


@dataclass
class Fault:
    kind: str  # "throttle" | "status" | "hang"
    remaining: int
    ops: frozenset[str] | None  # None: every authenticated vault request
    status: int = 503
    retry_after: float = 1.0


class _Reply(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _kv_error(status: int, code: str, message: str, inner: str | None = None) -> _Reply:
    err: dict[str, Any] = {"code": code, "message": message}
    if inner:
        err["innererror"] = {"code": inner}
    return _Reply(status, {"error": err})


def _not_found_error(noun: str, code: str, name: str, version: str | None) -> _Reply:
    """Key Vault's 404 for a key or a secret (``noun``), in its own words."""
    what = f"{name}/{version}" if version else name
    return _kv_error(
        404,
        code,
        f"A {noun} with (name/id) {what} was not found in this key vault. If you recently deleted this {noun} "
        "you may be able to recover it using the correct recovery command.",
    )


class KeyVaultEmulator(SecretsMixin):
    """Start with ``with KeyVaultEmulator() as emu:`` (or ``start()``/``stop()``).

    Knobs (all thread-safe to set between requests):

    ``forbid_get``            403 ForbiddenByRbac on every GET of a key.
    ``permissions``           None (everyone may do everything) or ``{client_id: {perm, ...}}``;
                              a principal missing from the map has no permission at all.
    ``latency``               seconds added to every vault request (not to token requests).
    ``throttle(n, ...)``      the next n vault operations answer 429 Throttled with Retry-After.
    ``fail(n, status=503)``   the next n vault operations answer a 5xx.
    ``hang(n)``               the next n vault operations never answer (until stop()).
    ``set_enabled`` / ``set_key_ops`` / ``rotate_key``   key state.
    ``counts``                Counter of vault requests per operation (get, encrypt, decrypt, ...,
                              plus ``challenge``); ``token_requests`` Counter per issuer (aad, msi).
    ``max_in_flight``         the most vault operations served at the same time since the last
                              ``reset_counters()`` (evidence of concurrency that no timing can give
                              on a loaded machine).
    ``arrivals``              the monotonic arrival time of every vault request (challenges and
                              throttled ones included) since ``reset_counters()``.
    ``set_secret`` / ``set_secret_enabled`` / ``secret_url`` / ``secret_gets``   the secrets API
                              (secrets_api.py; counted as ``secret_get``, ``secret_set``, ...).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        mi_port: int = 0,
        tenant_id: str = DEFAULT_TENANT,
        names: Iterable[str] = DEFAULT_NAMES,
        workdir: Path | None = None,
    ) -> None:
        self.host, self._port, self._mi_port = host, port, mi_port
        self.tenant_id = tenant_id
        self._names = tuple(names)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._workdir = workdir
        self.lock = threading.RLock()
        self.keys: dict[str, list[KeyVersion]] = {}
        self.tokens: dict[str, dict[str, Any]] = {}
        self.client_secrets: dict[str, str] = {}
        self.identity_header = secrets.token_hex(16)
        self.mi_client_id = MI_PRINCIPAL
        self.forbid_get = False
        self.permissions: dict[str, set[str]] | None = None
        self.latency = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.token_lifetime = 3600
        self.faults: list[Fault] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.token_requests: collections.Counter[str] = collections.Counter()
        self.log: collections.deque[tuple[str, str, int, str | None]] = collections.deque(maxlen=2000)
        # Vault requests (keys and secrets, challenges included) as they arrive: what a client-side
        # rate bound must keep low.
        self.arrivals: list[float] = []
        self._release = threading.Event()
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> "KeyVaultEmulator":
        if self._workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kvemu-")
            self._workdir = Path(self._tmp.name)
        pki = make_test_pki(self._workdir, self._names)
        self.ca_path = pki.ca_path
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(pki.cert_path, pki.key_path)
        tls = _Server((self.host, self._port), _Handler, self, ctx, role="vault")
        mi = _Server((self.host, self._mi_port), _Handler, self, None, role="msi")
        for srv in (tls, mi):
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            t.start()
            self._servers.append(srv)
            self._threads.append(t)
        self.port = tls.server_address[1]
        self.mi_port = mi.server_address[1]
        return self

    def stop(self) -> None:
        self._release.set()
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self._servers.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "KeyVaultEmulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- addresses and env

    def vault_url(self, host: str | None = None) -> str:
        """``https://HOST:PORT`` (the port is left out when it is 443, as Key Vault URLs have it)."""
        host = host or self.host
        return f"https://{host}" if self.port == 443 else f"https://{host}:{self.port}"

    @property
    def authority_host(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def identity_endpoint(self) -> str:
        return f"http://{self.host}:{self.mi_port}/msi/token"

    def key_url(self, name: str, version: str | None = None, host: str | None = None) -> str:
        base = f"{self.vault_url(host)}/keys/{name}"
        return f"{base}/{version}" if version else base

    def base_env(self, *, hosts: Iterable[str] = (), isolate: bool = True) -> dict[str, str]:
        """Trust for both SDKs; with ``isolate``, a dead proxy for every host but ours, so that a
        credential probing the real cloud (instance discovery, IMDS) fails fast instead of leaving
        the machine."""
        env = {"REQUESTS_CA_BUNDLE": str(self.ca_path), "SSL_CERT_FILE": str(self.ca_path)}
        if isolate:
            ours = dict.fromkeys(["127.0.0.1", "localhost", self.host, *hosts])
            no_proxy = ",".join(ours)
            env.update(
                HTTPS_PROXY="http://127.0.0.1:9",
                HTTP_PROXY="http://127.0.0.1:9",
                https_proxy="http://127.0.0.1:9",
                http_proxy="http://127.0.0.1:9",
                NO_PROXY=no_proxy,
                no_proxy=no_proxy,
            )
        return env

    def workload_identity_env(self, client_id: str, token_file: Path) -> dict[str, str]:
        token_file.write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJzeXN0ZW06c2EifQ.")  # a projected SA token stand-in
        return {
            "AZURE_AUTHORITY_HOST": self.authority_host,
            "AZURE_TENANT_ID": self.tenant_id,
            "AZURE_CLIENT_ID": client_id,
            "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
        }

    def client_secret_env(self, client_id: str, secret: str) -> dict[str, str]:
        self.client_secrets[client_id] = secret
        return {
            "AZURE_AUTHORITY_HOST": self.authority_host,
            "AZURE_TENANT_ID": self.tenant_id,
            "AZURE_CLIENT_ID": client_id,
            "AZURE_CLIENT_SECRET": secret,
        }

    def managed_identity_env(self) -> dict[str, str]:
        return {"IDENTITY_ENDPOINT": self.identity_endpoint, "IDENTITY_HEADER": self.identity_header}

    # ----------------------------------------------------------------- keys and knobs

    def create_key(self, name: str, *, size: int = 2048, key_ops: Iterable[str] = ALL_KEY_OPS) -> str:
        """Create a key (or a new version of it); returns the version."""
        with self.lock:
            kv = KeyVersion(name, uuid.uuid4().hex, rsa.generate_private_key(65537, size), list(key_ops))
            self.keys.setdefault(name, []).append(kv)
            return kv.version

    def rotate_key(self, name: str) -> str:
        latest = self._latest(name)
        return self.create_key(name, size=latest.private_key.key_size, key_ops=latest.key_ops)

    def _latest(self, name: str) -> KeyVersion:
        return self.keys[name][-1]

    def _version(self, name: str, version: str | None) -> KeyVersion | None:
        versions = self.keys.get(name)
        if not versions:
            return None
        if not version:
            return versions[-1]
        return next((v for v in versions if v.version == version), None)

    def set_enabled(self, name: str, enabled: bool, version: str | None = None) -> None:
        with self.lock:
            for v in self.keys[name] if version is None else [self._version(name, version)]:
                assert v is not None
                v.enabled = enabled

    def set_key_ops(self, name: str, ops: Iterable[str], version: str | None = None) -> None:
        with self.lock:
            for v in self.keys[name] if version is None else [self._version(name, version)]:
                assert v is not None
                v.key_ops = list(ops)

    def grant(self, principal: str, *perms: str) -> None:
        with self.lock:
            if self.permissions is None:
                self.permissions = {}
            self.permissions.setdefault(principal, set()).update(perms)

    def throttle(self, n: int, *, retry_after: float = 1.0, ops: Iterable[str] | None = None) -> None:
        with self.lock:
            self.faults.append(Fault("throttle", n, frozenset(ops) if ops else None, 429, retry_after))

    def fail(self, n: int, *, status: int = 503, ops: Iterable[str] | None = None) -> None:
        with self.lock:
            self.faults.append(Fault("status", n, frozenset(ops) if ops else None, status))

    def hang(self, n: int, *, ops: Iterable[str] | None = None) -> None:
        with self.lock:
            self.faults.append(Fault("hang", n, frozenset(ops) if ops else None))

    def reset_counters(self) -> None:
        with self.lock:
            self.counts.clear()
            self.token_requests.clear()
            self.log.clear()
            self.arrivals.clear()
            self.max_in_flight = self.in_flight

    def decrypt_locally(self, name: str, version: str, ciphertext: bytes, alg: str = "RSA-OAEP-256") -> bytes:
        """For tests: what the vault would return, without a request (and without counting)."""
        kv = self._version(name, version)
        assert kv is not None
        pad = _oaep(alg)
        assert pad is not None
        return kv.private_key.decrypt(ciphertext, pad)

    # ----------------------------------------------------------------- request handling (vault)

    def _take_fault(self, op: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.remaining > 0 and (f.ops is None or op in f.ops):
                    f.remaining -= 1
                    return f
            self.faults = [f for f in self.faults if f.remaining > 0]
        return None

    def _principal(self, headers: Any, base: str) -> str:
        auth = headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        with self.lock:
            claims = self.tokens.get(token)
        if claims is None:
            # No WWW-Authenticate here: the SDKs then surface an authentication error instead of retrying.
            raise _kv_error(401, "Unauthorized", "AKV10032: Invalid issuer.")
        if claims["exp"] < time.time():
            raise _kv_error(401, "Unauthorized", "AKV10022: Token expired.")
        if not self.audience_ok(str(claims["aud"]), base):
            raise _kv_error(401, "Unauthorized", "AKV10022: Invalid audience.")
        return str(claims["appid"])

    def _check_permission(self, principal: str, perm: str, vault: str) -> None:
        if perm == "get" and self.forbid_get:
            allowed = False
        elif self.permissions is None:
            allowed = True
        else:
            allowed = perm in self.permissions.get(principal, set())
        if not allowed:
            raise _kv_error(
                403,
                "Forbidden",
                "Caller is not authorized to perform action on resource.\r\n"
                f"If role assignments were recently changed, please wait several minutes.\r\n"
                f"Caller: appid={principal}\r\nAction: '{_RBAC_ACTION[perm]}'\r\nVault: {vault}",
                "ForbiddenByRbac",
            )

    def _bundle(self, base: str, kv: KeyVersion) -> dict[str, Any]:
        kid = f"{base}/keys/{kv.name}/{kv.version}"
        return {
            "key": kv.jwk(kid),
            "attributes": {
                "enabled": kv.enabled,
                "created": kv.created,
                "updated": kv.created,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
                "exportable": False,
            },
            "tags": {},
        }

    def handle_vault(self, method: str, path: str, headers: Any, body: bytes, base: str) -> tuple[str, _Reply]:
        parts = path.split("/")[1:]  # "/keys/a/b" -> ["keys", "a", "b"]
        op = self._route_op(method, parts)
        if not headers.get("Authorization"):
            resource = "https://managedhsm.azure.net" if ".managedhsm." in base else "https://vault.azure.net"
            return "challenge", _Reply(
                401,
                {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}},
                {
                    "WWW-Authenticate": (
                        f'Bearer authorization="https://login.microsoftonline.com/{self.tenant_id}", '
                        f'resource="{resource}"'
                    )
                },
            )
        fault = self._take_fault(op)
        if fault is not None:
            if fault.kind == "hang":
                self._release.wait()
                raise ConnectionAbortedError("emulator stopped")
            if fault.kind == "throttle":
                raise _Reply(
                    429,
                    {"error": {"code": "Throttled",
                               "message": "Request was not processed because too many requests were received."}},
                    {"Retry-After": f"{fault.retry_after:g}"},
                )
            raise _kv_error(fault.status, "ServiceUnavailable", "The service is temporarily unavailable.")
        principal = self._principal(headers, base)
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            with self.lock:
                return op, self._dispatch(method, op, parts, body, base, principal)
        finally:
            with self.lock:
                self.in_flight -= 1

    @staticmethod
    def _route_op(method: str, parts: list[str]) -> str:
        if parts and parts[0].lower() == "secrets":
            return _secret_route_op(method, parts)
        if not parts or parts[0].lower() != "keys":
            return "unknown"
        if method == "GET":
            if len(parts) == 3 and parts[2] == "versions":
                return "versions"
            return "list" if len(parts) == 1 else "get"
        last = parts[-1].lower()
        if last in CRYPTO_OPS:
            return last
        if last in ("create", "rotate"):
            return last
        return "unknown"

    def _dispatch(self, method: str, op: str, parts: list[str], body: bytes, base: str, principal: str) -> _Reply:
        vault = base.split("://", 1)[-1]
        if op.startswith("secret_"):
            return self.dispatch_secret(method, op, parts, body, base, principal)
        if op == "unknown":
            raise _kv_error(400, "BadParameter", f"The request URI is not supported: {method} /{'/'.join(parts)}")
        if op == "list":
            self._check_permission(principal, "list", vault)
            return _Reply(200, {"value": [{"kid": f"{base}/keys/{n}", "attributes": {"enabled": v[-1].enabled}}
                                          for n, v in self.keys.items()]})
        name = parts[1]
        if op in ("create", "rotate"):
            self._check_permission(principal, "create", vault)
            req = json.loads(body or b"{}")
            if op == "create":
                version = self.create_key(name, size=int(req.get("key_size", 2048)),
                                          key_ops=req.get("key_ops") or ALL_KEY_OPS)
            else:
                if name not in self.keys:
                    raise self._not_found(name)
                version = self.rotate_key(name)
            return _Reply(200, self._bundle(base, self._version(name, version)))  # type: ignore[arg-type]
        if op == "versions":
            self._check_permission(principal, "list", vault)
            if name not in self.keys:
                raise self._not_found(name)
            return _Reply(200, {"value": [
                {"kid": f"{base}/keys/{name}/{v.version}", "attributes": {"enabled": v.enabled, "created": v.created}}
                for v in self.keys[name]
            ]})
        if op == "get":
            self._check_permission(principal, "get", vault)
            version = parts[2] if len(parts) > 2 else ""
            kv = self._version(name, version)
            if kv is None:
                raise self._not_found(name, version)
            if not kv.enabled:
                raise _kv_error(403, "Forbidden", "Operation get is not allowed on a disabled key.", "KeyDisabled")
            return _Reply(200, self._bundle(base, kv))
        return self._crypto(op, parts, body, base, principal, vault)

    def _crypto(self, op: str, parts: list[str], body: bytes, base: str, principal: str, vault: str) -> _Reply:
        perm = CRYPTO_OPS[op]
        self._check_permission(principal, perm, vault)
        name = parts[1]
        version = parts[2] if len(parts) == 4 else ""  # /keys/n/v/op, /keys/n//op, /keys/n/op
        kv = self._version(name, version)
        if kv is None:
            raise self._not_found(name, version)
        if not kv.enabled:
            raise _kv_error(403, "Forbidden", f"Operation {perm} is not allowed on a disabled key.", "KeyDisabled")
        if perm not in kv.key_ops:
            raise _kv_error(403, "Forbidden", f"Operation {perm} is not permitted on this key.",
                            "KeyOperationForbidden")
        try:
            req = json.loads(body)
            alg, value = req["alg"], b64url_decode(req["value"])
        except (ValueError, KeyError, TypeError):
            raise _kv_error(400, "BadParameter", "Property 'alg' or 'value' is missing or invalid.") from None
        pad = _oaep(alg)
        if pad is None:
            raise _kv_error(400, "BadParameter", f"Algorithm {alg} is not supported for an RSA key.")
        try:
            if perm in ("encrypt", "wrapKey"):
                out = kv.private_key.public_key().encrypt(value, pad)
            else:
                out = kv.private_key.decrypt(value, pad)
        except ValueError:
            raise _kv_error(400, "BadParameter", "Error decrypting the ciphertext.") from None
        return _Reply(200, {"kid": f"{base}/keys/{name}/{kv.version}", "value": b64url(out)})

    @staticmethod
    def _not_found(name: str, version: str | None = None) -> _Reply:
        return _not_found_error("key", "KeyNotFound", name, version)

    # ----------------------------------------------------------------- token issuers

    def issue_token(self, principal: str, audience: str, issuer: str) -> tuple[str, int]:
        now = int(time.time())
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "tid": self.tenant_id,
            "appid": principal,
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, principal)),
            "iat": now,
            "nbf": now,
            "exp": now + self.token_lifetime,
            "jti": secrets.token_hex(8),
        }
        header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        token = f"{header}.{b64url(json.dumps(claims).encode())}.{b64url(secrets.token_bytes(16))}"
        with self.lock:
            self.tokens[token] = claims
            self.token_requests[issuer] += 1
        return token, claims["exp"]

    def handle_aad(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> _Reply | None:
        parts = [p for p in path.split("/") if p]
        base = self.authority_host
        if method == "GET" and parts[:3] == ["common", "discovery", "instance"]:
            return _Reply(200, {
                "tenant_discovery_endpoint": f"{base}/{self.tenant_id}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [],
            })
        if method == "GET" and len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            tenant = parts[0]
            return _Reply(200, {
                "issuer": f"{base}/{tenant}/v2.0",
                "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
                "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "tenant_region_scope": "WW",
            })
        if method == "POST" and len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            return self._aad_token(parts[0], parse_qs(body.decode("utf-8", "replace")))
        return None

    def _aad_token(self, tenant: str, form: dict[str, list[str]]) -> _Reply:
        def one(k: str) -> str:
            return (form.get(k) or [""])[0]

        if tenant != self.tenant_id:
            return _Reply(400, {"error": "invalid_tenant",
                                "error_description": f"AADSTS90002: Tenant '{tenant}' not found."})
        client_id, scope = one("client_id"), one("scope")
        if one("grant_type") != "client_credentials" or not client_id:
            return _Reply(400, {"error": "unsupported_grant_type",
                                "error_description": "AADSTS70003: unsupported grant."})
        if one("client_assertion"):
            if one("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
                return _Reply(400, {"error": "invalid_request",
                                    "error_description": "AADSTS50027: bad assertion type."})
        elif one("client_secret"):
            expected = self.client_secrets.get(client_id)
            if expected is not None and not secrets.compare_digest(expected, one("client_secret")):
                return _Reply(401, {"error": "invalid_client",
                                    "error_description": "AADSTS7000215: Invalid client secret provided."})
        else:
            return _Reply(401, {"error": "invalid_client", "error_description": "AADSTS7000216: credentials missing."})
        audience = scope.split()[0].removesuffix("/.default") if scope else ""
        token, exp = self.issue_token(client_id, audience, "aad")
        left = exp - int(time.time())
        return _Reply(200, {"token_type": "Bearer", "expires_in": left, "ext_expires_in": left, "access_token": token})

    def handle_msi(self, method: str, path: str, query: dict[str, list[str]], headers: Any) -> _Reply:
        if method != "GET" or path.rstrip("/") != "/msi/token":
            return _Reply(404, {"error": "not_found"})
        if headers.get("X-IDENTITY-HEADER") != self.identity_header:
            return _Reply(401, {"error": "unauthorized", "error_description": "X-IDENTITY-HEADER is missing or wrong."})
        resource = (query.get("resource") or [""])[0]
        if not resource:
            return _Reply(400, {"error": "invalid_request", "error_description": "resource is required"})
        principal = (query.get("client_id") or [""])[0] or self.mi_client_id
        token, exp = self.issue_token(principal, resource.rstrip("/"), "msi")
        return _Reply(200, {
            "access_token": token,
            "expires_on": str(exp),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": principal,
        })

    def audience_ok(self, token_aud: str, base: str) -> bool:
        expected = "https://managedhsm.azure.net" if ".managedhsm." in base else "https://vault.azure.net"
        return token_aud.rstrip("/") in (expected, "cfa8b339-82a2-471a-a3c9-0fc0be7a4093")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], handler: type, emu: KeyVaultEmulator, tls: ssl.SSLContext | None,
                 role: str) -> None:
        self.emu, self.tls, self.role = emu, tls, role
        super().__init__(addr, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients dropping connections (timeouts, hung-request tests) are expected


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle plus the client's
        # delayed ACK adds ~40 ms to every answer and would swamp the latency knob.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.server.tls is not None:
            self.request.settimeout(10)
            self.request = self.server.tls.wrap_socket(self.request, server_side=True)
            self.request.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def _serve(self, method: str) -> None:
        emu = self.server.emu
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        host = self.headers.get("Host") or f"{emu.host}:{emu.port}"
        base = f"https://{host.removesuffix(':443')}"
        counted: str | None = None
        try:
            if self.server.role == "msi":
                raise emu.handle_msi(method, path, query, self.headers)
            aad = emu.handle_aad(method, path, query, body)
            if aad is not None:
                raise aad
            if not path.startswith(("/keys", "/secrets")):
                raise _kv_error(404, "NotFound", "Not found.")
            counted = KeyVaultEmulator._route_op(method, path.split("/")[1:])
            with emu.lock:
                emu.arrivals.append(time.monotonic())
            op, reply = emu.handle_vault(method, path, self.headers, body, base)
            counted = op
            raise reply
        except _Reply as r:
            if counted is not None:
                with emu.lock:
                    emu.counts[counted] += 1
                    emu.log.append((method, path, r.status, None))
            self._send(r)
        except ConnectionError:
            self.close_connection = True

    def _send(self, r: _Reply) -> None:
        payload = json.dumps(r.body).encode()
        self.send_response(r.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-ms-keyvault-service-version", "1.9.0.0")
        for k, v in r.headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)
