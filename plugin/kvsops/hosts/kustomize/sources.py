"""Encrypted inputs of a generator run: collected first, then decrypted together.

Every generator kind first *plans* (parses its config and names the files it needs), then all
files of the run are read inside the root and decrypted concurrently through one Session
(``api.decrypt_many``), then each kind *builds* its objects from the decrypted trees. Nothing is
written anywhere; plaintext lives only in these objects.
"""

from __future__ import annotations

import base64
import os

from kvsops import errors
from kvsops._record import Record
from kvsops.hosts.kustomize.paths import Root

TYPE_CHECKING = False  # typing costs milliseconds of every kustomize generator's start-up
if TYPE_CHECKING:
    from typing import Any, Mapping


class Ref(Record):
    __slots__ = _fields = ("path", "fmt", "refs")
    _defaults = {"refs": False}
    path: str
    fmt: str
    refs: bool  # resolve ref+ references in the decrypted tree (SopsGenerator references: true)


def detect(path: str) -> str:
    from kvsops.sops import stores

    return stores.detect(path)


def workers(env: Mapping[str, str]) -> int:
    raw = env.get("KVSOPS_CONCURRENCY") or env.get("KSOPS_CONCURRENCY_LIMIT") or "16"
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise errors.ConfigError("KVSOPS_CONCURRENCY must be an integer >= 1")
    return n


class Sources:
    """Files wanted by the planned generators, and (after :meth:`load`) their plaintexts."""

    def __init__(self, root: Root, env: Mapping[str, str], session: Any = None) -> None:
        self.root = root
        self.env = env
        self._session = session
        self._where: dict[Ref, str] = {}
        self._label: dict[Ref, str] = {}
        self._docs: dict[Ref, list[Any]] = {}
        self._plain: dict[Ref, bytes] = {}
        self._text: dict[str, str] = {}
        self._resolving = False
        self.deadline: float | None = None  # the Session's (time.monotonic()), known after load()

    def references(self, on: bool) -> "_Resolving":
        """``with src.references(True):`` files wanted inside the block get their ``ref+``
        references resolved after decryption (a plain class: contextlib costs start-up time)."""
        return _Resolving(self, on)

    def want(self, path: str, fmt: str | None, where: str) -> Ref:
        ref = Ref(path, fmt or detect(path), self._resolving)
        self._where.setdefault(ref, f"{where}: {path}")
        self._label.setdefault(ref, where)
        return ref

    def want_text(self, path: str, where: str) -> str:
        """A plain (unencrypted) file such as a template, read at plan time."""
        if path not in self._text:
            try:
                data = self.root.read(path)
                self._text[path] = data.decode("utf-8")
            except UnicodeDecodeError:
                raise errors.InputError("is not UTF-8 text", where=f"{where}: {path}") from None
            except errors.KvsopsError as exc:
                raise exc.with_where(where) from None
        return self._text[path]

    def load(self) -> None:
        from kvsops import api

        refs = list(self._where)
        items = []
        for ref in refs:
            try:
                items.append((self._where[ref], self.root.read(ref.path), ref.fmt))
            except errors.KvsopsError as exc:
                raise exc.with_where(self._label[ref]) from None
        session = self._session or api.Session(env=dict(self.env))
        self.deadline = session.ctx.deadline
        results = api.decrypt_many(items, session=session, workers=workers(self.env))
        for ref, dec in zip(refs, results, strict=True):
            self._docs[ref] = dec.docs
        resolving = [ref for ref in refs if ref.refs]
        if resolving:
            from kvsops.refs import resolve as references

            located: list[tuple[str | None, Any]] = [
                (self._where[ref], doc) for ref in resolving for doc in self._docs[ref]
            ]
            references.resolve(located, session, self.root.read, workers=workers(self.env))

    def docs(self, ref: Ref) -> list[Any]:
        return self._docs[ref]

    def plain(self, ref: Ref) -> bytes:
        """The decrypted file as ``sops -d`` prints it (the same store re-emits it)."""
        if ref not in self._plain:
            from kvsops import api

            self._plain[ref] = api.emit_plain(self._docs[ref], ref.fmt, where=self._where[ref])
        return self._plain[ref]

    def where(self, ref: Ref) -> str:
        return self._where[ref]


class _Resolving:
    def __init__(self, src: Sources, on: bool) -> None:
        self.src, self.on, self.old = src, on, False

    def __enter__(self) -> None:
        self.old, self.src._resolving = self.src._resolving, self.on

    def __exit__(self, *exc: object) -> None:
        self.src._resolving = self.old


# ----------------------------------------------------------------------------- shared helpers


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def split_key_path(spec: str, where: str, *, allow_empty: bool = True) -> tuple[str, str]:
    """``key=path`` or ``path`` (key = the file's base name), as KSOPS and kustomize do."""
    parts = spec.split("=")
    if len(parts) == 1:
        return os.path.basename(spec), spec
    if len(parts) != 2 or (not allow_empty and (not parts[0] or not parts[1])):
        raise errors.GeneratorError(f"invalid file entry {spec!r}: expected 'key=path' or 'path'", where=where)
    return parts[0], parts[1]


def scalar_text(value: Any) -> str:
    """A decrypted scalar as the string a Secret stores (Go's fmt for numbers and bools)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, float):
        from kvsops.sops.stores import go_format_g

        return go_format_g(value)
    if isinstance(value, (int,)) or hasattr(value, "text"):
        return str(value)
    raise TypeError(type(value).__name__)


def flat_map(docs: list[Any], where: str) -> dict[str, str]:
    """A flat YAML/JSON (or dotenv) document as string pairs; nested values are refused."""
    from kvsops.sops.tree import Branch, Comment

    out: dict[str, str] = {}
    for doc in docs[:1]:
        for key, value in doc:
            if isinstance(key, Comment):
                continue
            if isinstance(value, (Branch, list)):
                raise errors.GeneratorError(f"key {key!r} is not a scalar (envs must be flat maps)", where=where)
            out[str(key)] = scalar_text(value)
    return out


def utf8(data: bytes, where: str, hint: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.GeneratorError("the decrypted content is not UTF-8 text", where=where, hint=hint) from None
