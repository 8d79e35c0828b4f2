"""Run one command line against the real sops and against kvsops, each in its own copy of the same
workspace, and compare what they did: exit code, stdout, and the files left behind.

The workspace (built once per module by :func:`build_workspace`) holds plaintext and sops-encrypted
files of every store, files that must be refused (malformed, empty, tampered, encrypted for a key
that is absent, a YAML uint64), a directory, and a ``cfg/`` subdirectory with a ``.sops.yaml``.
Both tools see the same environment: an isolated HOME, the age identity in ``SOPS_AGE_KEY_FILE``
(outside the workspace), and an editor script driven by ``EDITOR_MODE``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.keys import AgeKey

REPO = Path(__file__).resolve().parents[2]

PLAIN = {
    "plain.yaml": b"db:\n    user: admin\n    password: s3cr3t-Pa55\n    port: 5432\nlist:\n    - a\n    - 1.5\n"
                  b"public_unencrypted: visible\n",
    "plain.json": b'{\n\t"name": "svc",\n\t"port": 8080,\n\t"ints": [1, 2, 3],\n\t"token": "t0k3n"\n}\n',
    "plain.env": b"USER=admin\nPASSWORD=pa=ss\n",
    "plain.ini": b"[db]\nuser = admin\npassword = secret\n",
    "plain.bin": b"\x00\x01binary\xff data\n",
    "plain.txt": b"a text file\n",
    "empty.yaml": b"",
    "ws.yaml": b"\n\n",
    "comment.yaml": b"# only a comment\n",
    "bad.yaml": b"{{{: [\n",
    "seq.yaml": b"- a\n- b\n",
    "scalar.yaml": b"hello\n",
    "big.yaml": b"a: 9223372036854775808\n",
    "empty.json": b"",
    "bad.json": b"{nope",
    "arr.json": b"[1, 2]\n",
    "bad.env": b"novalue\n",
    "bad.ini": b"[s\n",
    "sops_key.yaml": b"sops: 1\na: b\n",
    "yaml.txt": b"db:\n    user: admin\n    password: s3cr3t\n",
}
ENCRYPTED = ["plain.yaml", "plain.json", "plain.env", "plain.ini", "plain.bin"]

EDITOR = """
import os, sys
path = sys.argv[-1]
mode = os.environ.get("EDITOR_MODE", "noop")
text = open(path).read()
if os.environ.get("EDITOR_LOG"):
    open(os.environ["EDITOR_LOG"], "w").write(text)
if mode == "replace":
    open(path, "w").write(text.replace(os.environ["EDITOR_FROM"], os.environ["EDITOR_TO"]))
elif mode == "write":
    open(path, "w").write(os.environ["EDITOR_TEXT"])
elif mode == "fail":
    sys.exit(3)
"""


@dataclass
class Outcome:
    code: int
    stdout: bytes
    stderr: bytes
    files: dict[str, bytes] = field(default_factory=dict)  # relative path -> bytes, after the run


@dataclass
class Workspace:
    tools: object
    root: Path
    template: Path
    env: dict[str, str]
    recipient: str
    recipient2: str
    runs: int = 0

    def run(self, tool: str, argv: list[str], *, stdin: bytes = b"", cwd: str = ".",
            env: dict[str, str] | None = None) -> Outcome:
        """``tool`` is "sops" or "kvsops"; ``argv`` may say ``$R`` / ``$R2`` for the recipients."""
        self.runs += 1
        work = self.root / f"{tool}-{self.runs}"
        shutil.copytree(self.template, work, symlinks=True)
        argv = [a.replace("$R2", self.recipient2).replace("$R", self.recipient) for a in argv]
        exe = [self.tools.sops] if tool == "sops" else [sys.executable, "-m", "kvsops"]  # type: ignore[attr-defined]
        proc = subprocess.run([*exe, *argv], cwd=work / cwd, input=stdin, capture_output=True, timeout=120,
                              env=dict(self.env, **(env or {})))
        out = Outcome(proc.returncode, proc.stdout, proc.stderr, snapshot(work))
        shutil.rmtree(work)
        return out

    def files(self) -> dict[str, bytes]:
        return snapshot(self.template)

    def sops_decrypt(self, data: bytes, fmt: str) -> bytes:
        """The real sops' plaintext of an encrypted file's bytes."""
        proc = subprocess.run([self.tools.sops, "decrypt", "--input-type", fmt, "--output-type", fmt,  # type: ignore[attr-defined]
                               "/dev/stdin"], input=data, env=self.env, capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        return proc.stdout


def snapshot(directory: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(directory))] = p.read_bytes()
        elif p.is_dir():
            out[str(p.relative_to(directory)) + "/"] = b""
    return out


def build_workspace(tools, root: Path) -> Workspace:  # type: ignore[no-untyped-def]
    key, other = AgeKey(), AgeKey()  # files for `other` cannot be decrypted (no identity)
    keys = root / "keys"
    keys.mkdir()
    (keys / "age.txt").write_text(key.identity + "\n")
    (keys / "editor.py").write_text(EDITOR)
    home = root / "home"
    home.mkdir()
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SOPS_", "EDITOR", "VISUAL", "GNUPGHOME", "KVSOPS_", "AZURE_"))}
    env = tools.env(**base)
    env.update(HOME=str(home), GNUPGHOME=str(home / "gnupg"), SOPS_AGE_KEY_FILE=str(keys / "age.txt"),
               EDITOR=f"{sys.executable} {keys / 'editor.py'}", PYTHONPATH=str(REPO / "plugin"),
               SOPS_DISABLE_VERSION_CHECK="1")
    tpl = root / "template"
    tpl.mkdir()
    for name, data in PLAIN.items():
        (tpl / name).write_bytes(data)
    (tpl / "dir").mkdir()
    (tpl / "cfg").mkdir()
    (tpl / "cfg" / ".sops.yaml").write_text(
        "creation_rules:\n  - path_regex: \\.yaml$\n    encrypted_regex: ^(password|token)$\n"
        f"    age: {key.recipient}\n")
    (tpl / "cfg" / "new.yaml").write_bytes(PLAIN["plain.yaml"])
    (tpl / "badcfg").mkdir()
    (tpl / "badcfg" / ".sops.yaml").write_text("creation_rules: [\n")
    (tpl / "badcfg" / "plain.yaml").write_bytes(PLAIN["plain.yaml"])

    def sops_encrypt(name: str, recipient: str) -> bytes:
        proc = subprocess.run([tools.sops, "encrypt", "--age", recipient, name], cwd=tpl, env=env,
                              capture_output=True, timeout=120, check=True)
        return proc.stdout

    for name in ENCRYPTED:
        stem, ext = name.split(".")
        (tpl / f"enc.{ext}").write_bytes(sops_encrypt(name, key.recipient))
    enc = (tpl / "enc.yaml").read_bytes()
    (tpl / "tampered.yaml").write_bytes(enc.replace(b"    user: ENC", b"    usr: ENC"))
    (tpl / "nomac.yaml").write_bytes(b"\n".join(ln for ln in enc.split(b"\n") if b"    mac:" not in ln))
    (tpl / "badvalue.yaml").write_bytes(enc.replace(b"data:", b"data:AAAA", 1))
    (tpl / "otherkey.yaml").write_bytes(sops_encrypt("plain.yaml", other.recipient))
    (tpl / "macbad.yaml").write_bytes(enc.replace(b"public_unencrypted: visible", b"public_unencrypted: changed"))
    (tpl / "enc_yaml.txt").write_bytes(enc)
    (tpl / "enc2.yaml").write_bytes(sops_encrypt("plain.yaml", f"{key.recipient},{other.recipient}"))
    (tpl / "enc_uint.yaml").write_bytes(enc.replace(b"public_unencrypted: visible",
                                                    b"public_unencrypted: 9223372036854775808"))
    return Workspace(tools, root, tpl, env, key.recipient, other.recipient)
