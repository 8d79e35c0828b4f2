"""Which leaves get encrypted: sops' six mutually exclusive selection rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from kvsops.errors import ConfigError

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


def compile_re2ish(pattern: str) -> "re.Pattern[str]":
    """Compile a sops (Go RE2) regex with Python ``re``.

    RE2 has no backreferences or lookarounds; refusing them here keeps us inside the subset where
    both engines agree and keeps matching linear-ish (no catastrophic backtracking constructs that
    RE2 would not accept anyway).
    """
    if len(pattern) > MAX_REGEX_LEN:
        raise ConfigError(f"regex is longer than {MAX_REGEX_LEN} characters")
    if re.search(r"\\[1-9]|\(\?[=!<]|\(\?P=", pattern):
        raise ConfigError("regex uses backreferences or lookarounds, which sops (RE2) does not support")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"invalid regex: {exc.msg}") from None


@dataclass(frozen=True)
class SelectionRule:
    kind: str = "unencrypted_suffix"
    value: str = DEFAULT_UNENCRYPTED_SUFFIX

    def __post_init__(self) -> None:
        if self.kind not in RULE_KINDS:
            raise ConfigError(f"unknown selection rule {self.kind!r}")
        if self.kind.endswith("_regex"):
            _ = self.pattern

    @cached_property
    def pattern(self) -> "re.Pattern[str]":
        return compile_re2ish(self.value)

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
