"""kvsops.hosts.argocd.localize.serve on hand-written copies: what kustomize may see after it.

The copies kustomize localize writes are canonical; these cases are the ones it never writes, which
serve must refuse rather than misread, and the rewriting of the ones it does write.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kvsops import errors
from kvsops.hosts.argocd.localize import serve

EXEC = "config.kubernetes.io/function"


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def _refused(root: Path, files: dict[str, str], *words: str) -> str:
    with pytest.raises(errors.PluginRefused) as info:
        serve(_write(root, files))
    text = str(info.value)
    assert all(w in text for w in words), text
    return text


def _ksops(**meta: object) -> str:
    return yaml.safe_dump({"apiVersion": "viaduct.ai/v2", "kind": "ksops",
                           "metadata": {"name": "k", **meta}, "files": ["./s.enc.yaml"]})


def test_served_configs_are_rewritten_for_the_plugin_home(tmp_path: Path) -> None:
    ann = {"annotations": {EXEC: "exec:\n  path: ../../bin/ksops\n  envs: [A=b]\n", "keep": "me"},
           "configFn": {"exec": {"path": "ksops"}}}
    _write(tmp_path, {"kustomization.yaml": "generators:\n- gen.yaml\n- |\n  " + _ksops().replace("\n", "\n  "),
                      "gen.yaml": _ksops(**ann)})
    assert serve(tmp_path) == 2
    kust = yaml.safe_load((tmp_path / "kustomization.yaml").read_text())
    assert kust["generators"][0] == "gen.yaml"
    for doc in (yaml.safe_load((tmp_path / "gen.yaml").read_text()), yaml.safe_load(kust["generators"][1])):
        assert doc["apiVersion"] == "viaduct.ai/v1" and doc["kind"] == "ksops"
        assert EXEC not in (doc["metadata"].get("annotations") or {}) and "configFn" not in doc["metadata"]
    assert yaml.safe_load((tmp_path / "gen.yaml").read_text())["metadata"]["annotations"] == {"keep": "me"}


def test_builtins_stay_but_not_helm(tmp_path: Path) -> None:
    _write(tmp_path, {"kustomization.yaml": "transformers: [t.yaml]\n",
                      "t.yaml": "apiVersion: builtin\nkind: LabelTransformer\nmetadata: {name: l}\nlabels: {a: b}\n"})
    assert serve(tmp_path) == 1
    _refused(tmp_path, {"t.yaml": "apiVersion: builtin\nkind: HelmChartInflationGenerator\nmetadata: {name: h}\n"},
             "HelmChartInflationGenerator")


@pytest.mark.parametrize("kust, words", [
    ("Generators: [g.yaml]\n", ("ambiguous key",)),
    ("generators: [g.yaml]\nGENERATORS: [g.yaml]\n", ("ambiguous key",)),
    ("gеnerators: [g.yaml]\n", ("non-ASCII",)),  # a Cyrillic e
    ("? [generators]\n: [g.yaml]\n", ("merge, tagged, non-string",)),
    ("base: &b {generators: [g.yaml]}\n<<: *b\n", ("merge, tagged, non-string",)),
    ("!!binary Z2VuZXJhdG9ycw==: [g.yaml]\n", ("merge, tagged, non-string",)),
    ("resources: []\n---\ngenerators: [g.yaml]\n", ("single kustomization",)),
    ("helmCharts: [{name: c}]\n", ("helmCharts",)),
    ("HelmGlobals: {configHome: x}\n", ("ambiguous key",)),
    ("resources: [../../elsewhere]\n", ("not inside the localized copy",)),
    ("components: [/abs]\n", ("not inside the localized copy",)),
    ("generators: ['a b.yaml']\n", ("plain relative file name",)),
    ("generators: ['{apiVersion: x, kind: y}']\n", ("plain relative file name",)),
    ("generators: [sub/../g.yaml]\n", ("plain relative file name",)),
    ("generators: g.yaml\n", ("is not a list",)),
])
def test_kustomizations_kvsops_cannot_read_safely_are_refused(
    tmp_path: Path, kust: str, words: tuple[str, ...]
) -> None:
    _refused(tmp_path, {"kustomization.yaml": kust, "g.yaml": _ksops()}, *words)


@pytest.mark.parametrize("config, words", [
    ("apiVersion: x/v1\nkind: Evil\nmetadata:\n  name: e\n  annotations:\n    " + EXEC + ": 'exec: {path: /bin/sh}'\n",
     ("exec function '/bin/sh'",)),
    ("apiVersion: x/v1\nkind: Evil\nmetadata:\n  name: e\n  annotations:\n    config.kubernetes.io/container: img\n",
     ("container function 'img'",)),
    ("apiVersion: g/../../bin/x\nkind: ../sh\nmetadata: {name: e}\n", ("kustomize plugin",)),
    ("apiVersion: kvsops/v2\nkind: SopsGenerator\nmetadata: {name: e}\n", ("must have apiVersion kvsops/v1",)),
    ("apiVersion: other/v1\nkind: ksops\nmetadata: {name: e}\n", ("viaduct.ai/v1",)),
    ("apiVersion: kvsops/v1\nkind: SopsGenerator\nmetadata:\n  name: e\n  annotations:\n    " + EXEC
     + ": 'exec: {path: /bin/sh}'\n", ("which is not kvsops",)),
    ("apiVersion: kvsops/v1\nkind: SopsGenerators\nmetadata:\n  name: e\n  annotations:\n    " + EXEC
     + ": 'exec: {path: kvsops-krm}'\n", ("kvsops serves no kind",)),
    ("apiVersion: !!binary YnVpbHRpbg==\nkind: LabelTransformer\nmetadata: {name: e}\n", ("kustomize plugin",)),
    ("apiVersion: x/v1\nkind: Evil\nkind: ksops\nmetadata: {name: e}\n", ("ambiguous key",)),
    ("- not\n- a mapping\n", ("not a mapping",)),
])
def test_configs_that_do_not_run_here(tmp_path: Path, config: str, words: tuple[str, ...]) -> None:
    _refused(tmp_path, {"kustomization.yaml": "generators: [g.yaml]\n", "g.yaml": config}, *words)


def test_kvsops_generators_are_generators_only(tmp_path: Path) -> None:
    _refused(tmp_path, {"kustomization.yaml": "transformers: [g.yaml]\n", "g.yaml": _ksops()},
             "list it under generators")


def test_every_kustomization_of_the_copy_is_served(tmp_path: Path) -> None:
    evil = "apiVersion: x/v1\nkind: Evil\nmetadata: {name: e}\n"
    _refused(tmp_path, {"app/kustomization.yaml": "resources: [../base]\n",
                        "base/Kustomization": "validators: [v.yaml]\n", "base/v.yaml": evil}, "base/v.yaml")
