"""Committed vectors (tests/vectors/README.md says where each came from): kvsops decrypts every file
the real sops 3.11 encrypted to what sops itself decrypts it to, byte for byte; and no file sits in
tests/vectors without a recorded origin."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kvsops import api, errors
from kvsops.sops import stores

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
SOPS_311 = VECTORS / "sops-3.11"
CASES = sorted(p.name for p in SOPS_311.iterdir() if p.is_file())


def _session(*keys: str) -> api.Session:
    identities = "".join((VECTORS / "keys" / f"age-{k}.txt").read_text() for k in keys)
    return api.Session(env={"SOPS_AGE_KEY": identities, "HOME": "/nonexistent"})


@pytest.mark.parametrize("name", CASES)
def test_decrypts_as_sops_does(name: str) -> None:
    data = (SOPS_311 / name).read_bytes()
    got = api.decrypt_bytes(data, stores.detect(name), session=_session("a", "b"))
    assert got == (SOPS_311 / "decrypted" / name).read_bytes()


def test_every_vector_has_its_plaintext_and_the_set_is_complete() -> None:
    assert sorted(p.name for p in (SOPS_311 / "decrypted").iterdir()) == CASES
    plain = {p.name for p in (VECTORS / "plain").iterdir()}
    assert plain <= set(CASES)  # make-sops-vectors.sh encrypts every plain input
    assert len(CASES) > len(plain)  # and the variants


def test_shamir_vector_needs_both_groups() -> None:
    data = (SOPS_311 / "types.shamir.yaml").read_bytes()
    for key in ("a", "b"):
        with pytest.raises(errors.KvsopsError):
            api.decrypt_bytes(data, "yaml", session=_session(key))


def test_every_file_has_a_recorded_origin() -> None:
    readme = (VECTORS / "README.md").read_text()
    rows = set(re.findall(r"^\| `([^`]+)`", readme, re.M))
    for path in VECTORS.rglob("*"):
        if path.is_file() and path.name != "README.md":
            rel = path.relative_to(VECTORS)
            named = {str(rel)} | {f"{part}/" for part in (str(p) for p in rel.parents if str(p) != ".")}
            assert named & rows, f"{rel}: no row of tests/vectors/README.md says where it came from"
