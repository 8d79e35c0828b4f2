"""sops' own flag-driven command line (``kvsops -d FILE``, ``-e``, ``-r``, ``-i``, ``--set``,
``kvsops FILE``), run line by line against the real sops 3.11 and kvsops, each in its own copy of
the same workspace (tests/integration/sops_table).

For every line: the same exit code; the same stdout bytes, or, where it is an encrypted file
(IVs and keys differ by design), the same plaintext under sops' own ``decrypt`` and the same layout
once ciphertexts, IVs, tags, wrapped keys, MAC and time are masked; and the same files written,
compared the same way. kvsops' failures also keep its one-line error format.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.interop_helpers import as_sops_311_comments, mask_encrypted
from tests.integration.sops_table import REPO, Outcome, Workspace, build_workspace

R, R2 = "$R", "$R2"
NOOP: dict[str, str] = {}
REPLACE = {"EDITOR_MODE": "replace", "EDITOR_FROM": "admin", "EDITOR_TO": "root"}

# (argv, extra env, cwd, stdin); $R/$R2 are the workspace's recipients, <name> on stdin a file's bytes.
TABLE: list[tuple[list[str], dict[str, str], str, bytes]] = [
    # -d / --decrypt, every store, and its options
    (["-d", "enc.yaml"], NOOP, ".", b""),
    (["--decrypt", "enc.json"], NOOP, ".", b""),
    (["-d", "enc.env"], NOOP, ".", b""),
    (["-d", "enc.ini"], NOOP, ".", b""),
    (["-d", "enc.bin"], NOOP, ".", b""),
    (["-decrypt", "enc.yaml"], NOOP, ".", b""),  # Go's flag package: one dash or two
    (["--d", "enc.yaml"], NOOP, ".", b""),
    (["-d=true", "enc.yaml"], NOOP, ".", b""),
    (["-d", "--", "enc.yaml"], NOOP, ".", b""),
    (["-d", "--extract", '["db"]["password"]', "enc.yaml"], NOOP, ".", b""),
    (["--extract", '["db"]', "-d", "enc.yaml"], NOOP, ".", b""),  # --extract before the mode
    (["-d", "--extract=[\"list\"][1]", "enc.yaml"], NOOP, ".", b""),
    (["-d", "--extract", '["ints"]', "enc.json"], NOOP, ".", b""),
    (["-d", "--output-type", "json", "enc.yaml"], NOOP, ".", b""),
    (["-d", "--output-type", "dotenv", "enc.json"], NOOP, ".", b""),
    (["-d", "--input-type", "yaml", "--output-type", "yaml", "enc_yaml.txt"], NOOP, ".", b""),
    (["-d", "--filename-override", "x.yaml", "enc_yaml.txt"], NOOP, ".", b""),
    (["-d", "--input-type", "yaml", "--output-type", "json", "/dev/stdin"], NOOP, ".", b"<enc.yaml>"),
    (["--indent", "2", "-d", "enc.yaml"], NOOP, ".", b""),
    (["-d", "--indent", "0", "--output-type", "json", "enc.yaml"], NOOP, ".", b""),
    (["-d", "--ignore-mac", "macbad.yaml"], NOOP, ".", b""),
    (["-d", "--decryption-order", "age", "enc.yaml"], NOOP, ".", b""),
    (["-d", "--output", "out.yaml", "enc.yaml"], NOOP, ".", b""),
    (["-d", "-i", "enc.json"], NOOP, ".", b""),
    (["-d", "enc.yaml", "extra", "--output-type"], NOOP, ".", b""),  # flags after the file are ignored
    # -e / --encrypt
    (["-e", "-a", R, "plain.yaml"], NOOP, ".", b""),
    (["--encrypt", "--age", R, "plain.json"], NOOP, ".", b""),
    (["-e", "-a", R, "plain.env"], NOOP, ".", b""),
    (["-e", "-a", R, "plain.ini"], NOOP, ".", b""),
    (["-e", "-a", R, "plain.bin"], NOOP, ".", b""),
    (["-e", "-a", f"{R},{R2}", "plain.yaml"], NOOP, ".", b""),
    (["-e", "-a", R, "--encrypted-regex", "^password$", "plain.yaml"], NOOP, ".", b""),
    (["-e", "-a", R, "--unencrypted-suffix", "_unencrypted", "--mac-only-encrypted", "plain.yaml"], NOOP, ".", b""),
    (["-e", "-a", R, "--output-type", "json", "plain.yaml"], NOOP, ".", b""),
    (["-e", "-a", R, "--input-type", "yaml", "--output-type", "yaml", "yaml.txt"], NOOP, ".", b""),
    (["--indent", "2", "-e", "-a", R, "plain.yaml"], NOOP, ".", b""),
    (["-e", "-i", "-a", R, "plain.yaml"], NOOP, ".", b""),
    (["-e", "-a", R, "--output", "out.enc.yaml", "plain.yaml"], NOOP, ".", b""),
    (["-e", "plain.yaml"], {"SOPS_AGE_RECIPIENTS": R}, ".", b""),
    (["-e", "new.yaml"], NOOP, "cfg", b""),  # keys and encrypted_regex from .sops.yaml
    (["-e", "--encrypted-regex", "^token$", "new.yaml"], NOOP, "cfg", b""),  # the flag replaces the rule's
    (["encrypt", "--encrypted-regex", "^token$", "new.yaml"], NOOP, "cfg", b""),
    # -r / --rotate
    (["-r", "enc.yaml"], NOOP, ".", b""),
    (["--rotate", "-i", "enc.json"], NOOP, ".", b""),
    (["-r", "-i", "--add-age", R2, "enc.yaml"], NOOP, ".", b""),
    (["-r", "-i", "--rm-age", R2, "enc2.yaml"], NOOP, ".", b""),
    (["-r", "--output", "rotated.yaml", "enc.yaml"], NOOP, ".", b""),
    # --set (always in place)
    (["--set", '["db"]["port"] 5433', "enc.yaml"], NOOP, ".", b""),
    (["--set", '["db"]["user"] "root"', "enc.yaml"], NOOP, ".", b""),
    (["--set", '["new"] {"a": 1, "b": [true, 2.5]}', "enc.yaml"], NOOP, ".", b""),
    (["--set", '["list"][5] "appended"', "enc.yaml"], NOOP, ".", b""),
    (["--set", '["port"] 9090', "enc.json"], NOOP, ".", b""),
    # edit: kvsops FILE
    (["enc.yaml"], REPLACE, ".", b""),
    (["enc.json"], {"EDITOR_MODE": "replace", "EDITOR_FROM": "svc", "EDITOR_TO": "api"}, ".", b""),
    (["-a", R, "brand-new.yaml"], {"EDITOR_MODE": "write", "EDITOR_TEXT": "k: v\nn: 1\n"}, ".", b""),
    (["enc.yaml"], NOOP, ".", b""),  # unchanged: 200
    (["-s", "enc.yaml"], NOOP, ".", b""),
    (["enc.yaml", "-d"], NOOP, ".", b""),  # -d after the file: edit, with a warning
    # several modes: the last one's output, sops' error scoping
    (["-e", "-d", "enc.yaml"], NOOP, ".", b""),
    (["-d", "-r", "enc.yaml"], NOOP, ".", b""),
    # refusals in the legacy forms
    ([], NOOP, ".", b""),
    (["-d"], NOOP, ".", b""),
    (["-d", "nonexistent.yaml"], NOOP, ".", b""),
    (["-r", "--add-age", R, "nonexistent.yaml"], NOOP, ".", b""),
    (["-d", "-i", "--output", "x.yaml", "enc.yaml"], NOOP, ".", b""),
    (["-di", "enc.yaml"], NOOP, ".", b""),
    (["---d", "enc.yaml"], NOOP, ".", b""),
    (["-d", "--extract"], NOOP, ".", b""),
    (["-d=maybe", "enc.yaml"], NOOP, ".", b""),
    (["--indent", "two", "-d", "enc.yaml"], NOOP, ".", b""),
    (["-d", "macbad.yaml"], NOOP, ".", b""),
    (["-d", "--extract", "nope", "enc.yaml"], NOOP, ".", b""),
    (["-d", "--output-type", "binary", "enc.yaml"], NOOP, ".", b""),
    (["-d", "bad.yaml"], NOOP, ".", b""),
    (["-e", "-a", R, "enc.yaml"], NOOP, ".", b""),
    (["-e", "plain.yaml"], NOOP, ".", b""),
    (["-e", "-a", R, "--encrypted-regex", "a", "--unencrypted-regex", "b", "plain.yaml"], NOOP, ".", b""),
    (["-e", "-a", R, "plain.yaml"], NOOP, "badcfg", b""),
    (["-r", "plain.yaml"], NOOP, ".", b""),
    (["--set", "nospace", "enc.yaml"], NOOP, ".", b""),
    (["--set", '["db"] not-json', "enc.yaml"], NOOP, ".", b""),
    (["--set", '["a"] [1, 2]', "enc.yaml"], NOOP, ".", b""),
    (["plain.yaml"], NOOP, ".", b""),  # edit of a plaintext file
    (["new.yaml"], NOOP, ".", b""),  # a new file without keys
]


def _id(argv: list[str], env: dict[str, str], cwd: str) -> str:
    return (" ".join(argv) or "(no arguments)") + (f" @{cwd}" if cwd != "." else "") + (
        f" [{env.get('EDITOR_MODE', 'env')}]" if env else "")


@pytest.fixture(scope="module")
def ws(tools, tmp_path_factory) -> Workspace:  # type: ignore[no-untyped-def]
    return build_workspace(tools, tmp_path_factory.mktemp("legacy"))


def _format(data: bytes) -> str:
    if b"\n[sops]\n" in data or data.startswith(b"[sops]"):
        return "ini"
    if b"sops_version=" in data:
        return "dotenv"
    if data.lstrip().startswith(b"{"):
        return "json"
    return "yaml"


def _same(ws: Workspace, ours: bytes, theirs: bytes, what: str) -> None:
    if ours == theirs:
        return
    assert b"ENC[AES256_GCM," in theirs and b"ENC[AES256_GCM," in ours, f"{what} differs:\n{ours!r}\n{theirs!r}"
    fmt = _format(theirs)
    assert _format(ours) == fmt, what
    layout = mask_encrypted(ours, fmt)
    if fmt == "yaml":
        layout = as_sops_311_comments(layout)
    assert layout.decode() == mask_encrypted(theirs, fmt).decode(), f"{what}: encrypted layout"
    assert ws.sops_decrypt(ours, fmt) == ws.sops_decrypt(theirs, fmt), f"{what}: plaintext"


@pytest.mark.parametrize("argv, env, cwd, stdin", TABLE, ids=[_id(a, e, c) for a, e, c, _s in TABLE])
def test_legacy_form_matches_sops(ws: Workspace, argv: list[str], env: dict[str, str], cwd: str,
                                  stdin: bytes) -> None:
    if stdin.startswith(b"<") and stdin.endswith(b">"):
        stdin = (ws.template / stdin[1:-1].decode()).read_bytes()
    theirs: Outcome = ws.run("sops", argv, env=env, cwd=cwd, stdin=stdin)
    ours: Outcome = ws.run("kvsops", argv, env=env, cwd=cwd, stdin=stdin)
    why = f"\nsops: {theirs.stderr.decode(errors='replace')[-800:]}\nkvsops: {ours.stderr.decode(errors='replace')}"
    assert ours.code == theirs.code, why
    if theirs.stdout.startswith(b"Incorrect Usage."):
        # sops prints its help on stdout after a flag error; kvsops keeps stdout empty on failure
        assert theirs.code == 1 and ours.stdout == b"" and b"kvsops: error: " in ours.stderr
    else:
        _same(ws, ours.stdout, theirs.stdout, "stdout")
    assert sorted(ours.files) == sorted(theirs.files), "the same files exist afterwards" + why
    for name in ours.files:
        _same(ws, ours.files[name], theirs.files[name], name)
    if ours.code not in (0, 200):
        assert ours.stdout == b""
        errors = [ln for ln in ours.stderr.decode().splitlines() if ln.startswith("kvsops: error: ")]
        assert len(errors) == 1 and errors[0].endswith("]"), ours.stderr


def test_show_master_keys_shows_metadata_and_saves_the_values(ws: Workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """-s: the editor sees the values and the file's sops block; the edit is saved (sops 3.11 fails
    with 202 there, a documented difference), metadata edits are ignored, sops decrypts the result."""
    log = tmp_path / "seen.txt"
    env = dict(REPLACE, EDITOR_LOG=str(log))
    env["EDITOR_FROM"], env["EDITOR_TO"] = "admin", "root"
    work = tmp_path / "w"
    import shutil

    shutil.copytree(ws.template, work)
    proc = subprocess.run([sys.executable, "-m", "kvsops", "-s", "enc.yaml"], cwd=work, capture_output=True,
                          env=dict(ws.env, **env), timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    seen = log.read_text()
    assert "user: admin" in seen and "\nsops:\n" in seen and ws.recipient in seen and "ENC[AES256_GCM" in seen
    out = (work / "enc.yaml").read_bytes()
    assert ws.sops_decrypt(out, "yaml") == ws.sops_decrypt((ws.template / "enc.yaml").read_bytes(), "yaml").replace(
        b"user: admin", b"user: root")
    assert out.count(b"\nsops:\n") == 1


def test_table_is_large_enough() -> None:
    assert len(TABLE) >= 40


# ----------------------------------------------------------------------------- start-up


def _imported(ws: Workspace, argv: list[str]) -> set[str]:
    script = REPO / ".venv" / "bin" / "kvsops"
    if not script.exists():
        pytest.skip("console script not installed (run scripts/setup.sh)")
    work = ws.root / "imports"
    if not work.exists():
        import shutil

        shutil.copytree(ws.template, work)
    proc = subprocess.run([sys.executable, "-X", "importtime", str(script), *argv], cwd=work, capture_output=True,
                          env=dict(ws.env, EDITOR_MODE="replace", EDITOR_FROM="admin", EDITOR_TO="root"), timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return {ln.rsplit("|", 1)[1].strip() for ln in proc.stderr.decode().splitlines() if ln.startswith("import time:")}


def test_dash_d_is_the_decrypt_fast_path(ws: Workspace) -> None:
    """`kvsops -d FILE` starts like `kvsops decrypt FILE`: no argparse, no re, no parser module."""
    for argv in (["-d", "enc.yaml"], ["decrypt", "enc.yaml"]):
        imported = _imported(ws, argv)
        assert "kvsops.api" in imported
        assert not imported & {"argparse", "re", "kvsops.cli.parser", "kvsops.cli.legacy"}, argv


@pytest.mark.parametrize("argv", [["-d", "--extract", '["db"]', "enc.yaml"], ["-e", "-a", R, "plain.yaml"],
                                  ["-r", "enc.yaml"], ["--set", '["db"]["port"] 1', "enc.yaml"], ["enc.yaml"]],
                         ids=["-d --extract", "-e", "-r", "--set", "edit"])
def test_legacy_forms_import_no_argparse(ws: Workspace, argv: list[str]) -> None:
    argv = [a.replace("$R", ws.recipient) for a in argv]
    imported = _imported(ws, argv)
    assert "kvsops.cli.legacy" in imported and not imported & {"argparse", "kvsops.cli.parser"}, argv


def test_subcommands_and_help_still_reach_argparse(ws: Workspace) -> None:
    env = dict(ws.env)
    for argv, want in ((["--help"], b"decrypt"), (["help"], b"decrypt"), (["-v"], b"kvsops "),
                       (["--version"], b"kvsops "), (["help", "decrypt"], b"--extract"),
                       (["--indent", "2", "decrypt", "--help"], b"--extract")):
        proc = subprocess.run([sys.executable, "-m", "kvsops", *argv], capture_output=True, env=env, timeout=60,
                              cwd=ws.template)
        assert proc.returncode == 0 and want in proc.stdout, (argv, proc.stderr)
