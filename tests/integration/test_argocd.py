"""Argo CD CMP: run ``kvsops argocd init/generate`` exactly as argocd-cmp-server does.

The harness reproduces the contract read from Argo CD's source (shared reference, part A4): a fresh
0700 temp dir per request holding a copy of the repo with files 0644 and dirs 0755 (no symlink
leaving it), the sidecar env plus the request env (``ARGOCD_APP_*``, ``KUBE_VERSION``,
``KUBE_API_VERSIONS``, ``ARGOCD_ENV_*``, ``ARGOCD_APP_PARAMETERS`` and the ``PARAM_*`` derived from
it), cwd at the app path, no shell, and a deadline. Renders use real kustomize (5.6 and 5.8),
Helm's engine (helm-python-sdk) when no helm binary is configured, the real Helm 3.17 and 4.1 CLI
with our getter plugin (KVSOPS_HELM_BIN) and plain mode.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cmp_harness import BIN, EXAMPLES, KVSOPS, REPO, Cmp, failed, objs, policy, secret_value

DEMO_RECIPIENT = (EXAMPLES / "keys" / "demo-age-recipient.txt").read_text().strip()
PLAIN_PASSWORD = "plain-demo-password-not-a-secret"
HELM_PASSWORD = "helm-demo-password-not-a-secret"
OTHER_RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"


@pytest.fixture
def cmp(tmp_path: Path, tools: Any) -> Cmp:
    return Cmp(tmp_path, tools)


# ----------------------------------------------------------------------------- the three modes


def test_plain_mode_decrypts_in_memory(cmp: Cmp) -> None:
    proc = cmp.run(EXAMPLES, "argocd/plain")
    assert proc.returncode == 0, proc.stderr.decode()
    docs = objs(proc.stdout)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ConfigMap", "Deployment", "Secret"]
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert secret_value(secret, "password") == PLAIN_PASSWORD
    assert "sops" not in secret and b"ENC[" not in proc.stdout
    assert PLAIN_PASSWORD.encode() not in proc.stderr


@pytest.mark.parametrize("kustomize", ["kustomize56", "kustomize58"])
def test_kustomize_mode_with_real_kustomize(cmp: Cmp, tools: Any, kustomize: str) -> None:
    proc = cmp.run(EXAMPLES, "kustomize/overlay", sidecar={"KVSOPS_KUSTOMIZE_BIN": getattr(tools, kustomize)})
    assert proc.returncode == 0, proc.stderr.decode()
    docs = objs(proc.stdout)
    db = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].startswith("prod-app-db-"))
    assert secret_value(db, "DB_PASSWORD") == "prod-demo-password"
    assert all(d["metadata"].get("namespace") == "prod" for d in docs)
    assert b"ENC[" not in proc.stdout


def test_helm_mode_with_helms_engine(cmp: Cmp) -> None:
    pytest.importorskip("helm_python")
    params = [
        {"name": "values-files", "array": ["values-prod.yaml", "secrets://secrets.enc.yaml"]},
        {"name": "set", "map": {"image": "nginx:1.28"}},
    ]
    proc = cmp.run(EXAMPLES, "argocd/helm", params=params)
    assert proc.returncode == 0, proc.stderr.decode()
    docs = objs(proc.stdout)
    secret = next(d for d in docs if d["kind"] == "Secret")
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    assert secret["metadata"] == {"name": "web-db", "namespace": "demo"}
    assert secret_value(secret, "DB_PASSWORD") == HELM_PASSWORD
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"


def test_helm_values_from_plugin_env_and_param_vars(cmp: Cmp) -> None:
    pytest.importorskip("helm_python")
    proc = cmp.run(EXAMPLES, "argocd/helm",
                   plugin_env={"VALUES_FILES": "secrets.enc.yaml", "RELEASE_NAME": "shop", "NAMESPACE": "team"})
    assert proc.returncode == 0, proc.stderr.decode()
    secret = next(d for d in objs(proc.stdout) if d["kind"] == "Secret")
    assert secret["metadata"] == {"name": "shop-db", "namespace": "team"}
    # PARAM_* alone (no JSON), as an older Argo CD or a hand-written env would give it
    root = cmp.copy_repo(EXAMPLES)
    env = cmp.env(app="argocd/helm")
    env.update({"PARAM_VALUES_FILES_0": "secrets.enc.yaml", "PARAM_RELEASE_NAME": "p"})
    proc = subprocess.run([KVSOPS, "argocd", "generate"], cwd=root / "argocd/helm", env=env, capture_output=True,
                          timeout=90)
    assert proc.returncode == 0, proc.stderr.decode()
    assert next(d for d in objs(proc.stdout) if d["kind"] == "Secret")["metadata"]["name"] == "p-db"


def test_helm_missing_secret_values_fails_with_location_only(cmp: Cmp) -> None:
    pytest.importorskip("helm_python")
    err = failed(cmp.run(EXAMPLES, "argocd/helm"), "GENERATOR")
    assert "secret.yaml:10" in err


def test_mode_parameter_overrides_detection(cmp: Cmp) -> None:
    # the kustomize overlay as plain: kustomization.yaml is not a Kubernetes object -> refused
    err = failed(cmp.run(EXAMPLES, "kustomize/overlay", params=[{"name": "mode", "string": "plain"}]))
    assert "kustomization.yaml" in err


# ----------------------------------------------------------------------------- helm binary mode (real helm)
# KVSOPS_HELM_BIN selects the real helm3 or helm4, so render.py takes its _helm_binary path. The
# getter is the legacy plugin behind a spy: a shim that appends what Helm ran it with (argv, cwd,
# HELM_NAMESPACE, the policy grant) to a log, then execs the real kvsops-helm.

HELM_PARAMS = [
    {"name": "values-files", "array": ["values-prod.yaml", "secrets://secrets.enc.yaml"]},
    {"name": "set", "map": {"image": "nginx:1.28"}},
]
SPY = """#!/bin/sh
{python} -c 'import json, os, sys
with open(sys.argv[1], "a") as fh:
    fh.write(json.dumps({{"argv": sys.argv[2:], "cwd": os.getcwd(), "namespace": os.environ.get("HELM_NAMESPACE"),
                         "grant": os.environ.get("KVSOPS_POLICY_GRANT", "")}}) + "\\n")' {log} "$0" "$@"
exec {shim} "$@"
"""


def helm_sidecar(tmp: Path, helm: str) -> dict[str, str]:
    """The Dockerfile's setup: the legacy getter in HELM_PLUGINS (= HELM_DATA_HOME/plugins), Helm's
    homes of its own; here the getter's command is the spy."""
    from tests import helm_harness as hh

    plugins = tmp / "helm/data/plugins"
    spy = plugins / "kvsops-getter-legacy"
    if not spy.exists():
        (spy / "bin").mkdir(parents=True)
        shutil.copy(hh.LEGACY_GETTER / "plugin.yaml", spy / "plugin.yaml")
        (spy / "bin/kvsops-helm").write_text(SPY.format(python=sys.executable, log=tmp / "getter.log",
                                                        shim=hh.LEGACY_GETTER / "bin/kvsops-helm"))
        (spy / "bin/kvsops-helm").chmod(0o755)
    return {"KVSOPS_HELM_BIN": helm, "HELM_PLUGINS": str(plugins), "HELM_DATA_HOME": str(plugins.parent),
            "HELM_CACHE_HOME": str(tmp / "helm/cache"), "HELM_CONFIG_HOME": str(tmp / "helm/config")}


def getter_calls(tmp: Path) -> list[dict[str, Any]]:
    log = tmp / "getter.log"
    return [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("major", ["helm3", "helm4"])
def test_helm_binary_mode_renders_what_the_engine_renders(cmp: Cmp, tmp_path: Path, major: str) -> None:
    pytest.importorskip("helm_python")
    engine = cmp.run(EXAMPLES, "argocd/helm", params=HELM_PARAMS)
    assert engine.returncode == 0, engine.stderr.decode()
    binary = cmp.run(EXAMPLES, "argocd/helm", params=HELM_PARAMS, sidecar=helm_sidecar(tmp_path, cmp.tools[major]))
    assert binary.returncode == 0, binary.stderr.decode()
    by_kind = [{d["kind"]: d for d in objs(p.stdout)} for p in (engine, binary)]
    assert by_kind[0].keys() == by_kind[1].keys() == {"Secret", "Deployment"}
    for kind in ("Secret", "Deployment"):
        assert by_kind[1][kind] == by_kind[0][kind]
    assert by_kind[1]["Secret"]["metadata"]["namespace"] == "demo"  # --namespace reached helm
    assert secret_value(by_kind[1]["Secret"], "DB_PASSWORD") == HELM_PASSWORD
    assert b"ENC[" not in binary.stdout and HELM_PASSWORD.encode() not in binary.stderr
    # helm template's stream: one "# Source: CHART/templates/X" per document, Secret before Deployment
    assert re.findall(rb"^# Source: (.*)$", binary.stdout, re.M) == [b"web/templates/secret.yaml",
                                                                     b"web/templates/deployment.yaml"]
    # the getter ran once, for the encrypted file only, as Helm runs a downloader
    calls = getter_calls(tmp_path)
    assert len(calls) == 1, calls
    (call,) = calls
    assert call["argv"] == [str(tmp_path / "helm/data/plugins/kvsops-getter-legacy/bin/kvsops-helm"),
                            "downloader", "", "", "", "kvsops://secrets.enc.yaml"]
    assert call["cwd"].endswith("/argocd/helm") and call["namespace"] == "demo"


@pytest.mark.parametrize("major", ["helm3", "helm4"])
def test_helm_binary_mode_tampered_values_fail_the_whole_render(cmp: Cmp, tmp_path: Path, major: str) -> None:
    root = cmp.copy_repo(EXAMPLES)
    enc = root / "argocd/helm/secrets.enc.yaml"
    doc = enc.read_text()
    pw = re.search(r"^    password: (ENC\[.*\])$", doc, re.M)
    key = re.search(r"^apiKey: (ENC\[.*\])$", doc, re.M)
    assert pw and key
    # swap two ciphertexts: each is authenticated with its own key path, so neither decrypts
    doc = doc.replace(pw.group(1), "@PW@").replace(key.group(1), pw.group(1)).replace("@PW@", key.group(1))
    enc.write_text(doc)
    err = failed(cmp.run(EXAMPLES, "argocd/helm", copy=root, params=HELM_PARAMS,
                         sidecar=helm_sidecar(tmp_path, cmp.tools[major])), "GENERATOR")
    assert "helm template failed" in err
    assert 'plugin "bin/kvsops-helm downloader" exited with error' in err or "failed to invoke" in err
    assert "secrets.enc.yaml" in err and "[DECRYPT_VALUE]" in err
    assert HELM_PASSWORD not in err
    assert len(getter_calls(tmp_path)) == 1


@pytest.mark.parametrize("major", ["helm3", "helm4"])
def test_helm_binary_mode_policy_reaches_the_downloader(cmp: Cmp, tmp_path: Path, major: str) -> None:
    pol = policy({"projects": ["team-a"], "age": [DEMO_RECIPIENT]}, {"projects": ["team-b"], "age": [OTHER_RECIPIENT]})
    side = {**helm_sidecar(tmp_path, cmp.tools[major]), "KVSOPS_POLICY": pol}
    ok = cmp.run(EXAMPLES, "argocd/helm", project="team-a", params=HELM_PARAMS, sidecar=side)
    assert ok.returncode == 0, ok.stderr.decode()
    assert secret_value(next(d for d in objs(ok.stdout) if d["kind"] == "Secret"), "DB_PASSWORD") == HELM_PASSWORD
    # a file encrypted for a key outside team-b's policy: the downloader, run by helm, refuses it
    err = failed(cmp.run(EXAMPLES, "argocd/helm", project="team-b", params=HELM_PARAMS, sidecar=side), "GENERATOR")
    assert "refused by policy" in err
    # the grant (not the environment's project) told the downloader what is allowed; removed afterwards
    grants = [c["grant"] for c in getter_calls(tmp_path)]
    assert len(grants) == 2 and all(g and os.path.isabs(g) for g in grants) and grants[0] != grants[1]
    assert not any(os.path.exists(g) for g in grants)
    assert not [p for p in cmp.sidecar_tmp.iterdir() if p.name.startswith("kvsops-")]


# ----------------------------------------------------------------------------- never an empty success


@pytest.mark.parametrize("app", ["argocd/plain", "kustomize/overlay", "argocd/helm"])
def test_missing_key_fails_with_empty_stdout(cmp: Cmp, app: str) -> None:
    params = [{"name": "values-files", "array": ["secrets.enc.yaml"]}] if app.endswith("helm") else None
    proc = cmp.run(EXAMPLES, app, params=params, sidecar={"SOPS_AGE_KEY_FILE": str(cmp.tmp / "absent.txt")})
    err = failed(proc)
    assert PLAIN_PASSWORD not in err and HELM_PASSWORD not in err


def test_zero_manifests_is_an_error_unless_allowed(cmp: Cmp, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "empty").mkdir(parents=True)
    (src / "empty" / "README.md").write_text("nothing to deploy\n")
    err = failed(cmp.run(src, "empty"), "GENERATOR")
    assert "no Kubernetes objects" in err
    proc = cmp.run(src, "empty", params=[{"name": "allow-empty", "string": "true"}])
    assert proc.returncode == 0 and proc.stdout == b""


def test_kustomize_failure_and_ciphertext_passthrough(cmp: Cmp, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "broken").mkdir(parents=True)
    (src / "broken" / "kustomization.yaml").write_text("resources: [missing.yaml]\n")
    failed(cmp.run(src, "broken"), "GENERATOR")
    # an encrypted Secret listed as a plain resource would pass through kustomize as ciphertext
    (src / "leak").mkdir()
    shutil.copy(EXAMPLES / "argocd/plain/credentials.enc.yaml", src / "leak/credentials.enc.yaml")
    (src / "leak/kustomization.yaml").write_text("resources: [credentials.enc.yaml]\n")
    err = failed(cmp.run(src, "leak"), "GENERATOR")
    assert "SOPS metadata" in err


def test_deadline_kills_the_tool_process_group(cmp: Cmp, tmp_path: Path) -> None:
    marker = tmp_path / "grandchild-alive"
    fake = tmp_path / "slow-kustomize"
    fake.write_text(f"#!/bin/sh\n(sleep 3; touch {marker}) &\nsleep 30\n")
    fake.chmod(0o755)
    src = tmp_path / "src"
    (src / "app").mkdir(parents=True)
    (src / "app/kustomization.yaml").write_text("resources: []\n")
    t0 = time.monotonic()
    proc = cmp.run(src, "app", sidecar={"KVSOPS_KUSTOMIZE_BIN": str(fake), "KVSOPS_DEADLINE_SECONDS": "1"})
    assert time.monotonic() - t0 < 15
    failed(proc, "TIMEOUT")
    assert proc.returncode == 124
    time.sleep(3.5)
    assert not marker.exists(), "the whole process group must be killed at the deadline"


# ----------------------------------------------------------------------------- key policy


def test_policy_allows_the_projects_key(cmp: Cmp) -> None:
    pol = policy({"projects": ["default"], "age": [DEMO_RECIPIENT]})
    proc = cmp.run(EXAMPLES, "argocd/plain", sidecar={"KVSOPS_POLICY": pol})
    assert proc.returncode == 0, proc.stderr.decode()


@pytest.mark.parametrize("app", ["argocd/plain", "kustomize/overlay", "argocd/helm"])
def test_policy_refuses_another_projects_key_in_every_mode(cmp: Cmp, app: str) -> None:
    pol = policy({"projects": ["team-a"], "age": [DEMO_RECIPIENT]}, {"projects": ["team-b"], "age": [OTHER_RECIPIENT]})
    params = [{"name": "values-files", "array": ["secrets.enc.yaml"]}] if app.endswith("helm") else None
    proc = cmp.run(EXAMPLES, app, project="team-b", params=params, sidecar={"KVSOPS_POLICY": pol})
    err = failed(proc)
    assert "refused by policy" in err
    assert PLAIN_PASSWORD not in err


def test_policy_by_repo_and_fail_closed(cmp: Cmp, tmp_path: Path) -> None:
    pol = policy({"repos": ["https://github.com/example/apps"], "age": [DEMO_RECIPIENT]})
    ok = cmp.run(EXAMPLES, "argocd/plain", repo_url="https://GitHub.com/example/apps.git/",
                 sidecar={"KVSOPS_POLICY": pol})
    assert ok.returncode == 0, ok.stderr.decode()
    failed(cmp.run(EXAMPLES, "argocd/plain", repo_url="https://github.com/evil/apps", sidecar={"KVSOPS_POLICY": pol}),
           "POLICY_REFUSED")
    # a configured policy that cannot be read or parsed refuses everything
    failed(cmp.run(EXAMPLES, "argocd/plain", sidecar={"KVSOPS_POLICY_FILE": str(tmp_path / "nope.yaml")}), "CONFIG")
    failed(cmp.run(EXAMPLES, "argocd/plain", sidecar={"KVSOPS_POLICY": "rules: {oops"}), "CONFIG")
    bad = tmp_path / "policy.yaml"
    bad.write_text("rules:\n  - age: [x]\n")  # no selector: refused, not "matches everything"
    failed(cmp.run(EXAMPLES, "argocd/plain", sidecar={"KVSOPS_POLICY_FILE": str(bad)}), "CONFIG")


def test_policy_with_post_quantum_keys(cmp: Cmp, tmp_path: Path) -> None:
    """The sidecar holds two post-quantum identities (age 1.3's age-keygen -pq); each project may use
    its own recipient only, and a file whose entry names team-a's key but wraps the data key for
    team-b's renders nothing for team-a."""
    keys = {}
    for team in ("a", "b"):
        path = tmp_path / f"team-{team}.txt"
        subprocess.run([cmp.tools.age_keygen13, "-pq", "-o", str(path)], check=True, capture_output=True, timeout=60)
        keys[team] = (path, path.read_text().split("# public key: ", 1)[1].split()[0])
    both = tmp_path / "sidecar-keys.txt"
    both.write_text(keys["a"][0].read_text() + keys["b"][0].read_text())
    src = tmp_path / "src"
    (src / "app").mkdir(parents=True)
    plain = tmp_path / "s.yaml"
    plain.write_text("apiVersion: v1\nkind: Secret\nmetadata:\n    name: s\nstringData:\n    password: pq-secret\n")
    sops_env = {**cmp.tools.env(), "SOPS_DISABLE_VERSION_CHECK": "1"}
    enc = {t: subprocess.run([cmp.tools.sops, "encrypt", "--age", keys[t][1], str(plain)], env=sops_env, check=True,
                             capture_output=True, timeout=60).stdout.decode() for t in ("a", "b")}
    pol = policy({"projects": ["team-a"], "age": [keys["a"][1]]}, {"projects": ["team-b"], "age": [keys["b"][1]]})
    side = {"KVSOPS_POLICY": pol, "SOPS_AGE_KEY_FILE": str(both)}
    (src / "app/secret.enc.yaml").write_text(enc["a"])
    ok = cmp.run(src, "app", project="team-a", sidecar=side)
    assert ok.returncode == 0, ok.stderr.decode()
    assert secret_value(objs(ok.stdout)[0], "password") == "pq-secret"
    assert "refused by policy" in failed(cmp.run(src, "app", project="team-b", sidecar=side))
    block = re.compile(r"enc: \|\n(?:\s+.*\n)+?\s+-----END AGE ENCRYPTED FILE-----\n")
    forged = block.sub(lambda _m: block.search(enc["b"]).group(0), enc["a"])  # type: ignore[union-attr]
    assert forged != enc["a"] and keys["a"][1] in forged
    (src / "app/secret.enc.yaml").write_text(forged)
    err = failed(cmp.run(src, "app", project="team-a", sidecar=side), "NO_KEY")
    assert "does not decrypt" in err and "pq-secret" not in err


def test_policy_inside_kustomize_cannot_be_dodged_through_function_env(cmp: Cmp, tmp_path: Path) -> None:
    """exec.envs naming another project changes nothing: kvsops' generators run as legacy plugins,
    whose environment is kustomize's own (allow-listed by kvsops), and trust only the grant."""
    root = cmp.copy_repo(EXAMPLES)
    gen = root / "kustomize/base/secrets.yaml"
    gen.write_text(gen.read_text().replace(
        "        path: kvsops-krm\n", "        path: kvsops-krm\n        envs: [ARGOCD_APP_PROJECT_NAME=team-a]\n"))
    pol = policy({"projects": ["team-a"], "age": [DEMO_RECIPIENT]}, {"projects": ["team-b"], "age": [OTHER_RECIPIENT]})
    err = failed(cmp.run(EXAMPLES, "kustomize/overlay", copy=root, project="team-b", sidecar={"KVSOPS_POLICY": pol}),
                 "GENERATOR")
    assert "refused by policy" in err and "prod-demo-password" not in err


def test_exec_functions_other_than_kvsops_are_refused(cmp: Cmp, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    src = tmp_path / "src"
    (src / "app").mkdir(parents=True)
    (src / "app/kustomization.yaml").write_text("generators: [gen.yaml]\n")
    (src / "app/gen.yaml").write_text(
        "apiVersion: x/v1\nkind: Evil\nmetadata:\n  name: e\n  annotations:\n"
        "    config.kubernetes.io/function: |\n      exec:\n        path: /bin/sh\n"
        f"        args: [-c, 'touch {marker}; cat $SOPS_AGE_KEY_FILE']\n")
    err = failed(cmp.run(src, "app"), "PLUGIN_REFUSED")
    assert "exec function '/bin/sh'" in err and "app/gen.yaml" in err
    assert not marker.exists()


def test_policy_grant_is_private_and_removed(tmp_path: Path) -> None:
    from kvsops import errors, policy as pol

    allowed = pol.Allowed.from_lists({"age": [DEMO_RECIPIENT]}, "test")
    d = tmp_path / "g"
    d.mkdir(mode=0o700)
    grant = pol.write_grant(d, allowed, "p", "r")
    assert stat.S_IMODE(grant.stat().st_mode) == 0o600
    assert pol.read_grant(str(grant)) == allowed
    forged = tmp_path / "forged.json"  # what a repo checkout can offer: 0644
    forged.write_text(grant.read_text())
    forged.chmod(0o644)
    for bad in (str(forged), "grant.json", str(d / ".." / "g" / "grant.json")):
        with pytest.raises(errors.PolicyRefused):
            pol.read_grant(bad)
    link = d / "link.json"
    link.symlink_to(grant)
    with pytest.raises(errors.PolicyRefused):
        pol.read_grant(str(link))
    # a child with a policy installed at the fixed path but no grant is refused
    installed = tmp_path / "policy.yaml"
    installed.write_text(policy({"projects": ["*"], "age": [DEMO_RECIPIENT]}))
    with pytest.raises(errors.PolicyRefused):
        pol.session_from_env({"ARGOCD_APP_PROJECT_NAME": "x"}, default_file=str(installed))
    s = pol.session_from_env({"KVSOPS_POLICY_GRANT": str(grant)}, default_file=str(installed))
    assert s.allowed_entry is not None


def test_policy_key_matching() -> None:
    from kvsops import policy as pol
    from kvsops.sops.metadata import KeyEntry

    p = pol.parse_policy(json.dumps({"rules": [
        {"projects": ["team-*"], "azure_kv": ["https://KV.vault.azure.net:443/keys/sops", "https://kv2.vault.azure.net/keys/k/abc"],
         "pgp": ["85D7 7543 B3D6 24B6 3CEA 9E6D BC17 301B 491B 3F21"]},
        {"projects": ["team-a"], "repos": ["https://github.com/a/*"], "age": [DEMO_RECIPIENT]},
    ]}), "test")
    a = p.allowed_for("team-a", "https://github.com/a/x")
    kv = lambda url, name, ver: KeyEntry.make("azure_kv", {"vault_url": url, "name": name, "version": ver, "enc": "x"})  # noqa: E731
    assert a.refusal(kv("https://kv.vault.azure.net", "SOPS", "v1")) is None
    assert a.refusal(kv("https://kv2.vault.azure.net", "k", "abc")) is None
    assert a.refusal(kv("https://kv2.vault.azure.net", "k", "def")) is not None
    assert a.refusal(kv("https://kv2.vault.azure.net", "k", "")) is not None
    assert a.refusal(kv("https://other.vault.azure.net", "sops", "v1")) is not None
    assert a.refusal(KeyEntry.make("age", {"recipient": DEMO_RECIPIENT, "enc": "x"})) is None
    assert a.refusal(KeyEntry.make("pgp", {"fp": "85d77543b3d624b63cea9e6dbc17301b491b3f21", "enc": "x"})) is None
    b = p.allowed_for("team-b", "https://github.com/a/x")
    assert b.refusal(KeyEntry.make("age", {"recipient": DEMO_RECIPIENT, "enc": "x"})) is not None
    assert p.allowed_for("other", "").refusal(kv("https://kv.vault.azure.net", "sops", "")) is not None


def _kv_env(emu: Any, tmp_path: Path) -> dict[str, str]:
    env = emu.base_env()
    env.update(emu.workload_identity_env("renderer", tmp_path / "token"))
    env.update({"KVSOPS_AZURE_CREDENTIAL": "workload_identity", "KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE": "false"})
    return env


def test_key_vault_key_of_another_project_is_never_called(cmp: Cmp, emu: Any, tmp_path: Path) -> None:
    emu.create_key("team-a")
    emu.create_key("team-b")
    kv_env = _kv_env(emu, tmp_path)
    src = tmp_path / "src"
    (src / "app").mkdir(parents=True)
    for i, key in enumerate(["team-b", "team-b"]):
        plain = tmp_path / f"s{i}.yaml"
        plain.write_text(
            f"apiVersion: v1\nkind: Secret\nmetadata: {{name: s{i}}}\nstringData: {{token: kv-secret-{i}}}\n"
        )
        enc = subprocess.run([KVSOPS, "encrypt", "--azure-kv", emu.key_url(key), "--encrypted-regex", "^stringData$",
                              str(plain)],
                             env={**os.environ, **kv_env}, capture_output=True, timeout=60)
        assert enc.returncode == 0, enc.stderr.decode()
        (src / f"app/s{i}.enc.yaml").write_bytes(enc.stdout)
    pol = policy({"projects": ["team-a"], "azure_kv": [emu.key_url("team-a")]},
                 {"projects": ["team-b"], "azure_kv": [emu.key_url("team-b")]})
    emu.reset_counters()
    err = failed(cmp.run(src, "app", project="team-a", sidecar={**kv_env, "KVSOPS_POLICY": pol}), "POLICY_REFUSED")
    assert "team-b" in err
    assert sum(emu.counts.values()) == 0 and sum(emu.token_requests.values()) == 0
    # the owner project renders, with one credential and one token for both files
    ok = cmp.run(src, "app", project="team-b", sidecar={**kv_env, "KVSOPS_POLICY": pol})
    assert ok.returncode == 0, ok.stderr.decode()
    assert sorted(secret_value(d, "token") for d in objs(ok.stdout)) == ["kv-secret-0", "kv-secret-1"]
    assert emu.counts["decrypt"] == 2
    assert sum(emu.token_requests.values()) == 1


# ----------------------------------------------------------------------------- hostile input


HOSTILE = [
    [{"name": "values-files", "array": ["../../../../etc/passwd"]}],
    [{"name": "values-files", "array": ["/etc/passwd"]}],
    [{"name": "values-files", "array": ["$(touch PWNED)"]}],
    [{"name": "values-files", "array": ["a.yaml; touch PWNED"]}],
    [{"name": "values-files", "array": ["secrets+age-import://../k?x"]}],
    [{"name": "release-name", "string": "x; touch PWNED"}],
    [{"name": "release-name", "string": "--post-renderer=/bin/sh"}],
    [{"name": "namespace", "string": "`touch PWNED`"}],
    [{"name": "kube-version", "string": "1.30 && touch PWNED"}],
    [{"name": "mode", "string": "kustomize; touch PWNED"}],
    [{"name": "set", "map": {"a;touch PWNED": "x"}}],
    [{"name": "api-versions", "array": ["v1 --post-renderer x"]}],
    [{"name": "exec", "string": "touch PWNED"}],
    [{"name": "allow-empty", "string": "$(true)"}],
]


@pytest.mark.parametrize("params", HOSTILE, ids=[json.dumps(p[0])[:60] for p in HOSTILE])
def test_hostile_parameters_do_nothing(cmp: Cmp, params: list[dict[str, Any]]) -> None:
    root = cmp.copy_repo(EXAMPLES)
    before = _snapshot(cmp.tmp)
    failed(cmp.run(EXAMPLES, "argocd/helm", copy=root, params=params), None)
    assert _snapshot(cmp.tmp) == before
    assert not list(cmp.tmp.rglob("PWNED")) and not Path("PWNED").exists()


def test_hostile_json_and_plugin_env(cmp: Cmp) -> None:
    root = cmp.copy_repo(EXAMPLES)
    env = cmp.env(app="argocd/helm")
    for value in ("not json", '{"name": "mode"}', '[{"string": "x"}]', "[" * 100000):
        failed(subprocess.run([KVSOPS, "argocd", "generate"], cwd=root / "argocd/helm",
                              env={**env, "ARGOCD_APP_PARAMETERS": value}, capture_output=True, timeout=60))
    failed(cmp.run(EXAMPLES, "argocd/helm", copy=root, plugin_env={"VALUES_FILES": "a.yaml,../../x.yaml"}), "GENERATOR")


def test_symlinked_values_file_leaving_the_app_is_refused(cmp: Cmp, tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text("database: {password: stolen}\n")
    root = cmp.copy_repo(EXAMPLES)
    (root / "argocd/helm/link.yaml").symlink_to(outside)
    err = failed(cmp.run(EXAMPLES, "argocd/helm", copy=root, params=[{"name": "values-files", "array": ["link.yaml"]}]),
                 "PATH_REFUSED")
    assert "stolen" not in err


def _snapshot(base: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mode, p.stat().st_size) for p in base.rglob("*") if not p.is_symlink()}


def test_no_file_written_and_no_plaintext_on_disk(cmp: Cmp, tools: Any) -> None:
    pytest.importorskip("helm_python")
    runs = [("argocd/plain", None), ("kustomize/overlay", None),
            ("argocd/helm", [{"name": "values-files", "array": ["secrets://secrets.enc.yaml"]}])]
    pol = policy({"projects": ["*"], "age": [DEMO_RECIPIENT]})
    for app, params in runs:
        root = cmp.copy_repo(EXAMPLES)
        before = _snapshot(cmp.tmp)
        proc = cmp.run(EXAMPLES, app, copy=root, params=params, sidecar={"KVSOPS_POLICY": pol})
        assert proc.returncode == 0, proc.stderr.decode()
        assert _snapshot(cmp.tmp) == before, f"{app}: files were written"
        assert not [p for p in cmp.sidecar_tmp.iterdir() if p.name.startswith("kvsops-")]
    for p in cmp.tmp.rglob("*"):
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            for secret in (PLAIN_PASSWORD, HELM_PASSWORD, "prod-demo-password"):
                assert secret.encode() not in data, f"plaintext on disk in {p}"


# ----------------------------------------------------------------------------- deployment YAML


PLUGIN_SPEC_FIELDS = {"version", "init", "generate", "discover", "parameters", "preserveFileMode", "provideGitCreds"}
ANNOUNCEMENT_FIELDS = {"name", "title", "tooltip", "required", "itemType", "collectionType", "string", "array", "map"}


def test_plugin_yaml_matches_the_cmp_schema() -> None:
    doc = yaml.safe_load((REPO / "argocd/plugin.yaml").read_text())
    assert doc["apiVersion"] == "argoproj.io/v1alpha1" and doc["kind"] == "ConfigManagementPlugin"
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    assert doc["metadata"]["name"]
    spec = doc["spec"]
    # unknown fields are silently ignored upstream
    assert set(spec) <= PLUGIN_SPEC_FIELDS, set(spec) - PLUGIN_SPEC_FIELDS
    for cmd in ("init", "generate"):
        assert set(spec[cmd]) <= {"command", "args"}
        argv = spec[cmd]["command"] + spec[cmd].get("args", [])
        assert argv[:2] == ["kvsops", "argocd"] and all(isinstance(a, str) and "$" not in a for a in argv)
        assert argv[0] not in ("sh", "bash", "/bin/sh", "/bin/bash")
    assert "discover" not in spec or set(spec["discover"]) == {"fileName"} and "*" not in spec["discover"]["fileName"]
    assert spec["preserveFileMode"] is False and spec["provideGitCreds"] is False
    from kvsops.hosts.argocd.settings import PARAMETERS

    for ann in spec["parameters"]["static"]:
        assert set(ann) <= ANNOUNCEMENT_FIELDS
        assert ann["name"] in PARAMETERS
        assert ann.get("collectionType", "string") == PARAMETERS[ann["name"]]


def _dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile_lint() -> None:
    ins = _dockerfile_instructions((REPO / "argocd/Dockerfile").read_text())
    known = {"FROM", "ARG", "RUN", "COPY", "ENV", "USER", "WORKDIR", "ENTRYPOINT", "LABEL", "CMD"}
    assert {op for op, _ in ins} <= known
    froms = [rest for op, rest in ins if op == "FROM"]
    assert froms and all(f.startswith("python:${PYTHON_VERSION}-slim") for f in froms)
    final = ins[max(i for i, (op, _) in enumerate(ins) if op == "FROM"):]
    assert ("USER", "999:999") in final
    assert final[-1][0] == "ENTRYPOINT"
    assert json.loads(final[-1][1]) == ["/usr/local/bin/kvsops", "agent", "--", "/var/run/argocd/argocd-cmp-server"]
    runs = " ".join(rest for op, rest in ins if op == "RUN")
    assert "sha256sum -c" in runs and "kustomize" in runs and "helm" in runs and "kvsops" in runs
    for op, rest in ins:
        if op == "COPY" and "--from" not in rest:
            for src in rest.split()[:-1]:
                assert (REPO / src).exists() or src == "README.md", f"COPY source {src} missing"
    envs = " ".join(rest for op, rest in final if op == "ENV")
    assert "HELM_PLUGINS=/opt/helm/plugins" in envs and "TMPDIR=/tmp" in envs
    # kustomize's plugin home: written at build time, read-only, and the one the sidecar uses
    home = re.search(r"KVSOPS_KUSTOMIZE_PLUGIN_HOME=(\S+)", envs)
    assert home and home.group(1).startswith("/usr/") and f"kvsops install-plugins {home.group(1)}" in runs
    assert "git" not in " ".join(rest for op, rest in final if op == "RUN").split()


UPSTREAM_REPO_SERVER = """\
apiVersion: v1
kind: ServiceAccount
metadata:
  labels: {app.kubernetes.io/component: repo-server, app.kubernetes.io/name: argocd-repo-server,
           app.kubernetes.io/part-of: argocd}
  name: argocd-repo-server
---
apiVersion: apps/v1
kind: Deployment
metadata:
  labels: {app.kubernetes.io/component: repo-server, app.kubernetes.io/name: argocd-repo-server,
           app.kubernetes.io/part-of: argocd}
  name: argocd-repo-server
spec:
  selector:
    matchLabels: {app.kubernetes.io/name: argocd-repo-server}
  template:
    metadata:
      labels: {app.kubernetes.io/name: argocd-repo-server}
    spec:
      automountServiceAccountToken: false
      serviceAccountName: argocd-repo-server
      containers:
      - name: argocd-repo-server
        image: quay.io/argoproj/argocd:v3.1.0
        args: [/usr/local/bin/argocd-repo-server]
        ports: [{containerPort: 8081}, {containerPort: 8084}]
        securityContext:
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL]}
          readOnlyRootFilesystem: true
          runAsNonRoot: true
          seccompProfile: {type: RuntimeDefault}
        volumeMounts:
        - {name: ssh-known-hosts, mountPath: /app/config/ssh}
        - {name: tmp, mountPath: /tmp}
        - {name: var-files, mountPath: /var/run/argocd}
        - {name: plugins, mountPath: /home/argocd/cmp-server/plugins}
      initContainers:
      - name: copyutil
        image: quay.io/argoproj/argocd:v3.1.0
        command: [/bin/cp, -n, /usr/local/bin/argocd, /var/run/argocd/argocd-cmp-server]
        volumeMounts:
        - {name: var-files, mountPath: /var/run/argocd}
      volumes:
      - {name: ssh-known-hosts, configMap: {name: argocd-ssh-known-hosts-cm}}
      - {name: tmp, emptyDir: {}}
      - {name: var-files, emptyDir: {}}
      - {name: plugins, emptyDir: {}}
"""


def test_repo_server_patch_applies_with_kustomize(tools: Any, tmp_path: Path) -> None:
    shutil.copytree(REPO / "argocd", tmp_path / "kvsops", ignore=shutil.ignore_patterns("Dockerfile", "*.md"))
    (tmp_path / "upstream.yaml").write_text(UPSTREAM_REPO_SERVER)
    (tmp_path / "kustomization.yaml").write_text(
        "namespace: argocd\nresources: [upstream.yaml]\ncomponents: [kvsops]\n")
    proc = subprocess.run([tools.kustomize58, "build", str(tmp_path)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    def key(d: dict[str, Any]) -> tuple[str, str]:
        name = d["metadata"]["name"]
        return d["kind"], name.rsplit("-", 1)[0] if d["kind"] == "ConfigMap" else name  # without the hash suffix

    docs = {key(d): d for d in objs(proc.stdout)}
    sa = docs[("ServiceAccount", "argocd-repo-server")]
    assert "azure.workload.identity/client-id" in sa["metadata"]["annotations"]
    pod = docs[("Deployment", "argocd-repo-server")]["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    skip = pod["metadata"]["annotations"]["azure.workload.identity/skip-containers"].split(";")
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert set(containers) == {"argocd-repo-server", "kvsops"}
    assert "kvsops" not in skip and {"argocd-repo-server", "copyutil"} <= set(skip)
    side = containers["kvsops"]
    assert side["command"] == ["/usr/local/bin/kvsops", "agent", "--", "/var/run/argocd/argocd-cmp-server"]
    sc = side["securityContext"]
    assert sc["runAsUser"] == 999 and sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m for m in side["volumeMounts"]}
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert mounts["/tmp"]["name"] != "tmp" and "emptyDir" in vols[mounts["/tmp"]["name"]]  # its own /tmp
    assert mounts["/home/argocd/cmp-server/config/plugin.yaml"]["subPath"] == "plugin.yaml"
    cm_name = vols[mounts["/home/argocd/cmp-server/config/plugin.yaml"]["name"]]["configMap"]["name"]
    # the hash suffix rewritten
    assert cm_name in {d["metadata"]["name"] for d in objs(proc.stdout) if d["kind"] == "ConfigMap"}
    key_vol = mounts["/keys/age"]["name"]
    assert vols[key_vol]["secret"]["secretName"] == "kvsops-age-key"
    main = containers["argocd-repo-server"]
    assert key_vol not in {m["name"] for m in main["volumeMounts"]}, "the age key must reach the sidecar only"
    assert {"var-files", "plugins"} <= {m["name"] for m in side["volumeMounts"]}
    assert any(e["name"] == "SOPS_AGE_KEY_FILE" and e["value"].startswith("/keys/age/") for e in side["env"])
    assert mounts["/etc/kvsops"]["readOnly"] is True


def test_example_applications_are_valid() -> None:
    apps = sorted((EXAMPLES / "argocd/applications").glob("*.yaml"))
    assert {p.stem for p in apps} >= {"kustomize", "helm", "plain"}
    from kvsops.hosts.argocd.settings import PARAMETERS

    plugin = yaml.safe_load((REPO / "argocd/plugin.yaml").read_text())
    name = f"{plugin['metadata']['name']}-{plugin['spec']['version']}"
    for p in apps:
        app = yaml.safe_load(p.read_text())
        assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
        src = app["spec"]["source"]
        assert src["plugin"]["name"] == name
        assert (EXAMPLES.parent / src["path"]).is_dir(), src["path"]
        for param in src["plugin"].get("parameters", []):
            assert param["name"] in PARAMETERS


def test_render_script_runs_every_example() -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLES / "argocd/render.py")], capture_output=True, timeout=180,
                          env={**os.environ, "PATH": os.pathsep.join([str(BIN), str(REPO / ".tools/bin"),
                                                                      os.environ.get("PATH", "")])})
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert "kind: Secret" in out and "ENC[" not in out


def test_policy_unknown_field_fails_closed_with_the_closest_name() -> None:
    """A misspelt selector would widen a rule (no `projects` left) and a misspelt key list would narrow
    it: unlike .sops.yaml (warnings), an unknown field refuses the whole policy, and says which."""
    from kvsops import errors, policy as pol

    with pytest.raises(errors.ConfigError) as ei:
        pol.parse_policy(json.dumps({"rules": [{"project": ["team-a"], "age": [DEMO_RECIPIENT]}]}), "p.yaml")
    assert ei.value.message == "key policy p.yaml: unknown field `rules[0].project`; did you mean `projects`?"
    assert ei.value.hint is not None and "projects, repos, age" in ei.value.hint
    with pytest.raises(errors.ConfigError, match=r"unknown field `verison`; did you mean `version`\?"):
        pol.parse_policy(json.dumps({"verison": 1, "rules": [{"projects": ["*"]}]}), "p.yaml")
    with pytest.raises(errors.ConfigError, match=r"`rules\[1\]\.azure_secret`; did you mean `azure_secrets`\?"):
        pol.parse_policy(json.dumps({"rules": [{"projects": ["*"]}, {"projects": ["*"], "azure_secret": []}]}), "p")
