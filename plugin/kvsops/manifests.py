"""Kubernetes manifest streams: the output contract of a render, and plain mode's stream of files.

Pure (bytes in, bytes out; PyYAML imported when a stream is checked). The Argo CD plugin
(kvsops.hosts.argocd) renders with these, and so does the agent for its clients
(kvsops.agent.service, ``render_plain``): a render served by the agent imports no YAML, and the
checks and their messages are the same code either way. Hence here, below both (the agent sits
below the hosts).

The contract: only Kubernetes objects, no ciphertext passing through, never empty by accident.
"""

from __future__ import annotations

from kvsops import errors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping, Sequence

MAX_OUTPUT_BYTES = 100 * 1024 * 1024  # Argo CD's default gRPC message limit (ARGOCD_GRPC_MAX_SIZE_MB)


def _loader() -> Any:
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def objects(stream: bytes, what: str) -> list[dict[str, Any]]:
    """Parse a YAML/JSON object stream; every document must be a Kubernetes object (or a List)."""
    import yaml

    check_size(stream, what)
    try:
        docs = [d for d in yaml.load_all(stream, Loader=_loader()) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise errors.GeneratorError(f"{what} is not a valid YAML stream{at}") from None
    except ValueError:  # an integer longer than Python reads (4,300 digits)
        from kvsops.sops.stores import long_number_error

        invalid = errors.GeneratorError(f"{what} is not a valid YAML stream")
        raise long_number_error(stream, f"{what}: ") or invalid from None
    for i, doc in enumerate(docs, 1):
        check_object(doc, f"{what}: document {i}")
    return docs


def check_size(stream: bytes, what: str) -> None:
    if len(stream) > MAX_OUTPUT_BYTES:
        raise errors.LimitExceeded(f"{what} is larger than {MAX_OUTPUT_BYTES} bytes")


def check_object(doc: object, where: str) -> None:
    if not isinstance(doc, dict) or not isinstance(doc.get("apiVersion"), str) or not isinstance(doc.get("kind"), str):
        raise errors.GeneratorError(f"{where} is not a Kubernetes object (apiVersion and kind)")
    sops = doc.get("sops")
    if isinstance(sops, dict) and ("mac" in sops or "lastmodified" in sops):
        raise errors.GeneratorError(
            f"{where} ({doc['kind']}) still carries SOPS metadata: refusing to pass ciphertext through",
            hint="decrypt it with a kvsops generator, or list it in plain mode",
        )


def finish(stream: bytes, *, allow_empty: bool, what: str) -> bytes:
    """Validate the whole render; return the bytes to write to stdout."""
    docs = objects(stream, what)
    if not docs and not allow_empty:
        raise errors.GeneratorError(
            f"{what} produced no Kubernetes objects",
            hint="an empty render with auto-sync prune would delete the application's resources; "
            "set the parameter allow-empty=true if that is really intended",
        )
    if not stream.strip():
        return b""
    return stream if stream.endswith(b"\n") else stream + b"\n"


# ----------------------------------------------------------------------------- plain mode


def fmt_of(rel: str) -> str:
    """The store a manifest file is read with: JSON for ``.json``, else YAML."""
    from kvsops.sops import stores

    fmt = stores.detect(rel)
    return fmt if fmt in ("yaml", "json") else "yaml"


def sops_candidates(files: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes, str]]:
    """``(rel, data, fmt)`` of the files that may be SOPS files (the others cannot: no ``sops`` key)."""
    return [(rel, data, fmt_of(rel)) for rel, data in files if b"sops" in data]


def plain_stream(files: Sequence[tuple[str, bytes]], plain_of: Mapping[str, bytes]) -> bytes:
    """Plain mode's stream: every file in order under a ``# Source:`` line, a SOPS file as its
    plaintext (``plain_of``), a JSON manifest as YAML; each must hold only Kubernetes objects."""
    out = []
    for rel, data in files:
        body = plain_of.get(rel, data)
        if rel.endswith(".json") and rel not in plain_of:
            body = json_as_yaml(body, rel)
        objects(body, rel)
        text = body.decode("utf-8", "replace").strip()
        if text:
            out.append(f"---\n# Source: {rel}\n{text}\n")
    return "".join(out).encode()


def json_as_yaml(data: bytes, rel: str) -> bytes:
    """A JSON manifest (or a List) as one YAML document per object."""
    import json

    import yaml

    try:
        obj = json.loads(data)
    except ValueError:
        raise errors.InputError(f"{rel} is not valid JSON") from None
    docs = obj if isinstance(obj, list) else [obj]
    return yaml.safe_dump_all(docs, sort_keys=False).encode()
