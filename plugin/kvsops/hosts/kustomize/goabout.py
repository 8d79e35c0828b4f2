"""kustomize-sopssecretgenerator (``goabout.com/v1beta1`` ``SopsSecretGenerator``), its semantics.

Everything lands in ``data`` (base64, always present); envs first, then files; hash on by default
(``disableNameSuffixHash`` opts out); ``behavior`` becomes kustomize's annotation; the generator's
own labels, annotations and namespace are copied to the Secret.
"""

from __future__ import annotations

from kvsops import errors
from kvsops.hosts.kustomize import common, dotenv
from kvsops.hosts.kustomize.sources import Sources, b64, flat_map, split_key_path, utf8

TYPE_CHECKING = False  # typing costs milliseconds of every kustomize generator's start-up
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping

    Builder = Callable[[Sources], list[dict[str, Any]]]

API_VERSION = "goabout.com/v1beta1"
KINDS = ("SopsSecretGenerator", "SopsSecret")

# Every field any release reads (v1.0 to v1.6 have the same set). yaml.v3 is not strict there, so a
# misspelt field silently drops data; kvsops refuses it. `options` (kustomize's generator field) is
# accepted with a warning: the tool ignores it, so a config that has it works unchanged.
_ANY = common.ANY
_TOP_LEVEL = ("behavior", "disableNameSuffixHash", "type", "envs", "files")
SCHEMA: dict[str, Any] = {
    "apiVersion": _ANY, "kind": _ANY,
    "metadata": {**common.OBJECT_META,
                 common.MOVED: dict.fromkeys(_TOP_LEVEL, "at the top level, not under `metadata`")},  # goabout#17
    **dict.fromkeys(_TOP_LEVEL, _ANY),
    common.IGNORED: {"options": "kustomize-sopssecretgenerator reads disableNameSuffixHash and behavior at "
                                "the top level, not under options"},
}



def _env_format(path: str, where: str) -> str:
    if path.endswith(".env"):
        return "dotenv"
    if path.endswith((".yaml", ".yml")):
        return "yaml"
    if path.endswith(".json"):
        return "json"
    raise errors.GeneratorError("unknown file format, use dotenv, yaml or json", where=f"{where}: {path}")


def plan(cfg: Mapping[str, Any], src: Sources) -> Builder:
    label = common.label_of(cfg)
    if cfg.get("apiVersion") != API_VERSION or cfg.get("kind") not in KINDS:
        raise errors.GeneratorError(f"input must be apiVersion {API_VERSION}, kind SopsSecretGenerator", where=label)
    common.check_fields(cfg, SCHEMA, label)
    meta = common.as_map(cfg, "metadata", label)
    name = common.as_str(meta, "name", label)
    if not name:
        raise errors.GeneratorError("input must contain metadata.name value", where=label)
    annotations = common.str_map(meta.get("annotations"), "metadata.annotations", label)
    behavior = common.as_str(cfg, "behavior", label)
    if behavior:
        if behavior not in common.BEHAVIORS:
            raise errors.GeneratorError("behavior must be create, merge or replace", where=label)
        annotations[common.BEHAVIOR] = behavior
    if not common.as_bool(cfg, "disableNameSuffixHash", label):
        annotations[common.NEEDS_HASH] = "true"
    metadata = common.metadata(
        name, common.as_str(meta, "namespace", label),
        common.str_map(meta.get("labels"), "metadata.labels", label), annotations,
    )
    typ = common.as_str(cfg, "type", label)
    envs = []
    for i, raw in enumerate(common.as_list(cfg, "envs", label)):
        at = f"{label}: envs[{i}]"
        path = str(raw)
        envs.append(src.want(path, _env_format(path, at), at))
    files = []
    for i, raw in enumerate(common.as_list(cfg, "files", label)):
        at = f"{label}: files[{i}]"
        if str(raw).count("=") > 1:
            raise errors.GeneratorError("key names or file paths cannot contain '='", where=at)
        key, path = split_key_path(str(raw), at, allow_empty=False)
        files.append((key, src.want(path, None, at)))

    def build(src: Sources) -> list[dict[str, Any]]:
        data: dict[str, str] = {}
        for ref in envs:
            if ref.fmt == "dotenv":
                try:
                    pairs = dotenv.parse_raw(utf8(src.plain(ref), src.where(ref), "envs must be text"))
                except errors.KvsopsError as exc:
                    raise exc.with_where(src.where(ref)) from None
            else:
                pairs = flat_map(src.docs(ref), src.where(ref))
            data.update({k: b64(v.encode("utf-8")) for k, v in pairs.items()})
        for key, ref in files:
            data[key] = b64(src.plain(ref))
        obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": dict(metadata)}
        if typ:
            obj["type"] = typ
        obj["data"] = data
        return [common.clean(obj)]

    return build
