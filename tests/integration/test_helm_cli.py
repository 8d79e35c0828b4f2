"""The real Helm CLI, 3.17.3 and 4.1.4 (scripts/setup.sh installs them as .tools/bin/helm3 and helm4).

Each test gets its own Helm homes (tests/helm_harness.HelmCLI: HELM_DATA_HOME, HELM_PLUGINS,
HELM_CONFIG_HOME, HELM_CACHE_HOME, HOME, TMPDIR). What is shown here:

- `helm plugin install` of every shipped plugin directory, `helm plugin list`, and the install story
  of helm-plugin/README.md: the two legacy plugins in one directory serve Helm 3 and Helm 4 alike;
  a v1 plugin there breaks Helm 3 (why kvsops-getter is for Helm-4-only directories); Helm 4
  installs into $HELM_DATA_HOME/plugins whatever $HELM_PLUGINS says (the documented workaround);
- Helm 4 tarballs: signed (`helm plugin package` with a throwaway gpg key, installed with
  `--keyring`; a changed tarball is refused) and unsigned (`--verify=false`);
- `helm template` of a `helm create` chart with helm-secrets' own fixtures through every protocol,
  `--set-file` with literals and files, the wrapper (`kvsops helm --` and `helm kvsops`), the
  getter check, `--help`, KVSOPS_DEBUG and the hint for a mistyped path.

The failure cases under strace (nothing written, no stray program) are in
tests/security/test_syscall_audit.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests import helm_harness as hh
from tests.helm_harness import HelmCLI
from tests.processes import stop_gpg

REPO = hh.REPO
MAJORS = ("helm3", "helm4")
PLUGIN_DIRS = {"helm3": (hh.LEGACY_GETTER, hh.CLI), "helm4": (hh.LEGACY_GETTER, hh.V1_GETTER, hh.CLI)}
# What `helm plugin list` says on Helm 4: TYPE, APIVERSION
HELM4_TYPES = {"kvsops-getter-legacy": ("getter/v1", "legacy"), "kvsops-getter": ("getter/v1", "v1"),
               "kvsops": ("cli/v1", "legacy")}

CHECK_TEMPLATE = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-kvsops
  namespace: {{ .Release.Namespace }}
data:
  global_secret: {{ .Values.global_secret | default "" | quote }}
  key: {{ .Values.key | default "" | quote }}
  lit: {{ .Values.lit | default "" | quote }}
"""


def new_helm(tools: Any, major: str, root: Path, **extra: str) -> HelmCLI:
    return HelmCLI(tools[major], root, **extra)


@pytest.fixture(params=MAJORS)
def helm(request: pytest.FixtureRequest, tools: Any, tmp_path: Path) -> HelmCLI:
    return new_helm(tools, request.param, tmp_path / request.param)


@pytest.fixture(scope="module")
def charts(tools: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`helm create chart` with each major, plus one template that shows the secret values."""
    out = {}
    for major in MAJORS:
        h = new_helm(tools, major, tmp_path_factory.mktemp(f"create-{major}"))
        proc = h.run("create", "chart")
        assert proc.returncode == 0, proc.stderr.decode()
        (h.root / "chart/templates/kvsops-check.yaml").write_text(CHECK_TEMPLATE)
        out[major] = h.root / "chart"
    return out


def docs(stdout: bytes) -> dict[str, dict[str, Any]]:
    """The rendered stream by kind (the chart has one of each kind we look at)."""
    return {d["kind"]: d for d in yaml.safe_load_all(stdout.decode()) if d}


def rendered(proc: subprocess.CompletedProcess[bytes]) -> tuple[int, dict[str, str]]:
    """(service port, the check ConfigMap's data) of a successful render."""
    assert proc.returncode == 0, proc.stderr.decode()
    by_kind = docs(proc.stdout)
    return by_kind["Service"]["spec"]["ports"][0]["port"], by_kind["ConfigMap"]["data"]


# ------------------------------------------------------------------------------ install and list


@pytest.mark.parametrize("major", MAJORS)
def test_every_shipped_plugin_installs_and_lists(tools: Any, tmp_path: Path, major: str) -> None:
    for src in PLUGIN_DIRS[major]:
        h = new_helm(tools, major, tmp_path / src.name)
        proc = h.install(src)
        assert f"Installed plugin: {src.name}" in proc.stdout.decode()
        assert (h.plugins / src.name).resolve() == src  # a local directory is symlinked
        listed = h.plugin_list()
        assert list(listed) == [src.name] and listed[src.name]["VERSION"] == "0.1.0"
        if major == "helm4":
            row = listed[src.name]
            assert (row["TYPE"], row["APIVERSION"]) == HELM4_TYPES[src.name]
            assert row["PROVENANCE"] == "local dev"


def test_helm3_refuses_the_v1_getter_and_leaves_a_link(tools: Any, tmp_path: Path) -> None:
    """What helm-plugin/README.md warns about: Helm 3 cannot read a v1 plugin.yaml, keeps the link it
    made, cannot uninstall it, and every plugin of the directory fails to load until it is removed."""
    h = new_helm(tools, "helm3", tmp_path)
    h.install(hh.LEGACY_GETTER)
    proc = h.run("plugin", "install", str(hh.V1_GETTER))
    assert proc.returncode != 0 and b'unknown field "apiVersion"' in proc.stderr
    assert (h.plugins / "kvsops-getter").is_symlink()
    assert h.run("plugin", "uninstall", "kvsops-getter").returncode != 0
    assert h.run("plugin", "list").returncode != 0
    (h.plugins / "kvsops-getter").unlink()  # the README's remedy
    assert list(h.plugin_list()) == ["kvsops-getter-legacy"]


def test_the_recommended_set_serves_helm3_and_helm4_from_one_directory(
        tools: Any, tmp_path: Path, charts: dict[str, Path], hs: dict[str, Any]) -> None:
    """The default install story: both legacy plugins in the directory Helm 3 and Helm 4 share."""
    shared = tmp_path / "shared"
    h3 = new_helm(tools, "helm3", shared, **hs["env"])
    h4 = new_helm(tools, "helm4", shared, **hs["env"])
    h3.install(hh.LEGACY_GETTER)
    h4.install(hh.CLI)
    for h in (h3, h4):
        assert sorted(h.plugin_list()) == ["kvsops", "kvsops-getter-legacy"]
        port, _ = rendered(h.run("template", "t", str(charts[h.major]), "-f", "secrets://secrets.yaml", cwd=hs["work"]))
        assert port == 81
        port, data = rendered(h.run("kvsops", "template", "t", str(charts[h.major]), "-f", "some-secrets.yaml",
                                    cwd=hs["work"]))
        assert port == 83 and data["global_secret"] == "global_bar"
    # a v1 plugin in that directory breaks Helm 3 (and only Helm 3)
    h4.install(hh.V1_GETTER)
    proc = h3.run("template", "t", str(charts["helm3"]), "-f", "secrets://secrets.yaml", cwd=hs["work"])
    assert proc.returncode != 0 and b"open secrets://secrets.yaml: no such file or directory" in proc.stderr
    port, _ = rendered(h4.run("template", "t", str(charts["helm4"]), "-f", "secrets://secrets.yaml", cwd=hs["work"]))
    assert port == 81


def test_helm4_installs_into_the_data_home_whatever_helm_plugins_says(tools: Any, tmp_path: Path) -> None:
    """Helm 4.1's local installer writes to $HELM_DATA_HOME/plugins and lists $HELM_PLUGINS
    (helm/helm#32646): "Installed", then nothing listed. The workaround of helm-plugin/README.md:
    keep HELM_PLUGINS = $HELM_DATA_HOME/plugins (or leave it unset), or link the directory by hand."""
    elsewhere = tmp_path / "elsewhere"
    h = new_helm(tools, "helm4", tmp_path / "h", HELM_PLUGINS=str(elsewhere))
    proc = h.install(hh.LEGACY_GETTER)
    assert b"Installed plugin: kvsops-getter-legacy" in proc.stdout
    assert h.plugin_list() == {} and (h.data / "plugins" / "kvsops-getter-legacy").is_symlink()
    # workaround 1: HELM_PLUGINS unset (Helm uses $HELM_DATA_HOME/plugins)
    unset = {k: v for k, v in h.env.items() if k != "HELM_PLUGINS"}
    proc = subprocess.run([h.binary, "plugin", "list"], env=unset, capture_output=True, timeout=60, check=False)
    assert b"kvsops-getter-legacy" in proc.stdout
    # workaround 2: what `helm plugin install DIR` does, by hand
    elsewhere.mkdir()
    (elsewhere / "kvsops-getter-legacy").symlink_to(hh.LEGACY_GETTER, target_is_directory=True)
    assert list(h.plugin_list()) == ["kvsops-getter-legacy"]
    # Helm 3 honours HELM_PLUGINS
    h3 = new_helm(tools, "helm3", tmp_path / "h3", HELM_PLUGINS=str(tmp_path / "h3-elsewhere"))
    h3.install(hh.LEGACY_GETTER)
    assert (tmp_path / "h3-elsewhere" / "kvsops-getter-legacy").is_symlink()


# ------------------------------------------------------------------------------ Helm 4 tarballs


@pytest.fixture()
def signer(tools: Any, tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A throwaway signing key: secring.gpg (what `helm plugin package` reads) and pubring.gpg."""
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    env = dict(os.environ, GNUPGHOME=str(home))
    gpg = tools.gpg

    def run(*args: str) -> bytes:
        return subprocess.run([gpg, "--batch", "--quiet", *args], env=env, check=True, capture_output=True,
                              timeout=120).stdout

    run("--passphrase", "", "--quick-gen-key", "kvsops plugin test <plugins@example.invalid>", "ed25519", "sign",
        "never")
    (tmp_path / "secring.gpg").write_bytes(run("--export-secret-keys"))
    (tmp_path / "pubring.gpg").write_bytes(run("--export"))
    yield {"secring": tmp_path / "secring.gpg", "pubring": tmp_path / "pubring.gpg"}
    stop_gpg(home, gpg)


def test_helm4_signed_tarballs(tools: Any, tmp_path: Path, signer: dict[str, Path], charts: dict[str, Path],
                               hs: dict[str, Any]) -> None:
    h = new_helm(tools, "helm4", tmp_path / "h", **hs["env"])
    dist = tmp_path / "dist"
    for src in (hh.V1_GETTER, hh.CLI):
        proc = h.run("plugin", "package", str(src), "--key", "kvsops plugin test", "--keyring", str(signer["secring"]),
                     "-d", str(dist))
        assert proc.returncode == 0, proc.stderr.decode()
    tgz = dist / "kvsops-getter-0.1.0.tgz"
    assert (dist / "kvsops-getter-0.1.0.tgz.prov").is_file() and (dist / "kvsops-0.1.0.tgz.prov").is_file()
    # without the signer's public key: refused (the default keyring is $HOME/.gnupg/pubring.gpg)
    proc = h.run("plugin", "install", str(tgz))
    assert proc.returncode != 0 and b"plugin verification failed" in proc.stderr
    assert h.plugin_list() == {}
    # a tarball changed after signing: refused even with the right keyring
    forged = tmp_path / "forged" / tgz.name
    forged.parent.mkdir()
    _repack_with(tgz, forged, "kvsops-getter/bin/kvsops-helm", b"#!/bin/sh\necho forged\n")
    shutil.copy(str(tgz) + ".prov", str(forged) + ".prov")
    proc = h.run("plugin", "install", str(forged), "--keyring", str(signer["pubring"]))
    assert proc.returncode != 0 and h.plugin_list() == {}, proc.stdout.decode()
    for src in (tgz, dist / "kvsops-0.1.0.tgz"):
        proc = h.install(src, "--keyring", str(signer["pubring"]))
        assert b"Plugin Hash Verified" in proc.stdout and b"kvsops plugin test" in proc.stdout
    listed = h.plugin_list()
    assert {n: r["PROVENANCE"] for n, r in listed.items()} == {"kvsops-getter": "signed", "kvsops": "signed"}
    assert os.access(h.plugins / "kvsops-getter/bin/kvsops-helm", os.X_OK)  # a copy, not a link: no venv beside it
    port, _ = rendered(h.run("template", "t", str(charts["helm4"]), "-f", "secrets://secrets.yaml", cwd=hs["work"]))
    assert port == 81
    assert rendered(h.run("kvsops", "template", "t", str(charts["helm4"]), "-f", "some-secrets.yaml",
                          cwd=hs["work"]))[0] == 83


def _repack_with(src: Path, dst: Path, member: str, data: bytes) -> None:
    import io

    with tarfile.open(src) as tin, tarfile.open(dst, "w:gz") as tout:
        for info in tin.getmembers():
            body = tin.extractfile(info) if info.isfile() else None
            if info.name == member:
                info.size, body = len(data), io.BytesIO(data)
            tout.addfile(info, body)


def test_helm4_unsigned_tarball_needs_verify_false(tools: Any, tmp_path: Path, charts: dict[str, Path],
                                                   hs: dict[str, Any]) -> None:
    h = new_helm(tools, "helm4", tmp_path / "h", **hs["env"])
    proc = h.run("plugin", "package", str(hh.LEGACY_GETTER), "--sign=false", "-d", str(tmp_path))
    assert proc.returncode == 0, proc.stderr.decode()
    tgz = tmp_path / "kvsops-getter-legacy-0.1.0.tgz"
    assert not Path(str(tgz) + ".prov").exists()
    proc = h.run("plugin", "install", str(tgz))
    assert proc.returncode != 0 and b"no provenance file" in proc.stderr and h.plugin_list() == {}
    h.install(tgz, "--verify=false")
    assert h.plugin_list()["kvsops-getter-legacy"]["PROVENANCE"] == "unsigned"
    port, _ = rendered(h.run("template", "t", str(charts["helm4"]), "-f", "secrets://secrets.yaml", cwd=hs["work"]))
    assert port == 81


# ------------------------------------------------------------------------------ every protocol


@pytest.fixture(scope="module")
def hs(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory, tools: Any) -> Iterator[dict[str, Any]]:
    """helm-secrets' fixtures, read in place; Helm runs in their values/sops directory. A private
    GNUPGHOME holds their PGP key (private.gpg); age uses their age/key.txt."""
    root = conformance_dir / "helm-secrets"
    if not root.is_dir():
        pytest.skip("helm-secrets conformance fixtures absent")
    home = tmp_path_factory.mktemp("hs-gnupg")
    home.chmod(0o700)
    subprocess.run([tools.gpg, "--batch", "--import", str(root / "gpg/private.gpg")],
                   env=dict(os.environ, GNUPGHOME=str(home)), check=True, capture_output=True, timeout=120)
    env = {"GNUPGHOME": str(home), "SOPS_AGE_KEY_FILE": str(root / "age/key.txt")}
    yield {"root": root, "work": root / "values/sops", "env": env}
    stop_gpg(home, tools.gpg)


@pytest.fixture(scope="module")
def refs_work(hs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the values directory (the fixtures are read-only) with a plain values file whose
    ref+sops:// references point into two of helm-secrets' encrypted files."""
    work = tmp_path_factory.mktemp("refs") / "värdes dir"
    shutil.copytree(hs["work"], work)
    (work / "values-refs.yaml").write_text("service:\n  port: ref+sops://some-secrets.yaml#/service/port\n"
                                           "global_secret: ref+sops://secrets.age.yaml#/global_secret\n")
    return work


KEY_PREFIX = "KVSOPS_HELM_KEY_PREFIX"
PROTOCOLS: list[tuple[str, list[str], int, str, str]] = [
    # (id, helm args, service port, global_secret, which keys the env keeps)
    ("secrets-pgp", ["-f", "secrets://secrets.yaml"], 81, "global_bar", "all"),
    ("secrets-age", ["-f", "secrets://secrets.age.yaml"], 92, "global_age", "all"),
    ("kvsops", ["-f", "kvsops://secrets.yaml"], 81, "global_bar", "all"),
    ("uppercase-scheme", ["-f", "SECRETS://secrets.yaml"], 81, "global_bar", "all"),
    ("later-wins", ["-f", "secrets://secrets.yaml", "-f", "secrets://some-secrets.windows.yaml"], 83, "global_bar",
     "all"),
    ("optional-missing", ["-f", "secrets://secrets.yaml", "-f", "secrets://?does-not-exist.yaml"], 81, "global_bar",
     "all"),
    ("optional-only", ["-f", "secrets://?does-not-exist.yaml"], 80, "", "all"),
    ("gotpl", ["-f", "secrets://secrets.yaml.gotpl"], 85, "global_tpl", "all"),
    ("age-import", ["-f", "secrets+age-import://../../age/key.txt?secrets.age.yaml"], 92, "global_age", "none"),
    ("gpg-import", ["-f", "secrets+gpg-import://../../gpg/private2.gpg?secrets.gpg_key.yaml"], 91, "global_baz",
     "none"),
    ("kvsops-age-import", ["-f", "kvsops+age-import://../../age/key.txt?secrets.age.yaml"], 92, "global_age", "none"),
]


def _protocol_env(hs: dict[str, Any], keys: str) -> dict[str, str]:
    if keys == "all":
        return dict(hs["env"])
    # only the imported key may work: no age key file, an empty GNUPGHOME
    return {"GNUPGHOME": str(hs["root"] / "nonexistent-gnupg-home"), KEY_PREFIX: str(hs["root"])}


@pytest.mark.parametrize("case", PROTOCOLS, ids=[p[0] for p in PROTOCOLS])
def test_every_protocol_renders(helm: HelmCLI, charts: dict[str, Path], hs: dict[str, Any],
                                case: tuple[str, list[str], int, str, str]) -> None:
    _id, args, port, secret, keys = case
    helm.install(hh.LEGACY_GETTER)
    got_port, data = rendered(helm.run("template", "t", str(charts[helm.major]), *args, cwd=hs["work"],
                                       env=_protocol_env(hs, keys)))
    assert got_port == port
    if secret:
        assert data["global_secret"] == secret
        assert data["key"].startswith("-----BEGIN PGP MESSAGE-----")  # the multi-line value survived


def test_global_secret_values_of_the_fixtures(hs: dict[str, Any]) -> None:
    """The expected values above are the fixtures' own (their .dec files, or their names)."""
    assert "global_secret: global_bar" in (hs["work"] / "secrets.dec.yaml").read_text()
    assert "service:\n    port: 83" in (hs["work"] / "some-secrets.dec.yaml").read_text()


def test_plain_files_are_refused_unless_allowed(helm: HelmCLI, charts: dict[str, Path], hs: dict[str, Any]) -> None:
    helm.install(hh.LEGACY_GETTER)
    chart = str(charts[helm.major])
    proc = helm.run("template", "t", chart, "-f", "secrets://values.yaml", cwd=hs["work"], env=hs["env"])
    assert proc.returncode != 0 and proc.stdout == b"" and b"kvsops: error: values.yaml: " in proc.stderr
    allow = {**hs["env"], "KVSOPS_HELM_ALLOW_UNENCRYPTED": "true"}
    port, data = rendered(helm.run("template", "t", chart, "-f", "secrets://values.yaml", cwd=hs["work"], env=allow))
    assert port == 85 and data["global_secret"] == "global_values"


def test_imports_need_the_key_prefix(helm: HelmCLI, charts: dict[str, Path], hs: dict[str, Any]) -> None:
    helm.install(hh.LEGACY_GETTER)
    proc = helm.run("template", "t", str(charts[helm.major]), "-f",
                    "secrets+age-import://../../age/key.txt?secrets.age.yaml", cwd=hs["work"])
    assert proc.returncode != 0 and proc.stdout == b""
    assert b"outside the allowed key location" in proc.stderr and b"[PATH_REFUSED]" in proc.stderr


def test_refs_protocol(helm: HelmCLI, charts: dict[str, Path], hs: dict[str, Any], refs_work: Path) -> None:
    helm.install(hh.LEGACY_GETTER)
    port, data = rendered(helm.run("template", "t", str(charts[helm.major]), "-f", "kvsops+refs://values-refs.yaml",
                                   cwd=refs_work, env=hs["env"]))
    assert port == 83 and data["global_secret"] == "global_age"  # some-secrets' port, secrets.age's secret


def test_set_file_with_literals_and_files(helm: HelmCLI, charts: dict[str, Path], hs: dict[str, Any]) -> None:
    helm.install(hh.LEGACY_GETTER)
    chart = str(charts[helm.major])
    _, data = rendered(helm.run("template", "t", chart, "--set-file", "lit=secrets+literal://plain-literal",
                                cwd=hs["work"], env=hs["env"]))
    assert data["lit"] == "plain-literal"
    _, data = rendered(helm.run("template", "t", chart, "--set-file", "lit=kvsops+literal://other_literal",
                                "-f", "secrets://secrets.yaml", cwd=hs["work"], env=hs["env"]))
    assert data["lit"] == "other_literal" and data["global_secret"] == "global_bar"
    _, data = rendered(helm.run("template", "t", chart, "--set-file", "lit=secrets://files/file.yaml",
                                cwd=hs["work"], env=hs["env"]))
    assert data["lit"].startswith("hello: ") and "sops" not in data["lit"]
    # an encrypted JSON literal cannot pass Helm's own URL parser (its ':' read as a port): Helm
    # fails before any plugin runs, as helm-plugin/README.md says
    enc = (hs["work"] / "files/file.json").read_text()
    proc = helm.run("template", "t", chart, "--set-file", "lit=secrets+literal://" + enc.replace(",", "\\,"),
                    cwd=hs["work"], env=hs["env"])
    assert proc.returncode != 0 and b"failed parsing --set-file data" in proc.stderr and b"kvsops" not in proc.stderr


# ------------------------------------------------------------------------------ the wrapper


def test_wrapper_kvsops_helm(helm: HelmCLI, charts: dict[str, Path], hs: dict[str, Any]) -> None:
    """`kvsops helm -- template ...` runs the real helm ($HELM_BIN) with the files rewritten."""
    helm.install(hh.LEGACY_GETTER)
    env = dict(hs["env"], HELM_BIN=helm.binary)
    before = sorted(hs["work"].rglob("*"))
    proc = subprocess.run([str(Path(sys.executable).parent / "kvsops"), "helm", "--", "template", "t",
                           str(charts[helm.major]), "-f", "secrets.yaml", "-f", "values.yaml",
                           "-f", "some-secrets.windows.yaml", "--set-file", "lit=files/file.yaml"],
                          cwd=hs["work"], env={**helm.env, **env}, capture_output=True, timeout=120, check=False)
    port, data = rendered(proc)
    assert port == 83 and data["global_secret"] == "global_bar" and data["lit"].startswith("hello: ")
    assert sorted(hs["work"].rglob("*")) == before  # no .dec file, nothing written


def test_wrapper_helm_kvsops(helm: HelmCLI, charts: dict[str, Path], hs: dict[str, Any]) -> None:
    """`helm kvsops` (the legacy cli plugin, on both majors); Helm keeps -n/--namespace for itself and
    passes it as HELM_NAMESPACE, which the helm the wrapper runs reads again."""
    helm.install(hh.LEGACY_GETTER)
    helm.install(hh.CLI)
    port, data = rendered(helm.run("kvsops", "template", "t", str(charts[helm.major]), "-f", "secrets.yaml",
                                   "-n", "team-a", cwd=hs["work"], env=hs["env"]))
    assert port == 81 and data["global_secret"] == "global_bar"
    proc = helm.run("kvsops", "template", "t", str(charts[helm.major]), "-f", "secrets.yaml", "-n", "team-a",
                    cwd=hs["work"], env=hs["env"])
    assert docs(proc.stdout)["ConfigMap"]["metadata"]["namespace"] == "team-a"


def test_wrapper_without_the_getter_says_how_to_install_it(helm: HelmCLI, charts: dict[str, Path],
                                                          hs: dict[str, Any]) -> None:
    helm.install(hh.CLI)
    proc = helm.run("kvsops", "template", "t", str(charts[helm.major]), "-f", "secrets.yaml", cwd=hs["work"],
                    env=hs["env"])
    assert proc.returncode != 0 and proc.stdout == b""
    err = proc.stderr.decode()
    assert f"no Helm getter plugin for kvsops:// is installed in {helm.plugins} [MISSING_DEPENDENCY]" in err
    assert f"helm plugin install {hh.PLUGINS}/kvsops-getter-legacy" in err
    assert "no such file or directory" not in err  # Helm's own message never comes: helm did not run


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["help"], []], ids=["--help", "-h", "help", "bare"])
def test_helm_kvsops_help_is_ours(helm: HelmCLI, args: list[str]) -> None:
    helm.install(hh.CLI)
    proc = helm.run("kvsops", *args)
    text = (proc.stdout if args else proc.stderr).decode()
    assert text.startswith("usage: kvsops helm -- HELM-COMMAND") and "helm kvsops HELM-COMMAND" in text
    assert "Common actions for Helm" not in (proc.stdout + proc.stderr).decode()  # not Helm's top-level help
    assert proc.returncode == (0 if args else 2)  # Helm passes the plugin's exit code on
    # `helm help kvsops` is Helm's page for the plugin, from plugin.yaml
    proc = helm.run("help", "kvsops")
    assert proc.returncode == 0 and b"helm kvsops --help shows the wrapper's usage" in proc.stdout


# ------------------------------------------------------------------------------ diagnostics


def test_mistyped_path_hint_does_not_suggest_optional(helm: HelmCLI, charts: dict[str, Path],
                                                      hs: dict[str, Any]) -> None:
    helm.install(hh.LEGACY_GETTER)
    proc = helm.run("template", "t", str(charts[helm.major]), "-f", "secrets://secrets.yml", cwd=hs["work"],
                    env=hs["env"])
    assert proc.returncode != 0 and proc.stdout == b""
    err = proc.stderr.decode()
    assert "kvsops: error: secrets.yml: file does not exist [INPUT]" in err
    hint = next(line for line in err.splitlines() if line.startswith("kvsops: hint:"))
    assert hint.startswith(f"kvsops: hint: check the path (it is relative to {os.path.realpath(hs['work'])})")
    assert "only for a file that may be absent on purpose, write secrets://?secrets.yml" in hint


def test_kvsops_debug_reaches_the_downloader(helm: HelmCLI, charts: dict[str, Path], hs: dict[str, Any],
                                             tmp_path: Path) -> None:
    """Helm passes its environment to the getter: KVSOPS_DEBUG=1 adds the stack frames (never text)."""
    helm.install(hh.LEGACY_GETTER)
    env = {k: v for k, v in hs["env"].items() if k != "GNUPGHOME"}  # the PGP file cannot be decrypted
    plain = helm.run("template", "t", str(charts[helm.major]), "-f", "secrets://secrets.yaml", cwd=hs["work"], env=env)
    debug = helm.run("template", "t", str(charts[helm.major]), "-f", "secrets://secrets.yaml", cwd=hs["work"],
                     env={**env, "KVSOPS_DEBUG": "1"})
    for proc in (plain, debug):
        assert proc.returncode != 0 and proc.stdout == b"" and b"[NO_KEY]" in proc.stderr
        assert b"global_bar" not in proc.stderr
    assert b"kvsops: debug: traceback" not in plain.stderr
    assert b"kvsops: debug: traceback" in debug.stderr and b'File "' in debug.stderr


# ------------------------------------------------------------------------------ the README, as written


def _readme_block(title: str) -> str:
    text = (REPO / "helm-plugin/README.md").read_text()
    m = re.search(re.escape(title) + r".*?\n```sh\n(.*?)```", text, re.S)
    assert m, f"no sh block after {title!r} in helm-plugin/README.md"
    return m.group(1)


@pytest.mark.parametrize("major,title", [("helm3", "**Helm 3 and Helm 4**"), ("helm4", "**Helm 3 and Helm 4**"),
                                         ("helm4", "**Helm 4 only**")])
def test_readme_install_examples_work_as_written(tools: Any, tmp_path: Path, major: str, title: str) -> None:
    """The README's blocks run in a shell from the repository root with `helm` being the real helm,
    a fresh HOME and no kvsops or sops setting at all (the block sets what it needs)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "helm").symlink_to(tools[major])
    h = new_helm(tools, major, tmp_path / "h")
    env = {k: v for k, v in h.env.items() if not k.startswith(("HELM_PLUGINS", "HELM_DATA_HOME"))}
    env.update(XDG_DATA_HOME=str(tmp_path / "xdg-data"), PATH=os.pathsep.join([str(bindir), env["PATH"]]))
    script = _readme_block(title)
    proc = subprocess.run(["sh", "-eu", "-c", script], cwd=REPO, env=env, capture_output=True, timeout=300, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()
    assert b"DB_PASSWORD" in proc.stdout and b"correct-horse-battery-staple" in proc.stdout


def test_example_renders_without_a_helm_cli() -> None:
    """examples/helm/render.py: the getter run as Helm runs it, the chart rendered by Helm's engine."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOPS_", "KVSOPS_", "ARGOCD_"))}
    proc = subprocess.run([sys.executable, str(REPO / "examples/helm/render.py")], cwd=REPO / "examples/helm",
                          env=env, capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b'DB_PASSWORD: "correct-horse-battery-staple"' in proc.stdout and b"port: 8080" in proc.stdout
