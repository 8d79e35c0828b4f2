"""Key backends: one module per key type, one registry line each, imported lazily.

A backend module exposes:

``KIND``            the metadata list name (``age``, ``pgp``, ``azure_kv``).
``LOCAL``           True when unwrapping needs no network (tried first).
``describe(fields) -> str``
                    a public identifier for messages (recipient, fingerprint, key URL).
``recipient(spec: str, ctx: KeyContext) -> Recipient``
                    parse a CLI/.sops.yaml spec into something that can wrap a data key.
``Unwrapper(ctx: KeyContext)``
                    an object with ``unwrap(fields: Mapping[str, str]) -> bytes``; raises
                    ``NotMyKey`` when it holds no matching key (try the next one) and
                    ``KeyFailure`` for a real error. It must be thread-safe (files are decrypted
                    concurrently) and reuse clients/credentials for the whole process.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

# kind -> module; the order is sops' default decryption order (local before network).
REGISTRY: dict[str, str] = {
    "age": "kvsops.keys.age",
    "pgp": "kvsops.keys.pgp",
    "azure_kv": "kvsops.keys.azure_kv",
}

LOCAL_KINDS = frozenset({"age", "pgp"})  # unwrapped without network: tried before the others

# Lists sops knows but kvsops cannot use: still parsed and preserved, never tried.
FOREIGN_KINDS = ("kms", "gcp_kms", "hckms", "hc_vault")


def backend(kind: str) -> ModuleType:
    try:
        name = REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unsupported key type {kind!r}") from None
    __import__(name)  # importlib.import_module, without importing importlib (and warnings)
    return sys.modules[name]
