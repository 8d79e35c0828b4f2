"""Generator logic in process: the three kinds, root confinement, dotenv readers, KRM protocol.

Inputs are encrypted by kvsops to a throwaway age key; nothing here runs kustomize (see
tests/integration/test_krm.py for that).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from kvsops import errors
from kvsops.hosts.kustomize import common, dotenv, krm
from kvsops.hosts.kustomize.generate import generate
from kvsops.hosts.kustomize.paths import Root
from tests.keys import AgeKey
from tests.krm_support import b64d, by_name


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    r = tmp_path / "app"
    r.mkdir()
    return r


def gen(configs: list[dict], root: Path, key: AgeKey, **env: str) -> list[dict]:
    return generate(configs, root=root, env={**key.env(), **env})


def ours(**fields: object) -> dict:
    return {"apiVersion": "kvsops/v1", "kind": "SopsGenerator", "metadata": {"name": "g"}, **fields}


# ----------------------------------------------------------------------------- SopsGenerator


def test_sopsgenerator_all_fields(root: Path, key: AgeKey) -> None:
    key.write(root / "db.enc.env", "USER=app\nPASS=p$w \"q\" #x\n")
    key.write(root / "flat.enc.yaml", "port: 5432\ntls: true\nname: db\n")
    key.write(root / "flat.enc.json", '{"region": "eu"}')
    key.write(root / "app.enc.yaml", "db:\n    password: s3cret\nlist:\n    - a\n    - b/c\n")
    key.write(root / "blob.bin", bytes(range(256)))
    key.write(root / "conf.txt", "a: 1\n", fmt="yaml")  # YAML inside a name that says nothing
    (root / "t.j2").write_text("pw={{ app.db.password }} second={{ app.list[1] }}\n")
    key.write(root / "m.enc.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n    name: cm\ndata:\n    k: v\n")
    cfg = ours(
        files=["m.enc.yaml"],
        options={"labels": {"team": "a"}, "annotations": {"note": "x"}},
        secrets=[{
            "name": "s", "namespace": "ns", "labels": {"app": "x"}, "annotations": {"a": "b"},
            "envs": ["db.enc.env", "flat.enc.yaml", "flat.enc.json"],
            "files": ["raw=blob.bin", {"key": "conf", "path": "conf.txt", "format": "yaml"}],
            "binaryFiles": ["blob.bin"],
            "literals": ["pw=app.enc.yaml#/db/password", {"key": "b", "path": "app.enc.yaml", "pointer": "/list/1"}],
            "template": {"key": "t.conf", "template": "t.j2", "values": {"app": "app.enc.yaml"}},
            "templates": [{"key": "inline", "inline": "{{ db.USER }}", "values": {"db": "db.enc.env"}}],
            "options": {"immutable": True, "behavior": "merge"},
        }],
    )
    out = by_name(gen([cfg], root, key))
    assert out["cm"] == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}}
    s = out["s"]
    assert s["type"] == "Opaque" and s["immutable"] is True
    assert s["metadata"]["namespace"] == "ns"
    assert s["metadata"]["labels"] == {"team": "a", "app": "x"}
    assert s["metadata"]["annotations"] == {
        "note": "x", "a": "b", common.BEHAVIOR: "merge", common.NEEDS_HASH: "true"}
    data = {k: b64d(v) for k, v in s["data"].items()}
    assert data["USER"] == b"app"
    assert data["PASS"] == b'p$w "q" #x'  # our kind keeps dotenv values verbatim
    assert data["port"] == b"5432" and data["tls"] == b"true" and data["region"] == b"eu"
    assert data["raw"] == bytes(range(256)) == data["blob.bin"]
    assert data["conf"] == b"a: 1\n"
    assert data["pw"] == b"s3cret" and data["b"] == b"b/c"
    assert data["t.conf"] == b"pw=s3cret second=b/c\n"
    assert data["inline"] == b"app"


def test_sopsgenerator_hash_can_be_disabled(root: Path, key: AgeKey) -> None:
    key.write(root / "a.enc.env", "A=1\n")
    cfg = ours(options={"disableNameSuffixHash": True}, secrets=[{"name": "s", "envs": ["a.enc.env"]}])
    (s,) = gen([cfg], root, key)
    assert "annotations" not in s["metadata"]


@pytest.mark.parametrize(
    ("literal", "message"),
    [("x=app.enc.yaml#/db/nope", "key path not found"), ("x=app.enc.yaml#/db", "points at a mapping")],
)
def test_literal_errors_name_the_key_path_not_the_value(root: Path, key: AgeKey, literal: str, message: str) -> None:
    key.write(root / "app.enc.yaml", "db:\n    password: s3cret-value\n")
    with pytest.raises(errors.GeneratorError) as exc:
        gen([ours(secrets=[{"name": "s", "literals": [literal]}])], root, key)
    text = str(exc.value)
    assert message in text and "app.enc.yaml#/db" in text and "SopsGenerator 'g'" in text
    assert "s3cret" not in text


def test_template_strict_and_sandboxed(root: Path, key: AgeKey) -> None:
    key.write(root / "app.enc.yaml", "db:\n    password: s3cret-value\n")
    for source, expect in (("{{ app.db.missing }}", "UndefinedError"), ("{{ app.__class__ }}", "SecurityError"),
                           ("{{ ''.__class__.__mro__ }}", "SecurityError"), ("{% if %}", "TemplateSyntaxError")):
        template = {"key": "k", "inline": source, "values": {"app": "app.enc.yaml"}}
        cfg = ours(secrets=[{"name": "s", "template": template}])
        with pytest.raises(errors.GeneratorError) as exc:
            gen([cfg], root, key)
        assert "template error at line 1: " in str(exc.value) and f"({expect})" in str(exc.value)
        assert "s3cret" not in str(exc.value)


def test_unknown_kind_and_bad_options(root: Path, key: AgeKey) -> None:
    with pytest.raises(errors.GeneratorError, match="unsupported generator kind"):
        gen([{"apiVersion": "x/v1", "kind": "Other", "metadata": {"name": "n"}}], root, key)
    with pytest.raises(errors.GeneratorError, match="behavior"):
        gen([ours(options={"behavior": "upsert"}, secrets=[{"name": "s"}])], root, key)
    with pytest.raises(errors.GeneratorError, match="format must be"):
        gen([ours(format="toml", secrets=[{"name": "s"}])], root, key)


# ----------------------------------------------------------------------------- KSOPS / goabout


def test_ksops_secret_from(root: Path, key: AgeKey) -> None:
    key.write(root / "a.enc.yaml", "username: admin\n")
    key.write(root / "e.enc.env", "A=1\nB=\"x $A\"\nC='$A' # c\n")
    cfg = {"apiVersion": "viaduct.ai/v1", "kind": "ksops", "metadata": {"name": "k"},
           "secretFrom": [{"metadata": {"name": "s", "annotations": {common.LOCAL_CONFIG: "true", "x": "y"}},
                           "files": ["f=a.enc.yaml"], "binaryFiles": ["a.enc.yaml"], "envs": ["e.enc.env"]}]}
    (s,) = gen([cfg], root, key)
    assert s == {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "annotations": {"x": "y"}},
                 "stringData": {"f": "username: admin\n", "A": "1", "B": "x 1", "C": "$A"},
                 "data": {"a.enc.yaml": "dXNlcm5hbWU6IGFkbWluCg=="}}


def test_ksops_requires_files_or_secret_from(root: Path, key: AgeKey) -> None:
    with pytest.raises(errors.GeneratorError, match="missing the required 'files' or 'secretFrom' key"):
        gen([{"apiVersion": "viaduct.ai/v1", "kind": "ksops", "metadata": {"name": "k"}}], root, key)
    with pytest.raises(errors.GeneratorError, match="invalid file entry"):
        gen([{"kind": "ksops", "secretFrom": [{"metadata": {"name": "s"}, "files": ["a=b=c"]}]}], root, key)


def test_goabout(root: Path, key: AgeKey) -> None:
    key.write(root / "v.enc.env", "A=\"quoted\" # kept\n")
    key.write(root / "v.enc.json", '{"B": "2"}')
    key.write(root / "f.enc.yaml", "x: 1\n")
    cfg = {"apiVersion": "goabout.com/v1beta1", "kind": "SopsSecretGenerator",
           "metadata": {"name": "g", "namespace": "n", "labels": {"l": "1"},
                        "annotations": {common.LOCAL_CONFIG: "true", "config.kubernetes.io/function": "exec: {}"}},
           "behavior": "replace", "envs": ["v.enc.env", "v.enc.json"], "files": ["k=f.enc.yaml"], "type": "Opaque"}
    (s,) = gen([cfg], root, key)
    assert s["metadata"] == {"name": "g", "namespace": "n", "labels": {"l": "1"},
                             "annotations": {common.BEHAVIOR: "replace", common.NEEDS_HASH: "true"}}
    assert {k: b64d(v) for k, v in s["data"].items()} == {"A": b'"quoted" # kept', "B": b"2", "k": b"x: 1\n"}
    cfg.update(disableNameSuffixHash=True, behavior=None, envs=None, files=None)
    (s,) = gen([cfg], root, key)
    assert s["data"] == {} and "annotations" not in s["metadata"]
    with pytest.raises(errors.GeneratorError, match="input must be apiVersion"):
        gen([{**cfg, "apiVersion": "goabout.com/v1"}], root, key)
    with pytest.raises(errors.GeneratorError, match="unknown file format"):
        gen([{**cfg, "envs": ["x.txt"]}], root, key)


# ----------------------------------------------------------------------------- root confinement


def test_root_refuses_escapes(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "outside.txt").write_text("x")
    (tmp_path / "outdir").mkdir()
    (tmp_path / "outdir" / "f").write_text("x")
    (root / "in.txt").write_text("ok")
    (root / "link-out").symlink_to(tmp_path / "outside.txt")
    (root / "dir-out").symlink_to(tmp_path / "outdir")
    (root / "link-in").symlink_to(root / "in.txt")
    r = Root(root)
    for bad in (str(tmp_path / "outside.txt"), "../outside.txt", "sub/../../outside.txt", "link-out", "dir-out/f"):
        with pytest.raises(errors.PathRefused):
            r.read(bad)
    assert r.read("link-in") == b"ok" and r.read("sub/../in.txt") == b"ok"
    assert Root(root, allow_outside=True).read("../outside.txt") == b"x"
    assert Root.from_env(root, {"KVSOPS_ALLOW_OUTSIDE_ROOT": "true"}).read("dir-out/f") == b"x"
    with pytest.raises(errors.InputError):
        r.read("sub")
    with pytest.raises(errors.InputError, match="does not exist"):
        r.read("missing")


# ----------------------------------------------------------------------------- dotenv readers


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("A=1\nB=$A-${A}-$NOPE\n", {"A": "1", "B": "1-1-"}),
        ("A='single $X'\n", {"A": "single $X"}),
        ('A="line\\nnext"\n', {"A": "line\nnext"}),
        ("A=x\\ny\n", {"A": "x\\ny"}),
        ("export A = v # comment\n", {"A": "v"}),
        ("A=x#y\n", {"A": "x#y"}),
        ("# c\n\nK: yaml-style\n", {"K": "yaml-style"}),
        ("A=\\$B\n", {"A": "$B"}),
    ],
)
def test_godotenv(text: str, want: dict[str, str]) -> None:
    assert dotenv.parse_godotenv(text) == want


def test_godotenv_errors_do_not_quote_values() -> None:
    with pytest.raises(errors.InputError) as exc:
        dotenv.parse_godotenv('A="s3cret\n')
    assert "s3cret" not in str(exc.value)


def test_raw_dotenv() -> None:
    assert dotenv.parse_raw("\ufeffA= x \n#c\n  B=\"q\"=z\n") == {"A": " x ", "B": '"q"=z'}
    with pytest.raises(errors.InputError):
        dotenv.parse_raw("NOEQUALS\n")


# ----------------------------------------------------------------------------- KRM protocol


def _rl(cfg: dict) -> bytes:
    item = json.loads(json.dumps(cfg))
    item["metadata"].setdefault("annotations", {}).update(
        {common.LOCAL_CONFIG: "true", "config.kubernetes.io/index": "0", "config.k8s.io/id": "1"})
    return yaml.safe_dump({"apiVersion": "config.kubernetes.io/v1", "kind": "ResourceList",
                           "items": [item], "functionConfig": cfg}).encode()


def _run(
    argv: list[str], stdin: bytes, root: Path, key: AgeKey, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, bytes, str]:
    monkeypatch.chdir(root)
    for k, v in key.env().items():
        monkeypatch.setenv(k, v)
    out, err = io.BytesIO(), io.StringIO()
    rc = krm.main(argv, stdin=io.BytesIO(stdin), stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


def test_krm_items_are_input_plus_generated(root: Path, key: AgeKey, monkeypatch: pytest.MonkeyPatch) -> None:
    key.write(root / "a.enc.env", "A=1\n")
    cfg = ours(secrets=[{"name": "s", "envs": ["a.enc.env"]}])
    rc, out, err = _run([], _rl(cfg), root, key, monkeypatch)
    assert rc == 0, err
    rl = yaml.safe_load(out)
    assert rl["kind"] == "ResourceList" and len(rl["items"]) == 2
    assert rl["items"][0]["kind"] == "SopsGenerator"  # passed through, local-config: kustomize drops it
    secret = rl["items"][1]
    assert secret["kind"] == "Secret" and common.LOCAL_CONFIG not in secret["metadata"].get("annotations", {})
    assert "results" not in rl


def test_krm_failure_writes_results_only(root: Path, key: AgeKey, monkeypatch: pytest.MonkeyPatch) -> None:
    key.write(root / "a.enc.env", "A=1\n")
    cfg = ours(secrets=[{"name": "ok", "envs": ["a.enc.env"]}, {"name": "bad", "envs": ["../x.enc.env"]}])
    rc, out, err = _run([], _rl(cfg), root, key, monkeypatch)
    assert rc == errors.PathRefused.exit_code
    rl = yaml.safe_load(out)
    assert rl["items"] == [] and rl["results"][0]["severity"] == "error"
    assert "PATH_REFUSED" in err and "secrets[1] 'bad'" in err and "../x.enc.env" in err


def test_legacy_mode(root: Path, key: AgeKey, monkeypatch: pytest.MonkeyPatch) -> None:
    key.write(root / "a.enc.env", "A=1\n")
    (root / "cfg.yaml").write_text(yaml.safe_dump(ours(secrets=[{"name": "s", "envs": ["a.enc.env"]}])))
    rc, out, err = _run(["cfg.yaml"], b"", root, key, monkeypatch)
    assert rc == 0, err
    (s,) = list(yaml.safe_load_all(out))
    assert s["data"] == {"A": "MQ=="}
    value = b"A=ENC[AES256_GCM,data:"
    (root / "a.enc.env").write_bytes((root / "a.enc.env").read_bytes().replace(value, value + b"AA"))
    rc, out, err = _run(["cfg.yaml"], b"", root, key, monkeypatch)
    assert rc != 0 and out == b"" and "a.enc.env" in err


def test_legacy_mode_maps_a_localized_copy_back_to_the_checkout(root: Path, tmp_path: Path, key: AgeKey,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Under Argo CD kustomize runs in a private localized copy; the legacy plugin reads the files of
    the checkout below the same relative directory, still confined to it. Not in KRM mode, whose
    environment a config's exec.envs could set."""
    from kvsops.plugin_home import COPY_ENV, SOURCE_ENV

    key.write(root / "sub" / "a.enc.env", "A=1\n")
    copy = tmp_path / "copy"
    (copy / "sub").mkdir(parents=True)
    (copy / "sub" / "cfg.yaml").write_text(yaml.safe_dump(ours(secrets=[{"name": "s", "envs": ["a.enc.env"]}])))
    monkeypatch.setenv(COPY_ENV, str(copy))
    monkeypatch.setenv(SOURCE_ENV, str(root))
    rc, out, err = _run(["cfg.yaml"], b"", copy / "sub", key, monkeypatch)
    assert rc == 0, err
    assert yaml.safe_load(out)["data"] == {"A": "MQ=="}
    bad = ours(secrets=[{"name": "s", "envs": ["../../outside.enc.env"]}])
    (copy / "sub" / "cfg.yaml").write_text(yaml.safe_dump(bad))
    rc, out, err = _run(["cfg.yaml"], b"", copy / "sub", key, monkeypatch)
    assert rc != 0 and out == b"" and "PATH_REFUSED" in err
    (copy / "remote").mkdir()  # a directory the checkout does not have (a fetched remote base)
    (copy / "remote" / "cfg.yaml").write_text(yaml.safe_dump(ours(secrets=[{"name": "s", "envs": ["a.enc.env"]}])))
    rc, out, err = _run(["cfg.yaml"], b"", copy / "remote", key, monkeypatch)
    assert rc != 0 and out == b"" and "not part of the checkout" in err
    rc, out, err = _run([], _rl(ours(secrets=[{"name": "s", "envs": ["a.enc.env"]}])), copy / "sub", key, monkeypatch)
    assert rc != 0, "KRM mode must not follow the mapping"


def test_served_kinds_are_the_generator_kinds() -> None:
    from kvsops.hosts.kustomize.generate import KINDS
    from kvsops.plugin_home import LAYOUT, SERVED

    assert set(SERVED) == set(KINDS)
    assert "kvsops/v1/sopsgenerator/SopsGenerator" in LAYOUT and "viaduct.ai/v1/ksops/ksops" in LAYOUT


def test_krm_rejects_garbage_without_echoing_it(root: Path, key: AgeKey, monkeypatch: pytest.MonkeyPatch) -> None:
    rc, out, err = _run([], b"password: [s3cret", root, key, monkeypatch)
    assert rc != 0 and "s3cret" not in err and "s3cret" not in out.decode()
    assert krm.main(["a", "b"], stderr=io.StringIO()) == 2


# ----------------------------------------------------------------------------- documented examples


@pytest.mark.parametrize(
    "name", sorted(p.name for p in (Path(__file__).parents[2] / "kustomize" / "examples").glob("*.yaml"))
)
def test_documented_example_configs_are_valid(name: str, tmp_path: Path) -> None:
    """Every config in kustomize/examples plans cleanly (files are named, not read, at plan time)."""
    from kvsops.hosts.kustomize.generate import _module
    from kvsops.hosts.kustomize.sources import Sources

    cfg = yaml.safe_load((Path(__file__).parents[2] / "kustomize" / "examples" / name).read_text())
    src = Sources(Root(tmp_path), {})
    if any("templates" in s or "template" in s for s in cfg.get("secrets", [])):
        (tmp_path / "app.ini.j2").write_text("x")
    _module(cfg).plan(cfg, src)
