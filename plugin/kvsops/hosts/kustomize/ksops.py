"""KSOPS (``viaduct.ai/v1`` ``ksops``): whole manifests and ``secretFrom`` Secrets, its exact output.

``secretFrom`` writes ``stringData`` (files, then envs through godotenv) and ``data`` (binaryFiles,
base64); ``type`` is omitted when empty; no hash or behaviour unless the author annotated the
object (kustomize reads ``kustomize.config.k8s.io/needs-hash`` / ``behavior`` itself).
"""

from __future__ import annotations

from collections.abc import Mapping  # isinstance checks at run time

from kvsops import errors
from kvsops.hosts.kustomize import common, dotenv
from kvsops.hosts.kustomize.sources import Sources, b64, split_key_path, utf8

TYPE_CHECKING = False  # typing costs milliseconds of every kustomize generator's start-up
if TYPE_CHECKING:
    from typing import Any, Callable

    Builder = Callable[[Sources], list[dict[str, Any]]]

# Every field any KSOPS release reads (v1-v2: files; v3.1: secretFrom with files, envs, metadata,
# type; v4.3: binaryFiles). secretFrom[].metadata is kustomize's types.ObjectMeta: four fields.
# KSOPS ignores everything else (sigs.k8s.io/yaml is not strict), so a misspelt field silently
# drops data there; kvsops refuses it. `behavior` and `options` (kustomize's generator fields)
# are accepted with a warning: KSOPS ignores them, so a config that has them works unchanged.
_ANY = common.ANY
_NO_EFFECT = {
    "behavior": "KSOPS has no behavior field; annotate the Secret with kustomize.config.k8s.io/behavior",
    "options": "KSOPS has no generator options; annotate the Secret with kustomize.config.k8s.io/needs-hash "
               "or kustomize.config.k8s.io/behavior",
}
_META = dict.fromkeys(("name", "namespace", "labels", "annotations"), _ANY)
_SECRET_FROM: dict[str, Any] = {
    "metadata": _META, "type": _ANY, "files": _ANY, "binaryFiles": _ANY, "envs": _ANY,
    common.IGNORED: _NO_EFFECT,
    common.MOVED: {"name": "under `metadata`", "namespace": "under `metadata`", "labels": "under `metadata`",
                   "annotations": "under `metadata`"},
}
SCHEMA: dict[str, Any] = {
    "apiVersion": _ANY, "kind": _ANY, "metadata": common.OBJECT_META, "files": _ANY, "secretFrom": [_SECRET_FROM],
    common.IGNORED: _NO_EFFECT,
    common.MOVED: dict.fromkeys(("envs", "binaryFiles", "type"), "in a `secretFrom[]` entry"),
}


def plan(cfg: Mapping[str, Any], src: Sources) -> Builder:
    label = common.label_of(cfg)
    common.check_fields(cfg, SCHEMA, label)
    files = common.as_list(cfg, "files", label)
    secret_from = common.as_list(cfg, "secretFrom", label)
    if not files and not secret_from:
        raise errors.GeneratorError("missing the required 'files' or 'secretFrom' key", where=label)
    refs = [src.want(_path(p, f"{label}: files[{i}]"), None, f"{label}: files[{i}]") for i, p in enumerate(files)]
    secrets = [_plan_secret(s, src, f"{label}: secretFrom[{i}]") for i, s in enumerate(secret_from)]
    return common.builder(refs, secrets)


def _path(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise errors.GeneratorError("a file entry must be a non-empty string", where=where)
    return value


def _entries(spec: Mapping[str, Any], field: str, src: Sources, where: str) -> list[tuple[str, Any]]:
    out = []
    for i, raw in enumerate(common.as_list(spec, field, where)):
        at = f"{where}.{field}[{i}]"
        if field == "envs":
            out.append(("", src.want(_path(raw, at), None, at)))
            continue
        key, path = split_key_path(_path(raw, at), at)
        if not key:
            raise errors.GeneratorError(f"empty key in {raw!r}", where=at)
        out.append((key, src.want(path, None, at)))
    return out


def _plan_secret(spec: Any, src: Sources, where: str) -> Callable[[Sources], dict[str, Any]]:
    if not isinstance(spec, Mapping):
        raise errors.GeneratorError("must be a mapping", where=where)
    meta = common.as_map(spec, "metadata", where)
    name = common.as_str(meta, "name", where)
    if not name:
        raise errors.GeneratorError("metadata.name is required", where=where)
    metadata = common.metadata(
        name, common.as_str(meta, "namespace", where),
        common.str_map(meta.get("labels"), "metadata.labels", where),
        common.str_map(meta.get("annotations"), "metadata.annotations", where),
    )
    typ = common.as_str(spec, "type", where)
    files = _entries(spec, "files", src, where)
    binary = _entries(spec, "binaryFiles", src, where)
    envs = _entries(spec, "envs", src, where)

    def build(src: Sources) -> dict[str, Any]:
        string_data: dict[str, str] = {}
        for key, ref in files:
            string_data[key] = utf8(src.plain(ref), src.where(ref), "list it under binaryFiles instead")
        for _, ref in envs:
            text = utf8(src.plain(ref), src.where(ref), "envs must be dotenv text")
            try:
                string_data.update(dotenv.parse_godotenv(text))
            except errors.KvsopsError as exc:
                raise exc.with_where(src.where(ref)) from None
        data = {key: b64(src.plain(ref)) for key, ref in binary}
        obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": dict(metadata)}
        if typ:
            obj["type"] = typ
        if string_data:
            obj["stringData"] = string_data
        if data:
            obj["data"] = data
        return common.clean(obj)

    return build
