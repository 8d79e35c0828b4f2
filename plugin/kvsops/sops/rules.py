"""Which leaves get encrypted: sops' six mutually exclusive selection rules."""

from __future__ import annotations

from kvsops._record import Record
from kvsops.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class _Compiled(Protocol):
        """A compiled ``re2`` pattern (google-re2 ships no type information)."""

        def search(self, text: str) -> object: ...

RULE_KINDS = (
    "unencrypted_suffix",
    "encrypted_suffix",
    "unencrypted_regex",
    "encrypted_regex",
    "unencrypted_comment_regex",
    "encrypted_comment_regex",
)
DEFAULT_UNENCRYPTED_SUFFIX = "_unencrypted"
MAX_REGEX_LEN = 1024
RE2_MAX_MEM = 8 << 20  # bytes per compiled pattern (RE2's default); larger programs are refused


class Re2Pattern:
    """A compiled RE2 pattern with ``re``'s ``search`` shape.

    Selection rules and ``path_regex`` come from the file being decrypted (or the repository's
    ``.sops.yaml``): a committer controls them. A backtracking engine (Python ``re``) runs
    ``^(a+)+$`` against a long key name for hours, so matching is done by RE2 itself, as sops does
    (Go's regexp): linear time, bounded memory, and the same syntax and semantics.
    """

    __slots__ = ("_re", "_cache")
    _CACHE_MAX = 4096  # key names repeat across leaves: remember the answer for each

    def __init__(self, compiled: _Compiled) -> None:
        self._re = compiled
        self._cache: dict[str, bool] = {}

    def search(self, text: str) -> "bool | None":
        """True when the pattern matches anywhere in ``text``, else None (``re``'s contract)."""
        hit = self._cache.get(text)
        if hit is None:
            try:
                hit = self._re.search(text) is not None
            except UnicodeEncodeError:  # lone surrogates: Go sees each invalid byte as U+FFFD
                fixed = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                hit = self._re.search(fixed) is not None
            if len(self._cache) < self._CACHE_MAX:
                self._cache[text] = hit
        return True if hit else None


def compile_re2ish(pattern: str) -> Re2Pattern:
    """Compile a sops (Go RE2) regex with RE2 (``google-re2``): linear-time matching, so a hostile
    pattern cannot hang a renderer. RE2 refuses backreferences and lookarounds as Go does."""
    if len(pattern) > MAX_REGEX_LEN:
        raise ConfigError(f"regex is longer than {MAX_REGEX_LEN} characters")
    import re

    if re.search(r"\\[1-9]|\(\?[=!<]|\(\?P=", pattern):
        raise ConfigError("regex uses backreferences or lookarounds, which sops (RE2) does not support")
    try:
        import re2
    except ImportError:  # pragma: no cover - google-re2 is a core dependency
        from kvsops.errors import MissingDependency

        raise MissingDependency("regex selection rules need the google-re2 package",
                                hint="pip install google-re2 (a kvsops dependency)") from None
    options = re2.Options()
    options.log_errors = False  # RE2 would print the pattern to stderr itself
    options.max_mem = RE2_MAX_MEM
    try:
        return Re2Pattern(re2.compile(pattern, options))
    except re2.error as exc:
        detail = exc.args[0] if exc.args else b""
        text = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
        raise ConfigError(f"invalid regex: {text[:200]}") from None


class SelectionRule(Record):
    __slots__ = ("kind", "value", "_pattern")
    _fields = ("kind", "value")
    _defaults = {"kind": "unencrypted_suffix", "value": DEFAULT_UNENCRYPTED_SUFFIX}
    kind: str
    value: str
    _pattern: Re2Pattern  # compiled on first use

    def _post_init(self) -> None:
        if self.kind not in RULE_KINDS:
            raise ConfigError(f"unknown selection rule {self.kind!r}")
        if self.kind.endswith("_regex"):
            _ = self.pattern

    @property
    def pattern(self) -> Re2Pattern:
        try:
            return self._pattern
        except AttributeError:
            compiled = compile_re2ish(self.value)
            object.__setattr__(self, "_pattern", compiled)
            return compiled

    def should_encrypt(self, path: list[str], comments: list[list[str]], is_comment: bool) -> bool:
        kind = self.kind
        if kind == "unencrypted_suffix":
            return not any(p.endswith(self.value) for p in path)
        if kind == "encrypted_suffix":
            return any(p.endswith(self.value) for p in path)
        if kind == "unencrypted_regex":
            return not any(self.pattern.search(p) for p in path)
        if kind == "encrypted_regex":
            return any(self.pattern.search(p) for p in path)
        if kind == "unencrypted_comment_regex":
            return not any(self.pattern.search(c) for level in comments for c in level)
        # encrypted_comment_regex: the matching comment line itself stays plain.
        last_level = len(comments) - 1
        for i, level in enumerate(comments):
            for j, c in enumerate(level):
                if is_comment and i == last_level and j == len(level) - 1:
                    continue
                if self.pattern.search(c):
                    return True
        return False


NO_RULE = None  # binary files: every leaf is encrypted
