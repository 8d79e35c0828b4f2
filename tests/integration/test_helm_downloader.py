"""The downloader invoked exactly as Helm 3 / Helm 4 invoke a getter (tests/helm_harness.py), over
files encrypted by the real sops; the oracle for every plaintext is `sops -d` of the same bytes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests import helm_harness as hh
from tests.integration.interop_helpers import run_sops
from tests.keys import AgeKey, PgpKey
from tests.processes import leftovers, stop_gpg, wait_gone

# (Helm major, plugin dir): the legacy getter everywhere, the v1 getter on Helm 4.
COMBOS = [("helm3", hh.LEGACY_GETTER), ("helm4.0", hh.LEGACY_GETTER), ("helm4.0", hh.V1_GETTER),
          ("helm4.1", hh.V1_GETTER)]
COMBO_IDS = [f"{m}-{p.name}" for m, p in COMBOS]

VALUES = b"global_secret: global_bar\nkey: |-\n    multi\n    line\nservice:\n    port: 81\n"


class World:
    def __init__(self, root: Path, tools: object) -> None:
        self.root = root
        self.sops = tools.sops  # type: ignore[attr-defined]
        self.gpg = tools.gpg  # type: ignore[attr-defined]
        self.home = root / "home"
        self.home.mkdir()
        self.keys = root / "keys"
        self.keys.mkdir()
        self.a, self.b = AgeKey(), AgeKey()
        self.age_file = self.keys / "age.txt"
        self.age_file.write_text(f"# test\n{self.a.identity}\n{self.b.identity}\n")
        self.pgp = PgpKey(self.gpg, root / "gnupg")
        self.work = root / "wörk dir"  # Helm's cwd: unicode and a space
        self.work.mkdir()
        self.plugins = root / "helm plugins"
        self.installed = {p: hh.install(p, self.plugins) for p in (hh.LEGACY_GETTER, hh.V1_GETTER)}
        self.env = {"HOME": str(self.home), "SOPS_AGE_KEY_FILE": str(self.age_file),
                    "GNUPGHOME": self.pgp.home, "SOPS_DISABLE_VERSION_CHECK": "1",
                    "PATH": os.pathsep.join([str(Path(self.gpg).parent), os.environ.get("PATH", "")])}
        self.base_env = {k: v for k, v in os.environ.items() if not k.startswith(("SOPS_", "KVSOPS_", "ARGOCD_"))}
        self.base_env.update(self.env)

    def sops_env(self) -> dict[str, str]:
        return dict(self.base_env)

    def encrypt(self, rel: str, plain: bytes, *args: str) -> Path:
        target = self.work / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        src = self.root / "plain.tmp"
        src.write_bytes(plain)
        ext = os.path.splitext(rel)[1] or ".bin"
        src_named = self.root / f"plain{ext if ext in ('.yaml', '.json', '.env') else '.bin'}"
        src.rename(src_named)
        pre = list(args[:2]) if args[:1] == ("--config",) else []  # a global flag: before the command
        out = run_sops(self.sops, [*pre, "encrypt", *args[len(pre):], str(src_named)], self.sops_env(),
                       self.root).stdout
        src_named.unlink()
        target.write_bytes(out)
        return target

    def sops_decrypt(self, path: Path, *args: str) -> bytes:
        return run_sops(self.sops, ["decrypt", *args, str(path)], self.sops_env(), self.work).stdout

    def run(self, href: str, combo: tuple[str, Path], extra: dict[str, str] | None = None,
            cwd: Path | None = None, **kw: object) -> hh.Result:
        major, plugin = combo
        return hh.run_downloader(self.installed[plugin], href, cwd=cwd or self.work, major=major,
                                 base_env=self.base_env, extra_env=extra, home=self.home, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tools: object) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("helm-dl"), tools)
    try:
        _populate(w)
        yield w
    finally:
        stop_gpg(w.pgp.home, w.gpg)


def _populate(w: World) -> None:
    age_a = ["--age", w.a.recipient]
    w.encrypt("secrets.age.yaml", VALUES, *age_a)
    w.encrypt("secrets.pgp.yaml", VALUES, "--pgp", w.pgp.fp)
    cfg = w.root / "groups.sops.yaml"
    cfg.write_text("creation_rules:\n  - shamir_threshold: 2\n    key_groups:\n"
                   f"      - age: [{w.a.recipient}]\n      - age: [{w.b.recipient}]\n        pgp: [{w.pgp.fp}]\n")
    w.encrypt("secrets.groups.yaml", VALUES, "--config", str(cfg))
    crlf = w.encrypt("crlf-src.yaml", VALUES, *age_a).read_bytes()
    (w.work / "secrets.crlf.yaml").write_bytes(crlf.replace(b"\n", b"\r\n"))
    w.encrypt("trailing.bin", b"value: |+\n    multi\n    line\n\n\n", *age_a, "--input-type", "binary")
    w.encrypt("secrets.json", b'{"service": {"port": 81}, "s": "x\\u00e9"}', *age_a)
    w.encrypt("dir with space/sëcret file.yaml", VALUES, *age_a)
    w.encrypt("odd/a#b?c.yaml", VALUES, *age_a)
    (w.work / "empty.yaml").write_bytes(b"")
    (w.work / "plain.yaml").write_bytes(b"service:\n  port: 85\n")


CASES = [  # (href, file whose `sops -d` is the expected output)
    ("secrets://secrets.age.yaml", "secrets.age.yaml"),
    ("kvsops://secrets.age.yaml", "secrets.age.yaml"),
    ("SECRETS://secrets.age.yaml", "secrets.age.yaml"),
    ("kvsops://./secrets.age.yaml", "secrets.age.yaml"),
    ("secrets://sops!secrets.age.yaml", "secrets.age.yaml"),
    ("secrets://secrets.pgp.yaml", "secrets.pgp.yaml"),
    ("secrets://secrets.groups.yaml", "secrets.groups.yaml"),
    ("secrets://secrets.crlf.yaml", "secrets.crlf.yaml"),
    ("secrets://trailing.bin", "trailing.bin"),
    ("secrets://secrets.json", "secrets.json"),
    ("secrets://dir with space/sëcret file.yaml", "dir with space/sëcret file.yaml"),
    ("secrets://odd/a#b?c.yaml", "odd/a#b?c.yaml"),
    ("secrets://?secrets.age.yaml", "secrets.age.yaml"),
]


@pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("href,expected", CASES, ids=[c[0] for c in CASES])
def test_decrypts_like_sops(world: World, combo: tuple[str, Path], href: str, expected: str) -> None:
    res = world.run(href, combo)
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout == world.sops_decrypt(world.work / expected)
    assert res.stderr == b""


def test_trailing_newlines_kept_byte_for_byte(world: World) -> None:
    res = world.run("secrets://trailing.bin", COMBOS[0])
    assert res.stdout == b"value: |+\n    multi\n    line\n\n\n"


@pytest.mark.parametrize("combo", COMBOS, ids=COMBO_IDS)
def test_missing_file_with_question_mark_is_empty(world: World, combo: tuple[str, Path]) -> None:
    res = world.run("secrets://?nope/missing.yaml", combo)
    assert (res.returncode, res.stdout) == (0, b"")


def test_missing_file_without_question_mark_fails(world: World) -> None:
    res = world.run("secrets://missing.yaml", COMBOS[0])
    assert res.returncode != 0 and res.stdout == b""
    assert b"missing.yaml: file does not exist" in res.stderr


@pytest.mark.parametrize("name", ["plain.yaml", "empty.yaml"])
def test_unencrypted_refused_by_default_and_passed_when_allowed(world: World, name: str) -> None:
    res = world.run(f"secrets://{name}", COMBOS[0])
    assert res.returncode != 0 and res.stdout == b""
    assert f"{name}: not encrypted".encode() in res.stderr
    assert b"KVSOPS_HELM_ALLOW_UNENCRYPTED" in res.stderr
    ok = world.run(f"secrets://{name}", COMBOS[0], {"KVSOPS_HELM_ALLOW_UNENCRYPTED": "true"})
    assert (ok.returncode, ok.stdout) == (0, (world.work / name).read_bytes())


@pytest.mark.parametrize("name", ["file.txt", "file.raw", "values.yaml.gotpl", "odd.yaml"])
def test_allowed_unencrypted_file_of_any_content_is_returned_unchanged(world: World, name: str) -> None:
    """--set-file with a plain .txt/.raw (or a template, or YAML that does not parse): not sops
    output, so helm-secrets cats it; with KVSOPS_HELM_ALLOW_UNENCRYPTED so does kvsops, else it is
    refused as not encrypted (never a parse error that would quote the format)."""
    data = {"file.txt": b"just text\nline two, no newline at the end",
            "file.raw": b"\x00\xffraw bytes {not json",
            "values.yaml.gotpl": b"port: {{ .Values.port }}\n",
            "odd.yaml": b"a: [unclosed\n"}[name]
    (world.work / name).write_bytes(data)
    ok = world.run(f"secrets://{name}", COMBOS[0], {"KVSOPS_HELM_ALLOW_UNENCRYPTED": "true"})
    assert (ok.returncode, ok.stdout) == (0, data), ok.stderr.decode()
    res = world.run(f"secrets://{name}", COMBOS[0])
    assert res.returncode != 0 and res.stdout == b""
    assert f"{name}: not encrypted".encode() in res.stderr and b"[NOT_ENCRYPTED]" in res.stderr


def test_absolute_non_sops_file_is_not_encrypted(world: World) -> None:
    """With the absolute-path opt-in, /etc/passwd is refused as not encrypted, not as bad JSON."""
    res = world.run("secrets:///etc/passwd", COMBOS[0], {"KVSOPS_HELM_ALLOW_ABSOLUTE_PATH": "true"})
    assert res.returncode != 0 and res.stdout == b""
    assert b"/etc/passwd: not encrypted" in res.stderr and b"[NOT_ENCRYPTED]" in res.stderr
    assert b"JSON" not in res.stderr and b"root:" not in res.stderr


def test_broken_sops_file_is_an_input_error(world: World) -> None:
    """What carries sops' marks but does not parse is a damaged encrypted file, never passed through."""
    broken = (world.work / "secrets.json").read_bytes()[:-40]
    (world.work / "broken.json").write_bytes(broken)
    res = world.run("secrets://broken.json", COMBOS[0], {"KVSOPS_HELM_ALLOW_UNENCRYPTED": "true"})
    assert res.returncode != 0 and res.stdout == b"" and b"[INPUT]" in res.stderr


def test_chart_style_tls_arguments_and_url_last(world: World) -> None:
    res = world.run("secrets://secrets.age.yaml", COMBOS[0], tls=("c.pem", "k.pem", "ca.pem"))
    assert res.returncode == 0 and b"port: 81" in res.stdout


def test_stdin_is_never_read(world: World) -> None:
    """Run with a stdin pipe that is never written or closed: a reader would hang until timeout."""
    link = world.installed[hh.LEGACY_GETTER]
    env = dict(world.base_env, HELM_PLUGIN_DIR=str(link), HELM_PLUGIN_NAME="kvsops-getter-legacy")
    proc = subprocess.Popen([str(link / "bin/kvsops-helm"), "downloader", "", "", "", "secrets://secrets.age.yaml"],
                            cwd=world.work, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        rc = proc.wait(timeout=30)
    finally:
        proc.kill()
    out = proc.stdout.read()  # type: ignore[union-attr]
    proc.stdin.close()  # type: ignore[union-attr]
    assert rc == 0 and b"port: 81" in out


# ------------------------------------------------------------------------------ key imports


def test_age_import(world: World) -> None:
    keydir = world.work / "keys"
    keydir.mkdir(exist_ok=True)
    (keydir / "a.txt").write_text(world.a.identity + "\n")
    env = {"SOPS_AGE_KEY_FILE": ""}
    res = world.run("secrets+age-import://keys/a.txt?secrets.age.yaml", COMBOS[2], env)
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout == world.sops_decrypt(world.work / "secrets.age.yaml")
    # the file name after the key keeps its own ? and #
    res = world.run("secrets+age-import://keys/a.txt?odd/a#b?c.yaml", COMBOS[0], env)
    assert res.returncode == 0 and b"port: 81" in res.stdout


def test_age_import_post_quantum_key(world: World, tools: object) -> None:
    """A key file from age-keygen -pq (age 1.3) and a file sops encrypted for its age1pq1 recipient."""
    keydir = world.work / "keys"
    keydir.mkdir(exist_ok=True)
    keyfile = keydir / "pq.txt"
    subprocess.run([tools.age_keygen13, "-pq", "-o", str(keyfile)], check=True, capture_output=True,  # type: ignore[attr-defined]
                   timeout=60)
    recipient = keyfile.read_text().split("# public key: ", 1)[1].split()[0]
    enc = world.encrypt("secrets.pq.yaml", VALUES, "--age", recipient)
    env = {"SOPS_AGE_KEY_FILE": ""}
    assert world.run("secrets://secrets.pq.yaml", COMBOS[0], env).returncode != 0  # no key without the import
    for combo in (COMBOS[0], COMBOS[3]):
        res = world.run("secrets+age-import://keys/pq.txt?secrets.pq.yaml", combo, env)
        assert res.returncode == 0, res.stderr.decode()
        assert res.stdout == run_sops(world.sops, ["decrypt", str(enc)],
                                      dict(world.base_env, SOPS_AGE_KEY_FILE=str(keyfile)), world.work).stdout


def test_gpg_import_uses_a_private_home_that_is_removed(world: World, tmp_path: Path, shm_dir: Path) -> None:
    """The imported key lives in a private home in RAM (here the test's own KVSOPS_SHM_DIR), and the
    downloader stops that home's gpg-agent and removes the home before it exits."""
    keyfile = world.work / "keys" / "pgp.asc"
    keyfile.parent.mkdir(exist_ok=True)
    keyfile.write_bytes(subprocess.run(
        [world.gpg, "--batch", "--armor", "--export-secret-keys", world.pgp.fp],
        env=dict(world.base_env), check=True, capture_output=True).stdout)
    empty_home = tmp_path / "empty-gnupg"
    empty_home.mkdir(mode=0o700)
    env = {"GNUPGHOME": str(empty_home), "SOPS_AGE_KEY_FILE": "", "KVSOPS_SHM_DIR": str(shm_dir)}
    assert world.run("secrets://secrets.pgp.yaml", COMBOS[0], env).returncode != 0  # no key without import
    res = world.run("secrets+gpg-import://keys/pgp.asc?secrets.pgp.yaml", COMBOS[3], env)
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout == world.sops_decrypt(world.work / "secrets.pgp.yaml")
    assert os.listdir(shm_dir) == []
    missing = dict(env, KVSOPS_SHM_DIR=str(shm_dir / "missing"))  # the home really goes there: no fallback
    res = world.run("secrets+gpg-import://keys/pgp.asc?secrets.pgp.yaml", COMBOS[3], missing)
    assert res.returncode != 0 and b"KVSOPS_SHM_DIR" in res.stderr and not res.stdout
    assert wait_gone(lambda: leftovers([shm_dir])) == [], "the private home's gpg-agent outlived the downloader"
    secret_dir = empty_home / "private-keys-v1.d"  # the key went to the private home only
    assert not secret_dir.exists() or not list(secret_dir.iterdir())


def test_import_syntax_error(world: World) -> None:
    res = world.run("secrets+age-import://keys/a.txt", COMBOS[0])
    assert res.returncode != 0
    assert b"Invalid syntax: secrets+age-import://[path to key]?[path secrets.yaml]" in res.stderr


# ------------------------------------------------------------------------------ literals


def test_literal_plain_and_encrypted(world: World) -> None:
    res = world.run("secrets+literal://hello world", COMBOS[0])
    assert (res.returncode, res.stdout) == (0, b"hello world")
    enc = run_sops(world.sops, ["encrypt", "--age", world.a.recipient, "--input-type", "json", "--output-type",
                                "json", "/dev/stdin"], world.sops_env(), world.root, stdin=b'{"port": 87}').stdout
    literal = enc.decode().replace("\n", "")
    res = world.run("secrets+literal://" + literal, COMBOS[2])
    assert res.returncode == 0, res.stderr.decode()
    theirs = run_sops(world.sops, ["decrypt", "--input-type", "json", "--output-type", "json", "/dev/stdin"],
                      world.sops_env(), world.root, stdin=literal.encode())
    assert res.stdout == theirs.stdout


@pytest.mark.parametrize("literal", ["ref+echo://87", "ref+azurekeyvault://v/s", "secretref+vault://a/b#/c"])
def test_vals_reference_literal_passes_through(world: World, literal: str) -> None:
    """helm-secrets' sops backend echoes a literal that is not sops output, references included;
    kvsops does too, and says on stderr that the reference was not resolved."""
    res = world.run("secrets+literal://" + literal, COMBOS[0])
    assert (res.returncode, res.stdout) == (0, literal.encode())
    assert b"kvsops: note: secrets+literal: a ref+ reference is passed through unresolved" in res.stderr


# ------------------------------------------------------------------------------ failures


def test_wrong_key_names_file_and_keys_tried(world: World, tmp_path: Path) -> None:
    other = tmp_path / "other.txt"
    other.write_text(AgeKey().identity + "\n")
    res = world.run("secrets://secrets.age.yaml", COMBOS[3],
                    {"SOPS_AGE_KEY_FILE": str(other), "GNUPGHOME": str(tmp_path)})
    assert res.returncode != 0 and res.stdout == b""
    err = res.stderr.decode()
    assert "secrets.age.yaml" in err and world.a.recipient in err
    assert "kvsops: error:" in err and world.a.identity not in err


def test_tampered_file_fails_with_empty_stdout(world: World) -> None:
    src = (world.work / "secrets.age.yaml").read_text()
    lines = src.splitlines(keepends=True)
    # swap two encrypted values: each still decrypts alone only with its own AAD -> failure
    i = next(n for n, ln in enumerate(lines) if ln.startswith("global_secret:"))
    lines[i] = "global_secret: ENC[AES256_GCM,data:AAAA,iv:" + "A" * 43 + "=,tag:" + "A" * 22 + "==,type:str]\n"
    (world.work / "tampered.yaml").write_text("".join(lines))
    res = world.run("secrets://tampered.yaml", COMBOS[1])
    assert res.returncode != 0 and res.stdout == b""
    assert b"tampered.yaml" in res.stderr


# ------------------------------------------------------------------------------ policy


@pytest.mark.parametrize("href,needle", [
    ("secrets://../outside.yaml", b"leaves the current directory"),
    ("secrets://a/../../outside.yaml", b"leaves the current directory"),
    ("secrets:///etc/passwd", b"absolute paths are not allowed"),
    ("secrets://link-out.yaml", b"symbolic link leads outside"),
    ("secrets://?../outside.yaml", b"leaves the current directory"),
])
def test_path_escapes_refused(world: World, href: str, needle: bytes) -> None:
    outside = world.root / "outside.yaml"
    outside.write_bytes((world.work / "secrets.age.yaml").read_bytes())
    link = world.work / "link-out.yaml"
    if not link.is_symlink():
        link.symlink_to(outside)
    res = world.run(href, COMBOS[0])
    assert res.returncode != 0 and res.stdout == b"", res.stdout
    assert needle in res.stderr and b"[PATH_REFUSED]" in res.stderr


def test_symlink_inside_root_is_fine(world: World) -> None:
    link = world.work / "link-in.yaml"
    if not link.is_symlink():
        link.symlink_to("secrets.age.yaml")
    assert world.run("secrets://link-in.yaml", COMBOS[0]).returncode == 0


def test_relaxing_settings_work_but_not_under_argocd(world: World) -> None:
    outside = world.root / "outside.yaml"
    outside.write_bytes((world.work / "secrets.age.yaml").read_bytes())
    relax = {"KVSOPS_HELM_ALLOW_PATH_TRAVERSAL": "true", "KVSOPS_HELM_ALLOW_ABSOLUTE_PATH": "true"}
    assert world.run("secrets://../outside.yaml", COMBOS[0], relax).returncode == 0
    assert world.run(f"secrets://{outside}", COMBOS[0], relax).returncode == 0
    res = world.run("secrets://../outside.yaml", COMBOS[0], {**relax, "ARGOCD_APP_NAME": "demo"})
    assert res.returncode != 0 and res.stdout == b""
    assert b"kvsops: note: KVSOPS_HELM_ALLOW_ABSOLUTE_PATH, KVSOPS_HELM_ALLOW_PATH_TRAVERSAL ignored" in res.stderr
    assert b"Argo CD" in res.stderr


def test_key_prefix(world: World, tmp_path: Path) -> None:
    keyfile = tmp_path / "mounted" / "key.txt"
    keyfile.parent.mkdir()
    keyfile.write_text(world.a.identity + "\n")
    href = f"secrets+age-import://{keyfile}?secrets.age.yaml"
    env = {"SOPS_AGE_KEY_FILE": ""}
    res = world.run(href, COMBOS[0], env)
    assert res.returncode != 0 and b"outside the allowed key location" in res.stderr
    ok = world.run(href, COMBOS[0], {**env, "KVSOPS_HELM_KEY_PREFIX": str(keyfile.parent), "ARGOCD_APP_NAME": "x"})
    assert ok.returncode == 0, ok.stderr.decode()
    # a symlink inside the prefix pointing elsewhere is followed before the check
    (world.work / "keys").mkdir(exist_ok=True)
    sneaky = world.work / "keys" / "sneaky.txt"
    if not sneaky.is_symlink():
        sneaky.symlink_to(keyfile)
    res = world.run("secrets+age-import://keys/sneaky.txt?secrets.age.yaml", COMBOS[0], env)
    assert res.returncode != 0 and b"outside the allowed key location" in res.stderr


def test_no_executable_from_the_repository(world: World) -> None:
    """A `gpg` planted in the repository is never run: PATH entries inside the root are dropped."""
    planted = world.work / "bin" / "gpg"
    planted.parent.mkdir(exist_ok=True)
    marker = world.root / "planted-ran"
    planted.write_text(f"#!/bin/sh\ntouch '{marker}'\nexit 1\n")
    planted.chmod(0o755)
    path = f"bin{os.pathsep}{planted.parent}{os.pathsep}{world.base_env['PATH']}"
    res = world.run("secrets://secrets.pgp.yaml", COMBOS[0], {"PATH": path, "SOPS_AGE_KEY_FILE": ""})
    assert res.returncode == 0, res.stderr.decode()
    assert not marker.exists()
    res = world.run("secrets://secrets.pgp.yaml", COMBOS[0], {"SOPS_GPG_EXEC": "bin/gpg", "SOPS_AGE_KEY_FILE": ""})
    assert res.returncode != 0 and b"SOPS_GPG_EXEC" in res.stderr and not marker.exists()


def test_backend_script_refused(world: World) -> None:
    res = world.run("secrets://./evil.sh!secrets.age.yaml", COMBOS[0])
    assert res.returncode != 0 and b"never runs a backend script" in res.stderr
