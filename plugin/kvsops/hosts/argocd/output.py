"""The output contract: only Kubernetes objects, no ciphertext passing through, never empty by accident."""

from __future__ import annotations

from typing import Any

from kvsops import errors

MAX_OUTPUT_BYTES = 100 * 1024 * 1024  # Argo CD's default gRPC message limit (ARGOCD_GRPC_MAX_SIZE_MB)


def _loader() -> Any:
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def objects(stream: bytes, what: str) -> list[dict[str, Any]]:
    """Parse a YAML/JSON object stream; every document must be a Kubernetes object (or a List)."""
    import yaml

    if len(stream) > MAX_OUTPUT_BYTES:
        raise errors.LimitExceeded(f"{what} is larger than {MAX_OUTPUT_BYTES} bytes")
    try:
        docs = [d for d in yaml.load_all(stream, Loader=_loader()) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise errors.GeneratorError(f"{what} is not a valid YAML stream{at}") from None
    except ValueError:  # an integer longer than Python reads (4,300 digits)
        from kvsops.sops.stores import long_number_error

        raise long_number_error(stream, f"{what}: ") or errors.GeneratorError(f"{what} is not a valid YAML stream") from None
    for i, doc in enumerate(docs, 1):
        check_object(doc, f"{what}: document {i}")
    return docs


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
