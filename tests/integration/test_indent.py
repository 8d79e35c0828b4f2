"""``--indent`` and ``.sops.yaml`` ``stores: {yaml|json|json_binary: {indent: N}}``, byte for byte
against the real sops. sops 3.11 has ``--indent`` as a global flag that only its legacy forms
(``-d``, ``-e``, ``--set``, ``-r``, edit) see; its subcommands ignore it, and updatekeys ignores it
too. kvsops takes it on every command that writes a file (and before the command), so the
references here are sops' legacy forms.

Decrypted output is compared as is. Encrypted output holds fresh random values, so there the
ENC strings, age armor, ``lastmodified`` and ``version`` are masked and the layout is compared.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.interop_helpers import run_sops
from tests.keys import AgeKey

REPO = Path(__file__).resolve().parents[2]
YAML = """# head comment
a: 1
list:
    # item comment
    - x: 1
      y: [1, 2]
      deep:
          - - nested
            - seq
          - k: v
            m:
                n: 3
    - plain
    - |
      multi
      line
nested:
    k: |
        multi
        line
    lead: "  spaced\\nlines\\n"
    empty: {}
    emptyl: []
# foot
"""
JSON = """{"a": 1, "list": [{"x": 1, "y": [1, 2], "deep": [["n", "s"], {"k": "v"}]}, "plain"],
 "nested": {"k": "multi\\nline", "empty": {}, "emptyl": []}}
"""


@pytest.fixture(scope="module")
def keys():  # type: ignore[no-untyped-def]
    return AgeKey(), AgeKey()


@pytest.fixture
def ws(tools, keys, tmp_path):  # type: ignore[no-untyped-def]
    """(workspace dir, env, run kvsops, run sops); files sit one level below the config dir."""
    (tmp_path / "sub").mkdir()
    env = tools.env(SOPS_AGE_KEY=keys[0].identity + "\n" + keys[1].identity, PYTHONPATH=str(REPO / "plugin"))
    env.pop("SOPS_AGE_KEY_FILE", None)
    env.pop("SOPS_CONFIG", None)
    cwd = tmp_path / "sub"

    def kvsops(*args: str) -> bytes:
        proc = subprocess.run([sys.executable, "-m", "kvsops", *args], cwd=cwd, env=env, capture_output=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
        return proc.stdout

    def sops(*args: str) -> bytes:
        return run_sops(tools.sops, list(args), env, cwd).stdout

    (cwd / "plain.yaml").write_text(YAML)
    (cwd / "plain.json").write_text(JSON)
    return cwd, kvsops, sops, env


def mask(data: bytes) -> str:
    text = data.decode()
    text = re.sub(r"-----BEGIN AGE ENCRYPTED FILE-----.*?-----END AGE ENCRYPTED FILE-----(\\n)?", "AGE", text,
                  flags=re.S)
    text = re.sub(r"^( *)(-----|[A-Za-z0-9+/=]{20,}$).*\n", "", text, flags=re.M)  # leftover armor lines
    text = re.sub(r"ENC\[[^\]]*\]", "ENC", text)
    return re.sub(r'("?(lastmodified|version)"?: ).*', r"\1X", text)


@pytest.mark.parametrize("name, indent", [
    (name, indent)
    for name in ("plain.yaml", "plain.json")
    for indent in ("2", "3", "0", "-1", "9")
    if not (indent == "-1" and name == "plain.yaml")  # an error in both: test_negative_yaml_indent
])
def test_indent_flag_decrypt_and_encrypt(ws, keys, name, indent) -> None:  # type: ignore[no-untyped-def]
    cwd, kvsops, sops, _env = ws
    (cwd / ("enc-" + name)).write_bytes(sops("-e", "--age", keys[0].recipient, name))
    want = sops("--indent", indent, "-d", "enc-" + name)
    assert kvsops("decrypt", "--indent", indent, "enc-" + name) == want
    assert kvsops("--indent", indent, "decrypt", "enc-" + name) == want
    other = "json" if name.endswith(".yaml") else "yaml"
    if not (indent == "-1" and other == "yaml"):
        assert kvsops("decrypt", "--indent", indent, "--output-type", other, "enc-" + name) == sops(
            "--indent", indent, "-d", "--output-type", other, "enc-" + name)
    mine = kvsops("encrypt", "--indent", indent, "--age", keys[0].recipient, name)
    assert mask(mine) == mask(sops("--indent", indent, "-e", "--age", keys[0].recipient, name))


def test_negative_yaml_indent_is_an_error_in_both(ws, keys, tools) -> None:  # type: ignore[no-untyped-def]
    cwd, _kvsops, sops, env = ws
    (cwd / "enc-plain.yaml").write_bytes(sops("-e", "--age", keys[0].recipient, "plain.yaml"))
    theirs = run_sops(tools.sops, ["--indent", "-1", "-d", "enc-plain.yaml"], env, cwd, check=False)
    ours = subprocess.run([sys.executable, "-m", "kvsops", "decrypt", "--indent", "-1", "enc-plain.yaml"],
                          cwd=cwd, env=env, capture_output=True, timeout=60)
    assert theirs.returncode != 0 and ours.returncode != 0
    assert ours.stdout == b"" and b"indent" in ours.stderr


def test_stores_config(ws, keys) -> None:  # type: ignore[no-untyped-def]
    cwd, kvsops, sops, _env = ws
    (cwd.parent / ".sops.yaml").write_text(
        f"creation_rules:\n  - age: {keys[0].recipient}\n"
        "stores:\n  yaml:\n    indent: 2\n  json:\n    indent: 0\n  json_binary:\n    indent: 3\n")
    (cwd / "blob.bin").write_bytes(b"raw\x00bytes\n")
    for name in ("plain.yaml", "plain.json", "blob.bin"):
        enc = sops("-e", name)
        (cwd / ("enc-" + name)).write_bytes(enc)
        assert mask(kvsops("encrypt", name)) == mask(enc)
        for extra in ([], ["--output-type", "json"], ["--output-type", "yaml"]):
            if name == "blob.bin" and extra:
                continue
            assert kvsops("decrypt", *extra, "enc-" + name) == sops("-d", *extra, "enc-" + name)
        # --indent wins over the config
        assert kvsops("decrypt", "--indent", "4", "enc-" + name) == sops("--indent", "4", "-d", "enc-" + name)


def test_rewriting_commands_take_the_indent(ws, keys) -> None:  # type: ignore[no-untyped-def]
    """set, unset, rotate, edit and updatekeys write with --indent, laid out as sops would."""
    cwd, kvsops, sops, env = ws
    r0, r1 = keys[0].recipient, keys[1].recipient

    def fresh(name: str = "f.yaml") -> str:
        (cwd / name).write_bytes(sops("-e", "--age", r0, "--filename-override", name, "plain.yaml"))
        return name

    def layout(plain: bytes, recipients: str = r0) -> str:
        (cwd / "want.yaml").write_bytes(plain)
        return mask(sops("--indent", "2", "-e", "--age", recipients, "want.yaml"))

    kvsops("set", "--indent", "2", fresh(), '["a"]', "2")
    (cwd / "g.yaml").write_bytes(sops("-e", "--age", r0, "plain.yaml"))
    sops("--indent", "2", "--set", '["a"] 2', "g.yaml")  # sops' set subcommand ignores the global flag
    assert mask((cwd / "f.yaml").read_bytes()) == mask((cwd / "g.yaml").read_bytes())

    kvsops("unset", "--indent", "2", fresh(), '["nested"]')
    assert mask((cwd / "f.yaml").read_bytes()) == layout(
        sops("-d", "--indent", "4", "f.yaml"))

    out = kvsops("rotate", "--indent", "2", fresh())
    assert mask(out) == layout(YAML.encode())

    editor = cwd / "editor.py"
    editor.write_text("import os, sys\np = sys.argv[-1]\nt = open(p).read()\nopen(os.environ['SEEN'], 'w').write(t)\n"
                      "open(p, 'w').write(t.replace('a: 1', 'a: 5'))\n")
    name = fresh()
    shown = sops("--indent", "2", "-d", name)  # what sops' edit puts in the temp file
    proc = subprocess.run([sys.executable, "-m", "kvsops", "edit", "--indent", "2", name], cwd=cwd,
                          env=dict(env, SOPS_EDITOR=f"{sys.executable} {editor}", SEEN=str(cwd / "seen")),
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert (cwd / "seen").read_bytes() == shown
    assert mask((cwd / name).read_bytes()) == layout(YAML.replace("a: 1", "a: 5").encode())

    (cwd.parent / ".sops.yaml").write_text(f"creation_rules:\n  - age: {r0},{r1}\n")
    kvsops("updatekeys", "--indent", "2", "-y", fresh())
    assert mask((cwd / "f.yaml").read_bytes()) == layout(YAML.encode(), f"{r0},{r1}")

