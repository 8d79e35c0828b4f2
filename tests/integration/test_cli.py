"""The ``kvsops`` command line, run as a real subprocess, against the real sops, age keys and gpg."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.interop_helpers import run_sops
from tests.keys import AgeKey, PgpKey
from tests.processes import interactive_signals, stop_gpg

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-Pa55w0rd-xyzzy"
PLAIN = f"""db:
    user: admin
    password: {SECRET}
    port: 5432
list:
    - a
    - 1.5
public_unencrypted: visible
"""
EDITOR = """
import os, sys, time
path = sys.argv[-1]
with open(os.environ["EDITOR_LOG"], "a") as log:
    st = os.stat(path)
    log.write(f"{path} {oct(st.st_mode & 0o777)} {oct(os.stat(os.path.dirname(path)).st_mode & 0o777)}\\n")
mode = os.environ.get("EDITOR_MODE", "noop")
text = open(path).read()
if mode == "replace":
    open(path, "w").write(text.replace(os.environ["EDITOR_FROM"], os.environ["EDITOR_TO"]))
elif mode == "invalid":
    open(path, "w").write("a: [unclosed\\n")
elif mode == "sleep":
    open(os.environ["EDITOR_LOG"] + ".ready", "w").write("1")
    time.sleep(60)
elif mode == "fail":
    sys.exit(3)
"""


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def age_key():  # type: ignore[no-untyped-def]
    return AgeKey()


@pytest.fixture(scope="module")
def age_key2():  # type: ignore[no-untyped-def]
    return AgeKey()


@pytest.fixture(scope="module")
def pgp_key(tools, tmp_path_factory):  # type: ignore[no-untyped-def]
    key = PgpKey(tools.gpg, tmp_path_factory.mktemp("gpg") / "h")
    yield key
    stop_gpg(key.home, tools.gpg)


class Cli:
    """Runs ``python -m kvsops`` with an isolated HOME and an explicit key environment."""

    def __init__(self, tools, home: Path, age, pgp) -> None:  # type: ignore[no-untyped-def]
        self.tools = tools
        self.home = home
        self.age = age
        self.pgp = pgp
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SOPS_", "EDITOR", "GNUPGHOME"))}
        self.env = dict(base, HOME=str(home), PYTHONPATH=str(REPO / "plugin"),
                        SOPS_AGE_KEY=age.identity, GNUPGHOME=pgp.home)

    def __call__(self, *args: str, cwd: Path, stdin: bytes | None = None, env: dict[str, str] | None = None,
                 ok: bool | None = True) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run([sys.executable, "-m", "kvsops", *args], cwd=cwd, input=stdin, capture_output=True,
                              env=self.env if env is None else env, timeout=120)
        if ok is True and proc.returncode != 0:
            raise AssertionError(f"kvsops {args} exited {proc.returncode}: {proc.stderr.decode()}")
        return proc

    def sops(self, *args: str, cwd: Path, env: dict[str, str] | None = None, check: bool = True):  # type: ignore[no-untyped-def]
        return run_sops(self.tools.sops, list(args), self.tools.env(**(env or self.env)), cwd, check=check)


@pytest.fixture
def cli(tools, tmp_path, age_key, pgp_key) -> Cli:  # type: ignore[no-untyped-def]
    home = tmp_path / "home"
    home.mkdir()
    return Cli(tools, home, age_key, pgp_key)


@pytest.fixture
def ws(tmp_path) -> Path:  # type: ignore[no-untyped-def]
    w = tmp_path / "ws"
    w.mkdir()
    (w / "plain.yaml").write_text(PLAIN)
    return w


def encrypted(cli: Cli, ws: Path, name: str = "secret.yaml", *extra: str) -> Path:
    out = cli("encrypt", "--age", cli.age.recipient, *extra, "plain.yaml", cwd=ws).stdout
    (ws / name).write_bytes(out)
    return ws / name


def fails(proc: subprocess.CompletedProcess[bytes], code: int, text: str = "") -> str:
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    assert proc.stdout == b"", "stdout must stay empty on failure"
    assert err.startswith("kvsops: error: "), err
    assert SECRET not in err
    assert text in err
    return err


def enc_values(path: Path) -> dict[str, str]:
    """key -> ENC string for every encrypted leaf line of a YAML file (sops block excluded)."""
    text = path.read_text().split("\nsops:")[0]
    return {m.group(1): m.group(2) for m in re.finditer(r"^\s*(\w+): (ENC\[.*\])$", text, re.M)}


def metadata_line(path: Path, key: str) -> str:
    m = re.search(rf"^    {key}: (.*)$", path.read_text(), re.M)
    assert m, key
    return m.group(1)


# ----------------------------------------------------------------------------- front door


def test_version_help_and_usage_errors(cli: Cli, ws: Path) -> None:
    assert cli("--version", cwd=ws).stdout.decode().startswith("kvsops ")
    assert b"decrypt" in cli("--help", cwd=ws).stdout
    fails(cli("decrypt", "--no-such-flag", "x", cwd=ws, ok=None), 1)  # sops: flag errors are generic (1)


def test_python_dash_m_and_console_script_agree(cli: Cli, ws: Path) -> None:
    script = REPO / ".venv" / "bin" / "kvsops"
    if not script.exists():
        pytest.skip("console script not installed (run scripts/setup.sh)")
    proc = subprocess.run([str(script), "--version"], capture_output=True, env=cli.env, timeout=60)
    assert proc.stdout == cli("--version", cwd=ws).stdout


def test_console_script_decrypt_imports_no_re(cli: Cli, ws: Path) -> None:
    """The installed ``kvsops`` (plugin/bin/kvsops, not pip's wrapper, which imports re) decrypting
    an age file: neither it nor kvsops imports re, enum or base64 (start-up, issue 8)."""
    script = REPO / ".venv" / "bin" / "kvsops"
    if not script.exists():
        pytest.skip("console script not installed (run scripts/setup.sh)")
    enc = encrypted(cli, ws)
    proc = subprocess.run([sys.executable, "-X", "importtime", str(script), "decrypt", enc.name], cwd=ws,
                          capture_output=True, env=cli.env, timeout=60, check=True)
    assert proc.stdout.decode() == PLAIN
    imported = {ln.rsplit("|", 1)[1].strip() for ln in proc.stderr.decode().splitlines()
                if ln.startswith("import time:")}
    assert "kvsops.api" in imported and not imported & {"re", "enum", "base64", "contextlib", "importlib"}


def test_main_imports_nothing_heavy() -> None:
    code = ("import sys, kvsops.cli.main; heavy = [m for m in sys.modules if m.split('.')[0] in "
            "('yaml', 'ruamel', 'cryptography', 'pyrage', 'azure') or m == 'importlib.metadata']; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO / "plugin")), check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------- encrypt / decrypt


def test_age_round_trip_and_interop_both_ways(cli: Cli, ws: Path) -> None:
    enc = encrypted(cli, ws)
    assert SECRET not in enc.read_text()
    assert "public_unencrypted: visible" in enc.read_text()  # default unencrypted_suffix
    assert cli("decrypt", enc.name, cwd=ws).stdout.decode() == PLAIN
    assert cli.sops("decrypt", enc.name, cwd=ws).stdout.decode() == PLAIN
    by_sops = cli.sops("encrypt", "--age", cli.age.recipient, "plain.yaml", cwd=ws).stdout
    (ws / "by_sops.yaml").write_bytes(by_sops)
    assert cli("decrypt", "by_sops.yaml", cwd=ws).stdout.decode() == PLAIN


def test_pgp_round_trip_and_interop_both_ways(cli: Cli, ws: Path) -> None:
    env = dict(cli.env)
    del env["SOPS_AGE_KEY"]
    out = cli("encrypt", "--pgp", cli.pgp.fp, "plain.yaml", cwd=ws, env=env).stdout
    (ws / "p.yaml").write_bytes(out)
    assert f"fp: {cli.pgp.fp}" in out.decode()
    assert cli.sops("decrypt", "p.yaml", cwd=ws, env=env).stdout.decode() == PLAIN
    by_sops = cli.sops("encrypt", "--pgp", cli.pgp.fp, "plain.yaml", cwd=ws, env=env).stdout
    (ws / "ps.yaml").write_bytes(by_sops)
    assert cli("decrypt", "ps.yaml", cwd=ws, env=env).stdout.decode() == PLAIN


def test_other_formats_and_output_type(cli: Cli, ws: Path) -> None:
    (ws / "a.json").write_text('{\n\t"k": "v",\n\t"num": 1\n}\n')  # Go's layout
    (ws / "a.env").write_text("TOKEN=abc\n")
    for name in ("a.json", "a.env"):
        out = cli("encrypt", "--age", cli.age.recipient, name, cwd=ws).stdout
        (ws / f"e{name}").write_bytes(out)
        assert cli.sops("decrypt", f"e{name}", cwd=ws).stdout == (ws / name).read_bytes()
        assert cli("decrypt", f"e{name}", cwd=ws).stdout == (ws / name).read_bytes()
    as_yaml = cli("decrypt", "--output-type", "yaml", "ea.json", cwd=ws).stdout.decode()
    assert as_yaml == "k: v\nnum: 1\n"


def test_stdin(cli: Cli, ws: Path) -> None:
    enc = encrypted(cli, ws).read_bytes()
    fails(cli("decrypt", cwd=ws, stdin=enc, ok=None), 100, "no file given")
    assert cli("decrypt", "--input-type", "yaml", cwd=ws, stdin=enc).stdout.decode() == PLAIN
    assert cli("decrypt", "--filename-override", "x.yaml", "-", cwd=ws, stdin=enc).stdout.decode() == PLAIN
    fails(cli("encrypt", "--age", cli.age.recipient, cwd=ws, stdin=PLAIN.encode(), ok=None), 8, "--filename-override")
    out = cli("encrypt", "--age", cli.age.recipient, "--filename-override", "x.yaml", "-", cwd=ws,
              stdin=PLAIN.encode()).stdout
    assert cli("decrypt", "--input-type", "yaml", cwd=ws, stdin=out).stdout.decode() == PLAIN
    fails(cli("decrypt", "-i", "--input-type", "yaml", cwd=ws, stdin=enc, ok=None), 8)


def test_extract(cli: Cli, ws: Path) -> None:
    enc = encrypted(cli, ws).name
    assert cli("decrypt", "--extract", '["db"]["password"]', enc, cwd=ws).stdout == SECRET.encode()  # no newline
    assert cli("decrypt", "--extract", '["db"]["port"]', enc, cwd=ws).stdout == b"5432\n"
    assert cli("decrypt", "--extract", "['list'][1]", enc, cwd=ws).stdout == b"1.5\n"
    assert cli("decrypt", "--extract", '["db"]', enc, cwd=ws).stdout.decode() == (
        f"user: admin\npassword: {SECRET}\nport: 5432\n")
    as_json = cli("decrypt", "--extract", '["db"]', "--output-type", "json", enc, cwd=ws).stdout
    assert json.loads(as_json) == {"user": "admin", "password": SECRET, "port": 5432}
    fails(cli("decrypt", "--extract", '["db"', enc, cwd=ws, ok=None), 91)
    fails(cli("decrypt", "--extract", '["db"][x]', enc, cwd=ws, ok=None), 91)
    fails(cli("decrypt", "--extract", '["nope"]', enc, cwd=ws, ok=None), 1, "not found")


def test_output_file_and_in_place(cli: Cli, ws: Path) -> None:
    enc = encrypted(cli, ws).name
    assert cli("decrypt", "--output", "out.yaml", enc, cwd=ws).stdout == b""
    assert (ws / "out.yaml").read_text() == PLAIN
    assert stat.S_IMODE((ws / "out.yaml").stat().st_mode) == 0o600  # a new plaintext file is private
    fails(cli("decrypt", "-i", "--output", "o.yaml", enc, cwd=ws, ok=None), 8)
    os.chmod(ws / enc, 0o640)
    cli("decrypt", "-i", enc, cwd=ws)
    assert (ws / enc).read_text() == PLAIN
    assert stat.S_IMODE((ws / enc).stat().st_mode) == 0o640  # mode kept
    cli("encrypt", "-i", "--age", cli.age.recipient, enc, cwd=ws)
    assert cli("decrypt", enc, cwd=ws).stdout.decode() == PLAIN


def test_decrypt_failures_keep_stdout_empty(cli: Cli, ws: Path, age_key2) -> None:  # type: ignore[no-untyped-def]
    enc = encrypted(cli, ws)
    fails(cli("decrypt", "missing.yaml", cwd=ws, ok=None), 100, "non-existent")
    wrong = dict(cli.env, SOPS_AGE_KEY=age_key2.identity)
    err = fails(cli("decrypt", enc.name, cwd=ws, env=wrong, ok=None), 128)
    assert cli.age.recipient in err  # names the key it tried
    tampered = enc.read_text().replace("public_unencrypted: visible", "public_unencrypted: changed")
    (ws / "t.yaml").write_text(tampered)
    fails(cli("decrypt", "t.yaml", cwd=ws, ok=None), 51, "MAC")
    assert "changed" in cli("decrypt", "--ignore-mac", "t.yaml", cwd=ws).stdout.decode()
    fails(cli("decrypt", "--decryption-order", "age,age", enc.name, cwd=ws, ok=None), 112)
    fails(cli("decrypt", "plain.yaml", cwd=ws, ok=None), 1, "metadata")


def test_debug_shows_frames_but_no_secret(cli: Cli, ws: Path) -> None:
    enc = encrypted(cli, ws)
    (ws / "t.yaml").write_text(enc.read_text().replace("port: ENC[", "port: XENC["))
    proc = cli("--debug", "decrypt", "t.yaml", cwd=ws, ok=None)
    assert proc.returncode != 0 and proc.stdout == b""
    err = proc.stderr.decode()
    assert "traceback" in err and 'File "' in err
    assert SECRET not in err


def test_encrypt_refusals(cli: Cli, ws: Path) -> None:
    enc = encrypted(cli, ws)
    fails(cli("encrypt", "--age", cli.age.recipient, enc.name, cwd=ws, ok=None), 203, "already encrypted")
    (ws / "empty.yaml").write_text("")
    fails(cli("encrypt", "--age", cli.age.recipient, "empty.yaml", cwd=ws, ok=None), 92)
    fails(cli("encrypt", "--age", cli.age.recipient, "--encrypted-regex", "a", "--unencrypted-suffix", "_x",
              "plain.yaml", cwd=ws, ok=None), 8)
    fails(cli("encrypt", "plain.yaml", cwd=ws, ok=None), 1, "no keys")
    fails(cli("encrypt", "--age", "age1notakey", "plain.yaml", cwd=ws, ok=None), 1, "age1notakey")
    fails(cli("encrypt", "--age", cli.age.recipient, "nope.yaml", cwd=ws, ok=None), 100)


@pytest.mark.parametrize("flag,value,plain_keys", [
    ("--unencrypted-suffix", "_plain", []),
    ("--encrypted-suffix", "word", ["user", "port", "public_unencrypted"]),
    ("--unencrypted-regex", "^user$", ["user"]),
    ("--encrypted-regex", "^password$", ["user", "port", "public_unencrypted"]),
])
def test_selection_rule_flags(cli: Cli, ws: Path, flag: str, value: str, plain_keys: list[str]) -> None:
    enc = encrypted(cli, ws, "s.yaml", flag, value)
    assert f"{flag[2:].replace('-', '_')}: {value}" in enc.read_text()
    text = enc.read_text().split("\nsops:")[0]
    for key in plain_keys:
        assert not re.search(rf"^\s*{key}: ENC\[", text, re.M), key
    assert SECRET not in text
    assert cli.sops("decrypt", "s.yaml", cwd=ws).stdout.decode() == PLAIN


def test_mac_only_encrypted_and_comment_regex(cli: Cli, ws: Path) -> None:
    (ws / "c.yaml").write_text("# sops:enc\nkey: value\nother: plain\n")
    enc = cli("encrypt", "--age", cli.age.recipient, "--mac-only-encrypted", "--encrypted-comment-regex",
              "sops:enc", "c.yaml", cwd=ws).stdout
    (ws / "ce.yaml").write_bytes(enc)
    text = enc.decode()
    assert "mac_only_encrypted: true" in text and "other: plain" in text and "key: ENC[" in text
    assert cli.sops("decrypt", "ce.yaml", cwd=ws).stdout == (ws / "c.yaml").read_bytes()
    # with mac_only_encrypted, plain values may be edited by hand
    (ws / "ce.yaml").write_text(text.replace("other: plain", "other: edited"))
    assert b"other: edited" in cli("decrypt", "ce.yaml", cwd=ws).stdout


# ----------------------------------------------------------------------------- .sops.yaml


def test_config_lookup_rules_and_env_override(cli: Cli, ws: Path, age_key2) -> None:  # type: ignore[no-untyped-def]
    (ws / ".sops.yaml").write_text(f"""creation_rules:
  - path_regex: ^prod/.*\\.yaml$
    age: {age_key2.recipient}
    encrypted_regex: ^(password|port)$
  - path_regex: \\.yaml$
    age: {cli.age.recipient}
""")
    (ws / "prod").mkdir()
    (ws / "prod" / "db.yaml").write_text(PLAIN)
    sub = ws / "prod"
    out = cli("encrypt", "db.yaml", cwd=sub).stdout.decode()  # config found from the cwd upward
    assert age_key2.recipient in out and cli.age.recipient not in out
    assert "user: admin" in out and "encrypted_regex: ^(password|port)$" in out
    other = cli("encrypt", "plain.yaml", cwd=ws).stdout.decode()
    assert cli.age.recipient in other and "unencrypted_suffix: _unencrypted" in other
    (ws / "x.json").write_text("{}")
    fails(cli("encrypt", "x.json", cwd=ws, ok=None), 1, "no matching creation rules")
    # flags give the keys, but a .sops.yaml without a rule for the file is still an error, as in sops
    fails(cli("encrypt", "--age", cli.age.recipient, "x.json", cwd=ws, ok=None), 1, "no matching creation rules")
    sops = cli.sops("encrypt", "--age", cli.age.recipient, "x.json", cwd=ws, check=False)
    assert sops.returncode != 0 and b"no matching creation rules" in sops.stderr
    env = dict(cli.env, SOPS_AGE_RECIPIENTS=cli.age.recipient)
    out = cli("encrypt", "db.yaml", cwd=sub, env=env).stdout.decode()
    assert cli.age.recipient in out and age_key2.recipient not in out  # keys from env override
    assert "encrypted_regex" in out  # the rule's other settings still apply
    cfg2 = ws / "elsewhere.yaml"
    cfg2.write_text(f"creation_rules:\n  - age: {age_key2.recipient}\n")
    out = cli("--config", str(cfg2), "encrypt", "plain.yaml", cwd=ws).stdout.decode()
    assert age_key2.recipient in out
    (ws / ".sops.yml").write_text("creation_rules: []\n")
    sub2 = ws / "nested"
    sub2.mkdir()
    (sub2 / ".sops.yml").write_text("creation_rules: []\n")
    (sub2 / "p.yaml").write_text(PLAIN)
    proc = cli("encrypt", "p.yaml", cwd=sub2)
    assert b"warning: ignoring" in proc.stderr


def test_key_groups_with_shamir_decrypt_with_sops(cli: Cli, ws: Path) -> None:
    (ws / ".sops.yaml").write_text(f"""creation_rules:
  - shamir_threshold: 2
    key_groups:
      - age: [{cli.age.recipient}]
      - pgp: [{cli.pgp.fp}]
""")
    out = cli("encrypt", "plain.yaml", cwd=ws).stdout
    (ws / "g.yaml").write_bytes(out)
    assert b"key_groups:" in out and b"shamir_threshold: 2" in out
    assert cli.sops("decrypt", "g.yaml", cwd=ws).stdout.decode() == PLAIN
    assert cli("decrypt", "g.yaml", cwd=ws).stdout.decode() == PLAIN


# ----------------------------------------------------------------------------- edit


@pytest.fixture
def editor(cli: Cli, tmp_path: Path) -> Path:
    script = tmp_path / "editor.py"
    script.write_text(EDITOR)
    log = tmp_path / "editor.log"
    cli.env.update(EDITOR=f"{sys.executable} {script}", EDITOR_LOG=str(log))
    return log


def _temp_paths(log: Path) -> list[str]:
    return [line.split()[0] for line in log.read_text().splitlines()]


def test_edit_unchanged_is_200_and_leaves_nothing(cli: Cli, ws: Path, editor: Path) -> None:
    enc = encrypted(cli, ws)
    before = enc.read_bytes()
    fails(cli("edit", enc.name, cwd=ws, ok=None), 200, "not changed")
    assert enc.read_bytes() == before
    (line,) = editor.read_text().splitlines()
    tmp, mode, dmode = line.split()
    assert (mode, dmode) == ("0o600", "0o700")
    if os.path.isdir("/dev/shm"):
        assert tmp.startswith("/dev/shm/")
    assert os.path.basename(tmp) == enc.name
    assert not os.path.exists(tmp) and not os.path.exists(os.path.dirname(tmp))


def test_edit_puts_its_file_in_kvsops_shm_dir(cli: Cli, ws: Path, editor: Path, shm_dir: Path) -> None:
    enc = encrypted(cli, ws)
    fails(cli("edit", enc.name, cwd=ws, env=dict(cli.env, KVSOPS_SHM_DIR=str(shm_dir)), ok=None), 200)
    (line,) = editor.read_text().splitlines()
    assert line.split()[0].startswith(f"{shm_dir}/kvsops-edit-")
    assert os.listdir(shm_dir) == []
    fails(cli("edit", enc.name, cwd=ws, env=dict(cli.env, KVSOPS_SHM_DIR=str(shm_dir / "no")), ok=None), 1,
          "KVSOPS_SHM_DIR")  # never a silent fallback to a disk


def test_edit_reencrypts_only_what_changed(cli: Cli, ws: Path, editor: Path) -> None:
    enc = encrypted(cli, ws)
    before = enc_values(enc)
    env = dict(cli.env, EDITOR_MODE="replace", EDITOR_FROM="user: admin", EDITOR_TO="user: root")
    cli("edit", enc.name, cwd=ws, env=env)
    after = enc_values(enc)
    assert after["user"] != before["user"]
    for key in ("password", "port"):
        assert after[key] == before[key], key  # same data key, same IV: byte-identical
    assert "user: root" in cli.sops("decrypt", enc.name, cwd=ws).stdout.decode()
    assert not any(os.path.exists(p) for p in _temp_paths(editor))


def test_edit_invalid_result_fails_without_touching_the_file(cli: Cli, ws: Path, editor: Path) -> None:
    enc = encrypted(cli, ws)
    before = enc.read_bytes()
    fails(cli("edit", enc.name, cwd=ws, env=dict(cli.env, EDITOR_MODE="invalid"), ok=None, stdin=b""), 2, "not valid")
    assert enc.read_bytes() == before
    assert not any(os.path.exists(p) for p in _temp_paths(editor))
    fails(cli("edit", enc.name, cwd=ws, env=dict(cli.env, EDITOR_MODE="fail"), ok=None), 201)
    assert enc.read_bytes() == before
    assert not any(os.path.exists(p) for p in _temp_paths(editor))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_edit_signal_removes_the_plaintext(cli: Cli, ws: Path, editor: Path, sig: signal.Signals) -> None:
    enc = encrypted(cli, ws)
    before = enc.read_bytes()
    env = dict(cli.env, EDITOR_MODE="sleep")
    proc = subprocess.Popen([sys.executable, "-m", "kvsops", "edit", enc.name], cwd=ws, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=interactive_signals)
    ready = Path(str(editor) + ".ready")
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists()
    (tmp,) = _temp_paths(editor)
    assert os.path.exists(tmp)
    proc.send_signal(sig)  # to kvsops only: it must stop the editor and clean up itself
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert out == b"" and err.startswith(b"kvsops: error: ") and SECRET.encode() not in err
    assert not os.path.exists(tmp) and not os.path.exists(os.path.dirname(tmp))
    assert enc.read_bytes() == before


def test_edit_new_file_starts_from_an_example(cli: Cli, ws: Path, editor: Path) -> None:
    env = dict(cli.env, EDITOR_MODE="replace", EDITOR_FROM="example_value\n", EDITOR_TO="changed\n")
    cli("edit", "--age", cli.age.recipient, "new.yaml", cwd=ws, env=env)
    text = cli.sops("decrypt", "new.yaml", cwd=ws).stdout.decode()
    assert "example_key: changed" in text and "hello: Welcome to SOPS!" in text


# ----------------------------------------------------------------------------- set / unset


def test_set_values_and_iv_stability(cli: Cli, ws: Path) -> None:
    enc = encrypted(cli, ws)
    before = enc_values(enc)
    cli("set", enc.name, '["db"]["password"]', '"n3w"', cwd=ws)
    after = enc_values(enc)
    assert after["password"] != before["password"]
    assert after["user"] == before["user"] and after["port"] == before["port"]
    cli("set", enc.name, '["db"]["timeout"]', "30", cwd=ws)  # a JSON scalar number is a Go float64
    assert "type:float" in enc_values(enc)["timeout"]
    cli("set", enc.name, '["new"][0]["x"]', '{"a": 1, "b": [true, null]}', cwd=ws)
    (ws / "v.json").write_text('"from-file"')
    cli("set", "--value-file", enc.name, '["f"]', "v.json", cwd=ws)
    cli("set", "--value-stdin", enc.name, '["s"]', cwd=ws, stdin=b'"from-stdin"')
    got = cli.sops("decrypt", "--output-type", "json", enc.name, cwd=ws).stdout
    data = json.loads(got)
    assert data["db"]["password"] == "n3w" and data["db"]["timeout"] == 30
    assert data["new"] == [{"x": {"a": 1, "b": [True, None]}}]
    assert data["f"] == "from-file" and data["s"] == "from-stdin"


def test_set_idempotent_and_errors(cli: Cli, ws: Path) -> None:
    enc = encrypted(cli, ws)
    before = enc.read_bytes()
    cli("set", "--idempotent", enc.name, '["db"]["user"]', '"admin"', cwd=ws)
    assert enc.read_bytes() == before  # nothing changed, nothing written
    fails(cli("set", enc.name, '["db"', '"x"', cwd=ws, ok=None), 7)
    fails(cli("set", enc.name, '["db"]', "{bad", cwd=ws, ok=None), 7)
    fails(cli("set", enc.name, '["db"]', cwd=ws, ok=None), 100)
    fails(cli("set", "missing.yaml", '["db"]', "1", cwd=ws, ok=None), 2)  # sops: a read error
    fails(cli("set", "--value-file", "--value-stdin", enc.name, '["db"]', "x", cwd=ws, ok=None), 1)
    assert enc.read_bytes() == before


def test_unset(cli: Cli, ws: Path) -> None:
    enc = encrypted(cli, ws)
    before = enc_values(enc)
    cli("unset", enc.name, '["db"]["user"]', cwd=ws)
    after = enc_values(enc)
    assert "user" not in after and after["password"] == before["password"]
    fails(cli("unset", enc.name, '["nope"]', cwd=ws, ok=None), 1, "not found")
    snapshot = enc.read_bytes()
    cli("unset", "--idempotent", enc.name, '["nope"]', cwd=ws)
    assert enc.read_bytes() == snapshot
    cli("unset", enc.name, '["list"][0]', cwd=ws)
    assert cli.sops("decrypt", "--extract", '["list"]', enc.name, cwd=ws).stdout == b"- 1.5\n"


# ----------------------------------------------------------------------------- updatekeys / rotate


def test_updatekeys(cli: Cli, ws: Path, age_key2) -> None:  # type: ignore[no-untyped-def]
    (ws / ".sops.yaml").write_text(f"creation_rules:\n  - age: {cli.age.recipient}\n")
    (ws / "d").mkdir()
    for name in ("a.yaml", "d/b.yaml"):
        (ws / name).write_bytes(cli("encrypt", "plain.yaml", cwd=ws).stdout)
    (ws / "d" / "notes.txt").write_text("plain, not a sops file\n")
    a = ws / "a.yaml"
    values, mac, lm = enc_values(a), metadata_line(a, "mac"), metadata_line(a, "lastmodified")
    assert b"already up to date" in cli("updatekeys", "-y", "a.yaml", cwd=ws).stderr
    (ws / ".sops.yaml").write_text(
        f"creation_rules:\n  - age: {cli.age.recipient},{age_key2.recipient}\n    pgp: {cli.pgp.fp}\n"
    )
    snapshot = (ws / "a.yaml").read_bytes()
    proc = cli("updatekeys", "a.yaml", cwd=ws, stdin=b"n\n")
    assert (ws / "a.yaml").read_bytes() == snapshot and b"+++ age " + age_key2.recipient.encode() in proc.stderr
    proc = cli("updatekeys", "-y", "a.yaml", cwd=ws)
    assert proc.stdout == b"" and b"+++ pgp " + cli.pgp.fp.encode() in proc.stderr
    assert enc_values(ws / "a.yaml") == values
    assert metadata_line(ws / "a.yaml", "mac") == mac and metadata_line(ws / "a.yaml", "lastmodified") == lm
    only2 = dict(cli.env, SOPS_AGE_KEY=age_key2.identity, GNUPGHOME=str(cli.home))
    assert cli.sops("decrypt", "a.yaml", cwd=ws, env=only2).stdout.decode() == PLAIN
    only_pgp = {k: v for k, v in cli.env.items() if k != "SOPS_AGE_KEY"}
    assert cli.sops("decrypt", "a.yaml", cwd=ws, env=only_pgp).stdout.decode() == PLAIN
    cli("updatekeys", "-y", "d", cwd=ws)  # a tree: plaintext files are skipped
    assert cli.sops("decrypt", "d/b.yaml", cwd=ws, env=only2).stdout.decode() == PLAIN
    (ws / ".sops.yaml").write_text(f"creation_rules:\n  - age: {age_key2.recipient}\n")
    cli("updatekeys", "-y", "a.yaml", cwd=ws)
    fails(cli("decrypt", "a.yaml", cwd=ws, ok=None), 128)  # the removed key no longer opens it


def test_rotate(cli: Cli, ws: Path, age_key2) -> None:  # type: ignore[no-untyped-def]
    enc = encrypted(cli, ws)
    before = enc_values(enc)
    out = cli("rotate", enc.name, cwd=ws).stdout  # to stdout without -i
    assert out.startswith(b"db:") and enc_values(enc) == before
    cli("rotate", "-i", "--add-age", age_key2.recipient, enc.name, cwd=ws)
    after = enc_values(enc)
    assert all(after[k] != before[k] for k in before)  # a new data key: every value re-encrypted
    only2 = dict(cli.env, SOPS_AGE_KEY=age_key2.identity)
    assert cli.sops("decrypt", enc.name, cwd=ws, env=only2).stdout.decode() == PLAIN
    cli("rotate", "-i", "--add-pgp", cli.pgp.fp, enc.name, cwd=ws)
    only_pgp = {k: v for k, v in cli.env.items() if k != "SOPS_AGE_KEY"}
    assert cli.sops("decrypt", enc.name, cwd=ws, env=only_pgp).stdout.decode() == PLAIN
    cli("rotate", "-i", "--rm-age", cli.age.recipient, "--rm-pgp", cli.pgp.fp, enc.name, cwd=ws)
    fails(cli("decrypt", enc.name, cwd=ws, ok=None), 128)
    assert cli("decrypt", enc.name, cwd=ws, env=only2).stdout.decode() == PLAIN
    fails(cli("rotate", enc.name, "plain.yaml", cwd=ws, ok=None), 8, "--in-place")
    fails(cli("rotate", "-i", "nope.yaml", cwd=ws, ok=None), 2)  # sops: a read error
    fails(cli("rotate", "-i", "--add-age", age_key2.recipient, "nope.yaml", cwd=ws, ok=None), 49)


# ----------------------------------------------------------------------------- filestatus / keygen


def test_filestatus(cli: Cli, ws: Path) -> None:
    enc = encrypted(cli, ws)
    assert cli("filestatus", enc.name, cwd=ws).stdout == b'{"encrypted":true}\n'
    assert cli("filestatus", "plain.yaml", cwd=ws).stdout == b'{"encrypted":false}\n'
    fails(cli("filestatus", "nope.yaml", cwd=ws, ok=None), 1)  # sops: "cannot check file status"


def test_keygen(cli: Cli, ws: Path, tools) -> None:  # type: ignore[no-untyped-def]
    text = cli("keygen", cwd=ws).stdout.decode()
    lines = text.splitlines()
    assert re.fullmatch(r"# created: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", lines[0])
    assert lines[1].startswith("# public key: age1") and lines[2].startswith("AGE-SECRET-KEY-1")
    proc = cli("keygen", "-o", "k.txt", cwd=ws)
    assert proc.stdout == b"" and proc.stderr.startswith(b"Public key: age1")
    assert stat.S_IMODE((ws / "k.txt").stat().st_mode) == 0o600
    fails(cli("keygen", "-o", "k.txt", cwd=ws, ok=None), 3, "already exists")
    public = (ws / "k.txt").read_text().splitlines()[1].split()[-1]
    age_keygen = subprocess.run([tools.age_keygen, "-y", str(ws / "k.txt")], capture_output=True, text=True, check=True)
    assert age_keygen.stdout.strip() == public  # the real age agrees


def test_keygen_into_a_fresh_home_creates_private_directories(cli: Cli, ws: Path) -> None:
    """The README's first step on a new machine: ~/.config/sops/age does not exist yet."""
    target = cli.home / ".config" / "sops" / "age" / "keys.txt"
    assert not (cli.home / ".config").exists()
    proc = cli("keygen", "-o", str(target), cwd=ws)
    assert proc.stderr.startswith(b"Public key: age1")
    for d in (cli.home / ".config", cli.home / ".config" / "sops", target.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    (ws / "blocked").write_text("a file where a directory should be")
    fails(cli("keygen", "-o", "blocked/keys.txt", cwd=ws, ok=None), 3, "blocked")


def test_help_lists_every_command_and_krm_help_stands_alone(cli: Cli, ws: Path) -> None:
    from kvsops.cli.main import DISPATCH

    out = cli("--help", cwd=ws).stdout.decode()
    for name in ("decrypt", "encrypt", "edit", "check", "keygen", *DISPATCH):  # every command, the hosts' too
        assert re.search(rf"^\s+{re.escape(name)}\s", out, re.M), name
    krm = cli("krm", "--help", cwd=ws).stdout.decode()
    # an installed package has no kustomize/README.md: the help itself carries the essentials
    for essential in ("kind: SopsGenerator", "config.kubernetes.io/function", "path: kvsops-krm",
                      "kustomize build --enable-alpha-plugins --enable-exec", "SOPS_AGE_KEY_FILE"):
        assert essential in krm, essential


def test_decrypt_without_a_file(cli: Cli, ws: Path) -> None:
    err = fails(cli("decrypt", cwd=ws, ok=None), 100, "no file given: kvsops decrypt FILE")
    assert err.splitlines()[1] == "kvsops: hint: use - (with --input-type or --filename-override) to read stdin"


# ----------------------------------------------------------------------------- check


SECRET_MANIFEST = """apiVersion: v1
kind: Secret
metadata:
  name: db
stringData:
  password: hunter2
"""


def test_check_passes_on_a_clean_tree(cli: Cli, ws: Path) -> None:
    for d in ("secrets", "k8s", ".git", "docs"):
        (ws / d).mkdir()
    (ws / "secrets" / "good.yaml").write_bytes(encrypted(cli, ws).read_bytes())
    (ws / "k8s" / "db.enc.yaml").write_text(SECRET_MANIFEST)
    cli("encrypt", "-i", "--age", cli.age.recipient, "--encrypted-regex", "^(data|stringData)$",
        "k8s/db.enc.yaml", cwd=ws)
    (ws / "k8s" / "template.yaml").write_text(SECRET_MANIFEST.replace("hunter2", "{{ .Values.pw }}"))
    (ws / ".git" / "leak.yaml").write_text(SECRET_MANIFEST)
    (ws / "docs" / "README.md").write_text("hello\n")
    (ws / "docs" / "garbage.yaml").write_bytes(bytes(range(256)) * 4)
    os.mkfifo(ws / "docs" / "pipe.yaml")  # never opened: it would block
    (ws / "plain.yaml").unlink()
    (ws / "secret.yaml").unlink()
    (ws / ".sops.yaml").write_text(f"""creation_rules:
  - path_regex: secrets/.*\\.yaml$
    age: {cli.age.recipient}
  - path_regex: ^k8s/.*\\.enc\\.yaml$
    age: {cli.age.recipient}
    encrypted_regex: ^(data|stringData)$
""")
    proc = cli("check", cwd=ws)
    assert proc.stdout == b"" and proc.stderr == b""
    # a selection rule that leaves stringData in plaintext is caught too
    (ws / "k8s" / "half.enc.yaml").write_text(SECRET_MANIFEST)
    cli("encrypt", "-i", "--encrypted-regex", "^data$", "k8s/half.enc.yaml", cwd=ws)
    fails(cli("check", "k8s", cwd=ws, ok=None), 1, "k8s/half.enc.yaml: a Kubernetes Secret with plaintext")


def test_check_reports_each_problem(cli: Cli, ws: Path, age_key2) -> None:  # type: ignore[no-untyped-def]
    for d in ("secrets", "k8s", ".git", "node_modules"):
        (ws / d).mkdir()
    (ws / "secrets" / "leak.yaml").write_text(PLAIN)
    for name, key in (("ok", cli.age), ("stale", age_key2)):
        enc = cli("encrypt", "--age", key.recipient, "plain.yaml", cwd=ws).stdout
        (ws / "secrets" / f"{name}.yaml").write_bytes(enc)
    (ws / ".sops.yaml").write_text(f"""creation_rules:
  - path_regex: secrets/.*\\.yaml$
    age: {cli.age.recipient}
""")
    (ws / "k8s" / "secret.yaml").write_text(SECRET_MANIFEST)
    (ws / "k8s" / "template.yaml").write_text(SECRET_MANIFEST.replace("hunter2", "{{ .Values.pw }}"))
    (ws / ".git" / "secret.yaml").write_text(SECRET_MANIFEST)
    (ws / "node_modules" / "secret.yaml").write_text(SECRET_MANIFEST)
    (ws / "plain.yaml").unlink()
    err = fails(cli("check", cwd=ws, ok=None), 1, "3 problem(s)")
    assert "secrets/leak.yaml: not encrypted" in err
    assert "k8s/secret.yaml: a Kubernetes Secret with plaintext" in err
    assert "secrets/stale.yaml: its keys differ from .sops.yaml" in err
    assert "says files matching secrets/.*\\.yaml$ must be" in err  # the regex as written, not repr()'d
    assert "ok.yaml" not in err and "template.yaml" not in err and ".git" not in err and "node_modules" not in err
    assert "hunter2" not in err
    # pre-commit passes file names
    cli("check", "secrets/ok.yaml", "k8s/template.yaml", cwd=ws)
    fails(cli("check", "k8s/secret.yaml", cwd=ws, ok=None), 1, "1 problem(s)")
    cli("updatekeys", "-y", "secrets/stale.yaml", cwd=ws, env=dict(cli.env, SOPS_AGE_KEY=age_key2.identity))
    cli("encrypt", "-i", "secrets/leak.yaml", cwd=ws)
    (ws / "k8s" / "secret.yaml").unlink()
    assert cli("check", cwd=ws).stderr == b""


def test_check_warns_about_mac_only_encrypted_kubernetes_objects(cli: Cli, ws: Path) -> None:
    """A warning, not a failure: the MAC of such a file does not cover a namespace or an added document."""
    (ws / "k8s").mkdir()
    for name, flags in (("mac-only.enc.yaml", ["--mac-only-encrypted"]), ("full-mac.enc.yaml", [])):
        (ws / "k8s" / name).write_text(SECRET_MANIFEST)
        cli("encrypt", "-i", "--age", cli.age.recipient, "--encrypted-regex", "^(data|stringData)$", *flags,
            f"k8s/{name}", cwd=ws)
    (ws / "k8s" / "values.enc.yaml").write_text("password: hunter2\nport: 5432\n")  # not a Kubernetes object
    cli("encrypt", "-i", "--age", cli.age.recipient, "--mac-only-encrypted", "k8s/values.enc.yaml", cwd=ws)
    (ws / ".sops.yaml").write_text(f"creation_rules:\n  - path_regex: ^k8s/\n    age: {cli.age.recipient}\n")
    proc = cli("check", "k8s", cwd=ws)
    assert proc.returncode == 0 and proc.stdout == b""
    lines = proc.stderr.decode().splitlines()
    assert lines == ["kvsops: warning: k8s/mac-only.enc.yaml: mac_only_encrypted is set and the file holds "
                     "Kubernetes objects: its MAC does not cover their unencrypted fields (a namespace, labels, "
                     "the kind) nor documents added to the file; drop mac_only_encrypted and re-encrypt to cover "
                     "them"], lines


def test_pre_commit_hook_file() -> None:
    import yaml

    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == "kvsops-check"]
    assert hook["entry"] == "kvsops check" and hook["language"] == "python"


def test_check_without_a_sops_yaml_is_not_silent(cli: Cli, ws: Path) -> None:
    """A tree walk cannot say which files must be encrypted without creation rules: it fails. A
    list of files (pre-commit's staged files) may lie outside the config's tree: it warns."""
    (ws / "k8s").mkdir()
    (ws / "k8s" / "app.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    fails(cli("check", cwd=ws, ok=None), 1, "no .sops.yaml found for . or above: check needs its creation rules")
    fails(cli("check", "k8s", cwd=ws, ok=None), 1, "no .sops.yaml found for k8s or above")
    proc = cli("check", "k8s/app.yaml", cwd=ws)
    assert proc.stderr.decode() == ("kvsops: warning: no .sops.yaml found for k8s/app.yaml or above: only Kubernetes "
                                    "Secrets were checked\n")
    (ws / ".sops.yaml").write_text(f"creation_rules:\n  - path_regx: ^secrets/\n    age: {cli.age.recipient}\n")
    proc = cli("check", cwd=ws)  # a config with a typo: sops would ignore the key; kvsops says so, once
    assert proc.stderr.decode() == ("kvsops: warning: .sops.yaml: unknown field `creation_rules[0].path_regx`; "
                                    "did you mean `path_regex`? (sops ignores it)\n")
