"""End to end through Helm's real template engine (PyPI helm-python-sdk, Helm v4 as a library).

Helm's values pipeline is reproduced: each `-f href` whose scheme a plugin registers goes to the
downloader (invoked as Helm does, tests/helm_harness.py); its stdout is parsed with Helm's YAML
loader and deep-merged in order; each `--set-file k=href` becomes a string value. The result is
rendered by Helm's engine with the chart in tests/integration/helm_chart.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import helm_harness as hh

helm = pytest.importorskip("helm_python")

CHART = Path(__file__).resolve().parent / "helm_chart"
REPO = hh.REPO


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v
    return dst


class Helm:
    """`helm template` with our getter plugin installed, values fetched the way Helm fetches them."""

    def __init__(self, installed: Path, major: str, cwd: Path, env: dict[str, str]) -> None:
        import yaml

        self.installed, self.major, self.cwd, self.env = installed, major, cwd, env
        meta = yaml.safe_load((installed / "plugin.yaml").read_text())
        self.protocols = ({p for d in meta["downloaders"] for p in d["protocols"]} if "downloaders" in meta
                          else set(meta["config"]["protocols"]))

    def fetch(self, href: str, extra: dict[str, str] | None = None) -> bytes:
        if hh.scheme_of(href) not in self.protocols:
            return (self.cwd / href).read_bytes()  # Helm's os.ReadFile fallback
        res = hh.run_downloader(self.installed, href, cwd=self.cwd, major=self.major, base_env=self.env,
                                extra_env=extra)
        if res.returncode != 0:
            raise RuntimeError(res.stderr.decode())
        return res.stdout

    def values(self, files: list[str], set_files: list[tuple[str, str]] = (), extra: dict[str, str] | None = None
               ) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for href in files:
            merged = _merge(merged, helm.values_from_yaml(self.fetch(href, extra).decode()) or {})
        for key, href in set_files:
            merged = _merge(merged, {key: self.fetch(href, extra).decode()})
        return merged

    def template(self, files: list[str], set_files: list[tuple[str, str]] = (), extra: dict[str, str] | None = None
                 ) -> str:
        with helm.Chart.load(str(CHART)) as chart:
            out = chart.render(self.values(files, set_files, extra), name="t", namespace="default")
        return "\n---\n".join(out[k] for k in sorted(out))


# ------------------------------------------------------------------------------ demo key, our chart


@pytest.fixture(scope="module")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("plugins")
    return {p.name: hh.install(p, d) for p in (hh.LEGACY_GETTER, hh.V1_GETTER)}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, tools: object) -> Path:
    """A values file encrypted by the real sops to the bundled demo age key."""
    from tests.integration.interop_helpers import run_sops

    work = tmp_path_factory.mktemp("demo work")
    recipient = (REPO / "examples/keys/demo-age-recipient.txt").read_text().strip()
    src = work / "src.yaml"
    src.write_text("global_secret: s3cr3t\nservice:\n  port: 8443\npodAnnotations:\n  team: \"kvsops\"\n")
    out = run_sops(tools.sops, ["encrypt", "--age", recipient, str(src)], tools.env(), work).stdout  # type: ignore[attr-defined]
    src.unlink()
    (work / "secrets.yaml").write_bytes(out)
    return work


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOPS_", "KVSOPS_", "ARGOCD_"))}
    env.update(extra)
    return env


@pytest.mark.parametrize("major,plugin", [("helm3", "kvsops-getter-legacy"), ("helm4.0", "kvsops-getter"),
                                          ("helm4.1", "kvsops-getter")])
def test_renders_values_from_the_downloader(plugins: dict[str, Path], demo: Path, major: str, plugin: str) -> None:
    env = _env(SOPS_AGE_KEY_FILE=str(REPO / "examples/keys/demo-age-key.txt"))
    h = Helm(plugins[plugin], major, demo, env)
    out = h.template(["secrets://secrets.yaml"])
    assert "port: 8443" in out and "containerPort: 8443" in out
    assert 'global_secret: "s3cr3t"' in out and "team: kvsops" in out
    # a later plain -f overrides; a missing `?` file changes nothing
    (demo / "override.yaml").write_text("service:\n  port: 9000\n")
    out = h.template(["secrets://secrets.yaml", "secrets://?absent.yaml", "override.yaml"])
    assert "port: 9000" in out and 'global_secret: "s3cr3t"' in out


def test_set_file_gets_the_plaintext_as_a_string(plugins: dict[str, Path], demo: Path) -> None:
    env = _env(SOPS_AGE_KEY_FILE=str(REPO / "examples/keys/demo-age-key.txt"))
    h = Helm(plugins["kvsops-getter-legacy"], "helm3", demo, env)
    out = h.template([], [("global_secret", "secrets+literal://from-literal")])
    assert 'global_secret: "from-literal"' in out


# ------------------------------------------------------------------------------ helm-secrets conformance


@pytest.fixture(scope="module")
def hs(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory, tools: object) -> dict[str, Any]:
    root = conformance_dir / "helm-secrets"
    if not root.is_dir():
        pytest.skip("helm-secrets conformance fixtures absent")
    home = tmp_path_factory.mktemp("hs-gnupg")
    home.chmod(0o700)
    subprocess.run([tools.gpg, "--batch", "--import", str(root / "gpg/private.gpg")],  # type: ignore[attr-defined]
                   env=dict(os.environ, GNUPGHOME=str(home)), check=True, capture_output=True)
    env = _env(GNUPGHOME=str(home), SOPS_AGE_KEY_FILE=str(root / "age/key.txt"), HOME=str(home))
    return {"root": root, "values": root / "values/sops", "env": env}


@pytest.mark.parametrize("major,plugin", [("helm3", "kvsops-getter-legacy"), ("helm4.1", "kvsops-getter")])
@pytest.mark.parametrize("name,dec,port", [("secrets.yaml", "secrets.dec.yaml", 81),
                                           ("some-secrets.yaml", "some-secrets.dec.yaml", 83),
                                           ("some-secrets.windows.yaml", "some-secrets.dec.yaml", 83)])
def test_conformance_decrypts_to_dec_and_renders(plugins: dict[str, Path], hs: dict[str, Any], major: str,
                                                 plugin: str, name: str, dec: str, port: int) -> None:
    h = Helm(plugins[plugin], major, hs["values"], hs["env"])
    got, want = h.fetch(f"secrets://{name}"), (hs["values"] / dec).read_bytes()
    # the .dec files carry one extra final newline that `sops -d` does not print
    assert got == want[:-1] and want.endswith(b"\n\n")
    out = h.template([f"secrets://{name}"])
    assert f"port: {port}" in out and 'global_secret: "global_bar"' in out


def test_conformance_age_gotpl_and_raw(plugins: dict[str, Path], hs: dict[str, Any]) -> None:
    h = Helm(plugins["kvsops-getter-legacy"], "helm3", hs["values"], hs["env"])
    assert "global_secret: global_age" in h.fetch("secrets://secrets.age.yaml").decode()
    assert h.fetch("secrets://secrets.yaml.gotpl").startswith(b"global_secret: ")
    assert h.fetch("secrets://secrets.trailing-newline.raw") == (hs["values"] / "secrets.trailing-newline.dec.raw").read_bytes()
    out = h.template(["secrets://secrets.yaml", "secrets://some-secrets.yaml"])
    assert "port: 83" in out  # later files win, as with helm -f a -f b


def test_conformance_imports_with_key_prefix(plugins: dict[str, Path], hs: dict[str, Any]) -> None:
    env = dict(hs["env"], GNUPGHOME=str(hs["root"] / "nonexistent-home"))
    env.pop("SOPS_AGE_KEY_FILE")
    h = Helm(plugins["kvsops-getter"], "helm4.1", hs["values"], env)
    with pytest.raises(RuntimeError, match="outside the allowed key location"):
        h.fetch("secrets+age-import://../../age/key.txt?secrets.age.yaml")
    extra = {"KVSOPS_HELM_KEY_PREFIX": str(hs["root"])}
    assert "port: 81" in h.template(["secrets+gpg-import://../../gpg/private.gpg?secrets.yaml"], extra=extra)
    assert b"global_secret" in h.fetch("secrets+age-import://../../age/key.txt?secrets.age.yaml", extra)
    assert b"global_secret" in h.fetch("secrets+gpg-import://../../gpg/private2.gpg?secrets.gpg_key.yaml", extra)


def test_conformance_plain_and_empty(plugins: dict[str, Path], hs: dict[str, Any]) -> None:
    h = Helm(plugins["kvsops-getter-legacy"], "helm3", hs["values"], hs["env"])
    for name in ("values.yaml", "secrets.empty.yaml"):
        with pytest.raises(RuntimeError, match="not encrypted"):
            h.fetch(f"secrets://{name}")
    allow = {"KVSOPS_HELM_ALLOW_UNENCRYPTED": "true"}
    assert "port: 85" in h.template(["secrets://values.yaml"], extra=allow)
    assert "port: 80" in h.template(["secrets://secrets.empty.yaml"], extra=allow)
    assert "port: 80" in h.template(["secrets://?does-not-exist.yaml"])


def test_conformance_set_file(plugins: dict[str, Path], hs: dict[str, Any]) -> None:
    h = Helm(plugins["kvsops-getter-legacy"], "helm3", hs["values"], hs["env"])
    out = h.fetch("secrets://files/file.yaml")
    assert out.startswith(b"hello: ") and b"sops" not in out


def test_example_renders() -> None:
    proc = subprocess.run([os.sys.executable, str(REPO / "examples/helm/render.py")], cwd=REPO / "examples/helm",
                          env=_env(), capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b'DB_PASSWORD: "correct-horse-battery-staple"' in proc.stdout and b"port: 8080" in proc.stdout
