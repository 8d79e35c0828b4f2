"""`kvsops helm -- template ...` and `helm kvsops ...`: the argv rewrite, then exec helm.

HELM_BIN points at a recording test double that writes its exact argv and the environment variable
the getter needs, then exits: what the real helm cannot show. The wrapper through the real Helm 3
and Helm 4 (rendering, `helm kvsops`, the getter check) is in test_helm_cli.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import helm_harness as hh
from tests.keys import AgeKey

FAKE_HELM = """#!{python}
import json, os, sys
with open({out!r}, "w") as fh:
    json.dump({{"argv": sys.argv[1:], "files": os.environ.get("KVSOPS_HELM_WRAPPER_FILES"),
               "cwd": os.getcwd()}}, fh)
"""


@pytest.fixture()
def setup(tmp_path: Path) -> dict[str, object]:
    from kvsops import api

    key = AgeKey()
    work = tmp_path / "repo" / "app dir"
    (work / "chart").mkdir(parents=True)
    shared = tmp_path / "repo" / "shared"
    shared.mkdir()
    session = api.Session(env={})
    groups = [[session.recipient("age", key.recipient)]]
    enc = api.encrypt_bytes(b"service:\n  port: 81\n", "yaml", groups)
    for rel in ("secrets.yaml", "sub/s2.yaml", "s3.yml", "values.yaml.gotpl"):
        (work / rel).parent.mkdir(exist_ok=True)
        (work / rel).write_bytes(enc)
    (shared / "sec.yaml").write_bytes(enc)
    (work / "plain.yaml").write_text("service:\n  port: 85\n")
    (work / "looks-encrypted.enc.yaml").write_text("sops_note: not really\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "record.json"
    fake = bindir / "helm"
    fake.write_text(FAKE_HELM.format(python=sys.executable, out=str(record)))
    fake.chmod(0o755)
    keyfile = tmp_path / "key.txt"
    keyfile.write_text(key.identity + "\n")
    plugins = tmp_path / "helm" / "plugins"
    hh.install(hh.LEGACY_GETTER, plugins)  # the wrapper refuses to run helm without a getter
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOPS_", "KVSOPS_", "ARGOCD_", "HELM_"))}
    env.update(HELM_BIN=str(fake), SOPS_AGE_KEY_FILE=str(keyfile), HELM_PLUGINS=str(plugins))
    return {"work": work, "env": env, "record": record, "shared": shared, "fake": fake}


def _wrap(setup: dict[str, object], *args: str, **extra: str) -> tuple[subprocess.CompletedProcess[bytes], dict]:  # type: ignore[type-arg]
    env = dict(setup["env"], **extra)  # type: ignore[arg-type]
    proc = subprocess.run([sys.executable, "-m", "kvsops.cli.main", "helm", "--", *args], cwd=setup["work"],  # type: ignore[arg-type]
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    rec = json.loads(Path(setup["record"]).read_text()) if Path(setup["record"]).exists() else {}  # type: ignore[arg-type]
    return proc, rec


def test_rewrites_encrypted_files_only(setup: dict[str, object]) -> None:
    proc, rec = _wrap(setup, "template", "t", "./chart", "-f", "secrets.yaml", "-f", "plain.yaml",
                      "--values=sub/s2.yaml", "-fs3.yml", "-f=values.yaml.gotpl", "-f", "looks-encrypted.enc.yaml",
                      "--set-file", "a=secrets.yaml,b=plain.yaml", "--set", "x=-f", "-f", "secrets://secrets.yaml",
                      "--values", "plain.yaml,secrets.yaml", "-f", "missing.yaml", "--", "-f", "secrets.yaml")
    assert proc.returncode == 0, proc.stderr.decode()
    assert rec["argv"] == [
        "template", "t", "./chart", "-f", "kvsops://./secrets.yaml", "-f", "plain.yaml",
        "--values=kvsops://./sub/s2.yaml", "-fkvsops://./s3.yml", "-f=kvsops://./values.yaml.gotpl",
        "-f", "looks-encrypted.enc.yaml",
        "--set-file", "a=kvsops://./secrets.yaml,b=plain.yaml", "--set", "x=-f", "-f", "secrets://secrets.yaml",
        "--values", "plain.yaml,kvsops://./secrets.yaml", "-f", "missing.yaml", "--", "-f", "secrets.yaml"]
    assert rec["cwd"] == str(setup["work"])


def test_files_outside_cwd_are_vetted_for_the_getter(setup: dict[str, object], tmp_path: Path) -> None:
    shared = Path(setup["shared"]) / "sec.yaml"  # type: ignore[arg-type]
    proc, rec = _wrap(setup, "upgrade", "--install", "t", "./chart", "-f", "../shared/sec.yaml", "-f", str(shared))
    assert proc.returncode == 0, proc.stderr.decode()
    assert rec["argv"][-4:] == ["-f", "kvsops://./../shared/sec.yaml", "-f", f"kvsops://{shared}"]
    assert json.loads(rec["files"]) == [str(shared.resolve())]
    # the getter, run by Helm with the wrapper's environment, accepts exactly that file
    plugins = tmp_path / "plugins"
    installed = hh.install(hh.V1_GETTER, plugins)
    env = dict(setup["env"], KVSOPS_HELM_WRAPPER_FILES=rec["files"])  # type: ignore[arg-type]
    for href in rec["argv"][-3], rec["argv"][-1]:
        res = hh.run_downloader(installed, href, cwd=Path(setup["work"]), major="helm4.1", base_env=env)  # type: ignore[arg-type]
        assert res.returncode == 0 and b"port: 81" in res.stdout, res.stderr.decode()
    res = hh.run_downloader(installed, "kvsops://./../shared/sec.yaml", cwd=Path(setup["work"]),  # type: ignore[arg-type]
                            major="helm4.1", base_env=dict(setup["env"]))  # type: ignore[arg-type]
    assert res.returncode != 0 and res.stdout == b""


def test_cli_plugin_invocation(setup: dict[str, object], tmp_path: Path) -> None:
    """Helm's legacy cli command: split on spaces, $VARS expanded, not joined; then the user's args."""
    import yaml

    installed = hh.install(hh.CLI, tmp_path / "plugins")
    meta = yaml.safe_load((installed / "plugin.yaml").read_text())
    env = dict(setup["env"], HELM_PLUGIN_NAME=meta["name"], HELM_PLUGIN_DIR=str(installed))  # type: ignore[arg-type]
    env.update(hh.settings_env(tmp_path / "plugins", tmp_path))
    env["HELM_PLUGINS"] = str(Path(setup["env"]["HELM_PLUGINS"]))  # type: ignore[index]
    env["HELM_BIN"] = str(setup["fake"])  # Helm sets os.Args[0]; ours is the recording double
    argv = [hh._go_expand(w, env) for w in meta["command"].split(" ")]
    argv += ["template", "t", "./chart", "-f", "secrets.yaml"]
    proc = subprocess.run(argv, cwd=setup["work"], env=env, stdin=subprocess.DEVNULL,  # type: ignore[arg-type]
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    rec = json.loads(Path(setup["record"]).read_text())  # type: ignore[arg-type]
    assert rec["argv"] == ["template", "t", "./chart", "-f", "kvsops://./secrets.yaml"]


@pytest.mark.parametrize("plugins", ["empty", "v1-getter", "refs-only"])
def test_missing_getter_is_named_before_helm_runs(setup: dict[str, object], tmp_path: Path, plugins: str) -> None:
    """Without a getter, Helm would read kvsops://... as a file name ("no such file or directory")."""
    d = tmp_path / f"p-{plugins}"
    d.mkdir()
    if plugins == "v1-getter":
        hh.install(hh.V1_GETTER, d)  # Helm 4's v1 getter counts
        proc, rec = _wrap(setup, "template", "t", "./chart", "-f", "secrets.yaml", HELM_PLUGINS=str(d))
        assert proc.returncode == 0 and rec["argv"][-1] == "kvsops://./secrets.yaml", proc.stderr.decode()
        return
    if plugins == "refs-only":  # a getter that lacks the scheme the wrapper needs
        (d / "other" / "bin").mkdir(parents=True)
        (d / "other" / "plugin.yaml").write_text("name: other\nversion: 0.1.0\ndownloaders:\n"
                                                 "  - command: bin/x\n    protocols: [kvsops+refs]\n")
    proc, rec = _wrap(setup, "template", "t", "./chart", "-f", "secrets.yaml", HELM_PLUGINS=str(d))
    assert proc.returncode != 0 and proc.stdout == b"" and rec == {}
    err = proc.stderr.decode()
    assert f"no Helm getter plugin for kvsops:// is installed in {d} [MISSING_DEPENDENCY]" in err
    assert "helm plugin install " in err and "kvsops-getter-legacy" in err
    # HELM_DATA_HOME/plugins when HELM_PLUGINS is unset, as Helm computes it
    env = {k: v for k, v in setup["env"].items() if k != "HELM_PLUGINS"}  # type: ignore[union-attr]
    env["HELM_DATA_HOME"] = str(tmp_path / "data")
    proc = subprocess.run([sys.executable, "-m", "kvsops.cli.main", "helm", "--", "template", ".", "-f",
                           "secrets.yaml"], cwd=setup["work"], env=env, stdin=subprocess.DEVNULL,  # type: ignore[arg-type]
                          capture_output=True, timeout=60)
    assert proc.returncode != 0 and f"installed in {tmp_path / 'data' / 'plugins'} [" in proc.stderr.decode()
    # nothing encrypted, nothing rewritten: no getter needed
    proc, rec = _wrap(setup, "template", "t", "./chart", "-f", "plain.yaml", HELM_PLUGINS=str(d))
    assert proc.returncode == 0 and rec["argv"][-1] == "plain.yaml", proc.stderr.decode()


def test_helm_inside_the_repository_is_never_run(setup: dict[str, object]) -> None:
    planted = Path(setup["work"]) / "helm"  # type: ignore[arg-type]
    planted.write_text("#!/bin/sh\necho planted\n")
    planted.chmod(0o755)
    proc, _ = _wrap(setup, "template", ".", HELM_BIN="./helm")
    assert proc.returncode != 0 and b"never run" in proc.stderr
    env_path = f".{os.pathsep}{setup['work']}"
    proc, _ = _wrap(setup, "template", ".", HELM_BIN="helm", PATH=env_path)
    assert proc.returncode != 0 and b"helm not found" in proc.stderr and b"planted" not in proc.stdout


def test_no_decrypted_file_written(setup: dict[str, object]) -> None:
    work = Path(setup["work"])  # type: ignore[arg-type]
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    _wrap(setup, "template", "t", "./chart", "-f", "secrets.yaml")
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before
