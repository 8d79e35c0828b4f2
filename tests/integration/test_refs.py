"""ref+azurekeyvault:// and ref+sops:// references end to end: the real azure-identity and
azure-keyvault-secrets code against the HTTPS Key Vault emulator, through every host.

Identity is workload identity via the emulator's authority (AZURE_AUTHORITY_HOST); the vault is
127.0.0.1:PORT, a host with a dot, so references name it as a full host and the documented
KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE=false is set. A dead proxy keeps everything on loopback.
Hosts run as Argo CD / Helm run them (subprocesses, stdout checked empty on failure) or in-process
(kustomize generator, resolver) where the emulator's counters are the point.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("azure.identity")
pytest.importorskip("azure.keyvault.secrets")

from kvsops import api, errors  # noqa: E402
from kvsops.refs import resolve as references  # noqa: E402
from tests.azure_emulator import KeyVaultEmulator  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEMO_KEY = REPO / "examples" / "keys" / "demo-age-key.txt"
DEMO_RECIPIENT = (REPO / "examples" / "keys" / "demo-age-recipient.txt").read_text().strip()
KVSOPS = str(Path(sys.executable).parent / "kvsops")
_SCRUB_PREFIXES = ("AZURE_", "IDENTITY_", "MSI_", "IMDS_", "KVSOPS_", "ARGOCD_", "PARAM_", "SOPS_")
_SCRUB_NAMES = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "NO_PROXY", "no_proxy",
                "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")

DB_PASSWORD = "db-Pa55word-from-the-vault"
OLD_PASSWORD = "old-Pa55word-version-1"
CONFIG = "user: app\nport: 5432\ntls: true\nhosts: [a, b]\n"
SOPS_PASSWORD = "sops-file-password-x1"


class World:
    def __init__(self, emu: KeyVaultEmulator, mp: pytest.MonkeyPatch, tmp: Path) -> None:
        self.emu, self.tmp = emu, tmp
        for name in list(os.environ):
            if name.startswith(_SCRUB_PREFIXES) or name in _SCRUB_NAMES:
                mp.delenv(name, raising=False)
        env = emu.base_env()
        env["KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE"] = "false"
        env.update(emu.workload_identity_env("renderer", tmp / "federated-token"))
        env["SOPS_AGE_KEY_FILE"] = str(DEMO_KEY)
        env["HOME"] = str(tmp)
        for k, v in env.items():
            mp.setenv(k, v)
        self.env = dict(os.environ)
        self.host = emu.vault_url().removeprefix("https://")
        self.v_old = emu.set_secret("db-password", OLD_PASSWORD)
        self.v_new = emu.set_secret("db-password", DB_PASSWORD)
        emu.set_secret("app-config", CONFIG)
        emu.reset_counters()
        emu.secret_gets.clear()

    def ref(self, rest: str) -> str:
        return f"ref+azurekeyvault://{self.host}/{rest}"

    def session(self, **kw: Any) -> api.Session:
        return api.Session(env=self.env, **kw)

    def gets(self) -> int:
        return self.emu.counts["secret_get"]


@pytest.fixture
def w(emu: KeyVaultEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> World:
    return World(emu, monkeypatch, tmp_path)


def _no_secret(text: str) -> None:
    for s in (DB_PASSWORD, OLD_PASSWORD, SOPS_PASSWORD, "5432\n", "user: app"):
        assert s not in text
    assert "Traceback" not in text and "eyJ" not in text


def _encrypt(path: Path, doc: dict[str, Any]) -> None:
    from kvsops.keys import backend
    from kvsops.keys.base import KeyContext

    r = backend("age").recipient(DEMO_RECIPIENT, KeyContext(env={}, home=""))
    path.write_bytes(api.encrypt_bytes(yaml.safe_dump(doc).encode(), "yaml", [[r]]))


# ----------------------------------------------------------------------------- resolver + SDK


def test_typed_and_interpolated_references(w: World) -> None:
    tree = {
        "password": w.ref("db-password"),
        "port": w.ref("app-config#/port"),
        "tls": w.ref("app-config#/tls"),
        "hosts": w.ref("app-config#/hosts"),
        "whole": w.ref("app-config"),
        "url": f"postgres://{w.ref('app-config#/user')}+:{w.ref('db-password')}+@db:{w.ref('app-config#/port')}+/x",
        "list": [w.ref("db-password"), "plain"],
    }
    assert references.resolve([("values.yaml", tree)], w.session(), None) == 7
    assert tree == {
        "password": DB_PASSWORD, "port": 5432, "tls": True, "hosts": ["a", "b"], "whole": CONFIG,
        "url": f"postgres://app:{DB_PASSWORD}@db:5432/x", "list": [DB_PASSWORD, "plain"],
    }
    assert w.gets() == 2  # two distinct secrets, however many fragments and repeats


def test_versions(w: World) -> None:
    tree = {"old": w.ref(f"db-password/{w.v_old}"), "new": w.ref(f"db-password/{w.v_new}"),
            "latest": w.ref("db-password")}
    references.resolve([(None, tree)], w.session(), None)
    assert tree == {"old": OLD_PASSWORD, "new": DB_PASSWORD, "latest": DB_PASSWORD}
    assert set(w.emu.secret_gets) == {("db-password", w.v_old), ("db-password", w.v_new), ("db-password", "")}


@pytest.mark.parametrize("rest, why", [
    ("no-such-secret", "no such secret in the vault (HTTP 404 [SecretNotFound])"),
    ("db-password/" + "0" * 32, "no such version of the secret in the vault (HTTP 404"),
    ("app-config#/missing", "the key path is not in the secret"),
])
def test_missing_secret_version_or_key(w: World, rest: str, why: str) -> None:
    with pytest.raises(errors.ReferenceFailed) as e:
        references.resolve([("values.yaml", {"k": w.ref(rest)})], w.session(), None)
    msg = str(e.value)
    assert msg.startswith(f"values.yaml: {w.ref(rest)}: ") and why in msg
    _no_secret(msg)


def test_disabled_secret(w: World) -> None:
    w.emu.set_secret_enabled("db-password", False, w.v_old)
    tree = {"k": w.ref(f"db-password/{w.v_old}")}
    disabled = r"the secret is disabled \(HTTP 403 \[Forbidden/SecretDisabled\]\)"
    with pytest.raises(errors.ReferenceFailed, match=disabled) as e:
        references.resolve([(None, tree)], w.session(), None)
    _no_secret(str(e.value))
    latest = {"k": w.ref("db-password")}
    references.resolve([(None, latest)], w.session(), None)
    assert latest == {"k": DB_PASSWORD}


def test_missing_permission_names_it(w: World) -> None:
    w.emu.grant("renderer", "get", "decrypt")  # key permissions only: no secrets/get
    with pytest.raises(errors.ReferenceFailed) as e:
        references.resolve([(None, {"k": w.ref("db-password")})], w.session(), None)
    msg = str(e.value)
    assert "HTTP 403 [Forbidden/ForbiddenByRbac]" in msg and "'get' secret permission" in msg
    assert "Key Vault Secrets User" in msg and "DefaultAzureCredential" in msg
    _no_secret(msg)


def test_throttling_retries_with_retry_after(w: World) -> None:
    w.emu.throttle(2, retry_after=0.3, ops=["secret_get"])
    tree = {"k": w.ref("db-password")}
    start = time.monotonic()
    references.resolve([(None, tree)], w.session(), None)
    assert tree == {"k": DB_PASSWORD} and time.monotonic() - start >= 0.55
    assert w.gets() == 3


def test_throttled_past_the_retries(w: World) -> None:
    w.emu.throttle(50, retry_after=0.01, ops=["secret_get"])
    with pytest.raises(errors.ReferenceFailed, match=r"still throttled after \d+ retries \(HTTP 429 \[Throttled\]\)"):
        references.resolve([(None, {"k": w.ref("db-password")})], w.session(), None)


def test_deadline(w: World) -> None:
    w.emu.hang(1, ops=["secret_get"])
    start = time.monotonic()
    with pytest.raises(errors.Timeout, match="did not finish before the deadline") as e:
        references.resolve([(None, {"k": w.ref("db-password")})], w.session(deadline_seconds=1.5), None)
    assert time.monotonic() - start < 10
    assert e.value.exit_code == 124


def test_one_fetch_per_distinct_reference_across_files_and_calls(w: World) -> None:
    for i in range(8):
        w.emu.set_secret(f"s{i}", f"{{n: {i}}}")
    w.emu.reset_counters()
    session = w.session()
    trees = [{"a": w.ref(f"s{i % 8}#/n"), "b": w.ref(f"s{i % 8}"), "c": w.ref("db-password")} for i in range(40)]
    references.resolve([(f"f{i}", t) for i, t in enumerate(trees)], session, None)
    references.resolve([("again", {"x": w.ref("s3#/n")})], session, None)
    assert w.gets() == 9
    assert w.emu.counts["challenge"] == 1 and w.emu.token_requests["aad"] == 1
    assert trees[11] == {"a": 3, "b": "{n: 3}", "c": DB_PASSWORD}


# ----------------------------------------------------------------------------- Helm downloader


def _downloader(w: World, url: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[bytes]:
    env = {**w.env, **extra}
    return subprocess.run([KVSOPS, "helm", "downloader", "", "", "", url], cwd=cwd, env=env,
                          capture_output=True, timeout=120)


def test_helm_downloader_sops_values_with_references(w: World, tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    chart.mkdir()
    _encrypt(chart / "other.enc.yaml", {"db": {"password": SOPS_PASSWORD}})
    _encrypt(chart / "secrets.yaml", {
        "db": {"password": w.ref("db-password"), "port": w.ref("app-config#/port")},
        "fromSops": "ref+sops://other.enc.yaml#/db/password",
        "literal": "kept",
    })
    p = _downloader(w, "kvsops+refs://secrets.yaml", chart)
    assert p.returncode == 0, p.stderr.decode()
    assert yaml.safe_load(p.stdout) == {
        "db": {"password": DB_PASSWORD, "port": 5432}, "fromSops": SOPS_PASSWORD, "literal": "kept"}
    plain = chart / "values-refs.yaml"
    plain.write_text(f"image: nginx\npassword: {w.ref('db-password')}\n")
    p = _downloader(w, "kvsops+refs://values-refs.yaml", chart)
    assert p.returncode == 0 and yaml.safe_load(p.stdout) == {"image": "nginx", "password": DB_PASSWORD}
    # kvsops:// (no +refs) leaves references alone: the scheme is the opt-in
    p = _downloader(w, "kvsops://secrets.yaml", chart)
    assert p.returncode == 0 and yaml.safe_load(p.stdout)["db"]["password"] == w.ref("db-password")


def test_helm_downloader_errors_leave_stdout_empty(w: World, tmp_path: Path) -> None:
    (tmp_path / "v.yaml").write_text(f"a: {w.ref('nope')}\n")
    (tmp_path / "escape.yaml").write_text("a: ref+sops://../outside.enc.yaml#/x\n")
    for name, why in (("v.yaml", "SecretNotFound"), ("escape.yaml", "leaves the current directory")):
        p = _downloader(w, f"kvsops+refs://{name}", tmp_path)
        assert p.returncode != 0 and p.stdout == b""
        err = p.stderr.decode()
        assert why in err and "ref+" in err
        _no_secret(err)


def test_helm_wrapper_routes_files_with_references(w: World, tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    recorder = tmp_path / "bin" / "helm"  # a recording helm, outside the chart root
    recorder.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    recorder.chmod(0o755)
    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "plain.yaml").write_text("a: 1\n")
    (chart / "refs.yaml").write_text(f"a: {w.ref('db-password')}\n")
    _encrypt(chart / "secrets.yaml", {"b": 2})
    from tests import helm_harness as hh

    plugins = tmp_path / "helm-plugins"
    hh.install(hh.LEGACY_GETTER, plugins)  # the wrapper checks that a getter handles what it writes
    env = {**w.env, "HELM_BIN": str(recorder), "HELM_PLUGINS": str(plugins)}
    args = ["template", "x", ".", "-f", "plain.yaml", "-f", "refs.yaml", "-f", "secrets.yaml"]
    p = subprocess.run([KVSOPS, "helm", "--", *args], cwd=chart, env=env, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    assert json.loads(p.stdout)[3:] == ["-f", "plain.yaml", "-f", "refs.yaml", "-f", "kvsops://./secrets.yaml"]
    p = subprocess.run([KVSOPS, "helm", "--", *args], cwd=chart, env={**env, "KVSOPS_REFS": "true"},
                       capture_output=True, timeout=60)
    assert json.loads(p.stdout)[3:] == ["-f", "plain.yaml", "-f", "kvsops+refs://./refs.yaml",
                                        "-f", "kvsops+refs://./secrets.yaml"]
    assert w.gets() == 0  # the wrapper itself resolves nothing


# ----------------------------------------------------------------------------- kustomize generator


def test_kustomize_generator_references(w: World, tmp_path: Path) -> None:
    from kvsops.hosts.kustomize.generate import generate

    _encrypt(tmp_path / "app.enc.yaml", {"DB_PASSWORD": w.ref("db-password"), "DB_PORT": w.ref("app-config#/port"),
                                         "DSN": f"app:{w.ref('db-password')}+@db"})
    cfg = {"apiVersion": "kvsops/v1", "kind": "SopsGenerator", "metadata": {"name": "g"},
           "secrets": [{"name": "with-refs", "references": True, "envs": ["app.enc.yaml"],
                        "options": {"disableNameSuffixHash": True}},
                       {"name": "without", "envs": ["app.enc.yaml"], "options": {"disableNameSuffixHash": True}}]}
    out = generate([cfg], root=tmp_path, env=w.env, session=w.session())
    data = {o["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in o["data"].items()} for o in out}
    assert data["with-refs"] == {"DB_PASSWORD": DB_PASSWORD, "DB_PORT": "5432", "DSN": f"app:{DB_PASSWORD}@db"}
    assert data["without"]["DB_PASSWORD"] == w.ref("db-password")
    assert w.gets() == 2


def test_one_token_for_a_key_and_a_secret_in_one_render(w: World, tmp_path: Path) -> None:
    """A render that unwraps an azure_kv data key and reads a Key Vault secret uses one credential:
    one token request for both (kvsops.azure.common's per-process state)."""
    from kvsops.hosts.kustomize.generate import generate

    w.emu.create_key("sops-key")
    doc = {"DB_PASSWORD": w.ref("db-password"), "PLAIN": "from-the-file"}
    rec = api.Session(env=w.env).recipient("azure_kv", w.emu.key_url("sops-key"))
    (tmp_path / "app.enc.yaml").write_bytes(api.encrypt_bytes(yaml.safe_dump(doc).encode(), "yaml", [[rec]]))
    w.emu.reset_counters()
    cfg = {"apiVersion": "kvsops/v1", "kind": "SopsGenerator", "metadata": {"name": "g"},
           "secrets": [{"name": "app", "references": True, "envs": ["app.enc.yaml"],
                        "options": {"disableNameSuffixHash": True}}]}
    out = generate([cfg], root=tmp_path, env=w.env, session=w.session())
    data = {k: base64.b64decode(v).decode() for k, v in out[0]["data"].items()}
    assert data == {"DB_PASSWORD": DB_PASSWORD, "PLAIN": "from-the-file"}
    assert w.emu.counts["decrypt"] == 1 and w.gets() == 1
    assert sum(w.emu.token_requests.values()) == 1, dict(w.emu.token_requests)


# ----------------------------------------------------------------------------- Argo CD generate


def _app(tmp: Path, secret_ref: str, extra: str = "") -> Path:
    app = tmp / "repo" / "apps" / "a"
    app.mkdir(parents=True)
    b64 = base64.b64encode(f"x-{secret_ref}+-y".encode()).decode()
    (app / "secret.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: team-a}\n"
        f"stringData:\n  password: {secret_ref}\ndata:\n  wrapped: {b64}\n" + extra)
    (app / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n")
    return app


def _generate(w: World, app: Path, **extra: str) -> subprocess.CompletedProcess[bytes]:
    env = {**w.env, "ARGOCD_APP_NAME": "a", "ARGOCD_APP_NAMESPACE": "team-a", "ARGOCD_APP_PROJECT_NAME": "team-a",
           "ARGOCD_APP_SOURCE_REPO_URL": "https://git.example/team-a", "ARGOCD_APP_SOURCE_PATH": "apps/a",
           "ARGOCD_ENV_KVSOPS_REFS": "true", **extra}
    return subprocess.run([KVSOPS, "argocd", "generate"], cwd=app, env=env, capture_output=True, timeout=120)


def _secret(stream: bytes) -> dict[str, Any]:
    return next(d for d in yaml.safe_load_all(stream) if d and d["kind"] == "Secret")


def test_argocd_resolves_references_in_secrets(w: World, tmp_path: Path) -> None:
    app = _app(tmp_path, w.ref("db-password"))
    policy = {"rules": [{"projects": ["team-a"], "azure_secrets": [f"{w.emu.vault_url()}/secrets/db-password"]}]}
    p = _generate(w, app, KVSOPS_POLICY=json.dumps(policy))
    assert p.returncode == 0, p.stderr.decode()
    s = _secret(p.stdout)
    assert s["stringData"] == {"password": DB_PASSWORD}
    assert base64.b64decode(s["data"]["wrapped"]).decode() == f"x-{DB_PASSWORD}-y"
    assert w.gets() == 1
    off = _generate(w, app, ARGOCD_ENV_KVSOPS_REFS="false")  # not opted in: left alone
    assert off.returncode == 0 and _secret(off.stdout)["stringData"]["password"] == w.ref("db-password")


@pytest.mark.parametrize("allowed", [
    [],  # a policy without azure_secrets: fail closed
    ["https://other.vault.azure.net/secrets/*"],
    ["{vault}/secrets/another-secret"],
    ["{vault}/secrets/db-password/0123456789abcdef0123456789abcdef"],  # pinned version; the ref asks for latest
])
def test_argocd_policy_refuses_before_any_call(w: World, tmp_path: Path, allowed: list[str]) -> None:
    app = _app(tmp_path, w.ref("db-password"))
    rule: dict[str, Any] = {"projects": ["team-a"], "age": [DEMO_RECIPIENT]}
    if allowed:
        rule["azure_secrets"] = [a.format(vault=w.emu.vault_url()) for a in allowed]
    p = _generate(w, app, KVSOPS_POLICY=json.dumps({"rules": [rule]}))
    assert p.returncode == 11 and p.stdout == b""
    err = p.stderr.decode()
    assert "refused by policy" in err and w.ref("db-password") in err and "[POLICY_REFUSED]" in err
    assert sum(w.emu.counts.values()) == 0 and sum(w.emu.token_requests.values()) == 0


def test_argocd_policy_through_the_generator_grant(w: World, tmp_path: Path, tools: Any) -> None:
    """kustomize mode: the KRM function (a child) gets the policy from the grant and refuses too."""
    app = tmp_path / "repo" / "apps" / "a"
    app.mkdir(parents=True)
    _encrypt(app / "app.enc.yaml", {"PASSWORD": w.ref("db-password")})
    (app / "gen.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kvsops/v1", "kind": "SopsGenerator", "metadata": {"name": "g", "annotations": {
            "config.kubernetes.io/function": "exec:\n  path: kvsops-krm\n"}},
        "secrets": [{"name": "s", "references": True, "envs": ["app.enc.yaml"]}]}))
    (app / "kustomization.yaml").write_text("generators: [gen.yaml]\n")
    rule = {"projects": ["team-a"], "age": [DEMO_RECIPIENT]}
    env = {"KVSOPS_KUSTOMIZE_BIN": str(tools.kustomize58)}
    p = _generate(w, app, KVSOPS_POLICY=json.dumps({"rules": [rule]}), **env)
    assert p.returncode != 0 and p.stdout == b"" and sum(w.emu.counts.values()) == 0
    rule["azure_secrets"] = [f"{w.emu.vault_url()}/secrets/*"]
    p = _generate(w, app, KVSOPS_POLICY=json.dumps({"rules": [rule]}), **env)
    assert p.returncode == 0, p.stderr.decode()
    assert base64.b64decode(_secret(p.stdout)["data"]["PASSWORD"]).decode() == DB_PASSWORD


def test_argocd_reference_outside_a_secret_is_an_error(w: World, tmp_path: Path) -> None:
    app = _app(tmp_path, w.ref("db-password"))
    (app / "cm.yaml").write_text(
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\ndata: {{a: {w.ref('db-password')}}}\n"
    )
    p = _generate(w, app)
    assert p.returncode != 0 and p.stdout == b""
    assert "ConfigMap c" in p.stderr.decode() and "only in Secrets" in p.stderr.decode()
    assert w.gets() == 0
