"""Hostile input: each case gives a clear error (a stable code on stderr, empty stdout) within a
bounded time and memory. Every case runs in a child process with RLIMIT_AS (1 GiB) and RLIMIT_CPU,
plus a wall-clock timeout, so a regression fails the test instead of taking the machine down.

Limits (documented in SECURITY.md): YAML nodes after alias expansion 1,000,000 and nesting 200
(stores/yaml_load.py), tree depth 200 (sops/walk.py), 1,000 keys per file (sops/metadata.py),
64 MiB per input file and stdin on every path (kvsops.fs), 100 MiB of output under Argo CD, regexes
run by RE2 (linear time) and at most 1,024 characters.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.keys import AgeKey
from tests.security.plugin import record
from tests.security.support import KVSOPS, KVSOPS_KRM, Limits, run

pytestmark = pytest.mark.security
CAT = "hostile input"
LIMITS = Limits(address_space=1 << 30, cpu_seconds=20)
WALL = 15.0  # seconds; every case here finishes in well under 2 s when healthy


def _sops_block(age: AgeKey) -> str:
    """A real metadata block (so the input gets past 'not encrypted' to the part under test)."""
    enc = age.encrypt(b"x: y\n", "yaml").decode()
    return enc[enc.index("sops:"):]


def _check(r: Any, codes: set[str], what: str) -> None:
    record(CAT, cases=1)
    err = r.stderr.decode("utf-8", "replace")
    assert r.seconds < WALL, f"{what}: took {r.seconds:.1f}s"
    assert r.rc not in (0, -9, -24, 137, 152), f"{what}: rc={r.rc} (0 = accepted, negative/137/152 = killed)\n{err}"
    assert r.stdout == b"" or b'"results"' in r.stdout or b"results:" in r.stdout, f"{what}: stdout not empty"
    got = set(re.findall(r"\[([A-Z_]+)\]", err))
    assert got & codes, f"{what}: expected one of {sorted(codes)}, got {err!r}"
    assert "INTERNAL" not in got, f"{what}: internal error\n{err}"
    assert "Traceback" not in err and "MemoryError" not in err, err


def _decrypt(path: Path, env: dict[str, str], *extra: str) -> Any:
    return run([KVSOPS, "decrypt", *extra, str(path)], env=env, cwd=path.parent, limits=LIMITS, timeout=WALL + 5)


def _bomb(levels: int = 10) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def _cases(age: AgeKey, tmp: Path) -> dict[str, tuple[str, bytes, set[str]]]:
    sops = _sops_block(age)
    many = "sops:\n    age:\n" + "".join(
        f"        - recipient: age1{'q' * 58}\n          enc: x{i}\n" for i in range(5000)) + \
        "    lastmodified: \"2024-01-01T00:00:00Z\"\n    mac: x\n    version: 3.11.0\n"
    deep_yaml = "a: " + "[" * 5000 + "]" * 5000 + "\n" + sops
    deep_json = '{"a": ' + "[" * 100000 + "]" * 100000 + ', "sops": {}}'
    dup = "a: 1\na: 2\n" + sops
    redos = age.encrypt(("a" * 40 + "!: v\nb: c\n").encode(), "yaml")
    redos = redos.replace(b"unencrypted_suffix: _unencrypted", b"encrypted_regex: ^(a+)+$")
    return {
        "alias-bomb": ("bomb.yaml", (_bomb() + sops).encode(), {"LIMIT"}),
        "deep-yaml": ("deep.yaml", deep_yaml.encode(), {"LIMIT", "INPUT"}),
        "deep-json": ("deep.json", deep_json.encode(), {"LIMIT", "INPUT", "FORMAT"}),
        "non-utf8": ("bad.yaml", b"a: \xff\xfe\n" + sops.encode(), {"INPUT"}),
        "nul-bytes": ("nul.yaml", b"a: b\x00c\n" + sops.encode(), {"INPUT"}),
        "duplicate-keys": ("dup.yaml", dup.encode(), {"INPUT"}),
        "python-tags": ("tags.yaml", ("a: !!python/object/apply:os.system ['touch " + str(tmp / "PWNED") +
                                      "']\n" + sops).encode(), {"MAC_MISMATCH", "DECRYPT_VALUE", "INPUT"}),
        "thousands-of-recipients": ("many.yaml", ("a: b\n" + many).encode(), {"FORMAT", "LIMIT"}),
        "huge-scalar": ("huge.yaml", b"a: " + b"x" * (48 << 20) + b"\n" + sops.encode(),
                        {"MAC_MISMATCH", "DECRYPT_VALUE"}),
        "catastrophic-regex-in-metadata": ("redos.yaml", redos, {"MAC_MISMATCH"}),
        "dotenv-garbage": ("g.env", b"\x00\xff=\n" * 1000 + b"sops_version=1\n", {"INPUT", "FORMAT", "NOT_ENCRYPTED"}),
        "ini-garbage": ("g.ini", b"[a\n" + b"=" * 100000 + b"\n", {"INPUT", "FORMAT", "NOT_ENCRYPTED"}),
    }


CASE_NAMES = ["alias-bomb", "deep-yaml", "deep-json", "non-utf8", "nul-bytes", "duplicate-keys", "python-tags",
              "thousands-of-recipients", "huge-scalar", "catastrophic-regex-in-metadata", "dotenv-garbage",
              "ini-garbage"]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_cli_decrypt_hostile_file(tmp_path: Path, age: AgeKey, env: dict[str, str], case: str) -> None:
    name, data, codes = _cases(age, tmp_path)[case]
    f = tmp_path / "in" / name
    f.parent.mkdir()
    f.write_bytes(data)
    r = _decrypt(f, env)
    if case == "catastrophic-regex-in-metadata":
        # the rule no longer matches what was encrypted: the MAC catches it, in linear time
        assert r.seconds < 5
    _check(r, codes, case)
    assert not (tmp_path / "PWNED").exists()


def test_hostile_generator_config_and_resource_list(tmp_path: Path, age: AgeKey, env: dict[str, str]) -> None:
    """The kustomize entry parses repo-controlled YAML too: an alias bomb as the generator config
    (legacy plugin) and in the ResourceList (KRM function), and a file over the 64 MiB cap."""
    root = tmp_path / "repo"
    root.mkdir()
    # the bomb sits where any value is accepted (the config's own annotations; unknown top-level
    # fields are refused before anything is read), so the oversized file is reached too
    bomb = "".join(f"    {line}\n" for line in _bomb(9).splitlines())
    (root / "bomb.yaml").write_text("kind: ksops\napiVersion: viaduct.ai/v1\nmetadata:\n  name: g\n  annotations:\n"
                                    + bomb + "files: [big.enc.yaml]\n")
    with open(root / "big.enc.yaml", "wb") as fh:
        fh.truncate(65 << 20)  # sparse: 65 MiB that cost nothing
    r = run([KVSOPS_KRM, "bomb.yaml"], env=env, cwd=root, limits=LIMITS, timeout=WALL + 5)
    _check(r, {"LIMIT"}, "legacy: alias-bomb config + oversized file")
    rl = "apiVersion: config.kubernetes.io/v1\nkind: ResourceList\n" + _bomb(9).replace("a0:", "x0:", 1) \
        .replace("\na", "\nx").replace("*a", "*x").replace("&a", "&x") + \
        "items: [*x8, *x8]\n" \
        "functionConfig: {apiVersion: viaduct.ai/v1, kind: ksops, metadata: {name: g}, files: [big.enc.yaml]}\n"
    r = run([KVSOPS_KRM], env=env, cwd=root, stdin=rl.encode(), limits=LIMITS, timeout=WALL + 5)
    _check(r, {"LIMIT", "INPUT", "GENERATOR"}, "krm: alias-bomb ResourceList")


def test_helm_downloader_fifo_and_oversized(tmp_path: Path, env: dict[str, str]) -> None:
    """A FIFO planted in the chart must not hang Helm; a file over the cap is refused unread."""
    root = tmp_path / "chart"
    root.mkdir()
    os.mkfifo(root / "fifo.yaml")
    with open(root / "big.yaml", "wb") as fh:
        fh.truncate(65 << 20)
    for target, codes in (("fifo.yaml", {"INPUT"}), ("big.yaml", {"LIMIT"})):
        r = run([KVSOPS, "helm", "downloader", "", "", "", f"secrets://{target}"], env=env, cwd=root, stdin=None,
                limits=LIMITS, timeout=WALL + 5)
        _check(r, codes, f"helm: {target}")


def test_catastrophic_regex_in_sops_yaml(tmp_path: Path, age: AgeKey, env: dict[str, str]) -> None:
    """`.sops.yaml` path_regex and selection rules are run by RE2: linear time on a 100 kB name."""
    work = tmp_path / "w"
    work.mkdir()
    (work / ".sops.yaml").write_text(f"creation_rules:\n  - path_regex: '^(a+)+$'\n    age: {age.recipient}\n"
                                     f"    encrypted_regex: '^(x+x+)+y$'\n")
    name = "a" * 200 + "!.yaml"
    (work / name).write_text("x" * 1000 + ": v\n")  # YAML caps simple keys at 1024 characters
    t0 = time.monotonic()
    r = run([KVSOPS, "encrypt", name], env=env, cwd=work, limits=LIMITS, timeout=WALL + 5)
    record(CAT, cases=1)
    assert time.monotonic() - t0 < 10
    assert r.rc != 0 and b"[CONFIG]" in r.stderr and r.stdout == b""  # no rule matches that name
    (work / ".sops.yaml").write_text(f"creation_rules:\n  - age: {age.recipient}\n    encrypted_regex: '^(x+x+)+y$'\n")
    r = run([KVSOPS, "encrypt", name], env=env, cwd=work, limits=LIMITS, timeout=WALL + 5)
    record(CAT, cases=1)
    assert r.rc == 0 and r.seconds < 10, r.stderr
    for bad in ("(a)\\1", "(?=x)", "a{1001}", "x" * 2000):
        from kvsops import errors
        from kvsops.sops.rules import SelectionRule

        record(CAT, cases=1)
        with pytest.raises(errors.ConfigError):
            SelectionRule("encrypted_regex", bad)


@pytest.mark.parametrize("entry", ["decrypt", "krm"])
def test_stdin_has_the_file_cap(tmp_path: Path, env: dict[str, str], entry: str) -> None:
    """``kvsops decrypt -`` and the KRM function read stdin with the same cap as files (64 MiB, or
    KVSOPS_MAX_INPUT_BYTES): 80 MiB is refused after reading 64, within RLIMIT_AS."""
    argv = [KVSOPS, "decrypt", "--input-type", "yaml", "-"] if entry == "decrypt" else [KVSOPS_KRM]
    big = b"a: " + b"x" * (80 << 20) + b"\n"
    r = run(argv, env=env, cwd=tmp_path, stdin=big, limits=LIMITS, timeout=WALL + 5)
    _check(r, {"LIMIT"}, f"{entry}: 80 MiB on stdin")
    assert b"larger than 67108864 bytes" in r.stderr
    small = {**env, "KVSOPS_MAX_INPUT_BYTES": "1000"}
    r = run(argv, env=small, cwd=tmp_path, stdin=b"a: " + b"x" * 2000 + b"\n", limits=LIMITS, timeout=WALL + 5)
    _check(r, {"LIMIT"}, f"{entry}: 2 kB on stdin over a 1000-byte cap")


def test_legacy_plugin_config_has_the_file_cap(tmp_path: Path, env: dict[str, str]) -> None:
    """The legacy exec plugin's config (a file kustomize writes) is read as a regular file with the
    same cap: a larger one, a directory or a FIFO is refused, nothing on stdout."""
    config = tmp_path / "config.yaml"
    config.write_bytes(b"apiVersion: kvsops/v1\nkind: SopsGenerator\nmetadata:\n  name: x\n# " + b"x" * 2000 + b"\n")
    small = {**env, "KVSOPS_MAX_INPUT_BYTES": "1000"}
    r = run([KVSOPS_KRM, str(config)], env=small, cwd=tmp_path, limits=LIMITS, timeout=WALL + 5)
    _check(r, {"LIMIT"}, "legacy config over a 1000-byte cap")
    assert b"the generator config" in r.stderr
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # a FIFO nobody writes: a plain open() would block here
    for bad in (tmp_path, fifo):
        r = run([KVSOPS_KRM, str(bad)], env=env, cwd=tmp_path, limits=LIMITS, timeout=WALL + 5)
        _check(r, {"INPUT"}, f"legacy config {bad.name}: not a regular file")


# 200,000 digits: Python reads at most 4,300 (a bare ValueError past that) and Go at most 64 bits.
LONG = "1" * 200_000


def test_long_integers_are_input_errors_naming_the_line(tmp_path: Path, age: AgeKey, env: dict[str, str]) -> None:
    """Where sops refuses too (JSON, a type:int value, a metadata field) kvsops refuses with a code
    that says so and the line; never [INTERNAL]."""
    work = tmp_path / "w"
    work.mkdir()
    (work / "big.json").write_text('{\n  "a": 1,\n  "b": ' + LONG + "\n}\n")
    _check(_decrypt(work / "big.json", env), {"INPUT"}, "json")
    assert b"line 3: an integer of more than 4300 digits" in _decrypt(work / "big.json", env).stderr
    enc = age.encrypt(f'a: "{LONG}"\n'.encode(), "yaml").decode()
    (work / "int.enc.yaml").write_text(enc.replace("type:str]", "type:int]"))
    _check(_decrypt(work / "int.enc.yaml", env), {"DECRYPT_VALUE"}, "type:int value")
    (work / "meta.enc.yaml").write_text(enc.replace("    version: ", f"    shamir_threshold: {LONG}\n    version: "))
    _check(_decrypt(work / "meta.enc.yaml", env), {"FORMAT"}, "metadata shamir_threshold")
    # the KRM function's ResourceList and the legacy plugin's generator config
    rl = ("apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems: []\nfunctionConfig:\n"
          "  apiVersion: viaduct.ai/v1\n  kind: ksops\n  metadata: {name: g}\n  files: [x.yaml]\n"
          f"  n: {LONG}\n")
    r = run([KVSOPS_KRM], env=env, cwd=work, stdin=rl.encode(), limits=LIMITS, timeout=WALL + 5)
    _check(r, {"INPUT"}, "krm: ResourceList")
    assert b"the ResourceList on stdin: line 9: an integer of more than 4300 digits" in r.stderr
    (work / "gen.yaml").write_text(rl.split("functionConfig:\n", 1)[1].replace("\n  ", "\n").lstrip())
    r = run([KVSOPS_KRM, "gen.yaml"], env=env, cwd=work, limits=LIMITS, timeout=WALL + 5)
    _check(r, {"INPUT"}, "legacy: generator config")
    assert b"the generator config: line 5: an integer" in r.stderr
    # Argo CD plain mode (a manifest of the app) and the Helm downloader (a JSON values file)
    app = tmp_path / "app"
    app.mkdir()
    (app / "cm.yaml").write_text(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\ndata:\n  n: {LONG}\n")
    r = run([KVSOPS, "argocd", "generate"], env={**env, "ARGOCD_APP_NAME": "a", "ARGOCD_APP_NAMESPACE": "d"},
            cwd=app, limits=LIMITS, timeout=WALL + 5)
    _check(r, {"INPUT", "GENERATOR"}, "argocd plain")
    assert b"line 5: an integer of more than 4300 digits" in r.stderr
    for url, codes in (("secrets://big.json", {"INPUT", "NOT_ENCRYPTED"}), ("kvsops+refs://big.json", {"INPUT"})):
        r = run([KVSOPS, "helm", "downloader", "", "", "", url], env=env, cwd=work, stdin=None, limits=LIMITS,
                timeout=WALL + 5)
        _check(r, codes, f"helm downloader: {url}")


def test_long_integer_in_yaml_is_a_string_as_in_sops(tmp_path: Path, age: AgeKey, env: dict[str, str],
                                                    tools: Any) -> None:
    """yaml.v3 (sops) reads a plain scalar too big for int64, uint64 and float64 as a string: so do
    we, byte for byte, both ways."""
    import subprocess

    work = tmp_path / "w"
    work.mkdir()
    (work / "big.yaml").write_text(f"a: {LONG}\n")
    r = run([KVSOPS, "encrypt", "--age", age.recipient, "big.yaml"], env=env, cwd=work, limits=LIMITS,
            timeout=WALL + 5)
    record(CAT, cases=1)
    assert r.rc == 0 and b",type:str]" in r.stdout, r.stderr
    (work / "ours.enc.yaml").write_bytes(r.stdout)
    sops_env = tools.env(**env)
    theirs = subprocess.run([tools.sops, "-e", "--age", age.recipient, "big.yaml"], cwd=work, env=sops_env,
                            capture_output=True, timeout=60, check=True).stdout
    assert b",type:str]" in theirs
    (work / "theirs.enc.yaml").write_bytes(theirs)
    plain = (work / "big.yaml").read_bytes()
    assert _decrypt(work / "theirs.enc.yaml", env).stdout == plain
    assert subprocess.run([tools.sops, "-d", "ours.enc.yaml"], cwd=work, env=sops_env, capture_output=True,
                          timeout=60, check=True).stdout == plain
