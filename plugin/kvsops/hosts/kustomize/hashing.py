"""kustomize's name-suffix hash (api/hasher/hasher.go), bit for bit.

kustomize computes the suffix itself from the objects we emit (we only set the
``kustomize.config.k8s.io/needs-hash`` annotation), so this module exists to predict names
(documentation, tests, hosts that render without kustomize) and to pin the algorithm down.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping  # isinstance checks at run time

TYPE_CHECKING = False  # typing costs milliseconds of every kustomize generator's start-up
if TYPE_CHECKING:
    from typing import Any

# kustomize's encodeHash: avoid vowels-ish digits so suffixes never spell words.
_SUBST = str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"})


def go_json(value: Any) -> str:
    """Serialise like Go's ``json.Marshal``: sorted keys, no spaces, HTML-safe escapes."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return (
        text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    )


def encode(digest_hex: str) -> str:
    if len(digest_hex) < 10:
        raise ValueError("input length must be at least 10")
    return digest_hex[:10].translate(_SUBST)


def _map_or_empty(obj: Mapping[str, Any], field: str) -> Any:
    value = obj.get(field)
    if value is None:
        return ""
    if isinstance(value, Mapping):
        return dict(value)
    return value if isinstance(value, str) else str(value)


def hash_input(obj: Mapping[str, Any]) -> str:
    """The JSON text kustomize hashes for a Secret or ConfigMap.

    ``name`` is always "": kustomize looks up ``metadata/name`` with a single-segment lookup that
    never matches, so the name never enters the hash (verified against kustomize's output).
    """
    kind = obj.get("kind")
    if kind == "Secret":
        m: dict[str, Any] = {"kind": "Secret", "name": "", "data": _map_or_empty(obj, "data"),
                             "type": _map_or_empty(obj, "type")}
        if isinstance(obj.get("stringData"), Mapping):
            m["stringData"] = dict(obj["stringData"])
        return go_json(m)
    if kind == "ConfigMap":
        m = {"kind": "ConfigMap", "name": "", "data": _map_or_empty(obj, "data")}
        if isinstance(obj.get("binaryData"), Mapping):
            m["binaryData"] = dict(obj["binaryData"])
        return go_json(m)
    return go_json(dict(obj))


def name_hash(obj: Mapping[str, Any]) -> str:
    """The 10-character suffix kustomize appends (``<name>-<suffix>``)."""
    return encode(hashlib.sha256(hash_input(obj).encode("utf-8")).hexdigest())


def hashed_name(obj: Mapping[str, Any]) -> str:
    return f"{obj['metadata']['name']}-{name_hash(obj)}"
