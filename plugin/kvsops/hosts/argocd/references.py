"""Opt-in per application (parameter ``references: "true"``, or plugin env ``KVSOPS_REFS=true``):
resolve ``ref+`` references in the rendered Secrets, after any mode (kustomize, helm, plain).

Only a Secret's ``stringData`` values and its ``data`` values (base64-decoded, resolved, re-encoded,
as AVP does for placeholders in base64) are resolved. A reference anywhere else (another kind, a
Secret's metadata) is an error: it would otherwise reach the cluster unresolved, or put a secret
into an object Argo CD shows in its UI. Key Vault references are checked against the project's key
policy (``azure_secrets``) before any call; ``ref+sops://FILE`` reads FILE inside the application
directory. The stream is re-serialized only when something was resolved.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from kvsops import errors, manifests
from kvsops.hosts.argocd import render
from kvsops.refs import grammar as refs


def _name(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
    ns = meta.get("namespace")
    return f"{doc.get('kind')} {ns + '/' if ns else ''}{meta.get('name', '?')}"


def _secrets_of(docs: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for doc in docs:
        if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            out.extend(d for d in doc["items"] if isinstance(d, dict))
        else:
            out.append(doc)
    return out


def _has_ref(node: Any) -> bool:
    return any(refs.contains_ref(s) for s in ([node] if isinstance(node, str) else refs.strings(node)))


class _Plan:
    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []
        self.string_data: list[tuple[str, dict[str, Any]]] = []
        self.data: list[tuple[str, dict[str, Any], dict[str, Any]]] = []  # (where, secret data, decoded)

    def add(self, doc: dict[str, Any], i: int, what: str) -> None:
        where = f"{what}: document {i} ({_name(doc)})"
        if doc.get("kind") != "Secret" or doc.get("apiVersion") != "v1":
            if _has_ref(doc):
                raise errors.GeneratorError(
                    f"{where} contains a ref+ reference; references are resolved only in Secrets (stringData, data)"
                )
            return
        rest = {k: v for k, v in doc.items() if k not in ("data", "stringData")}
        if _has_ref(rest):
            raise errors.GeneratorError(f"{where}: a ref+ reference outside data/stringData is not resolved")
        sd = doc.get("stringData")
        if isinstance(sd, dict) and _has_ref(sd):
            self.items.append((f"{where}: stringData", sd))
            self.string_data.append((f"{where}: stringData", sd))
        data = doc.get("data")
        if isinstance(data, dict):
            decoded = {}
            for k, v in data.items():
                text = _decode(v)
                if text is not None and refs.contains_ref(text):
                    decoded[k] = text
            if decoded:
                self.items.append((f"{where}: data", decoded))
                self.data.append((f"{where}: data", data, decoded))


def _decode(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def _text(value: Any, where: str, key: str) -> str:
    if isinstance(value, (dict, list)):
        kind = "map" if isinstance(value, dict) else "list"
        raise errors.ReferenceFailed(
            f"{where}: key {key!r}: the reference resolves to a {kind}; Secret values are strings"
        )
    return value if isinstance(value, str) else refs.scalar_text(value, refs.Ref("", ""))


def resolve_stream(ctx: render.Context, stream: bytes, what: str) -> bytes:
    if not refs.contains_ref(stream.decode("utf-8", "replace")):
        return stream
    import yaml

    from kvsops.refs import resolve as references

    docs = manifests.objects(stream, what)
    plan = _Plan()
    for i, doc in enumerate(_secrets_of(docs), 1):
        plan.add(doc, i, what)
    if not plan.items:
        return stream
    references.resolve(plan.items, ctx.session, lambda rel: render.read_inside(ctx.app_path, rel))
    for where, sd in plan.string_data:
        for k, v in list(sd.items()):
            sd[k] = _text(v, where, str(k))
    for where, data, decoded in plan.data:
        for k, v in decoded.items():
            data[k] = base64.b64encode(_text(v, where, str(k)).encode("utf-8")).decode("ascii")
    return yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True, allow_unicode=True).encode("utf-8")
