"""Every encrypted file in the peers' own fixtures decrypts with kvsops to what `sops -d` prints.

The fixtures stay in ../shared/conformance (read only, never copied into the project).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.interop_helpers import run_sops
from tests.processes import stop_gpg


def _encrypted_files(root: Path) -> list[Path]:
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink() and p.suffix in (".yaml", ".env", ".json", ".gotpl", ".raw"):
            text = p.read_bytes()
            if b"sops" in text and (b"ENC[AES256_GCM" in text):
                out.append(p)
    return out


@pytest.fixture(scope="module")
def gnupg(tools, conformance_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("conf-gnupg")
    home.chmod(0o700)
    for key in [conformance_dir / "ksops" / "key.asc", conformance_dir / "helm-secrets" / "gpg" / "private.gpg",
                conformance_dir / "helm-secrets" / "gpg" / "private2.gpg"]:
        subprocess.run([tools.gpg, "--batch", "--import", str(key)], env=tools.env(GNUPGHOME=str(home)),
                       check=True, capture_output=True)
    yield str(home)
    stop_gpg(home, tools.gpg)


def _fmt(path: Path) -> str:
    from kvsops.sops import stores

    if path.name.endswith(".yaml.gotpl"):
        return "yaml"
    if path.suffix == ".raw":
        return "binary"
    return stores.detect(path.name)


def test_every_conformance_file_matches_sops(tools, conformance_dir, gnupg, tmp_path):
    from kvsops import api

    age_key = (conformance_dir / "helm-secrets" / "age" / "key.txt").read_text()
    env = tools.env(GNUPGHOME=gnupg, SOPS_AGE_KEY=age_key)
    files = _encrypted_files(conformance_dir)
    assert len(files) >= 25
    session = api.Session(env=env)
    checked = 0
    for path in files:
        fmt = _fmt(path)
        want = run_sops(tools.sops, ["-d", "--input-type", fmt, "--output-type", fmt, str(path)], env, tmp_path)
        got = api.decrypt_bytes(path.read_bytes(), fmt, session=session, where=str(path))
        assert got == want.stdout, path
        checked += 1
    assert checked == len(files)


def test_helm_secrets_expected_plaintexts(conformance_dir, gnupg, tools):
    """helm-secrets' own expectations: secrets.yaml -> secrets.dec.yaml etc."""
    import yaml

    from kvsops import api

    base = conformance_dir / "helm-secrets" / "values" / "sops"
    env = tools.env(GNUPGHOME=gnupg, SOPS_AGE_KEY=(conformance_dir / "helm-secrets" / "age" / "key.txt").read_text())
    session = api.Session(env=env)
    for enc, dec in [("secrets.yaml", "secrets.dec.yaml"), ("some-secrets.yaml", "some-secrets.dec.yaml"),
                     ("some-secrets.windows.yaml", "some-secrets.dec.yaml")]:
        got = api.decrypt_bytes((base / enc).read_bytes(), "yaml", session=session)
        assert yaml.safe_load(got) == yaml.safe_load((base / dec).read_bytes()), enc
    raw = api.decrypt_bytes((base / "secrets.trailing-newline.raw").read_bytes(), "binary", session=session)
    assert raw == (base / "secrets.trailing-newline.dec.raw").read_bytes()
