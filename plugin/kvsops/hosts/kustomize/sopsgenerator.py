"""Our kind, ``kvsops/v1`` ``SopsGenerator``: manifests and assembled Secrets (reference:
kustomize/README.md). Secrets default to kustomize's secretGenerator conventions: ``type: Opaque``,
base64 ``data``, name-suffix hash on, so the same content gets the same name as the builtin."""

from __future__ import annotations

import base64
from collections.abc import Mapping  # isinstance checks at run time

from kvsops import errors
from kvsops.hosts.kustomize import common
from kvsops.hosts.kustomize.sources import Ref, Sources, b64, flat_map, scalar_text, split_key_path

TYPE_CHECKING = False  # typing costs milliseconds of every kustomize generator's start-up
if TYPE_CHECKING:
    from typing import Any, Callable

    Builder = Callable[[Sources], list[dict[str, Any]]]

    Part = Callable[[Sources, dict[str, str]], None]

API_VERSION = "kvsops/v1"
KIND = "SopsGenerator"
FORMATS = ("yaml", "json", "dotenv", "ini", "binary")

# Every field of the kind (kustomize/README.md), for common.check_fields.
_ANY = common.ANY
_OPTIONS = dict.fromkeys(("disableNameSuffixHash", "behavior", "immutable", "labels", "annotations"), _ANY)
_ENTRY = {"path": _ANY, "format": _ANY}
_KEYED = {"key": _ANY, "path": _ANY, "format": _ANY}
_TEMPLATE = {"key": _ANY, "template": _ANY, "inline": _ANY, "values": {common.EACH: _ENTRY}}
_SECRET_FIELDS = ("name", "namespace", "type", "labels", "annotations", "format", "options", "references",
                  "envs", "files", "binaryFiles", "literals", "templates", "template")
_SECRET: dict[str, Any] = {
    **dict.fromkeys(_SECRET_FIELDS, _ANY),
    "options": _OPTIONS,
    "envs": [_ENTRY], "files": [_KEYED], "binaryFiles": [_KEYED],
    "literals": [{"key": _ANY, "path": _ANY, "pointer": _ANY, "format": _ANY}],
    "templates": [_TEMPLATE], "template": _TEMPLATE,
    common.MOVED: dict.fromkeys(("disableNameSuffixHash", "behavior", "immutable"),
                                "under this entry's `options` (or the generator's `options`)"),
}
SCHEMA: dict[str, Any] = {
    "apiVersion": _ANY, "kind": _ANY, "metadata": common.OBJECT_META, "format": _ANY, "references": _ANY,
    "files": [_ENTRY], "options": _OPTIONS, "secrets": [_SECRET],
    common.MOVED: {
        **dict.fromkeys(("name", "namespace", "type", "envs", "binaryFiles", "literals", "templates", "template"),
                        "in a `secrets[]` entry (one per Secret)"),
        **dict.fromkeys(("labels", "annotations"),
                        "under `options` (every Secret) or in a `secrets[]` entry (one Secret)"),
        **dict.fromkeys(("disableNameSuffixHash", "behavior", "immutable"), "under `options`"),
    },
}



def _fmt(value: Any, where: str) -> str | None:
    if value in (None, ""):
        return None
    if value not in FORMATS:
        raise errors.GeneratorError(f"format must be one of {', '.join(FORMATS)}", where=where)
    return str(value)


def _entry(raw: Any, where: str, fmt: str | None, keyed: bool) -> tuple[str, str, str | None]:
    """``key=path`` / ``path`` / ``{key, path, format}`` -> (key, path, format)."""
    if isinstance(raw, Mapping):
        path = common.as_str(raw, "path", where)
        key = common.as_str(raw, "key", where) or path.rsplit("/", 1)[-1]
        fmt = _fmt(raw.get("format"), where) or fmt
    elif isinstance(raw, str):
        key, path = split_key_path(raw, where, allow_empty=False) if keyed else ("", raw)
    else:
        raise errors.GeneratorError("an entry must be a string or a mapping", where=where)
    if not path or (keyed and not key):
        raise errors.GeneratorError("an entry needs a path (and a key)", where=where)
    return key, path, fmt


def _options(base: Mapping[str, Any], over: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if k in ("labels", "annotations"):
            out[k] = {**out.get(k, {}), **common.str_map(v, f"options.{k}", where)}
        elif k in ("disableNameSuffixHash", "immutable"):
            out[k] = common.as_bool(over, k, where)
        elif k == "behavior":
            if v not in (None, "", *common.BEHAVIORS):
                raise errors.GeneratorError("options.behavior must be create, merge or replace", where=where)
            out[k] = v or ""
        else:  # check_fields has named it already; kept so that no option is ever dropped
            raise errors.GeneratorError(f"unknown option {k!r}", where=where)
    return out


def plan(cfg: Mapping[str, Any], src: Sources) -> Builder:
    label = common.label_of(cfg)
    if cfg.get("apiVersion") != API_VERSION:
        raise errors.GeneratorError(f"apiVersion must be {API_VERSION}", where=label)
    common.check_fields(cfg, SCHEMA, label)
    fmt = _fmt(cfg.get("format"), label)
    options = _options({}, common.as_map(cfg, "options", label), label)
    resolve = common.as_bool(cfg, "references", label)  # ref+ references (kvsops.refs.grammar) in every input
    refs = []
    with src.references(resolve):
        for i, raw in enumerate(common.as_list(cfg, "files", label)):
            at = f"{label}: files[{i}]"
            _, path, f = _entry(raw, at, fmt, keyed=False)
            refs.append(src.want(path, f, at))
    secrets = [_plan_secret(s, src, f"{label}: secrets[{i}]", fmt, options, resolve)
               for i, s in enumerate(common.as_list(cfg, "secrets", label))]
    if not refs and not secrets:
        raise errors.GeneratorError("nothing to generate: give 'files' or 'secrets'", where=label)
    return common.builder(refs, secrets)


def _plan_secret(spec: Any, src: Sources, where: str, fmt: str | None,
                 gen_options: dict[str, Any], resolve: bool = False) -> Callable[[Sources], dict[str, Any]]:
    if not isinstance(spec, Mapping):
        raise errors.GeneratorError("must be a mapping", where=where)
    name = common.as_str(spec, "name", where)
    if not name:
        raise errors.GeneratorError("name is required", where=where)
    where = f"{where} {name!r}"
    fmt = _fmt(spec.get("format"), where) or fmt
    opts = _options(gen_options, common.as_map(spec, "options", where), where)
    labels = {**opts.get("labels", {}), **common.str_map(spec.get("labels"), "labels", where)}
    annotations = {**opts.get("annotations", {}), **common.str_map(spec.get("annotations"), "annotations", where)}
    if opts.get("behavior"):
        annotations[common.BEHAVIOR] = opts["behavior"]
    if not opts.get("disableNameSuffixHash"):
        annotations[common.NEEDS_HASH] = "true"
    metadata = common.metadata(name, common.as_str(spec, "namespace", where), labels, annotations)
    typ = common.as_str(spec, "type", where, "Opaque")
    parts: list[Part] = []
    resolve = resolve or common.as_bool(spec, "references", where)
    with src.references(resolve):
        for field in ("envs", "files", "binaryFiles", "literals"):
            for i, raw in enumerate(common.as_list(spec, field, where)):
                parts.append(_plan_part(field, raw, src, f"{where}: {field}[{i}]", fmt))
        templates = common.as_list(spec, "templates", where)
        if spec.get("template") is not None:
            templates = [spec["template"], *templates]
        for i, raw in enumerate(templates):
            parts.append(_plan_template(raw, src, f"{where}: templates[{i}]", fmt))

    def build(src: Sources) -> dict[str, Any]:
        data: dict[str, str] = {}
        for part in parts:
            part(src, data)
        obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": dict(metadata)}
        if typ:
            obj["type"] = typ
        obj["data"] = data
        if opts.get("immutable"):
            obj["immutable"] = True
        return common.clean(obj)

    return build


def _plan_part(field: str, raw: Any, src: Sources, where: str, fmt: str | None) -> Part:
    if field == "envs":
        _, path, f = _entry(raw, where, fmt, keyed=False)
        ref = src.want(path, f, where)

        def envs(src: Sources, data: dict[str, str]) -> None:
            if ref.fmt in ("binary", "ini"):
                raise errors.GeneratorError("envs must be dotenv, YAML or JSON", where=src.where(ref))
            data.update({k: b64(v.encode()) for k, v in flat_map(src.docs(ref), src.where(ref)).items()})

        return envs
    if field == "literals":
        return _plan_literal(raw, src, where, fmt)
    key, path, f = _entry(raw, where, fmt, keyed=True)
    ref = src.want(path, f, where)

    def file(src: Sources, data: dict[str, str]) -> None:
        data[key] = b64(src.plain(ref))

    return file


def _plan_literal(raw: Any, src: Sources, where: str, fmt: str | None) -> Part:
    if isinstance(raw, Mapping):
        key, path, f = _entry(raw, where, fmt, keyed=True)
        pointer = common.as_str(raw, "pointer", where)
    else:
        key, rest = str(raw).split("=", 1) if "=" in str(raw) else ("", str(raw))
        path, _, pointer = rest.rpartition("#")
        f = fmt
    if not key or not path or not pointer.startswith("/"):
        raise errors.GeneratorError("a literal must read 'key=path#/json/pointer'", where=where)
    ref = src.want(path, f, where)

    def literal(src: Sources, data: dict[str, str]) -> None:
        value = lookup(src.docs(ref), pointer, f"{src.where(ref)}#{pointer}")
        data[key] = b64(scalar_text(value).encode())

    return literal


def lookup(docs: list[Any], pointer: str, where: str) -> Any:
    """Follow a JSON pointer (RFC 6901) through the first document of a decrypted tree."""
    from kvsops.sops.tree import Branch

    node: Any = docs[0] if docs else None
    for raw in pointer.split("/")[1:]:
        seg = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Branch) and node.index_of(seg) >= 0:
            node = node.get(seg)
        elif isinstance(node, list) and seg.isdigit() and int(seg) < len(node):
            node = node[int(seg)]
        else:
            raise errors.GeneratorError("key path not found", where=where)
    if isinstance(node, (Branch, list)):
        raise errors.GeneratorError("key path points at a mapping or list, not a value", where=where)
    return node


def _plan_template(raw: Any, src: Sources, where: str, fmt: str | None) -> Part:
    if not isinstance(raw, Mapping):
        raise errors.GeneratorError("a template must be a mapping with key, template|inline, values", where=where)
    key = common.as_str(raw, "key", where)
    path = common.as_str(raw, "template", where)
    if not key or bool(path) == (raw.get("inline") is not None):
        raise errors.GeneratorError("a template needs 'key' and exactly one of 'template' or 'inline'", where=where)
    source = src.want_text(path, where) if path else common.as_str(raw, "inline", where)
    values: dict[str, Ref] = {}
    for name, entry in common.as_map(raw, "values", where).items():
        _, vpath, f = _entry(entry, f"{where}: values.{name}", fmt, keyed=False)
        values[str(name)] = src.want(vpath, f, f"{where}: values.{name}")

    def template(src: Sources, data: dict[str, str]) -> None:
        from kvsops.hosts.kustomize.template import render
        from kvsops.sops.tree import to_plain

        ctx: dict[str, Any] = {}
        for name, ref in values.items():
            if ref.fmt == "binary":
                ctx[name] = src.plain(ref).decode("utf-8", "replace")
            else:
                docs = src.docs(ref)
                ctx[name] = to_plain(docs[0]) if len(docs) == 1 else [to_plain(d) for d in docs]
        text = render(source, ctx, f"{where} {key!r}", deadline=src.deadline)
        data[key] = base64.b64encode(text.encode("utf-8")).decode("ascii")

    return template
