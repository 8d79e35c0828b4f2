"""Key discovery follows sops: every source is collected, from an injected environment."""

import stat
import sys

from kvsops.keys import keyring
from tests.keys import AgeKey


def ident():
    key = AgeKey()
    return key.identity, key.recipient


def test_all_sources_are_collected(tmp_path):
    a, _ = ident()
    b, _ = ident()
    c, _ = ident()
    d, _ = ident()
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text(f"# created: now\n# public key: x\n{b}\n")
    default = tmp_path / "cfg" / "sops" / "age"
    default.mkdir(parents=True)
    (default / "keys.txt").write_text(c + "\n")
    cmd = tmp_path / "keycmd.py"
    cmd.write_text(f"import os\nassert os.environ['SOPS_AGE_RECIPIENT'] == 'age1r'\nprint({d!r})\n")
    env = {
        "HOME": str(tmp_path / "home"),
        "SOPS_AGE_KEY": a,
        "SOPS_AGE_KEY_FILE": str(keyfile),
        "SOPS_AGE_KEY_CMD": f"{sys.executable} {cmd}",
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
    }
    m = keyring.load_age(env, recipient="age1r")
    assert [i for _, i in m.identities] == [a, b, d, c]
    assert m.problems == ()


def test_whitespace_separated_and_comments():
    a, _ = ident()
    b, _ = ident()
    m = keyring.load_age({"HOME": "/nonexistent", "SOPS_AGE_KEY": f"# comment\n{a} {b}\n"})
    assert [i for _, i in m.identities] == [a, b]


def test_missing_key_file_is_reported_without_content(tmp_path):
    m = keyring.load_age({"HOME": str(tmp_path), "SOPS_AGE_KEY_FILE": str(tmp_path / "nope")})
    assert m.identities == () and "does not exist" in m.problems[0]


def test_passphrase_protected_identity_file_is_named(tmp_path):
    f = tmp_path / "k.age"
    f.write_text("-----BEGIN AGE ENCRYPTED FILE-----\nabc\n-----END AGE ENCRYPTED FILE-----\n")
    m = keyring.load_age({"HOME": str(tmp_path), "SOPS_AGE_KEY_FILE": str(f)})
    assert "passphrase" in m.problems[0]


def test_default_ssh_keys(tmp_path):
    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    (ssh / "id_ed25519").write_bytes(b"key")
    (ssh / "id_ed25519").chmod(stat.S_IRUSR)
    m = keyring.load_age({"HOME": str(tmp_path)})
    assert m.ssh_keys == (("~/.ssh/id_ed25519", b"key"),)


def test_gnupg_home():
    assert keyring.gnupg_home({"GNUPGHOME": "/g"}) == "/g"
    assert keyring.gnupg_home({"HOME": "/h"}) == "/h/.gnupg"
