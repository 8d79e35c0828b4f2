"""Shared helpers for tests that run the real sops binary beside kvsops."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "vectors" / "plain"  # see tests/vectors/README.md


def run_sops(sops: str, args: list[str], env: dict[str, str], cwd: Path, stdin: bytes | None = None,
             check: bool = True) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([sops, *args], env=env, cwd=cwd, input=stdin, capture_output=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"sops {' '.join(args)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return proc


def copy_corpus(name: str, dest: Path) -> Path:
    target = dest / name
    shutil.copyfile(CORPUS / name, target)
    return target


# What differs between two encryptions of the same file by design: each value's ciphertext, IV and
# tag, the wrapped data keys, the MAC and the time. Masking them leaves the layout, which must be
# the same byte for byte: keys, order, quoting, indentation, value types, plaintext lengths (the
# data field keeps its length), the metadata's fields and order.
_ENC_VALUE = re.compile(rb"ENC\[AES256_GCM,data:([^,\]]*),iv:[^,\]]*,tag:[^,\]]*,type:([a-z]+)\]")
_AGE_ARMOR = re.compile(rb"-----BEGIN AGE ENCRYPTED FILE-----.*?-----END AGE ENCRYPTED FILE-----", re.S)
_PGP_ARMOR = re.compile(rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----", re.S)
_LASTMODIFIED = re.compile(rb"(lastmodified[\"']?\s*[:=]\s*[\"']?)\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_CREATED = re.compile(rb"(created_at[\"']?\s*[:=]\s*[\"']?)\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def mask_encrypted(data: bytes, fmt: str = "") -> bytes:
    """An encrypted file with everything random or time-dependent replaced by placeholders.
    sops 3.11 writes an INI file's [sops] keys in random (Go map) order: they are sorted."""
    out = _ENC_VALUE.sub(lambda m: b"ENC[data:" + b"x" * len(m.group(1)) + b",type:" + m.group(2) + b"]", data)
    out = _AGE_ARMOR.sub(b"<age armor>", out)
    out = _PGP_ARMOR.sub(b"<pgp armor>", out)
    out = _LASTMODIFIED.sub(rb"\1<time>", out)
    out = _CREATED.sub(rb"\1<time>", out)
    if fmt == "ini":
        head, sep, tail = out.partition(b"[sops]\n")
        out = head + sep + b"".join(sorted(tail.splitlines(keepends=True)))
    return out


_LINE_COMMENT = re.compile(rb"(?m)^( *)([^ #\n-][^\n]*?) (#(?:ENC\[data:x*,type:comment\]| [^\n]*))$")


def as_sops_311_comments(masked_yaml: bytes) -> bytes:
    """The one deliberate layout difference (see test_stores_golden): kvsops keeps a mapping entry's
    line comment (``a: 1 # note``) where it was, as sops 3.13 does; sops 3.11 moves it above the
    entry as a head comment. Applied to masked kvsops YAML before comparing with sops 3.11's."""
    return _LINE_COMMENT.sub(rb"\1\3\n\1\2", masked_yaml)


_COMMENT_LINE = re.compile(rb"(?m)^ *(?:- )?#?ENC\[data:x*,type:comment\]\n| #ENC\[data:x*,type:comment\](?=\n)")


def without_comments(masked_yaml: bytes) -> tuple[bytes, int]:
    """Masked YAML without its encrypted comments, and how many there were. Where a source has line
    comments on list items or on keys whose value is a map, sops 3.11 and kvsops (as 3.13) place
    them differently (a head comment, a list item); everything else must still be identical."""
    stripped, count = _COMMENT_LINE.subn(b"", masked_yaml)
    return stripped, count
