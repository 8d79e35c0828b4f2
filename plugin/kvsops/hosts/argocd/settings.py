"""What a render was asked to do: Argo CD parameters and plugin env, validated as untrusted input.

Sources, highest precedence first:

1. ``ARGOCD_APP_PARAMETERS`` (JSON list of ``{name, string|array|map}``), or the ``PARAM_*``
   variables Argo CD derives from it when the JSON is absent;
2. ``ARGOCD_ENV_<NAME>`` (``spec.source.plugin.env``; lists are comma or newline separated);
3. Argo CD's build env: ``ARGOCD_APP_NAME`` (release name), ``ARGOCD_APP_NAMESPACE``, ``KUBE_VERSION``,
   ``KUBE_API_VERSIONS``.

Nothing here reaches a shell; values only ever become argv elements or Python data, and every value
is checked against a narrow pattern first. Messages quote a bad value only in ``repr`` and truncated.
"""

from __future__ import annotations

from kvsops import errors
from kvsops._record import Record

# Every Argo CD render loads these: dataclasses, typing, re and json stay off its path. The values
# every render checks (Argo CD's build env) are scanned by hand, each scanner checked against the
# pattern it replaced (tests/unit/test_scanners.py); parameters' patterns import re when they run
# (and their JSON brings re anyway).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Mapping

MODES = ("auto", "kustomize", "helm", "plain")
MAX_PARAMS_BYTES = 256 * 1024
MAX_LIST = 64

_VALUES_FILE = r"^[A-Za-z0-9_][A-Za-z0-9_./@+-]{0,511}$"
_SET_KEY = r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,127}(\.[A-Za-z0-9_][A-Za-z0-9_-]{0,127}){0,31}$"
_PARAM_NAME = r"^[a-z][a-z0-9-]{0,62}$"
_LOWER_DIGITS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_LABEL_CHARS = _LOWER_DIGITS | {"-"}
_NAME_CHARS = _LABEL_CHARS | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ.")  # [0-9A-Za-z.-]
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")

# parameter name -> collection type
PARAMETERS = {
    "mode": "string",
    "values-files": "array",
    "release-name": "string",
    "namespace": "string",
    "kube-version": "string",
    "api-versions": "array",
    "set": "map",
    "allow-empty": "string",
    "recurse": "string",
    "references": "string",
}


class Settings(Record):
    __slots__ = _fields = ("mode", "values_files", "release_name", "namespace", "kube_version", "api_versions",
                           "set_values", "allow_empty", "recurse", "references", "app_name", "project", "repo_url")
    _defaults = {"mode": "auto", "values_files": (), "release_name": "", "namespace": "", "kube_version": "",
                 "api_versions": (), "set_values": (), "allow_empty": False, "recurse": False, "references": False,
                 "app_name": "", "project": "", "repo_url": ""}
    mode: str
    values_files: tuple[str, ...]
    release_name: str
    namespace: str
    kube_version: str
    api_versions: tuple[str, ...]
    set_values: tuple[tuple[str, str], ...]
    allow_empty: bool
    recurse: bool
    references: bool  # resolve ref+ references in rendered Secrets (argocd/references.py)
    app_name: str
    project: str
    repo_url: str


def _matches(pattern: str, value: str) -> bool:
    import re

    return re.match(pattern, value) is not None


def _anchored(value: str) -> str:
    """What a pattern ``^...$`` must match in full: ``$`` also matches before a final newline (none of
    these patterns can match a newline itself)."""
    return value[:-1] if value.endswith("\n") else value


def _is_label(text: str) -> bool:
    """``[a-z0-9]([-a-z0-9]*[a-z0-9])?``"""
    ends = bool(text) and text[0] in _LOWER_DIGITS and text[-1] in _LOWER_DIGITS
    return ends and all(c in _LABEL_CHARS for c in text)


def is_dns1123_label(value: str) -> bool:
    """``^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$``"""
    text = _anchored(value)
    return len(text) <= 63 and _is_label(text)


def is_release_name(value: str) -> bool:
    """helm's release name rule (pkg/chartutil: ValidateReleaseName; 53 characters at most, checked
    apart): ``^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$``"""
    return all(_is_label(part) for part in _anchored(value).split("."))


def _decimals(text: str, i: int, most: int) -> int:
    """The end of the run of 1 to ``most`` Unicode decimal digits (``\\d``) at ``i``, or -1. What
    follows a run in these patterns is never a digit, so the run must be whole."""
    end = i
    while end < len(text) and text[end].isdecimal():
        end += 1
    return end if 1 <= end - i <= most else -1


def is_kube_version(value: str) -> bool:
    """``^v?\\d{1,3}\\.\\d{1,3}(\\.\\d{1,5})?([-+][0-9A-Za-z.-]{1,64})?$``"""
    text = _anchored(value)
    i = _decimals(text, 1 if text.startswith("v") else 0, 3)
    if i < 0 or text[i:i + 1] != ".":
        return False
    i = _decimals(text, i + 1, 3)
    if i >= 0 and text[i:i + 1] == ".":
        i = _decimals(text, i + 1, 5)
    if i < 0:
        return False
    if text[i:i + 1] in ("-", "+"):
        suffix = text[i + 1:]
        return 1 <= len(suffix) <= 64 and all(c in _NAME_CHARS for c in suffix)
    return i == len(text)


def is_api_version(value: str) -> bool:
    """``^[A-Za-z0-9.-]{1,253}(/[A-Za-z0-9.-]{1,63}){0,2}$``"""
    parts = _anchored(value).split("/")
    return (len(parts) <= 3 and 1 <= len(parts[0]) <= 253 and all(1 <= len(p) <= 63 for p in parts[1:])
            and all(c in _NAME_CHARS for p in parts for c in p))


def dashes(text: str) -> str:
    """``re.sub(r"[^a-z0-9-]+", "-", text)``"""
    out: list[str] = []
    in_run = False  # inside a run of other characters (replaced by one dash)
    for c in text:
        if c in _LABEL_CHARS:
            out.append(c)
        elif not in_run:
            out.append("-")
        in_run = c not in _LABEL_CHARS
    return "".join(out)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _bad(name: str, value: object, why: str) -> errors.GeneratorError:
    return errors.GeneratorError(f"parameter {name}: {_show(value)} {why}")


def parse_parameters(text: str) -> dict[str, object]:
    """``ARGOCD_APP_PARAMETERS`` -> {name: str | list[str] | dict[str, str]}."""
    if len(text) > MAX_PARAMS_BYTES:
        raise errors.LimitExceeded(f"ARGOCD_APP_PARAMETERS is larger than {MAX_PARAMS_BYTES} bytes")
    if text.strip(" \t\n\r") in ("null", "[]"):  # no parameters (JSON whitespace only): no json, no re
        return {}
    import json

    try:
        raw = json.loads(text)
    except ValueError:
        raise errors.GeneratorError("ARGOCD_APP_PARAMETERS is not valid JSON") from None
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise errors.GeneratorError("ARGOCD_APP_PARAMETERS is not a JSON list")
    out: dict[str, object] = {}
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise errors.GeneratorError("ARGOCD_APP_PARAMETERS has an entry without a name")
        name = item["name"]
        kind = _check_name(name)
        value = item.get(kind)
        if kind == "string" and not isinstance(value, str):
            value = _only_string(item, name)
        if kind == "array" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise _bad(name, value, "must be an array of strings")
        if kind == "map" and not (isinstance(value, dict) and all(isinstance(v, str) for v in value.values())):
            raise _bad(name, value, "must be a map of strings")
        if isinstance(value, (list, dict)) and len(value) > MAX_LIST:
            raise errors.LimitExceeded(f"parameter {name} has more than {MAX_LIST} entries")
        out[name] = value
    return out


def _only_string(item: Mapping[str, object], name: str) -> str:
    if item.get("array") is not None or item.get("map") is not None:
        raise errors.GeneratorError(f"parameter {name} must be a string")
    return ""


def _check_name(name: str) -> str:
    if not _matches(_PARAM_NAME, name):
        raise errors.GeneratorError("a parameter name is not of the form [a-z][a-z0-9-]*")
    if name not in PARAMETERS:
        raise errors.GeneratorError(
            f"unknown parameter {name!r}", hint=f"known parameters: {', '.join(sorted(PARAMETERS))}"
        )
    return PARAMETERS[name]


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def from_param_vars(env: Mapping[str, str]) -> dict[str, object]:
    """The ``PARAM_*`` fallback (strings and arrays; map keys are upper-cased there, so not maps)."""
    out: dict[str, object] = {}
    for name, kind in PARAMETERS.items():
        key = "PARAM_" + _env_name(name)
        if kind == "string" and key in env:
            out[name] = env[key]
        elif kind == "array":
            items = [env[f"{key}_{i}"] for i in range(MAX_LIST + 1) if f"{key}_{i}" in env]
            if len(items) > MAX_LIST:
                raise errors.LimitExceeded(f"parameter {name} has more than {MAX_LIST} entries")
            if items:
                out[name] = items
    return out


def from_plugin_env(env: Mapping[str, str]) -> dict[str, object]:
    """``ARGOCD_ENV_<NAME>`` for the string and array parameters."""
    out: dict[str, object] = {}
    for name, kind in PARAMETERS.items():
        key = "ARGOCD_ENV_" + _env_name(name)
        if key not in env or kind == "map":
            continue
        value = env[key]
        if kind == "array":
            items = [v.strip() for v in value.replace("\n", ",").split(",") if v.strip()]
            if len(items) > MAX_LIST:
                raise errors.LimitExceeded(f"{key} has more than {MAX_LIST} entries")
            out[name] = items
        else:
            out[name] = value
    return out


def _array(merged: Mapping[str, object], name: str) -> list[str]:
    """An array parameter: a list of strings from every source (parse_parameters checks the JSON's)."""
    value = merged.get(name)
    return value if isinstance(value, list) else []


def _bool(name: str, value: object) -> bool:
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _bad(name, value, "must be true or false")


def _match(name: str, value: str, valid: Callable[[str], bool], why: str, max_len: int = 253) -> str:
    if value and (len(value) > max_len or not valid(value)):
        raise _bad(name, value, why)
    return value


def _values_file(value: str) -> str:
    path = value.removeprefix("secrets://")
    if not _matches(_VALUES_FILE, path) or ".." in path.split("/") or "//" in path:
        raise _bad("values-files", value, "must be a relative path inside the application directory")
    return value


def _set_values(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        return ()
    for key in value:
        if not _matches(_SET_KEY, key):
            raise _bad("set", key, "is not a dotted key (letters, digits, _ and -)")
    return tuple(sorted(value.items()))


def default_release(env: Mapping[str, str]) -> str:
    """The app name made a valid release name (apps in any namespace are named ``ns_app``)."""
    name = env.get("ARGOCD_APP_NAME", "").rsplit("_", 1)[-1].rsplit("/", 1)[-1].lower()
    name = dashes(name)[:53].strip("-")
    return name or "release"


def load(env: Mapping[str, str]) -> Settings:
    """Merge every source (see the module docstring) and validate each value."""
    if env.get("ARGOCD_APP_PARAMETERS", "").strip():
        params = parse_parameters(env["ARGOCD_APP_PARAMETERS"])
    else:
        params = from_param_vars(env)
    merged: dict[str, object] = {**from_plugin_env(env), **params}

    def s(name: str, default: str = "") -> str:
        value = merged.get(name, default)
        return value.strip() if isinstance(value, str) else default

    mode = s("mode", "auto") or "auto"
    if mode not in MODES:
        raise _bad("mode", mode, f"must be one of {', '.join(MODES)}")
    api_versions = tuple(
        v for v in (_array(merged, "api-versions") or [x for x in env.get("KUBE_API_VERSIONS", "").split(",") if x])
    )
    for v in api_versions:
        _match("api-versions", v, is_api_version, "is not a group/version")
    return Settings(
        mode=mode,
        values_files=tuple(_values_file(v) for v in _array(merged, "values-files")),
        release_name=_match("release-name", s("release-name") or default_release(env), is_release_name,
                            "is not a valid Helm release name", 53),
        namespace=_match("namespace", s("namespace", env.get("ARGOCD_APP_NAMESPACE", "")), is_dns1123_label,
                         "is not a valid namespace name", 63),
        kube_version=_match("kube-version", s("kube-version", env.get("KUBE_VERSION", "")), is_kube_version,
                            "is not a Kubernetes version"),
        api_versions=api_versions,
        set_values=_set_values(merged.get("set")),
        allow_empty=_bool("allow-empty", s("allow-empty")),
        recurse=_bool("recurse", s("recurse")),
        # plugin env KVSOPS_REFS is the same switch under the name the Helm wrapper uses
        references=_bool("references", s("references") or env.get("ARGOCD_ENV_KVSOPS_REFS", "")),
        app_name=env.get("ARGOCD_APP_NAME", ""),
        project=env.get("ARGOCD_APP_PROJECT_NAME", ""),
        repo_url=env.get("ARGOCD_APP_SOURCE_REPO_URL", ""),
    )
