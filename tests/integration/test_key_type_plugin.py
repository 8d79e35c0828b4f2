"""Adding a key type is one module and one table row: a toy backend, registered with
``kvsops.keys.register`` by a launcher, works through every layer without any other change: the
CLI's flag and environment variable, rotate's --add/--rm flags, .sops.yaml (flat and key groups,
no unknown-key warning), updatekeys, the metadata of the files it writes, decryption with "not my
key" reporting, and the key policy.

The toy key is NOT cryptography (an XOR with a digest of the key's name): it exercises the plumbing.
Each case runs the launcher in a new process (registration is per process).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

TOY_MODULE = '''
"""A toy key type (tests only: an XOR with a digest of the key's name is not encryption)."""
import base64
import hashlib

from kvsops.keys.base import NotMyKey, comma_list

KIND = "toy"


def _pad(name):
    return hashlib.sha256(name.encode()).digest()


def describe(fields):
    return f"toy key {fields.get('recipient', '?')}"


def entry_spec(fields):
    return str(fields.get("recipient", "") or "")


def same_key(have, want):
    return have == want


def config_specs(item):
    return comma_list(item, "toy")


def policy_key(text):
    return text.strip()


def policy_allows(allowed, fields):
    return entry_spec(fields) in allowed


class Recipient:
    kind = KIND

    def __init__(self, spec):
        if not spec.startswith("toy:") or len(spec) < 5:
            raise ValueError(f"invalid toy recipient {spec!r}")
        self.id = spec

    def wrap(self, data_key):
        enc = bytes(a ^ b for a, b in zip(data_key, _pad(self.id)))
        return {"recipient": self.id, "enc": base64.b64encode(enc).decode()}


def recipient(spec, ctx):
    return Recipient(spec)


class Unwrapper:
    def __init__(self, ctx):
        self.names = set(comma_list(ctx.env.get("TOY_KEYS", ""), "TOY_KEYS"))

    def unwrap(self, fields):
        name = entry_spec(fields)
        if name not in self.names:
            raise NotMyKey(f"no toy key {name} here")
        return bytes(a ^ b for a, b in zip(base64.b64decode(str(fields["enc"])), _pad(name)))
'''

LAUNCHER = '''
import sys

sys.path.insert(0, sys.argv.pop(1))
from kvsops import keys

keys.register(keys.KindInfo(
    "toy", "toykey", local=True, in_process=True, flag="toy", noun="toy keys", env="TOY_RECIPIENTS",
    flag_rank=9, config_key="toy", policy="toy", entry_fields=("recipient", "enc"),
))
if sys.argv[1] == "--exec":
    exec(sys.argv[2])
else:
    from kvsops.cli.main import main

    sys.exit(main(sys.argv[1:]))
'''

PLAIN = "db:\n    password: hunter2\n"


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "toykey.py").write_text(TOY_MODULE)
    (tmp_path / "launcher.py").write_text(LAUNCHER)
    (tmp_path / "plain.yaml").write_text(PLAIN)
    return tmp_path


def run(ws: Path, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(ws), "PYTHONPATH": str(REPO / "plugin"),
            "SOPS_DISABLE_VERSION_CHECK": "1"}
    proc = subprocess.run([sys.executable, str(ws / "launcher.py"), str(ws / "plugin"), *args], cwd=ws,
                          env={**base, **env}, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def recipients(text: str) -> list[str]:
    return [ln.split("recipient: ", 1)[1] for ln in text.splitlines() if "recipient: toy:" in ln]


def test_flag_and_decrypt_with_not_my_key_reporting(ws: Path) -> None:
    enc = run(ws, "encrypt", "--toy", "toy:alice,toy:bob", "plain.yaml").stdout
    assert "    toy:\n" in enc and recipients(enc) == ["toy:alice", "toy:bob"]
    (ws / "s.enc.yaml").write_text(enc)
    assert run(ws, "decrypt", "s.enc.yaml", TOY_KEYS="toy:bob").stdout == PLAIN
    bad = run(ws, "decrypt", "s.enc.yaml", check=False, TOY_KEYS="toy:carol")
    assert bad.returncode != 0 and bad.stdout == ""
    assert "toy key toy:alice: no toy key toy:alice here" in bad.stderr and "hunter2" not in bad.stderr


def test_environment_variable_and_help(ws: Path) -> None:
    enc = run(ws, "encrypt", "plain.yaml", TOY_RECIPIENTS="toy:alice").stdout
    assert recipients(enc) == ["toy:alice"]
    assert "--toy" in run(ws, "encrypt", "--help").stdout
    assert "--add-toy" in run(ws, "rotate", "--help").stdout
    bad = run(ws, "encrypt", "--toy", "alice", "plain.yaml", check=False)
    assert bad.returncode != 0 and "invalid toy recipient 'alice'" in bad.stderr


def test_sops_yaml_updatekeys_and_rotate(ws: Path) -> None:
    (ws / ".sops.yaml").write_text("creation_rules:\n  - key_groups:\n      - toy: ['toy:alice', 'toy:bob']\n")
    first = run(ws, "encrypt", "plain.yaml")
    assert recipients(first.stdout) == ["toy:alice", "toy:bob"] and "unknown" not in first.stderr
    (ws / "s.enc.yaml").write_text(first.stdout)
    (ws / ".sops.yaml").write_text("creation_rules:\n  - toy: toy:carol\n")
    run(ws, "updatekeys", "-y", "s.enc.yaml", TOY_KEYS="toy:alice")
    assert recipients((ws / "s.enc.yaml").read_text()) == ["toy:carol"]
    assert run(ws, "decrypt", "s.enc.yaml", TOY_KEYS="toy:carol").stdout == PLAIN
    run(ws, "rotate", "-i", "--add-toy", "toy:dave", "--rm-toy", "toy:carol", "s.enc.yaml", TOY_KEYS="toy:carol")
    assert recipients((ws / "s.enc.yaml").read_text()) == ["toy:dave"]
    assert run(ws, "decrypt", "s.enc.yaml", TOY_KEYS="toy:dave").stdout == PLAIN


def test_key_policy(ws: Path) -> None:
    (ws / "s.enc.yaml").write_text(run(ws, "encrypt", "--toy", "toy:alice", "plain.yaml").stdout)
    code = (
        "import json, sys\n"
        "from kvsops import api, errors, policy\n"
        "data = open('s.enc.yaml', 'rb').read()\n"
        "out = {}\n"
        "for allowed in ('toy:alice', 'toy:bob'):\n"
        "    a = policy.Allowed.from_lists({'toy': [allowed]}, 'test')\n"
        "    s = api.Session(allowed_entry=policy.checker_for(a))\n"
        "    try:\n"
        "        out[allowed] = api.decrypt_bytes(data, 'yaml', session=s).decode()\n"
        "    except errors.KvsopsError as exc:\n"
        "        out[allowed] = exc.code + ' ' + exc.message\n"
        "out['json'] = policy.Allowed.from_lists({'toy': [' toy:alice ']}, 't').to_json()\n"
        "print(json.dumps(out))\n"
    )
    got = json.loads(run(ws, "--exec", code, TOY_KEYS="toy:alice").stdout)
    assert got["toy:alice"] == PLAIN
    assert got["toy:bob"].startswith("POLICY_REFUSED") and "toy key toy:alice: refused by policy" in got["toy:bob"]
    assert got["json"]["toy"] == ["toy:alice"]
