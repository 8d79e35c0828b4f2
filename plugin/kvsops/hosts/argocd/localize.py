"""kustomize mode with no program a repository can choose.

Why not ``--enable-exec``: kustomize then runs whatever program a function config names, in a
process that holds every tenant's keys. Why not ``--enable-alpha-plugins`` on the checkout either:
kustomize looks a legacy exec plugin up at ``$KUSTOMIZE_PLUGIN_HOME/<group>/<version>/<lowercase
kind>/<Kind>``, joined from the config's apiVersion and kind and never checked, so ``apiVersion:
x/../../../bin/x`` with ``kind: ../sh`` runs ``/bin/sh`` with the config file as its script (kustomize
5.6 and 5.8). And no scan of the checkout can predict what kustomize loads (it matches kustomization
fields case-insensitively, builds generator directories, fetches remote bases). So kustomize must
only ever see plugin configs kvsops wrote:

1. ``kustomize localize --no-verify --scope CHECKOUT APP COPY``: kustomize itself walks the build
   graph (it loads plugin configs but runs none; remote bases come through a locked-down git) and
   writes a private copy holding only what the build reads, every kustomization re-serialized from
   its own parse (canonical field names, one document).
2. :func:`serve` rewrites every kustomization file of the copy: each ``generators``, ``transformers``
   and ``validators`` list is replaced by one kvsops writes, whose entries are files (or inline text)
   kvsops wrote, holding either kustomize builtins (``apiVersion: builtin``, which run in-process) or
   kvsops' own generator kinds under their canonical apiVersion with the function annotations
   removed. Any other config (an exec or container function, an unknown plugin) is an error.
3. ``kustomize build --enable-alpha-plugins`` of the copy with ``KUSTOMIZE_PLUGIN_HOME`` set to kvsops'
   home: the only plugins it can find are kvsops' shims. kvsops' plugin maps its working directory
   in the copy back to the checkout (:data:`COPY_ENV`, :data:`SOURCE_ENV`) and reads the encrypted
   files there, confined to the kustomization root as always.

The copy holds the repository's files and configs (ciphertext at most); nothing decrypted is written.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kvsops import errors, fs, plugin_home

if TYPE_CHECKING:
    from kvsops.hosts.argocd.render import Context

COPY_ENV = plugin_home.COPY_ENV
SOURCE_ENV = plugin_home.SOURCE_ENV
HOME_ENV = "KVSOPS_KUSTOMIZE_PLUGIN_HOME"
KUSTOMIZATION_NAMES = frozenset({"kustomization.yaml", "kustomization.yml", "Kustomization"})
PLUGIN_FIELDS = ("generators", "transformers", "validators")
ROOT_FIELDS = ("resources", "bases", "components")
# ``--enable-alpha-plugins`` also turns kustomize's Helm support on (types.EnabledPluginConfig), which
# runs helm with homes (and so plugins) from the kustomization's helmGlobals: never here.
HELM_FIELDS = ("helmCharts", "helmGlobals", "helmChartInflationGenerator")
# kustomize's builtin plugins (builtinhelpers, 5.6 to 5.8) that run in-process and start no program.
BUILTINS = frozenset({
    "AnnotationsTransformer", "ConfigMapGenerator", "IAMPolicyGenerator", "HashTransformer", "ImageTagTransformer",
    "LabelTransformer", "NamespaceTransformer", "PatchJson6902Transformer", "PatchStrategicMergeTransformer",
    "PatchTransformer", "PrefixSuffixTransformer", "PrefixTransformer", "SuffixTransformer",
    "ReplicaCountTransformer", "SecretGenerator", "ValueAddTransformer", "ReplacementTransformer",
})
# kustomize's function specs (kyaml runtimeutil.GetFunctionSpec): two annotations, metadata.configFn,
# and the legacy container annotation.
FUNCTION_ANNOTATIONS = ("config.kubernetes.io/function", "config.k8s.io/function", "config.kubernetes.io/container")
MAX_FILES = 100_000
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$")  # never a YAML mapping, marker or alias
_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_NULL = "tag:yaml.org,2002:null"
HINT = ("in the Argo CD sidecar only kvsops' own generators run (SopsGenerator, ksops, SopsSecretGenerator); "
        "a repository's functions and plugins never do: render such apps without the kvsops plugin")


def _yaml() -> Any:
    import yaml

    return yaml


def _refuse(where: str, why: str) -> errors.PluginRefused:
    return errors.PluginRefused(f"{where}: {why}", hint=HINT)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ----------------------------------------------------------------------------- the render


def localize_command(kustomize: str, scope: Path, app: Path, copy: Path) -> list[str]:
    return [kustomize, "localize", "--no-verify", "--scope", str(scope), str(app), str(copy)]


def build_command(kustomize: str, work: Path) -> list[str]:
    """Plugins from kvsops' home only; never ``--enable-exec`` or ``--enable-helm``, and a helm
    command that does not exist (Helm fields are refused before; this is the second lock)."""
    return [kustomize, "build", "--enable-alpha-plugins", "--helm-command", str(work / "helm-is-disabled"), "."]


def plugin_dir(ctx: Context) -> str:
    """The operator's read-only plugin home (``KVSOPS_KUSTOMIZE_PLUGIN_HOME``, checked), or a
    private one written into the render's work dir."""
    given = ctx.env.get(HOME_ENV, "").strip()
    if given:
        return plugin_home.check(given)
    home = ctx.workdir() / "kustomize-plugins"
    plugin_home.install(home)
    return str(home)


# ----------------------------------------------------------------------------- YAML nodes


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _compose_all(data: bytes | str, where: str) -> list[Any]:
    yaml = _yaml()
    try:
        return [n for n in yaml.compose_all(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))]
    except yaml.YAMLError:
        raise _refuse(where, "is not valid YAML") from None


def _serialize(nodes: list[Any]) -> str:
    yaml = _yaml()
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return str(yaml.serialize_all(nodes, Dumper=dumper, allow_unicode=True, width=1 << 30))


def _scalar(value: str) -> Any:
    return _yaml().ScalarNode(_STR, value, style='"')


def _keys(node: Any, where: str, sensitive: tuple[str, ...] = ()) -> dict[str, int]:
    """Index of a mapping's keys. Only plain string keys; a merge key, a tagged or non-ASCII key,
    a duplicate, or a case variant of a ``sensitive`` name (kustomize matches kustomization fields
    case-insensitively) is refused. Files kustomize wrote never have any of them."""
    yaml = _yaml()
    if not isinstance(node, yaml.MappingNode):
        raise _refuse(where, "is not a mapping")
    index: dict[str, int] = {}
    folded_sensitive = {name.lower() for name in sensitive}
    for i, (k, _v) in enumerate(node.value):
        name = k.value if isinstance(k, yaml.ScalarNode) and k.tag == _STR else None
        if name is None or not name.isascii():
            raise _refuse(where, "has a key kvsops cannot read safely (merge, tagged, non-string or non-ASCII)")
        folded = name.lower()
        if folded in index or (folded in folded_sensitive and name not in sensitive):
            raise _refuse(where, f"has an ambiguous key {_show(name)}")
        index[folded] = i
    return index


def _get(node: Any, name: str, where: str) -> Any:
    at = _keys(node, where).get(name.lower())
    if at is None or node.value[at][0].value != name:
        return None
    return node.value[at][1]


def _text(node: Any) -> str | None:
    yaml = _yaml()
    return node.value if isinstance(node, yaml.ScalarNode) and node.tag == _STR else None


def _strings(node: Any, where: str) -> list[str]:
    yaml = _yaml()
    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise _refuse(where, "is not a list")
    out = []
    for item in node.value:
        text = _text(item)
        if text is None:
            raise _refuse(where, "holds an entry that is not a string")
        out.append(text)
    return out


def _has_content(node: Any) -> bool:
    yaml = _yaml()
    if isinstance(node, yaml.ScalarNode):
        return bool(node.tag != _NULL and node.value != "")
    return bool(node.value)


def _drop(node: Any, names: tuple[str, ...]) -> None:
    node.value = [(k, v) for k, v in node.value if k.value not in names]


def _set(node: Any, name: str, value: str) -> None:
    for i, (k, _v) in enumerate(node.value):
        if k.value == name:
            node.value[i] = (k, _scalar(value))
            return
    node.value.insert(0, (_scalar(name), _scalar(value)))


# ----------------------------------------------------------------------------- function configs


def _function(meta: Any, where: str) -> tuple[str, Any] | None:
    """The function spec kustomize would find, in its order: (where it is, parsed spec)."""
    yaml = _yaml()
    if meta is None:
        return None
    annotations = _get(meta, "annotations", where)
    found: list[tuple[str, str]] = []
    if annotations is not None:
        _keys(annotations, where)
        for key in FUNCTION_ANNOTATIONS[:2]:
            text = _text(_get(annotations, key, where))
            if text:
                found.append((key, text))
    config_fn = _get(meta, "configFn", where)
    if config_fn is not None and not (isinstance(config_fn, yaml.ScalarNode) and config_fn.tag == _NULL):
        found.append(("configFn", _serialize([config_fn])))
    if annotations is not None:
        image = _text(_get(annotations, FUNCTION_ANNOTATIONS[2], where))
        if image:
            found.append((FUNCTION_ANNOTATIONS[2], yaml.safe_dump({"container": {"image": image}})))
    if not found:
        return None
    key, text = found[0]
    try:
        spec = yaml.safe_load(text[:65536])
    except yaml.YAMLError:
        spec = None
    return key, spec


def _program(spec: Any) -> str:
    if isinstance(spec, dict) and isinstance(spec.get("exec"), dict):
        return f"exec function {_show(spec['exec'].get('path'))}"
    if isinstance(spec, dict) and isinstance(spec.get("container"), dict):
        return f"container function {_show(spec['container'].get('image'))}"
    return "a function kvsops cannot read"


def _unserved(field: str, api: str | None, kind: str | None, fn: tuple[str, Any] | None) -> str | None:
    """Why a config does not run here, or None for one of kvsops' generators."""
    what = f"{_show(api)} {_show(kind)}"
    if kind not in plugin_home.SERVED:
        ours = fn is not None and isinstance(fn[1], dict) and isinstance(fn[1].get("exec"), dict) \
            and os.path.basename(str(fn[1]["exec"].get("path"))) in plugin_home.FUNCTION_NAMES
        if ours:
            return f"kvsops serves no kind {_show(kind)} (its kinds: {', '.join(plugin_home.SERVED)})"
        return f"{_program(fn[1])} ({what}) does not run here" if fn else f"kustomize plugin {what} does not run here"
    if field != "generators":
        return f"{kind} is a generator: list it under generators, not {field}"
    if kind == "ksops" and not (api or "").startswith("viaduct.ai/"):
        return f"ksops must have apiVersion viaduct.ai/v1 (found {_show(api)})"
    if kind != "ksops" and api != plugin_home.SERVED[kind]:
        return f"{kind} must have apiVersion {plugin_home.SERVED[kind]} (found {_show(api)})"
    if fn is not None:
        spec = fn[1]
        path = spec["exec"].get("path") if isinstance(spec, dict) and isinstance(spec.get("exec"), dict) else None
        if not isinstance(path, str) or os.path.basename(path) not in plugin_home.FUNCTION_NAMES:
            return f"{what} names {_program(spec)}, which is not kvsops"
    return None


def serve_config(node: Any, field: str, where: str) -> Any:
    """One config, as kvsops lets kustomize see it: a builtin, or kvsops' generator served as a
    legacy plugin from the plugin home; anything else raises."""
    yaml = _yaml()
    _keys(node, where)
    api, kind = _text(_get(node, "apiVersion", where)), _text(_get(node, "kind", where))
    if api == "builtin":  # kustomize's own plugins run in-process
        if kind not in BUILTINS:
            raise _refuse(where, f"kustomize builtin {_show(kind)} does not run here")
        _set(node, "apiVersion", "builtin")
        _set(node, "kind", kind)
        return node
    meta = _get(node, "metadata", where)
    if meta is not None and not isinstance(meta, yaml.MappingNode):
        raise _refuse(where, "metadata is not a mapping")
    fn = _function(meta, where)
    reason = _unserved(field, api, kind, fn)
    if reason:
        raise _refuse(where, reason)
    assert kind is not None
    _set(node, "kind", kind)
    _set(node, "apiVersion", plugin_home.SERVED[kind])
    if meta is not None:
        _drop(meta, ("configFn",))
        annotations = _get(meta, "annotations", where)
        if isinstance(annotations, yaml.MappingNode):
            _drop(annotations, FUNCTION_ANNOTATIONS)
    return node


def _configs(data: bytes | str, field: str, where: str) -> list[Any]:
    out = []
    for i, node in enumerate(_compose_all(data, where), 1):
        if node is not None:
            out.append(serve_config(node, field, f"{where} (document {i})"))
    return out


# ----------------------------------------------------------------------------- kustomizations


class Server:
    """Rewrites the kustomizations of one localized copy (see the module docstring)."""

    def __init__(self, copy: Path) -> None:
        self.copy = Path(os.path.realpath(copy))
        self.files = fs.Beneath(str(self.copy), label="the localized copy")
        self.done: set[tuple[str, str]] = set()
        self.served = 0

    def rel(self, path: Path) -> str:
        return path.relative_to(self.copy).as_posix()

    def read(self, path: Path) -> bytes:
        return self.files.read(self.rel(path))

    def run(self) -> int:
        seen = 0
        for dirpath, dirnames, filenames in os.walk(self.copy, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                seen += 1
                if seen > MAX_FILES:
                    raise errors.LimitExceeded(f"the kustomization has more than {MAX_FILES} files")
                if name in KUSTOMIZATION_NAMES:
                    self.kustomization(Path(dirpath) / name)
        return self.served

    def kustomization(self, path: Path) -> None:
        yaml = _yaml()
        where = self.rel(path)
        docs = [d for d in _compose_all(self.read(path), where) if d is not None]
        if not docs:
            return
        if len(docs) > 1 or not isinstance(docs[0], yaml.MappingNode):
            raise _refuse(where, "is not a single kustomization")
        root = docs[0]
        index = _keys(root, where, PLUGIN_FIELDS + ROOT_FIELDS + HELM_FIELDS)
        for name in HELM_FIELDS:
            if name.lower() in index and _has_content(root.value[index[name.lower()]][1]):
                raise _refuse(f"{where}: {name}", "kustomize's Helm support runs helm with the repository's "
                              "settings and does not run here; render charts with the plugin's helm mode")
        for name in ROOT_FIELDS:
            if name in index:
                self.roots(path.parent, _strings(root.value[index[name]][1], f"{where}: {name}"), f"{where}: {name}")
        changed = False
        for name in PLUGIN_FIELDS:
            if name in index:
                at = index[name]
                entries = _strings(root.value[at][1], f"{where}: {name}")
                new = [self.entry(path.parent, name, e, f"{where}: {name}") for e in entries]
                items = [_scalar(s) for s in new if s is not None]
                root.value[at] = (root.value[at][0], yaml.SequenceNode(_SEQ, items))
                changed = True
        if changed:
            _write(path, _serialize([root]))

    def roots(self, base: Path, entries: list[str], where: str) -> None:
        """Every base and component the build will load is inside the copy (localize made them so)."""
        for entry in entries:
            target = os.path.normpath(os.path.join(base, entry))
            if os.path.isabs(entry) or "://" in entry or not (target + os.sep).startswith(str(self.copy) + os.sep):
                raise _refuse(where, f"{_show(entry)} is not inside the localized copy")

    def entry(self, base: Path, field: str, entry: str, listed: str) -> str | None:
        if "\n" in entry:  # inline configs stay inline (localize re-serialized them)
            configs = _configs(entry, field, f"{listed} (inline)")
            self.served += len(configs)
            return _serialize(configs) if configs else None
        if not _SAFE_PATH.match(entry) or ".." in entry.split("/"):
            raise _refuse(listed, f"{_show(entry)} is not a plain relative file name")
        target = base / entry
        where = f"{self.rel(target)} (in {listed})"
        key = (str(target), field)
        if key not in self.done:
            configs = _configs(self.read(target), field, where)
            _write(target, _serialize(configs) if configs else "")
            self.done.add(key)
            self.served += len(configs)
        return entry


def serve(copy: Path) -> int:
    """Rewrite every kustomization of ``copy``; returns how many configs it let through."""
    server = Server(copy)
    try:
        return server.run()
    finally:
        server.files.close()
