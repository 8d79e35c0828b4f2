"""The Key Vault *secrets* API for the emulator (what azure-keyvault-secrets' SecretClient calls).

Routes (any api-version, challenge auth, fault knobs and latency as for keys, see server.py):

    GET  /secrets/{name}/{version}   get secret        op "secret_get"
    GET  /secrets/{name}[/]          latest version    op "secret_get"
    GET  /secrets/{name}/versions    versions          op "secret_versions"
    GET  /secrets                    list              op "secret_list"
    PUT  /secrets/{name}             set (new version) op "secret_set"

Errors as Key Vault sends them: 404 ``SecretNotFound``; a disabled version answers get with 403
``Forbidden`` / ``SecretDisabled``; a missing permission 403 ``ForbiddenByRbac`` naming the data action.
Permissions in ``KeyVaultEmulator.permissions`` use the access-policy names prefixed ``secrets/``
(``secrets/get``, ``secrets/list``, ``secrets/set``), so key grants never imply secret grants.
Counters: ``emu.counts["secret_get"]`` and friends; ``emu.secret_gets`` counts gets per (name, version).
"""

from __future__ import annotations

import collections
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

SECRET_PERMISSIONS = ("secrets/get", "secrets/list", "secrets/set")
RBAC_ACTIONS = {
    "secrets/get": "Microsoft.KeyVault/vaults/secrets/getSecret/action",
    "secrets/list": "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
    "secrets/set": "Microsoft.KeyVault/vaults/secrets/setSecret/action",
}


@dataclass
class SecretVersion:
    name: str
    version: str
    value: str
    content_type: str | None = None
    enabled: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    created: int = field(default_factory=lambda: int(time.time()))

    def attributes(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "created": self.created,
            "updated": self.created,
            "recoveryLevel": "Recoverable+Purgeable",
            "recoverableDays": 90,
        }


def route_op(method: str, parts: list[str]) -> str:
    """``parts`` of ``/secrets/...`` -> the counted operation name."""
    if method == "GET":
        if len(parts) == 1 or (len(parts) == 2 and parts[1] == ""):
            return "secret_list"
        if len(parts) == 3 and parts[2] == "versions":
            return "secret_versions"
        if len(parts) in (2, 3):
            return "secret_get"
    if method == "PUT" and len(parts) == 2 and parts[1]:
        return "secret_set"
    return "unknown"


class SecretsMixin:
    """Secret state, test methods and request dispatch; mixed into KeyVaultEmulator."""

    lock: Any

    @property
    def secrets_store(self) -> dict[str, list[SecretVersion]]:
        store = self.__dict__.get("_secrets_store")
        if store is None:
            store = self.__dict__["_secrets_store"] = {}
        return store

    @property
    def secret_gets(self) -> collections.Counter[tuple[str, str]]:
        """Successful and failed gets per (name, version asked: "" = latest)."""
        c = self.__dict__.get("_secret_gets")
        if c is None:
            c = self.__dict__["_secret_gets"] = collections.Counter()
        return c

    # ----------------------------------------------------------------- test methods

    def set_secret(self, name: str, value: str, *, content_type: str | None = None, enabled: bool = True) -> str:
        """Create a secret or a new version of it; returns the version."""
        with self.lock:
            sv = SecretVersion(name, uuid.uuid4().hex, value, content_type, enabled)
            self.secrets_store.setdefault(name, []).append(sv)
            return sv.version

    def set_secret_enabled(self, name: str, enabled: bool, version: str | None = None) -> None:
        with self.lock:
            for sv in self.secrets_store[name]:
                if version is None or sv.version == version:
                    sv.enabled = enabled

    def secret_url(self, name: str, version: str | None = None, host: str | None = None) -> str:
        base = f"{self.vault_url(host)}/secrets/{name}"  # type: ignore[attr-defined]
        return f"{base}/{version}" if version else base

    def _secret_version(self, name: str, version: str) -> SecretVersion | None:
        versions = self.secrets_store.get(name)
        if not versions:
            return None
        if not version:
            return versions[-1]
        return next((v for v in versions if v.version == version), None)

    # ----------------------------------------------------------------- dispatch (under self.lock)

    def dispatch_secret(self, method: str, op: str, parts: list[str], body: bytes, base: str, principal: str) -> Any:
        from .server import _kv_error, _Reply

        vault = base.split("://", 1)[-1]
        if op == "secret_list":
            self._check_permission(principal, "secrets/list", vault)  # type: ignore[attr-defined]
            return _Reply(200, {"value": [
                {"id": f"{base}/secrets/{n}", "attributes": v[-1].attributes(), "contentType": v[-1].content_type}
                for n, v in self.secrets_store.items()
            ], "nextLink": None})
        name = parts[1]
        if op == "secret_set":
            self._check_permission(principal, "secrets/set", vault)  # type: ignore[attr-defined]
            try:
                req = json.loads(body or b"{}")
                value = req["value"]
            except (ValueError, KeyError, TypeError):
                raise _kv_error(400, "BadParameter", "Property 'value' is missing or invalid.") from None
            enabled = bool((req.get("attributes") or {}).get("enabled", True))
            version = self.set_secret(name, str(value), content_type=req.get("contentType"), enabled=enabled)
            return _Reply(200, self._secret_bundle(base, self._secret_version(name, version)))  # type: ignore[arg-type]
        if op == "secret_versions":
            self._check_permission(principal, "secrets/list", vault)  # type: ignore[attr-defined]
            if name not in self.secrets_store:
                raise self._secret_not_found(name)
            return _Reply(200, {"value": [
                {"id": f"{base}/secrets/{name}/{v.version}", "attributes": v.attributes(),
                 "contentType": v.content_type}
                for v in self.secrets_store[name]
            ], "nextLink": None})
        version = parts[2] if len(parts) > 2 else ""
        self.secret_gets[(name, version)] += 1
        self._check_permission(principal, "secrets/get", vault)  # type: ignore[attr-defined]
        sv = self._secret_version(name, version)
        if sv is None:
            raise self._secret_not_found(name, version)
        if not sv.enabled:
            raise _kv_error(403, "Forbidden", "Operation get is not allowed on a disabled secret.", "SecretDisabled")
        return _Reply(200, self._secret_bundle(base, sv))

    @staticmethod
    def _secret_bundle(base: str, sv: SecretVersion) -> dict[str, Any]:
        out: dict[str, Any] = {
            "value": sv.value,
            "id": f"{base}/secrets/{sv.name}/{sv.version}",
            "attributes": sv.attributes(),
            "tags": dict(sv.tags),
        }
        if sv.content_type:
            out["contentType"] = sv.content_type
        return out

    @staticmethod
    def _secret_not_found(name: str, version: str | None = None) -> Any:
        from .server import _not_found_error

        return _not_found_error("secret", "SecretNotFound", name, version)
