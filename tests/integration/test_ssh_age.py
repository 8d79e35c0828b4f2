"""age with SSH keys (ssh-ed25519, ssh-rsa), both ways with the real sops."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.integration.interop_helpers import CORPUS, copy_corpus, run_sops


def _keypair(kind: str) -> tuple[bytes, str]:
    key = ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else rsa.generate_private_key(65537, 2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode() + " test@kvsops"


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
def test_ssh_recipients_both_ways(tools, tmp_path, kind):
    from kvsops import api

    private, public = _keypair(kind)
    keyfile = tmp_path / "id"
    keyfile.write_bytes(private)
    keyfile.chmod(0o600)
    env = tools.env(SOPS_AGE_SSH_PRIVATE_KEY_FILE=str(keyfile), HOME=str(tmp_path))
    env.pop("SOPS_AGE_KEY", None)
    env.pop("SOPS_AGE_KEY_FILE", None)
    src = copy_corpus("types.yaml", tmp_path)
    enc = run_sops(tools.sops, ["-e", "--age", public, str(src)], env, tmp_path).stdout
    want = run_sops(tools.sops, ["-d", "--input-type", "yaml", "--output-type", "yaml", "/dev/stdin"], env,
                    tmp_path, stdin=enc).stdout
    session = api.Session(env=env)
    assert api.decrypt_bytes(enc, "yaml", session=session) == want

    ours = api.encrypt_bytes((CORPUS / "types.yaml").read_bytes(), "yaml", [[session.recipient("age", public)]])
    assert public.encode() in ours  # the recipient is stored verbatim, comment included
    (tmp_path / "ours.yaml").write_bytes(ours)
    assert run_sops(tools.sops, ["-d", str(tmp_path / "ours.yaml")], env, tmp_path).stdout == want
