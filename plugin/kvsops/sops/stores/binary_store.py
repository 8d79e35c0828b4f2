"""Binary store (sops stores/json/store.go: BinaryStore). Pure.

The whole input is one value under ``data``: a ``str`` decoded with ``surrogateescape`` so arbitrary
bytes round-trip. The encrypted form is a JSON document emitted like the JSON store.
"""

from __future__ import annotations

from ... import errors
from ..tree import Branch
from . import json_store

DATA_KEY = "data"

STRUCTURED = False  # one opaque value: no selection rule, nothing to extract or show
is_metadata_key = json_store.is_metadata_key
no_documents = json_store.no_documents


def load_plain(data: bytes) -> list[Branch]:
    return [Branch([(DATA_KEY, data.decode("utf-8", "surrogateescape"))])]


def load_encrypted(data: bytes) -> tuple[list[Branch], Branch]:
    return json_store.load_encrypted(data)


def has_metadata(data: bytes) -> bool:
    return json_store.has_metadata(data)


def emit_plain(docs: list[Branch], indent: int | None = None) -> bytes:
    if len(docs) != 1:
        raise errors.EmitError("error emitting binary store: there must be exactly one tree branch")
    for k, v in docs[0]:
        if k == DATA_KEY:
            if isinstance(v, str):
                return v.encode("utf-8", "surrogateescape")
            raise errors.EmitError("error emitting binary store: 'data' key in tree does not have a string value")
    raise errors.EmitError(  # sops: ErrorDumpingTree (4)
        "error emitting binary store: no binary data found in tree",
        hint="the file is not a binary-store file; use --output-type (e.g. yaml or json) to choose its format",
    )


def emit_encrypted(docs: list[Branch], metadata: Branch, indent: int | None = None) -> bytes:
    return json_store.emit_encrypted(docs, metadata, indent)


def emit_value(value: object, indent: int | None = None) -> bytes:
    raise errors.EmitError("Binary files are not structured and extracting a single value is not possible")
