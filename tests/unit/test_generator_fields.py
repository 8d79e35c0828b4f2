"""A misspelt field never drops data: every generator kind refuses unknown fields, naming the field's
path and the closest valid name; fields the peer tools accept keep working (the KSOPS conformance
suite, tests/integration/test_ksops_conformance.py, runs their real configs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kvsops import errors
from kvsops.hosts.kustomize.generate import generate
from tests.keys import AgeKey


@pytest.fixture()
def root(tmp_path: Path, key: AgeKey) -> Path:
    r = tmp_path / "app"
    r.mkdir()
    key.write(r / "a.enc.env", "A=1\n")
    key.write(r / "b.enc.yaml", "db:\n    password: pw\n")
    return r


def gen(cfg: dict[str, Any], root: Path, key: AgeKey) -> list[dict[str, Any]]:
    return generate([cfg], root=root, env=key.env())


def refused(cfg: dict[str, Any], root: Path, key: AgeKey) -> errors.GeneratorError:
    with pytest.raises(errors.GeneratorError) as info:
        gen(cfg, root, key)
    return info.value


def ours(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "kvsops/v1", "kind": "SopsGenerator", "metadata": {"name": "g"}, **fields}


def ksops(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "viaduct.ai/v1", "kind": "ksops", "metadata": {"name": "k"}, **fields}


def goabout(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "goabout.com/v1beta1", "kind": "SopsSecretGenerator", "metadata": {"name": "s"}, **fields}


S = {"name": "s", "envs": ["a.enc.env"]}  # a valid secrets[] entry

TYPOS = [  # (config, the message, the hint names the level's fields)
    (ours(secrets=[{"name": "s", "env": ["a.enc.env"]}]), "unknown field `secrets[0].env`; did you mean `envs`?"),
    (ours(secrets=[{"name": "s", "lietrals": ["p=b.enc.yaml#/db/password"]}]),
     "unknown field `secrets[0].lietrals`; did you mean `literals`?"),
    (ours(option={"disableNameSuffixHash": True}, secrets=[S]), "unknown field `option`; did you mean `options`?"),
    (ours(options={"disableNameSufixHash": True}, secrets=[S]),
     "unknown field `options.disableNameSufixHash`; did you mean `disableNameSuffixHash`?"),
    (ours(secrets=[{**S, "options": {"behaviour": "merge"}}]),
     "unknown field `secrets[0].options.behaviour`; did you mean `behavior`?"),
    (ours(secrets=[{**S, "Files": ["b.enc.yaml"]}]), "unknown field `secrets[0].Files`; did you mean `files`?"),
    (ours(secrets=[{**S, "files": [{"key": "k", "pth": "b.enc.yaml"}]}]),
     "unknown field `secrets[0].files[0].pth`; did you mean `path`?"),
    (ours(secrets=[{**S, "literals": [{"key": "k", "path": "b.enc.yaml", "pointr": "/db/password"}]}]),
     "unknown field `secrets[0].literals[0].pointr`; did you mean `pointer`?"),
    (ours(secrets=[{**S, "templates": [{"key": "k", "inlin": "x", "values": {}}]}]),
     "unknown field `secrets[0].templates[0].inlin`; did you mean `inline`?"),
    (ours(secrets=[{**S, "templates": [{"key": "k", "inline": "x", "values": {"v": {"paht": "b.enc.yaml"}}}]}]),
     "unknown field `secrets[0].templates[0].values.v.paht`; did you mean `path`?"),
    (ours(files=[{"path": "b.enc.yaml", "fromat": "yaml"}]), "unknown field `files[0].fromat`; did you mean `format`?"),
    (ours(metadata={"nmae": "g"}, secrets=[S]), "unknown field `metadata.nmae`; did you mean `name`?"),
    (ours(disableNameSuffixHash=True, secrets=[S]),
     "unknown field `disableNameSuffixHash`; it belongs under `options`"),
    (ours(envs=["a.enc.env"]), "unknown field `envs`; it belongs in a `secrets[]` entry"),
    (ours(secrets=[{**S, "behavior": "merge"}]),
     "unknown field `secrets[0].behavior`; it belongs under this entry's `options`"),
    (ksops(file=["b.enc.yaml"]), "unknown field `file`; did you mean `files`?"),
    (ksops(secretfrom=[{"metadata": {"name": "s"}, "envs": ["a.enc.env"]}]),
     "unknown field `secretfrom`; did you mean `secretFrom`?"),
    (ksops(secretFrom=[{"metadata": {"name": "s"}, "env": ["a.enc.env"]}]),
     "unknown field `secretFrom[0].env`; did you mean `envs`?"),
    (ksops(secretFrom=[{"metadata": {"name": "s"}, "binaryfiles": ["b.enc.yaml"]}]),
     "unknown field `secretFrom[0].binaryfiles`; did you mean `binaryFiles`?"),
    (ksops(secretFrom=[{"metadata": {"name": "s", "lables": {"a": "b"}}, "envs": ["a.enc.env"]}]),
     "unknown field `secretFrom[0].metadata.lables`; did you mean `labels`?"),
    (ksops(secretFrom=[{"name": "s", "envs": ["a.enc.env"]}]),
     "unknown field `secretFrom[0].name`; it belongs under `metadata`"),
    (ksops(secretFrom=[{"metadata": {"name": "s"}, "stringData": {"a": "b"}}]),
     "unknown field `secretFrom[0].stringData`"),
    (goabout(env=["a.enc.env"]), "unknown field `env`; did you mean `envs`?"),
    (goabout(files=["b.enc.yaml"], disableNameSuffixhash=True),
     "unknown field `disableNameSuffixhash`; did you mean `disableNameSuffixHash`?"),
    (goabout(metadata={"name": "s", "disableNameSuffixHash": True}, files=["b.enc.yaml"]),  # goabout#17
     "unknown field `metadata.disableNameSuffixHash`; it belongs at the top level"),
    (goabout(fils=["b.enc.yaml"]), "unknown field `fils`; did you mean `files`?"),
]


@pytest.mark.parametrize("cfg,message", TYPOS, ids=[m.split("`")[1] for _, m in TYPOS])
def test_a_misspelt_field_is_refused_with_its_path_and_the_closest_name(cfg: dict[str, Any], message: str,
                                                                        root: Path, key: AgeKey) -> None:
    err = refused(cfg, root, key)
    assert message in err.message, err.message
    assert err.hint and err.hint.startswith("the fields of ") and "misspelt" in err.hint
    assert err.where and err.where.startswith(f"{cfg['kind']} ")


def test_no_close_name_means_no_guess(root: Path, key: AgeKey) -> None:
    err = refused(ours(secrets=[{**S, "zzzz": 1}]), root, key)
    assert err.message == "unknown field `secrets[0].zzzz`"
    assert err.hint is not None and "envs, files, binaryFiles, literals" in err.hint


def test_every_documented_field_is_accepted(root: Path, key: AgeKey) -> None:
    """The full field lists (kustomize/README.md) plan and build; KRM bookkeeping in metadata is free."""
    (root / "t.j2").write_text("{{ v.db.password }}")
    key.write(root / "m.enc.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n    name: cm\n")
    meta = {"name": "g", "namespace": "n", "labels": {"a": "b"}, "creationTimestamp": None,
            "annotations": {"config.kubernetes.io/function": "exec: {path: kvsops-krm}",
                            "config.kubernetes.io/local-config": "true", "internal.config.kubernetes.io/x": "y"}}
    opts = {"disableNameSuffixHash": True, "behavior": "merge", "immutable": True, "labels": {}, "annotations": {}}
    files = [{"path": "m.enc.yaml", "format": "yaml"}]
    out = gen(ours(metadata=meta, format=None, references=False, options=opts, files=files, secrets=[{
        "name": "s", "namespace": "n", "type": "Opaque", "labels": {}, "annotations": {}, "format": None,
        "options": opts, "references": False, "envs": [{"path": "a.enc.env", "format": "dotenv"}],
        "files": [{"key": "f", "path": "b.enc.yaml", "format": "yaml"}], "binaryFiles": ["bin=b.enc.yaml"],
        "literals": [{"key": "p", "path": "b.enc.yaml", "pointer": "/db/password", "format": "yaml"}],
        "templates": [{"key": "t", "template": "t.j2", "values": {"v": {"path": "b.enc.yaml", "format": "yaml"}}}],
        "template": {"key": "i", "inline": "{{ v.db.password }}", "values": {"v": "b.enc.yaml"}},
    }]), root, key)
    assert out[0]["kind"] == "ConfigMap" and sorted(out[1]["data"]) == ["A", "bin", "f", "i", "p", "t"]
    secret_meta = {"name": "s", "namespace": "n", "labels": {}, "annotations": {}}
    (s,) = gen(ksops(metadata=meta, secretFrom=[{"metadata": secret_meta, "type": "Opaque", "files": ["b.enc.yaml"],
                                                  "binaryFiles": ["b.enc.yaml"], "envs": ["a.enc.env"]}]), root, key)
    assert s["stringData"]["A"] == "1"
    (s,) = gen(goabout(metadata=meta, behavior="merge", disableNameSuffixHash=True, type="Opaque",
                       envs=["a.enc.env"], files=["b.enc.yaml"]), root, key)
    assert sorted(s["data"]) == ["A", "b.enc.yaml"]


def test_fields_the_peer_ignores_work_unchanged_with_a_warning(root: Path, key: AgeKey,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """KSOPS and kustomize-sopssecretgenerator ignore kustomize's `behavior`/`options`: a config that
    has them keeps its output, and kvsops says on stderr that they do nothing."""
    base = ksops(secretFrom=[{"metadata": {"name": "s"}, "envs": ["a.enc.env"]}])
    want = gen(base, root, key)
    assert capsys.readouterr().err == ""
    with_extras = {**base, "behavior": "merge", "options": {"disableNameSuffixHash": True},
                   "secretFrom": [{**base["secretFrom"][0], "behavior": "merge"}]}
    assert gen(with_extras, root, key) == want
    err = capsys.readouterr().err.splitlines()
    assert err == [  # in document order
        "kvsops: warning: ksops 'k': `secretFrom[0].behavior` has no effect: KSOPS has no behavior field; "
        "annotate the Secret with kustomize.config.k8s.io/behavior",
        "kvsops: warning: ksops 'k': `behavior` has no effect: KSOPS has no behavior field; annotate the Secret "
        "with kustomize.config.k8s.io/behavior",
        "kvsops: warning: ksops 'k': `options` has no effect: KSOPS has no generator options; annotate the "
        "Secret with kustomize.config.k8s.io/needs-hash or kustomize.config.k8s.io/behavior",
    ]
    plain = goabout(files=["b.enc.yaml"])
    assert gen({**plain, "options": {"disableNameSuffixHash": True}}, root, key) == gen(plain, root, key)
    assert "`options` has no effect" in capsys.readouterr().err
