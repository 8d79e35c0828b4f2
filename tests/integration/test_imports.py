"""What a fresh process imports: the hot paths stay lean (start-up time is paid by every Helm values
file and every kustomize generator), and a missing optional dependency is named, not a traceback.

Each check runs in a new interpreter: ``sys.modules`` of the test process says nothing about it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kvsops import keys
from kvsops.keys import age_pq
from tests.keys import AgeKey

REPO = Path(__file__).resolve().parents[2]
PLUGIN_ENV = {"PYTHONPATH": str(REPO / "plugin"), "PATH": "/usr/bin:/bin"}


@pytest.mark.parametrize("code", [
    # the decrypt and downloader paths' modules, and the scanners run on every kind of scalar
    "import kvsops.cli.main, kvsops.cli.commands, kvsops.api, kvsops.hosts.helm.main, kvsops.hosts.helm.downloader,"
    " kvsops.hosts.helm.urls, kvsops.policy, kvsops.keys.age, kvsops.keys.keyring, kvsops.sops.stores.yaml_fast\n"
    "from kvsops.sops.stores import yaml_store, yaml_emit\n"
    "for s in ('1', '0x1f', '1.5', '.5', '2024-01-02', '2024-01-02T03:04:05Z', 'abc', 'true', '~'):\n"
    "    yaml_store.resolve_plain(s); yaml_emit._style_for(s, False)\n"
    "from kvsops.sops import values, metadata\n"
    "values.split('ENC[AES256_GCM,data:QUJD,iv:QUJD,tag:' + 'A' * 22 + '==,type:int]')\n"
    "values.parse_typed(b'12', 'int'); metadata.rfc3339_canonical('2024-01-02T03:04:05Z')\n"
    "assert 're' not in sys.modules and 'base64' not in sys.modules, sorted(sys.modules)",
])
def test_hot_paths_do_not_import_re(code):
    subprocess.run([sys.executable, "-I", "-c", "import sys\n" + code], check=True)


def test_fs_imports_builtins_only() -> None:
    code = ("import sys; before = set(sys.modules); import kvsops.fs; "
            "new = sorted(m for m in set(sys.modules) - before if not m.startswith('kvsops')); print(new)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert set(ast.literal_eval(out)) <= {"__future__", "errno", "stat", "_stat"}, out  # builtins, nothing heavy


@pytest.mark.parametrize("kind", [row.kind for row in keys.backends()])
def test_backend_modules_import_light(kind: str) -> None:
    """kvsops.keys reads specs, .sops.yaml items and policies through the backend of a kind on any
    path: importing one must not cost an SDK, re, subprocess, threading, typing or dataclasses."""
    code = ("import sys; before = set(sys.modules); from kvsops import keys; keys.backend(sys.argv[1]); "
            "print(sorted(m for m in set(sys.modules) - before if not m.startswith('kvsops')))")
    out = subprocess.run([sys.executable, "-I", "-c", code, kind], capture_output=True, text=True, check=True).stdout
    assert set(ast.literal_eval(out)) <= {"__future__", "binascii", "_thread"}, out


def test_x25519_entries_do_not_load_the_post_quantum_code():
    """A key file with both kinds decrypting an X25519 entry: neither age_pq nor cryptography's hpke
    is imported (start-up time of every Helm values file and kustomize generator)."""
    code = f"""
import sys
from kvsops.context import KeyContext
from kvsops.keys import age
x_ident, x_rec = age.generate()
env = {{"HOME": "/nonexistent", "SOPS_AGE_KEY": x_ident + "\\n" + {str(age_pq.generate())!r}}}
entry = age.Recipient(x_rec).wrap(b"d" * 32)
assert age.Unwrapper(KeyContext(env, "/nonexistent")).unwrap(entry) == b"d" * 32
print(sorted(m for m in sys.modules if m.endswith(("age_pq", "hpke", "mlkem"))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=PLUGIN_ENV).stdout
    assert out.strip() == "[]"


def test_post_quantum_entries_do_not_load_pyrage_or_hashlib():
    """The other way round: a post-quantum key file and entry need neither pyrage nor the standard
    library's OpenSSL binding (cryptography's hashes are loaded for the key pair anyway)."""
    code = """
import sys
from kvsops.context import KeyContext
from kvsops.keys import age, age_pq
ident = age_pq.Identity(bytes(range(32)))
env = {"HOME": "/nonexistent", "SOPS_AGE_KEY": str(ident)}
entry = age.Recipient(ident.recipient).wrap(b"d" * 32)
assert age.Unwrapper(KeyContext(env, "/nonexistent")).unwrap(entry) == b"d" * 32
print(sorted(m for m in sys.modules if m.split(".")[0] in ("pyrage", "hashlib", "_hashlib", "hmac")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=PLUGIN_ENV).stdout
    assert out.strip() == "[]"


def test_jinja2_is_imported_only_for_templates(tmp_path: Path) -> None:
    key = AgeKey(tmp_path)
    root = tmp_path / "app"
    key.write(root / "a.enc.env", "A=1\n")
    code = (
        "import sys, json\nfrom kvsops.hosts.kustomize.generate import generate\n"
        "generate([json.loads(sys.argv[1])], root=sys.argv[2])\n"
        "assert 'jinja2' not in sys.modules, 'jinja2 imported'\n"
    )
    cfg = json.dumps({"apiVersion": "kvsops/v1", "kind": "SopsGenerator", "metadata": {"name": "g"},
                      "secrets": [{"name": "s", "envs": ["a.enc.env"]}]})
    subprocess.run([sys.executable, "-c", code, cfg, str(root)], env=key.env(), check=True)


def test_too_old_cryptography_names_the_version():
    """Simulated: cryptography without HPKE (releases before 47), in the binding and the public API."""
    code = """
import sys
from cryptography.hazmat.bindings._rust import openssl
del openssl.hpke
sys.modules["cryptography.hazmat.primitives.hpke"] = None
from kvsops.errors import MissingDependency
from kvsops.keys import age
try:
    age.generate(pq=True)
except MissingDependency as exc:
    print(exc.code, exc.message, exc.hint)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=PLUGIN_ENV).stdout
    assert out.startswith("MISSING_DEPENDENCY age post-quantum keys") and "cryptography >= 47" in out
    assert "pip install 'cryptography>=47'" in out
