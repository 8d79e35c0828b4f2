"""The two dotenv readers our drop-ins must reproduce, applied to sops' decrypted dotenv text.

KSOPS parses with godotenv v1.5.1 (quote stripping, ``#`` comments, ``$VAR`` expansion from keys
defined earlier in the same file); kustomize-sopssecretgenerator splits raw lines on the first
``=``. They disagree on values with ``$``, quotes or `` #``, and each drop-in must keep its
peer's answer. Messages never quote a line: it may hold a secret.
"""

from __future__ import annotations

import re

from kvsops import errors

_GO_SPACE = "\t\v\f\r \x85\xa0"  # godotenv isSpace: no newline
_ESCAPE = re.compile(r"\\.", re.S)
_UNESCAPE = re.compile(r"\\([^$])", re.S)
_EXPAND = re.compile(r"(\\)?(\$)(\()?\{?([A-Z0-9_]+)?\}?")


def _expand_escapes(s: str) -> str:
    def one(m: re.Match[str]) -> str:
        c = m.group(0)[1:]
        return {"n": "\n", "r": "\r"}.get(c, m.group(0))

    return _UNESCAPE.sub(r"\1", _ESCAPE.sub(one, s))


def _expand_vars(s: str, seen: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        # godotenv compares the *second* group with "(" (always "$"), so "$(...)" stays as is.
        if m.group(1) == "\\":
            return m.group(0)[1:]
        if m.group(4):
            return seen.get(m.group(4), "")
        return m.group(0)

    return _EXPAND.sub(one, s)


def _key(src: str, lineno: int) -> tuple[str, str]:
    src = src.lstrip(_GO_SPACE)
    if src.startswith("export"):
        rest = src[len("export"):]
        if rest[:1] and rest[0] in _GO_SPACE:
            src = rest.lstrip(_GO_SPACE)
    key, offset = "", 0
    for i, ch in enumerate(src):
        if ch in _GO_SPACE:
            continue
        if ch in "=:":
            key, offset = src[:i], i + 1
            break
        if ch == "_" or ch == "." or ch.isalpha() or ch.isnumeric():
            continue
        raise errors.InputError(f"dotenv line {lineno}: unexpected character in a variable name")
    if not src:
        raise errors.InputError(f"dotenv line {lineno}: zero length string")
    return key.rstrip(), src[offset:].lstrip(_GO_SPACE)


def _value(src: str, seen: dict[str, str], lineno: int) -> tuple[str, str]:
    quote = src[:1] if src[:1] in ("'", '"') else ""
    if not quote:
        end = len(src)
        for i, ch in enumerate(src):
            if ch in "\r\n":
                end = i
                break
        line = src[:end]
        stop = len(line)
        for i in range(len(line) - 1, 0, -1):
            if line[i] == "#" and line[i - 1] in _GO_SPACE:
                stop = i
                break
        return _expand_vars(line[:stop].strip(_GO_SPACE), seen), src[end:]
    for i in range(1, len(src)):
        if src[i] != quote or src[i - 1] == "\\":
            continue
        value = src[:i].strip(quote)
        if quote == '"':
            value = _expand_vars(_expand_escapes(value), seen)
        return value, src[i + 1:]
    raise errors.InputError(f"dotenv line {lineno}: unterminated quoted value")


def parse_godotenv(text: str) -> dict[str, str]:
    """godotenv.Unmarshal (v1.5.1 parser.go), as KSOPS applies it to ``envs``."""
    out: dict[str, str] = {}
    norm = src = text.replace("\r\n", "\n")
    while True:
        stripped = src.lstrip()
        if not stripped:
            return out
        lineno = norm.count("\n", 0, len(norm) - len(stripped)) + 1
        if stripped.startswith("#"):
            nl = stripped.find("\n")
            if nl < 0:
                return out
            src = stripped[nl:]
            continue
        key, rest = _key(stripped, lineno)
        value, src = _value(rest, out, lineno)
        out[key] = value


def parse_raw(text: str) -> dict[str, str]:
    """kustomize-sopssecretgenerator's dotenv reader: BOM, blank and ``#`` lines skipped, split
    on the first ``=``, the value kept verbatim."""
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.split("\n"), 1):
        if lineno == 1:
            line = line.removeprefix("\ufeff")
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise errors.InputError(f"dotenv line {lineno}: expected KEY=value")
        out[key] = value.rstrip("\r")
    return out
