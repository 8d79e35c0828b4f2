"""YAML store: go-yaml v3 semantics as sops uses them (stores/yaml/store.go). Pure.

The store's functions (see :mod:`kvsops.sops.stores`) over four modules:
:mod:`.yaml_resolve` (what a scalar means), :mod:`.yaml_load` (PyYAML's parser into the tree),
:mod:`.yaml_comments` (comments from the source, attached as yaml.v3 does), :mod:`.yaml_emit` (our
writer, reproducing yaml.v3's emitter); and :mod:`.yaml_fast`, which reads a canonical sops file
without PyYAML.
"""

from __future__ import annotations

from ... import errors
from ..tree import Branch
from . import _common, yaml_load
from .yaml_emit import INDENT, best_indent, emit_encrypted, emit_plain, emit_value
from .yaml_load import MAX_DEPTH, MAX_NODES
from .yaml_resolve import resolve_plain

__all__ = [
    "FAST_MAX_BYTES", "INDENT", "MAX_DEPTH", "MAX_NODES", "STRUCTURED", "best_indent", "emit_encrypted",
    "emit_plain", "emit_value", "has_metadata", "is_metadata_key", "load_encrypted", "load_plain", "no_documents",
    "resolve_plain",
]

STRUCTURED = True
is_metadata_key = _common.is_metadata_key


def no_documents(data: bytes) -> errors.KvsopsError:
    if data:  # sops' first yaml.v3 Decode of a non-empty file found io.EOF
        return errors.InputError("Error unmarshaling input YAML: EOF (the file has no YAML document)")
    return _common.no_documents(data)


FAST_MAX_BYTES = 1 << 20  # larger files go to libyaml's event stream, which is faster for them


def load_plain(data: bytes) -> list[Branch]:
    try:
        return _load_plain(data)
    except ValueError:  # PyYAML, and our resolver, on an integer longer than Python reads
        err = _common.long_number_error(data)
        if err is None:
            raise
        raise err from None


def _load_plain(data: bytes) -> list[Branch]:
    text = yaml_load.decode(data)
    want_comments = "#" in text
    # Only while PyYAML is not loaded: once it is (kustomize's ResourceList), libyaml's events are
    # cheaper per file than the pure-Python reader plus its check.
    if not want_comments and len(data) <= FAST_MAX_BYTES and not yaml_load.pyyaml_loaded():
        from . import yaml_fast

        docs = yaml_fast.read(text, resolve_plain, MAX_DEPTH // 2)
        # Accepted only when emitting it gives back these very bytes (see yaml_fast's docstring).
        if docs is not None and emit_plain(docs) == data:
            return docs
    if not want_comments:
        try:
            return yaml_load.docs_from_events(text)
        except yaml_load.NeedNodes:
            pass
    return yaml_load.docs_from_nodes(text, want_comments)


def load_encrypted(data: bytes) -> tuple[list[Branch], Branch]:
    docs = load_plain(data)
    return _common.split_metadata_branch(docs)


def has_metadata(data: bytes) -> bool:
    return _common.has_sops_key(load_plain, data)
