"""Jinja2 templates over decrypted values: sandboxed, strict undefined, imported only when used."""

from __future__ import annotations

import re

from kvsops import errors

TYPE_CHECKING = False  # typing costs milliseconds of every kustomize generator's start-up
if TYPE_CHECKING:
    from typing import Any, Iterable

_QUOTED = re.compile(r"'([^'\n]*)'|\"([^\"\n]*)\"")
_TYPE_NAME = re.compile(r"^[\w.]+ object$")  # Jinja's "'dict object' has no attribute ..."


def _leaves(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)
    elif isinstance(value, str):
        yield value


def _redact(message: str, context: dict[str, Any], source: str = "") -> str:
    """Jinja quotes names in its messages, and a name can be computed from a value
    (``{{ d[secret | upper] }}``). Keep a quoted text only when the template itself spells it (or it is
    Jinja's type name); then replace any decrypted value that is still there."""

    def keep(m: re.Match[str]) -> str:
        text = m.group(1) if m.group(1) is not None else m.group(2)
        return m.group(0) if (text and text in source) or _TYPE_NAME.match(text) else "'<redacted>'"

    message = _QUOTED.sub(keep, message)
    for secret in sorted(set(_leaves(context)), key=len, reverse=True):
        if len(secret) >= 3 and secret in message:
            message = message.replace(secret, "<redacted>")
    return message


def render(source: str, context: dict[str, Any], where: str) -> str:
    try:
        from jinja2 import StrictUndefined, TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise errors.MissingDependency(
            "templates need Jinja2", where=where, hint="install kvsops[templates] (pip install 'kvsops[templates]')"
        ) from None
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True, auto_reload=False
    )
    try:
        return env.from_string(source).render(context)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        at = f" (line {line})" if line else ""
        msg = _redact(str(exc.message or type(exc).__name__), context, source)
        raise errors.GeneratorError(f"template error{at}: {type(exc).__name__}: {msg}", where=where) from None
    except Exception as exc:  # noqa: BLE001 - a filter raising on a value: report the type only
        raise errors.GeneratorError(f"template error: {type(exc).__name__}", where=where) from None
