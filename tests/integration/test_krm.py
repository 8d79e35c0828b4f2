"""kvsops under the real kustomize: ``kustomize build --enable-alpha-plugins --enable-exec`` with
5.6 (``exec: {path: kvsops-krm}``) and 5.8 (also ``exec: {path: kvsops, args: [krm]}``), and
``kubectl kustomize --enable-alpha-plugins`` for the legacy exec plugin.

Inputs are encrypted by kvsops to a throwaway age key made per test.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from kvsops.hosts.kustomize.hashing import name_hash
from tests.conftest import REPO_ROOT
from tests.keys import AgeKey
from tests.krm_support import VENV_BIN, b64d, docs

VERSIONS = ["kustomize56", "kustomize58"]
KRM_FN = {"config.kubernetes.io/function": "exec:\n  path: kvsops-krm\n"}


def write_yaml(path: Path, *objs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(objs, sort_keys=False))
    return path


def gen_config(name: str = "g", fn: dict | None = KRM_FN, **fields: object) -> dict:
    meta: dict = {"name": name}
    if fn:
        meta["annotations"] = dict(fn)
    return {"apiVersion": "kvsops/v1", "kind": "SopsGenerator", "metadata": meta, **fields}


def build(tools, version: str, path: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    argv = [tools[version], "build", "--enable-alpha-plugins", "--enable-exec", *extra, str(path)]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def ok(proc: subprocess.CompletedProcess[str]) -> list[dict]:
    assert proc.returncode == 0, proc.stderr
    return docs(proc.stdout)


def secret_data(obj: dict) -> dict[str, bytes]:
    return {k: b64d(v) for k, v in obj.get("data", {}).items()}


# ----------------------------------------------------------------------------- the shipped example


@pytest.mark.parametrize("version", VERSIONS)
def test_example_overlay(tools, version: str) -> None:  # type: ignore[no-untyped-def]
    env = tools.env(SOPS_AGE_KEY_FILE=str(REPO_ROOT / "examples" / "keys" / "demo-age-key.txt"))
    env["PATH"] = f"{VENV_BIN}:{env['PATH']}"
    objs = ok(build(tools, version, REPO_ROOT / "examples" / "kustomize" / "overlay", env))
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == ["Deployment", "Secret", "Secret"]  # the generator configs (local-config) are gone
    secrets = {o["metadata"]["name"].rsplit("-", 1)[0]: o for o in objs if o["kind"] == "Secret"}
    db, extra = secrets["prod-app-db"], secrets["prod-app-extra"]
    for s in (db, extra):
        assert s["metadata"]["namespace"] == "prod"
        assert s["metadata"]["name"].endswith("-" + name_hash(s))
        assert "annotations" not in s["metadata"]
    data = secret_data(db)
    assert data["DB_USER"] == b"demo" and data["DB_PASSWORD"] == b"prod-demo-password"  # merged
    assert data["api-token"] == b"demo-token-not-a-secret" and b"host = db.demo.svc" in data["app.ini"]
    assert list(secret_data(extra)) == ["settings.json"] and b'"prod"' in secret_data(extra)["settings.json"]
    dep = next(o for o in objs if o["kind"] == "Deployment")
    spec = dep["spec"]["template"]["spec"]
    assert spec["containers"][0]["envFrom"][0]["secretRef"]["name"] == db["metadata"]["name"]
    assert spec["volumes"][0]["secret"]["secretName"] == extra["metadata"]["name"]


# ----------------------------------------------------------------------------- our kind, end to end


def _project(tmp: Path, key: AgeKey, fn: dict | None = KRM_FN) -> Path:
    base, overlay = tmp / "base", tmp / "overlay"
    key.write(base / "db.enc.env", "USER=app\nPASS=base-pass\n")
    key.write(base / "app.enc.yaml", "db:\n    password: nested-pass\n    port: 5432\n")
    key.write(base / "blob.bin", bytes(range(256)))
    key.write(base / "cm.enc.yaml",
              "apiVersion: v1\nkind: ConfigMap\nmetadata:\n    name: settings\ndata:\n    mode: fast\n")
    (base / "conf.j2").write_text("password={{ app.db.password }}\nport={{ app.db.port }}\n")
    write_yaml(base / "gen.yaml", gen_config(
        "base-gen", fn, files=["cm.enc.yaml"], options={"labels": {"team": "core"}},
        secrets=[
            {"name": "db", "envs": ["db.enc.env"], "literals": ["nested=app.enc.yaml#/db/password"],
             "templates": [{"key": "conf", "template": "conf.j2", "values": {"app": "app.enc.yaml"}}]},
            {"name": "blob", "binaryFiles": ["raw=blob.bin"], "type": "kvsops.dev/blob"},
            {"name": "fixed", "envs": ["db.enc.env"], "options": {"disableNameSuffixHash": True, "immutable": True}},
        ]))
    write_yaml(base / "kustomization.yaml", {"generators": ["gen.yaml"]})
    key.write(overlay / "prod.enc.env", "PASS=prod-pass\n")
    key.write(overlay / "blob.bin", b"replaced\x00")
    write_yaml(overlay / "gen.yaml", gen_config(
        "overlay-gen", fn, secrets=[
            {"name": "db", "envs": ["prod.enc.env"], "options": {"behavior": "merge"}},
            {"name": "blob", "files": ["other=blob.bin"], "options": {"behavior": "replace"}},
        ]))
    write_yaml(overlay / "kustomization.yaml",
               {"resources": ["../base"], "namePrefix": "prod-", "namespace": "prod", "generators": ["gen.yaml"]})
    return overlay


def _check_project(objs: list[dict]) -> None:
    names = {o["metadata"]["name"]: o for o in objs}
    cm = names["prod-settings"]
    assert cm["kind"] == "ConfigMap" and cm["data"] == {"mode": "fast"} and cm["metadata"]["namespace"] == "prod"
    secrets = [o for o in objs if o["kind"] == "Secret"]
    assert len(secrets) == 3
    db = next(s for s in secrets if s["metadata"]["name"].startswith("prod-db-"))
    blob = next(s for s in secrets if s["metadata"]["name"].startswith("prod-blob-"))
    fixed = names["prod-fixed"]
    for s in (db, blob):
        assert s["metadata"]["name"].rsplit("-", 1)[1] == name_hash(s)
        assert s["metadata"]["namespace"] == "prod"
    assert secret_data(db) == {"USER": b"app", "PASS": b"prod-pass", "nested": b"nested-pass",
                               "conf": b"password=nested-pass\nport=5432\n"}
    assert db["metadata"]["labels"] == {"team": "core"} and db["type"] == "Opaque"
    assert secret_data(blob) == {"other": b"replaced\x00"}  # replace drops the base keys
    assert secret_data(fixed) == {"USER": b"app", "PASS": b"base-pass"} and fixed["immutable"] is True
    for o in objs:
        assert "annotations" not in o["metadata"], o["metadata"]


@pytest.mark.parametrize("version", VERSIONS)
def test_our_kind_overlay_prefix_namespace_behaviors(tools, version: str, tmp_path: Path, key: AgeKey) -> None:  # type: ignore[no-untyped-def]
    _check_project(ok(build(tools, version, _project(tmp_path, key), key.env(tools.env()))))


def test_exec_args_form_on_58_and_rejected_by_56(tools, tmp_path: Path, key: AgeKey) -> None:  # type: ignore[no-untyped-def]
    overlay = _project(tmp_path, key, fn={"config.kubernetes.io/function": "exec:\n  path: kvsops\n  args: [krm]\n"})
    env = key.env(tools.env())
    _check_project(ok(build(tools, "kustomize58", overlay, env)))
    proc = build(tools, "kustomize56", overlay, env)
    assert proc.returncode != 0 and "args" in proc.stderr and proc.stdout == ""


def test_legacy_plugin_kubectl(tools, tmp_path: Path, key: AgeKey) -> None:  # type: ignore[no-untyped-def]
    from kvsops.hosts.kustomize.install import install

    install(tmp_path / "plugins")
    overlay = _project(tmp_path / "p", key, fn=None)
    env = key.env(tools.env(KUSTOMIZE_PLUGIN_HOME=str(tmp_path / "plugins")))
    proc = subprocess.run([tools.kubectl, "kustomize", "--enable-alpha-plugins", str(overlay)],
                          env=env, capture_output=True, text=True, timeout=120)
    _check_project(ok(proc))


@pytest.mark.parametrize("version", VERSIONS)
def test_hash_equals_kustomize_builtin_secret_generator(tools, version: str, tmp_path: Path, key: AgeKey) -> None:  # type: ignore[no-untyped-def]
    """Same content, same suffix: our kind hashes exactly like kustomize's own secretGenerator."""
    key.write(tmp_path / "kv.enc.env", "A=1\nB=two words\nC=<&>é\n")
    key.write(tmp_path / "blob.bin", b"line1\nline2\n\xff")
    (tmp_path / "plain.bin").write_bytes(b"line1\nline2\n\xff")
    write_yaml(tmp_path / "gen.yaml", gen_config(secrets=[
        {"name": "ours-env", "envs": ["kv.enc.env"]},
        {"name": "ours-file", "files": ["f=blob.bin"]},
        {"name": "ours-typed", "envs": ["kv.enc.env"], "type": "kubernetes.io/tls-like"},
    ]))
    write_yaml(tmp_path / "kustomization.yaml", {
        "generators": ["gen.yaml"],
        "secretGenerator": [
            {"name": "builtin-env", "literals": ["A=1", "B=two words", "C=<&>é"]},
            {"name": "builtin-file", "files": ["f=plain.bin"]},
            {"name": "builtin-typed", "literals": ["A=1", "B=two words", "C=<&>é"], "type": "kubernetes.io/tls-like"},
        ]})
    objs = ok(build(tools, version, tmp_path, key.env(tools.env())))
    suffix = {o["metadata"]["name"].rsplit("-", 1)[0]: o["metadata"]["name"].rsplit("-", 1)[1] for o in objs}
    for what in ("env", "file", "typed"):
        assert suffix[f"ours-{what}"] == suffix[f"builtin-{what}"]
    for o in objs:
        assert o["metadata"]["name"].endswith("-" + name_hash(o))
    assert suffix["ours-env"] != suffix["ours-typed"]


# ----------------------------------------------------------------------------- SopsSecretGenerator


@pytest.mark.parametrize("mode", ["krm-5.6", "krm-5.8", "legacy-kubectl"])
def test_sopssecretgenerator(tools, mode: str, tmp_path: Path, key: AgeKey) -> None:  # type: ignore[no-untyped-def]
    from kvsops.hosts.kustomize.install import install

    key.write(tmp_path / "v.enc.env", "A=\"kept\" # as is\n")
    key.write(tmp_path / "v.enc.yaml", "B: 2\n")
    meta: dict = {"name": "app"}
    if mode.startswith("krm"):
        meta["annotations"] = {"config.kubernetes.io/function": "exec:\n  path: kvsops-krm\n"}
    gen = {"apiVersion": "goabout.com/v1beta1", "kind": "SopsSecretGenerator",
           "metadata": meta, "behavior": "merge", "envs": ["v.enc.env", "v.enc.yaml"]}
    write_yaml(tmp_path / "gen.yaml", gen, {**gen, "metadata": {**meta, "name": "fresh"}, "behavior": "create",
                                            "files": ["k=v.enc.yaml"]})
    write_yaml(tmp_path / "base.yaml", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app"},
                                        "type": "Opaque", "data": {"OLD": "eA=="}})
    write_yaml(tmp_path / "kustomization.yaml", {"resources": ["base.yaml"], "generators": ["gen.yaml"]})
    install(tmp_path / "plugins")
    env = key.env(tools.env(KUSTOMIZE_PLUGIN_HOME=str(tmp_path / "plugins")))
    if mode == "legacy-kubectl":
        proc = subprocess.run([tools.kubectl, "kustomize", "--enable-alpha-plugins", str(tmp_path)],
                              env=env, capture_output=True, text=True, timeout=120)
    else:
        proc = build(tools, "kustomize56" if mode == "krm-5.6" else "kustomize58", tmp_path, env)
    merged, fresh = sorted(ok(proc), key=lambda o: o["metadata"]["name"])
    assert secret_data(merged) == {"OLD": b"x", "A": b'"kept" # as is', "B": b"2"}
    assert merged["metadata"]["name"] == "app"  # merged into a plain resource: kustomize keeps its name
    assert secret_data(fresh) == {"A": b'"kept" # as is', "B": b"2", "k": b"B: 2\n"}
    assert fresh["metadata"]["name"] == f"fresh-{name_hash(fresh)}"  # hash on by default


# ----------------------------------------------------------------------------- safety


def _escape_setup(tmp_path: Path, key: AgeKey, how: str) -> tuple[Path, str]:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    key.write(outside / "other-tenant.enc.env", "TOKEN=other-tenant-plaintext\n")
    key.write(root / "mine.enc.env", "MINE=mine-plaintext\n")
    ref = {
        "absolute": str(outside / "other-tenant.enc.env"),
        "dotdot": "../outside/other-tenant.enc.env",
        "symlink": "link.enc.env",
        "symlinked-dir": "shared/other-tenant.enc.env",
    }[how]
    if how == "symlink":
        (root / "link.enc.env").symlink_to(outside / "other-tenant.enc.env")
    if how == "symlinked-dir":
        (root / "shared").symlink_to(outside)
    write_yaml(root / "gen.yaml", gen_config(secrets=[{"name": "mine", "envs": ["mine.enc.env"]},
                                                     {"name": "stolen", "envs": [ref]}]))
    write_yaml(root / "kustomization.yaml", {"generators": ["gen.yaml"]})
    return root, ref


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink", "symlinked-dir"])
@pytest.mark.parametrize("version", VERSIONS)
def test_path_escapes_are_refused(tools, version: str, how: str, tmp_path: Path, key: AgeKey) -> None:  # type: ignore[no-untyped-def]
    root, ref = _escape_setup(tmp_path, key, how)
    proc = build(tools, version, root, key.env(tools.env()))
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "PATH_REFUSED" in proc.stderr and ref in proc.stderr and "'stolen'" in proc.stderr
    assert "plaintext" not in proc.stderr


def test_outside_root_opt_out(tools, tmp_path: Path, key: AgeKey) -> None:  # type: ignore[no-untyped-def]
    root, _ = _escape_setup(tmp_path, key, "dotdot")
    env = {**key.env(tools.env()), "KVSOPS_ALLOW_OUTSIDE_ROOT": "true"}
    objs = ok(build(tools, "kustomize58", root, env))
    assert any(secret_data(o).get("TOKEN") == b"other-tenant-plaintext" for o in objs)


def _two_secrets(tmp_path: Path, key: AgeKey) -> Path:
    key.write(tmp_path / "good.enc.env", "GOOD=good-plaintext\n")
    key.write(tmp_path / "bad.enc.yaml", "db:\n    password: bad-plaintext\n")
    write_yaml(tmp_path / "gen.yaml", gen_config(secrets=[{"name": "good", "envs": ["good.enc.env"]},
                                                         {"name": "bad", "literals": ["p=bad.enc.yaml#/db/password"]}]))
    write_yaml(tmp_path / "kustomization.yaml", {"generators": ["gen.yaml"]})
    return tmp_path / "bad.enc.yaml"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("damage", ["value", "mac", "other-key"])
def test_tampered_or_undecryptable_input_fails_the_whole_build(  # type: ignore[no-untyped-def]
    tools, version: str, damage: str, tmp_path: Path, key: AgeKey
) -> None:
    bad = _two_secrets(tmp_path, key)
    text = bad.read_text()
    if damage == "value":  # splice in a ciphertext made under another data key
        other = key.encrypt(b"db:\n    password: swapped\n", "yaml").decode()
        line = next(ln for ln in other.splitlines() if "password:" in ln)
        text = "\n".join(line if "password:" in ln else ln for ln in text.splitlines()) + "\n"
        codes = ("DECRYPT_VALUE",)  # encrypted under another data key: its GCM tag fails
    elif damage == "mac":
        text = text.replace("mac: ENC[AES256_GCM,data:", "mac: ENC[AES256_GCM,data:AAAA")
        codes = ("MAC_MISMATCH",)
    else:
        stranger = AgeKey(_mkdir(tmp_path / "stranger"))
        text = stranger.encrypt(b"db:\n    password: bad-plaintext\n", "yaml").decode()
        codes = ("NO_KEY",)
    bad.write_text(text)
    proc = build(tools, version, tmp_path, key.env(tools.env()))
    assert proc.returncode != 0
    assert proc.stdout == ""  # no partial Secret: not even the good one
    assert any(c in proc.stderr for c in codes) and "bad.enc.yaml" in proc.stderr and "'bad'" in proc.stderr
    for secret in ("good-plaintext", "bad-plaintext", "swapped"):
        assert secret not in proc.stderr


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def test_rendering_writes_no_file(tools, tmp_path: Path, key: AgeKey) -> None:  # type: ignore[no-untyped-def]
    overlay = _project(tmp_path / "p", key)
    scratch = _mkdir(tmp_path / "tmpdir")

    def snapshot() -> dict[str, float]:
        return {str(p): p.stat().st_mtime for p in (tmp_path / "p").rglob("*")}

    before = snapshot()
    env = key.env(tools.env(TMPDIR=str(scratch), TMP=str(scratch), TEMP=str(scratch)))
    _check_project(ok(build(tools, "kustomize58", overlay, env)))
    assert snapshot() == before
    assert list(scratch.iterdir()) == []
    assert not list((tmp_path / "p").rglob("__pycache__"))


@pytest.mark.parametrize("mode", ["krm-5.6", "legacy-kubectl"])
def test_string_values_stay_strings_in_yaml_12(tools, mode: str, tmp_path: Path, key: AgeKey) -> None:  # type: ignore[no-untyped-def]
    """PyYAML writes YAML 1.1; kustomize reads 1.2: "1e3" or "0o17" must not become numbers."""
    from kvsops.hosts.kustomize.install import install

    values = {"A": "1e3", "B": "0o17", "C": "0b101", "D": "+12", "E": "2024-01-01", "F": "~", "G": "multi\\nline"}
    key.write(tmp_path / "v.enc.env", "".join(f"{k}={v}\n" for k, v in values.items()))
    meta: dict = {"name": "k"}
    if mode.startswith("krm"):
        meta["annotations"] = {"config.kubernetes.io/function": "exec:\n  path: ksops\n"}
    write_yaml(tmp_path / "gen.yaml", {"apiVersion": "viaduct.ai/v1", "kind": "ksops", "metadata": meta,
                                       "secretFrom": [{"metadata": {"name": "s"}, "envs": ["v.enc.env"]}]})
    write_yaml(tmp_path / "kustomization.yaml", {"generators": ["gen.yaml"]})
    install(tmp_path / "plugins")
    env = key.env(tools.env(KUSTOMIZE_PLUGIN_HOME=str(tmp_path / "plugins")))
    env["PATH"] = f"{tmp_path / 'plugins'}:{env['PATH']}"
    if mode == "legacy-kubectl":
        proc = subprocess.run([tools.kubectl, "kustomize", "--enable-alpha-plugins", str(tmp_path)],
                              env=env, capture_output=True, text=True, timeout=120)
    else:
        proc = build(tools, "kustomize56", tmp_path, env)
    (s,) = ok(proc)
    assert s["stringData"] == {**values, "G": "multi\\nline"}  # godotenv keeps an unquoted \n literal


@pytest.mark.parametrize("version", VERSIONS)
def test_a_misspelt_field_fails_the_build_and_names_it(tools, version: str, tmp_path: Path, key: AgeKey) -> None:  # type: ignore[no-untyped-def]
    """`env:` for `envs:` used to build a Secret without those keys; now the build fails, and the
    one error line says which field, where, and what was meant."""
    key.write(tmp_path / "db.enc.env", "PASSWORD=typo-plaintext\n")
    write_yaml(tmp_path / "gen.yaml", gen_config(secrets=[{"name": "db", "env": ["db.enc.env"]}]))
    write_yaml(tmp_path / "kustomization.yaml", {"generators": ["gen.yaml"]})
    proc = build(tools, version, tmp_path, key.env(tools.env()))
    assert proc.returncode != 0 and proc.stdout == ""
    ours = [ln for ln in proc.stderr.splitlines() if ln.startswith("kvsops: ")]
    assert ours[0] == ("kvsops: error: SopsGenerator 'g': unknown field `secrets[0].env`; did you mean `envs`? "
                       "[GENERATOR]"), proc.stderr
    assert ours[1].startswith("kvsops: hint: the fields of `secrets[0]` are: name, ") and len(ours) == 2
    assert "typo-plaintext" not in proc.stderr


def test_a_relative_key_file_that_is_not_there_says_where_it_was_looked_for(tools, tmp_path: Path, key: AgeKey) -> None:  # type: ignore[no-untyped-def]
    """kustomize runs the function in the kustomization root: a SOPS_AGE_KEY_FILE relative to the
    shell's directory is looked up there, and the error says so."""
    app = _mkdir(tmp_path / "app")
    key.write(app / "db.enc.env", "A=1\n")
    write_yaml(app / "gen.yaml", gen_config(secrets=[{"name": "db", "envs": ["db.enc.env"]}]))
    write_yaml(app / "kustomization.yaml", {"generators": ["gen.yaml"]})
    env = {**key.env(tools.env()), "SOPS_AGE_KEY_FILE": "keys/age-key.txt"}  # relative to tmp_path, not app
    proc = build(tools, "kustomize58", app, env)
    assert proc.returncode != 0 and proc.stdout == ""
    said = (f"SOPS_AGE_KEY_FILE: file keys/age-key.txt does not exist in {app} (a relative path is resolved from "
            "the working directory, which under kustomize is the kustomization root: use an absolute path)")
    assert said in proc.stderr
