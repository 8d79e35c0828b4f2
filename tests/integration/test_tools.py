"""Sanity checks that every peer tool installed by scripts/setup.sh runs and is the expected version."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest


def run(tools, *args: str, cwd: Path | None = None, input: str | None = None, check: bool = True):
    return subprocess.run(
        list(args), cwd=cwd, input=input, capture_output=True, text=True,
        env=tools.env(), timeout=120, check=check,
    )


def test_sops_is_3_11(tools):
    out = run(tools, tools.sops, "--version", "--disable-version-check").stdout
    assert re.match(r"sops 3\.11\.\d+", out), out


def test_age_and_age_keygen(tools, tmp_path):
    assert re.match(r"v?1\.\d+\.\d+", run(tools, tools.age, "--version").stdout.strip())
    key = tmp_path / "key.txt"
    run(tools, tools.age_keygen, "-o", str(key))
    recipient = run(tools, tools.age_keygen, "-y", str(key)).stdout.strip()
    assert recipient.startswith("age1")
    enc = tmp_path / "msg.age"
    run(tools, tools.age, "-r", recipient, "-o", str(enc), input="hello\n")
    assert run(tools, tools.age, "-d", "-i", str(key), str(enc)).stdout == "hello\n"


def test_age_13_post_quantum(tools, tmp_path):
    """Debian's age 1.3 (sid): the post-quantum reference for tests/integration/test_age_pq_interop.py."""
    assert re.match(r"v?1\.3\.\d+", run(tools, tools.age13, "--version").stdout.strip())
    key = tmp_path / "pq.txt"
    run(tools, tools.age_keygen13, "-pq", "-o", str(key))
    recipient = run(tools, tools.age_keygen13, "-y", str(key)).stdout.strip()
    assert recipient.startswith("age1pq1") and len(recipient) > 1900
    enc = run(tools, tools.age13, "-a", "-r", recipient, input="hello\n").stdout
    assert run(tools, tools.age13, "-d", "-i", str(key), input=enc).stdout == "hello\n"
    assert run(tools, tools.age_plugin_pq, "-identity", str(key)).stdout.startswith("AGE-PLUGIN-PQ-1")


def test_gpg_is_2(tools):
    assert re.match(r"gpg \(GnuPG\) 2\.\d+", run(tools, tools.gpg, "--version").stdout)


def test_sops_age_roundtrip(tools, tmp_path):
    key = tmp_path / "key.txt"
    run(tools, tools.age_keygen, "-o", str(key))
    recipient = run(tools, tools.age_keygen, "-y", str(key)).stdout.strip()
    plain = tmp_path / "secret.yaml"
    plain.write_text("password: hunter2\n")
    enc = run(tools, tools.sops, "encrypt", "--age", recipient, str(plain)).stdout
    assert "ENC[AES256_GCM," in enc and "hunter2" not in enc
    (tmp_path / "secret.enc.yaml").write_text(enc)
    dec = subprocess.run(
        [tools.sops, "decrypt", str(tmp_path / "secret.enc.yaml")], capture_output=True, text=True,
        env=tools.env(SOPS_AGE_KEY_FILE=str(key)), timeout=120, check=True,
    ).stdout
    assert dec == "password: hunter2\n"


# A KRM exec function that echoes its argv into a ConfigMap.
FN = """#!/bin/sh
cat >/dev/null
cat <<Y
apiVersion: config.kubernetes.io/v1
kind: ResourceList
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: gen
  data:
    args: "$*"
Y
"""

GEN = """apiVersion: example.com/v1
kind: Gen
metadata:
  name: g
  annotations:
    config.kubernetes.io/function: |
      exec:
        path: ./fn.sh
        args: ["one", "two"]
"""


def exec_args_kustomization(tmp_path: Path) -> Path:
    (tmp_path / "fn.sh").write_text(FN)
    (tmp_path / "fn.sh").chmod(0o755)
    (tmp_path / "gen.yaml").write_text(GEN)
    (tmp_path / "kustomization.yaml").write_text("generators:\n- gen.yaml\n")
    return tmp_path


def debian_version(binary: str) -> str | None:
    """The Debian package version setup.sh recorded (Debian's build says "(devel)")."""
    name = Path(binary).name
    f = Path(binary).parent.parent / "share" / f"{name}.version"
    return f.read_text().strip() if f.is_file() else None


@pytest.mark.parametrize("attr,minor", [("kustomize56", "5.6"), ("kustomize58", "5.8")])
def test_kustomize_runs_and_version(tools, attr, minor):
    binary = getattr(tools, attr)
    run(tools, binary, "version")
    recorded = debian_version(binary)
    if recorded is not None:
        assert recorded.startswith(minor + "."), recorded


def test_kustomize_56_rejects_exec_args(tools, tmp_path):
    d = exec_args_kustomization(tmp_path)
    r = run(tools, tools.kustomize56, "build", "--enable-alpha-plugins", "--enable-exec", str(d), check=False)
    assert r.returncode != 0
    assert 'unknown field "args"' in r.stderr


def test_kustomize_58_accepts_exec_args(tools, tmp_path):
    d = exec_args_kustomization(tmp_path)
    r = run(tools, tools.kustomize58, "build", "--enable-alpha-plugins", "--enable-exec", str(d))
    assert "args: one two" in r.stdout


def test_kubectl_kustomize(tools):
    out = run(tools, tools.kubectl, "version", "--client").stdout
    assert re.search(r"Client Version: v1\.\d+", out), out
    run(tools, tools.kubectl, "kustomize", "--help")


@pytest.mark.parametrize("attr,version", [("helm3", "v3.17.3"), ("helm4", "v4.1.4")])
def test_helm_cli_version_and_checksum(tools, tmp_path, attr, version):
    import hashlib

    binary = getattr(tools, attr)
    env = tools.env(HELM_CONFIG_HOME=str(tmp_path / "c"), HELM_DATA_HOME=str(tmp_path / "d"),
                    HELM_CACHE_HOME=str(tmp_path / "h"))
    out = subprocess.run([binary, "version", "--template", "{{.Version}}"], capture_output=True, text=True,
                         env=env, timeout=60, check=True).stdout
    assert out == version
    # the binary is the one whose sha256 setup.sh pins (and recorded after checking it)
    recorded = Path(binary).parent.parent / "share" / f"{attr}.sha256"
    if recorded.is_file():
        assert hashlib.sha256(Path(binary).read_bytes()).hexdigest() == recorded.read_text().strip()
        setup = (Path(__file__).resolve().parents[2] / "scripts" / "setup.sh").read_text()
        assert recorded.read_text().strip() in setup


def test_helm_sdk_renders(tools, tmp_path):
    try:
        import helm_python as helm
    except ImportError:
        tools.missing("Python package helm-python-sdk")
    assert helm.helm_sdk_version().startswith("v4.")
    chart = tmp_path / "smoke"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: smoke\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hi\nother: keep\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n  other: {{ .Values.other | quote }}\n"
    )
    with helm.Chart.load(chart) as c:
        out = c.render(values={"greeting": "hello"}, name="demo", namespace="ns")
    assert list(out) == ["smoke/templates/cm.yaml"]
    assert "name: demo-cm" in out["smoke/templates/cm.yaml"]
    assert 'greeting: "hello"' in out["smoke/templates/cm.yaml"]
    assert 'other: "keep"' in out["smoke/templates/cm.yaml"]
