"""Secret references in the vals form, resolved at render time: parsing, substitution, a resolver.

    ref+azurekeyvault://VAULT/SECRET[/VERSION][#/path/in/yaml]
    ref+sops://FILE[#/path]                      (``secretref+`` is accepted as a synonym)

``VAULT`` without a dot is ``https://VAULT.vault.azure.net``; with a dot it is a full host
(``myvault.vault.azure.cn``, ``127.0.0.1:8443``). An empty version means the latest. A fragment walks
into the secret's text parsed as YAML/JSON (or into the SOPS file's first document).

Substitution follows vals: only string *values* are looked at (never keys). A string that is exactly
one reference takes the type of what it resolves to (a fragment can yield a map, list, number or
bool); a reference inside a longer string is interpolated and must resolve to a scalar. The grammar
is vals' ``DefaultRefRegexp``: a reference ends at ``+``, a space or a newline, and its last
character is not ``"`` or ``,``; a trailing ``+`` lets text follow directly (``ref+a+-suffix``).

This module is pure: it never reads files, the environment or the network. The host hands a
:class:`Resolver` one fetcher per backend (``kvsops.refs.resolve`` builds them from a Session) and an
optional policy check; every reference is checked before any fetch, and each distinct source is
fetched once, concurrently, through a shared cache. Error messages name the reference, never a value.
"""

from __future__ import annotations

import datetime as _dt
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from kvsops import errors

BACKENDS = ("azurekeyvault", "sops")

# vals: DefaultRefRegexp = ((secret)?ref)\+([^\+:]*:\/\/[^\+\n ]+[^\+\n ",])\+?
REF_RE = re.compile(r"((?:secret)?ref)\+([^+:]*://[^+\n ]+[^+\n \",])\+?")
_QUICK = re.compile(r"(?:secret)?ref\+[^+:]*://")
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*(:[0-9]{1,5})?$")
_SECRET_NAME_RE = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_VERSION_RE = re.compile(r"^[0-9A-Za-z]{0,64}$")
MAX_REFS = 10_000


@dataclass(frozen=True)
class Ref:
    """One parsed reference. ``text`` is the reference as written (without a trailing ``+``)."""

    text: str
    backend: str
    vault_url: str = ""  # azurekeyvault: https://host[:port]
    name: str = ""  # azurekeyvault: the secret name
    version: str = ""  # azurekeyvault: "" = latest
    path: str = ""  # sops: the file, relative to the host's root
    fragment: tuple[str, ...] | None = None  # None: no fragment; (): the whole document

    @property
    def source(self) -> tuple[str, ...]:
        """What is fetched (the cache key): the reference without its fragment."""
        if self.backend == "azurekeyvault":
            return (self.backend, self.vault_url, self.name, self.version)
        return (self.backend, self.path)

    @property
    def secret_url(self) -> str:
        base = f"{self.vault_url}/secrets/{self.name}"
        return f"{base}/{self.version}" if self.version else base


def _bad(text: str, why: str) -> errors.ReferenceFailed:
    return errors.ReferenceFailed(f"invalid reference {text}: {why}")


def _fragment(text: str, frag: str | None) -> tuple[str, ...] | None:
    if frag is None:
        return None
    if frag in ("", "/"):
        return ()
    if not frag.startswith("/"):
        raise _bad(text, "the fragment must be a path such as #/key/subkey")
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in frag[1:].split("/"))


def parse(text: str) -> Ref:
    """Parse one reference (``ref+BACKEND://...``); raises ReferenceFailed naming it."""
    m = re.fullmatch(r"(?:secret)?ref\+([^+:]*)://(.*)", text, re.S)
    if not m:
        raise _bad(text, "expected ref+BACKEND://...")
    backend, rest = m.group(1).lower(), m.group(2)
    body, hash_, frag = rest.partition("#")
    if "?" in body:
        raise _bad(text, "query parameters are not supported by kvsops")
    fragment = _fragment(text, frag if hash_ else None)
    if backend == "azurekeyvault":
        return _parse_akv(text, body, fragment)
    if backend == "sops":
        if not body or "\x00" in body:
            raise _bad(text, "expected ref+sops://FILE[#/path]")
        return Ref(text, "sops", path=body, fragment=fragment)
    raise _bad(text, f"backend {backend!r} is not supported (kvsops resolves {', '.join(BACKENDS)})")


def _parse_akv(text: str, body: str, fragment: tuple[str, ...] | None) -> Ref:
    parts = body.split("/")
    if len(parts) == 3 and parts[2] == "":
        parts = parts[:2]
    if len(parts) not in (2, 3):
        raise _bad(text, "invalid secret specifier: expected ref+azurekeyvault://VAULT/SECRET[/VERSION]")
    host, name = parts[0].lower(), parts[1]
    version = parts[2] if len(parts) == 3 else ""
    if not host or not _HOST_RE.match(host):
        raise _bad(text, "the vault must be a vault name or a host name")
    if not _SECRET_NAME_RE.match(name):
        raise _bad(text, "a secret name has 1-127 letters, digits and dashes")
    if not _VERSION_RE.match(version):
        raise _bad(text, "a secret version has letters and digits only")
    if "." not in host.split(":")[0]:
        if ":" in host:
            raise _bad(text, "a vault name cannot have a port; give the full host name")
        host = f"{host}.vault.azure.net"
    host = host.removesuffix(":443")
    return Ref(text, "azurekeyvault", vault_url=f"https://{host}", name=name, version=version, fragment=fragment)


def contains_ref(text: str) -> bool:
    """A cheap test (for deciding whether a file needs a resolver at all)."""
    return bool(_QUICK.search(text))


def find(text: str) -> list[tuple[int, int, Ref]]:
    """Every reference in a string: (start, end, Ref), end including a trailing ``+``."""
    return [(m.start(), m.end(), parse(m.group(0).removesuffix("+"))) for m in REF_RE.finditer(text)]


# ----------------------------------------------------------------------------- values


def scalar_text(value: Any, ref: Ref) -> str:
    """A resolved scalar as interpolated text (YAML spellings for bool and null)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    raise errors.ReferenceFailed(
        f"{ref.text}: resolves to a {_kind(value)}; only a whole-string reference can stand for a map or list"
    )


def _kind(value: Any) -> str:
    return "map" if isinstance(value, Mapping) else "list" if isinstance(value, (list, tuple)) else type(value).__name__


def _normalize(value: Any) -> Any:
    """Plain YAML data: timestamps become their text, keys strings, binary refused."""
    if isinstance(value, Mapping):
        return {str(k): _normalize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalize(v) for v in value]
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        raise TypeError("binary")
    return value


@dataclass
class Fetched:
    """What a fetcher returns: the secret's text, and (for a SOPS file) its parsed document."""

    text: str
    doc: Any = field(default=None, repr=False)
    parsed: bool = False

    def document(self, ref: Ref) -> Any:
        if not self.parsed:
            import yaml

            try:
                self.doc = _normalize(yaml.safe_load(self.text))
            except (yaml.YAMLError, TypeError, RecursionError):
                raise errors.ReferenceFailed(
                    f"{ref.text}: the secret is not YAML or JSON, so the fragment cannot be followed"
                ) from None
            self.parsed = True
        return self.doc


def follow(doc: Any, ref: Ref) -> Any:
    node = doc
    assert ref.fragment is not None
    for seg in ref.fragment:
        if isinstance(node, Mapping) and seg in node:
            node = node[seg]
        elif isinstance(node, list) and seg.isdigit() and int(seg) < len(node):
            node = node[int(seg)]
        else:
            raise errors.ReferenceFailed(f"{ref.text}: the key path is not in the secret")
    return node


def value_of(fetched: Fetched, ref: Ref) -> Any:
    return fetched.text if ref.fragment is None else follow(fetched.document(ref), ref)


# ----------------------------------------------------------------------------- trees


def _children(node: Any) -> Iterable[tuple[Any, Any]]:
    """(slot, value) pairs of a container: Branch (sops tree), dict, or list."""
    from kvsops.sops.tree import Branch, Comment

    if isinstance(node, Branch):
        return [(i, v) for i, (k, v) in enumerate(node) if not isinstance(k, Comment)]
    if isinstance(node, dict):
        return list(node.items())
    if isinstance(node, list):
        return [(i, v) for i, v in enumerate(node)]
    return []


def _set(node: Any, slot: Any, value: Any) -> None:
    from kvsops.sops.tree import Branch, from_plain

    if isinstance(node, Branch):
        node[slot] = (node[slot][0], from_plain(value))
    else:
        node[slot] = value


def strings(node: Any) -> Iterable[str]:
    """Every string value under ``node`` (keys excluded)."""
    stack = [node]
    while stack:
        cur = stack.pop()
        for _slot, v in _children(cur):
            if isinstance(v, str):
                yield v
            else:
                stack.append(v)


def collect(trees: Iterable[Any]) -> list[Ref]:
    """Every reference in the string values of the trees (parse errors raise, naming the reference)."""
    out: list[Ref] = []
    for tree in trees:
        for s in ([tree] if isinstance(tree, str) else strings(tree)):
            if "ref+" in s:
                out.extend(r for _a, _b, r in find(s))
                if len(out) > MAX_REFS:
                    raise errors.LimitExceeded(f"more than {MAX_REFS} references in one render")
    return out


def expand(text: str, values: Mapping[str, Any]) -> Any:
    """The string with its references replaced (typed when it is exactly one reference)."""
    found = find(text) if "ref+" in text else []
    if not found:
        return text
    if len(found) == 1 and found[0][0] == 0 and found[0][1] == len(text):
        return values[found[0][2].text]
    pieces, pos = [], 0
    for start, end, ref in found:
        pieces.append(text[pos:start])
        pieces.append(scalar_text(values[ref.text], ref))
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces)


def substitute(tree: Any, values: Mapping[str, Any]) -> int:
    """Replace references in place; returns how many strings changed."""
    changed = 0
    stack = [tree]
    while stack:
        cur = stack.pop()
        for slot, v in _children(cur):
            if isinstance(v, str):
                if "ref+" in v:
                    new = expand(v, values)
                    if new is not v:
                        _set(cur, slot, new)
                        changed += 1
            else:
                stack.append(v)
    return changed


# ----------------------------------------------------------------------------- resolver

Fetcher = Callable[[Ref], Fetched]
Check = Callable[[Ref], "str | None"]


class Cache:
    """Fetched sources shared by every resolver of a render (one fetch per distinct source)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: dict[tuple[str, ...], Future[Fetched]] = {}


class Resolver:
    """Resolves the references of many trees together: check all, fetch distinct sources
    concurrently (bounded pool), then substitute. Nothing is substituted unless everything resolved."""

    def __init__(
        self,
        fetchers: Mapping[str, Fetcher],
        *,
        check: Check | None = None,
        cache: Cache | None = None,
        workers: int = 8,
    ) -> None:
        self.fetchers = dict(fetchers)
        self.check = check
        self.cache = cache or Cache()
        self.workers = max(1, workers)

    def values(self, refs: Sequence[Ref]) -> dict[str, Any]:
        """{reference text: resolved value} for the given references."""
        distinct = list({r.text: r for r in refs}.values())
        for ref in distinct:
            if ref.backend not in self.fetchers:
                raise errors.ReferenceFailed(f"{ref.text}: {ref.backend} references are not available here")
            refusal = self.check(ref) if self.check is not None else None
            if refusal:
                raise errors.PolicyRefused(f"{ref.text}: refused by policy ({refusal})")
        sources = list({r.source: r for r in distinct}.values())
        fetched = self._fetch_all(sources)
        return {r.text: value_of(fetched[r.source], r) for r in distinct}

    def _fetch_all(self, refs: Sequence[Ref]) -> dict[tuple[str, ...], Fetched]:
        mine: list[tuple[Ref, Future[Fetched]]] = []
        futures: dict[tuple[str, ...], Future[Fetched]] = {}
        with self.cache.lock:
            for ref in refs:
                fut = self.cache.entries.get(ref.source)
                if fut is None:
                    fut = self.cache.entries[ref.source] = Future()
                    mine.append((ref, fut))
                futures[ref.source] = fut
        if len(mine) == 1 or self.workers == 1:
            for ref, fut in mine:
                self._run(ref, fut)
        elif mine:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(mine)), thread_name_prefix="kvsops-ref") as pool:
                list(pool.map(lambda item: self._run(*item), mine))
        out: dict[tuple[str, ...], Fetched] = {}
        for ref in refs:  # in input order, so the first failing reference is reported
            try:
                out[ref.source] = futures[ref.source].result()
            except errors.KvsopsError as exc:
                raise _named(exc, ref) from None
        return out

    def _run(self, ref: Ref, fut: Future[Fetched]) -> None:
        try:
            fut.set_result(self.fetchers[ref.backend](ref))
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter
            fut.set_exception(exc)

    def resolve(self, items: Sequence[tuple[str | None, Any]]) -> int:
        """Resolve in place every reference in ``items`` (``(where, tree)`` pairs); returns the
        number of strings changed. Errors carry the ``where`` of the first tree naming the reference."""
        located: list[tuple[str | None, list[Ref]]] = []
        for where, tree in items:
            try:
                located.append((where, collect([tree])))
            except errors.KvsopsError as exc:
                raise (exc.with_where(where) if where else exc) from None
        every = [r for _w, refs in located for r in refs]
        if not every:
            return 0
        try:
            values = self.values(every)
        except errors.KvsopsError as exc:
            where = next((w for w, refs in located if any(exc.message.startswith(r.text) for r in refs)), None)
            raise (exc.with_where(where) if where else exc) from None
        changed = 0
        for (where, tree), (_w, refs) in zip(items, located, strict=True):
            if refs:
                try:
                    changed += substitute(tree, values)
                except errors.KvsopsError as exc:
                    raise (exc.with_where(where) if where else exc) from None
        return changed


def _named(exc: errors.KvsopsError, ref: Ref) -> errors.KvsopsError:
    """The same error with the reference first in its message (unless it already names it)."""
    if exc.message.startswith(ref.text):
        return exc
    clone = exc.__class__.__new__(exc.__class__)
    errors.KvsopsError.__init__(clone, f"{ref.text}: {exc.message}", hint=exc.hint, where=exc.where)
    return clone
