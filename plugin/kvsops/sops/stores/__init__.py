"""Stores: bytes <-> list of documents (Branch) plus the raw metadata Branch. Pure.

Every store module exposes the same functions:

``load_plain(data: bytes) -> list[Branch]``
    Parse an unencrypted file. Raises ``errors.InputError`` (with line info when known).
``load_encrypted(data: bytes) -> tuple[list[Branch], Branch]``
    Parse an encrypted file: the documents with the ``sops`` metadata removed, and the metadata as
    a Branch of plain values (str, int, bool, lists of Branch). Raises ``errors.MetadataNotFound``
    when there is none, ``errors.InputError`` on syntax errors.
``emit_plain(docs: list[Branch], indent: int | None = None) -> bytes``
``emit_encrypted(docs: list[Branch], metadata: Branch, indent: int | None = None) -> bytes``
``emit_value(value: object, indent: int | None = None) -> bytes``  (for ``--extract`` of a
    non-string, non-map value)
    ``indent`` is sops' ``stores.<format>.indent`` / ``--indent`` (None: the format's default). YAML
    and JSON use it (the binary store's encrypted JSON too); dotenv and INI have no such setting
    and ignore it.
``has_metadata(data: bytes) -> bool`` (cheap check used by ``encrypt`` / ``filestatus``)
``is_metadata_key(key: object) -> bool``
    Whether a top-level key of a plain document is (part of) sops metadata: ``sops`` (an INI
    section too), or dotenv's flattened ``sops_...`` lines.
``no_documents(data: bytes) -> errors.KvsopsError``
    What encrypting ``data`` raises when ``load_plain`` found no document in it.
``STRUCTURED: bool``
    False for the binary store: one opaque value, so no selection rule applies (every leaf is
    encrypted and none is written to the metadata), no value can be extracted, no key shown.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    from kvsops import errors
    from kvsops.errors import InputError
    from kvsops.sops.tree import Branch

    class Store(Protocol):
        """The module protocol above, for the type checker (each ``*_store`` module is one)."""

        def load_plain(self, data: bytes) -> list[Branch]: ...
        def load_encrypted(self, data: bytes) -> tuple[list[Branch], Branch]: ...
        def emit_plain(self, docs: list[Branch], indent: int | None = None) -> bytes: ...
        def emit_encrypted(self, docs: list[Branch], metadata: Branch, indent: int | None = None) -> bytes: ...
        def emit_value(self, value: object, indent: int | None = None) -> bytes: ...
        def has_metadata(self, data: bytes) -> bool: ...
        def is_metadata_key(self, key: object) -> bool: ...
        def no_documents(self, data: bytes) -> errors.KvsopsError: ...

        STRUCTURED: bool

FORMATS = ("yaml", "json", "dotenv", "ini", "binary")


def get(fmt: str) -> Store:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}")
    name = f"kvsops.sops.stores.{fmt}_store"
    __import__(name)  # importlib.import_module, without importing importlib (and warnings)
    return sys.modules[name]


def long_number_error(text: str | bytes, prefix: str = "") -> InputError | None:
    """Python refuses to read a decimal integer of more than ``sys.get_int_max_str_digits()``
    (4,300) digits with a bare ValueError; parsers that hit it (ours, PyYAML, json) turn it into
    this [INPUT] error naming the line, or get None when the text holds no such number."""
    from kvsops.sops.stores._common import long_number_error as found

    return found(text, prefix)


def go_format_g(x: float) -> str:
    """A float as sops (Go's ``strconv.FormatFloat(x, 'g', -1, 64)``) writes it."""
    from kvsops.sops.stores._common import go_format_g as formatted

    return formatted(x)


def detect(path: str) -> str:
    """Format by extension, exactly as sops: anything unknown is binary (case-sensitive)."""
    if path.endswith((".yaml", ".yml")):
        return "yaml"
    if path.endswith(".json"):
        return "json"
    if path.endswith(".env"):
        return "dotenv"
    if path.endswith(".ini"):
        return "ini"
    return "binary"
