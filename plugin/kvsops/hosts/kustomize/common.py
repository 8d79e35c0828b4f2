"""Pieces every generator kind shares: strict field checks, config access, metadata maps, output hygiene."""

from __future__ import annotations

from collections.abc import Mapping  # isinstance checks at run time

from kvsops import _schema, errors, report
from kvsops.hosts.kustomize.sources import scalar_text

TYPE_CHECKING = False  # typing costs milliseconds of every kustomize generator's start-up
if TYPE_CHECKING:
    from typing import Any, Callable, Sequence

    from kvsops.hosts.kustomize.sources import Ref, Sources

NEEDS_HASH = "kustomize.config.k8s.io/needs-hash"
BEHAVIOR = "kustomize.config.k8s.io/behavior"
LOCAL_CONFIG = "config.kubernetes.io/local-config"
BEHAVIORS = ("create", "merge", "replace")

# Orchestrator bookkeeping that must never ride along on a generated object. local-config in
# particular makes kustomize drop the object silently (goabout#36).
_DROP = {
    LOCAL_CONFIG,
    "config.kubernetes.io/function",
    "config.k8s.io/function",
    "config.kubernetes.io/index",
    "config.kubernetes.io/path",
    "config.k8s.io/id",
    "kustomize.config.k8s.io/id",
}
_DROP_PREFIX = "internal.config.kubernetes.io/"


# ----------------------------------------------------------------------------- field checks

ANY, EACH, MOVED, IGNORED = _schema.ANY, _schema.EACH, _schema.MOVED, _schema.IGNORED

# Kubernetes ObjectMeta: a generator config is a KRM object and its own metadata may carry any of
# these (kubectl and other tools write e.g. creationTimestamp: null); labels and annotations are free.
OBJECT_META: dict[str, Any] = dict.fromkeys(
    ("name", "generateName", "namespace", "labels", "annotations", "uid", "resourceVersion", "generation",
     "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences", "finalizers",
     "managedFields", "selfLink", "clusterName"),
    ANY,
)


def check_fields(cfg: Mapping[str, Any], schema: Mapping[str, Any], where: str) -> None:
    """A misspelt field must never turn into a Secret that silently lacks keys: refuse every field
    the kind's schema (kvsops._schema) does not know, naming its path and the closest valid name;
    warn about the fields the peer tool accepts without effect."""
    for found in _schema.findings(cfg, schema):
        if found.ignored:
            report.warn(f"{where}: {found.message()}")
            continue
        raise errors.GeneratorError(
            found.message(), where=where,
            hint=f"{found.fields_here()} (kvsops refuses unknown fields: a misspelt one would drop data silently)",
        )


# ----------------------------------------------------------------------------- config access


def label_of(cfg: Mapping[str, Any]) -> str:
    meta = cfg.get("metadata")
    if not isinstance(meta, Mapping):
        meta = {}
    return f"{cfg.get('kind', '?')} {str(meta.get('name', '?'))!r}"


def as_list(cfg: Mapping[str, Any], field: str, where: str) -> list[Any]:
    value = cfg.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise errors.GeneratorError(f"{field} must be a list", where=where)
    return value


def as_map(cfg: Mapping[str, Any], field: str, where: str) -> dict[str, Any]:
    value = cfg.get(field)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise errors.GeneratorError(f"{field} must be a mapping", where=where)
    return dict(value)


def str_map(value: Any, field: str, where: str) -> dict[str, str]:
    """labels / annotations: a string-to-string map (scalars are stringified as Go would)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise errors.GeneratorError(f"{field} must be a mapping of strings", where=where)
    out = {}
    for k, v in value.items():
        if isinstance(v, (Mapping, list)):
            raise errors.GeneratorError(f"{field}.{k} must be a string", where=where)
        out[str(k)] = scalar_text(v)
    return out


def as_str(cfg: Mapping[str, Any], field: str, where: str, default: str = "") -> str:
    value = cfg.get(field, default)
    if value is None:
        return default
    if isinstance(value, (Mapping, list)):
        raise errors.GeneratorError(f"{field} must be a string", where=where)
    return scalar_text(value)


def as_bool(cfg: Mapping[str, Any], field: str, where: str) -> bool:
    value = cfg.get(field, False)
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise errors.GeneratorError(f"{field} must be true or false", where=where)


def clean(obj: dict[str, Any]) -> dict[str, Any]:
    """Strip orchestrator annotations from an output object (and an emptied annotations map)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("annotations"), dict):
        ann = {k: v for k, v in meta["annotations"].items() if k not in _DROP and not k.startswith(_DROP_PREFIX)}
        if ann:
            meta["annotations"] = ann
        else:
            del meta["annotations"]
    return obj


def manifests(docs: list[Any], where: str) -> list[dict[str, Any]]:
    """Decrypted documents of a ``files:`` entry as Kubernetes objects."""
    from kvsops.sops.tree import to_plain

    out = []
    for i, doc in enumerate(docs):
        obj = to_plain(doc)
        if not obj:
            continue
        if not isinstance(obj, dict) or not obj.get("kind") or not obj.get("apiVersion"):
            raise errors.GeneratorError(f"document {i} is not a Kubernetes object (no apiVersion/kind)", where=where)
        out.append(clean(obj))
    return out


def metadata(name: str, namespace: str, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return meta


def builder(refs: Sequence[Ref], secrets: Sequence[Callable[[Sources], dict[str, Any]]]
            ) -> Callable[[Sources], list[dict[str, Any]]]:
    """A generator's output, once its sources are decrypted: the manifests of its whole files in
    order, then the Secrets it assembles."""
    def build(src: Sources) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for ref in refs:
            out.extend(manifests(src.docs(ref), src.where(ref)))
        out.extend(b(src) for b in secrets)
        return out

    return build
