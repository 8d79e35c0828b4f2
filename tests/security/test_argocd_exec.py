"""Tenant isolation in the Argo CD sidecar: a repository can never make it run a program.

The threat: anyone who can commit to a watched repository. The sidecar holds every tenant's keys
(here: one age key file with team-a's and team-b's identities, Key Vault keys for both, a policy
for two projects). team-b's repository tries to run a program every way we know of; each attempt
is rendered by ``kvsops argocd generate`` exactly as argocd-cmp-server runs it (tests/cmp_harness.py:
a private 0700 copy, files 0644, the sidecar env plus the request env), with the real kustomize 5.6
and 5.8 and the real Helm 3 CLI. For every attempt: the program never runs (the marker file it would
write stays absent), and neither key material nor team-a's plaintext appears in stdout or stderr.

Positive controls in the same module: team-b's own KRM-style SopsGenerator, KSOPS and
SopsSecretGenerator configs render its secrets; team-b naming team-a's file is refused with
POLICY_REFUSED and no Key Vault call; Helm and plain modes render as before.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from tests.cmp_harness import BIN, KVSOPS, Cmp, objs, secret_value
from tests.conftest import tool_dirs
from tests.keys import AgeKey
from tests.security.plugin import record
from tests.security.support import canary, leaks

pytestmark = pytest.mark.security
CAT = "argocd exec"
VERSIONS = ["kustomize56", "kustomize58"]
SHELL = "/bin/sh"


# ----------------------------------------------------------------------------- the sidecar


class Sidecar:
    """Two tenants' keys and policy in one sidecar, and team-b's repository to attack it with."""

    def __init__(self, tmp: Path, tools: Any, kv: tuple[Any, dict[str, str]]) -> None:
        self.tmp = tmp
        self.tools = tools
        self.emu, kv_env = kv
        self.a, self.b = AgeKey(tmp / "keys-a"), AgeKey(tmp / "keys-b")
        keyfile = tmp / "keys" / "keys.txt"
        keyfile.parent.mkdir()
        keyfile.write_text(f"# team-a\n{self.a.identity}\n# team-b\n{self.b.identity}\n")
        for team in ("team-a", "team-b"):
            self.emu.create_key(team)
        self.canary_a, self.canary_b = canary("teamA"), canary("teamB")
        pol = {"rules": [
            {"projects": ["team-a"], "age": [self.a.recipient], "azure_kv": [self.emu.key_url("team-a")]},
            {"projects": ["team-b"], "age": [self.b.recipient], "azure_kv": [self.emu.key_url("team-b")]},
        ]}
        path = [str(BIN), *(str(d) for d in tool_dirs()), "/usr/local/bin", "/usr/bin", "/bin"]
        self.env = {**kv_env, "KVSOPS_AZURE_CREDENTIAL": "workload_identity", "SOPS_AGE_KEY_FILE": str(keyfile),
                    "KVSOPS_POLICY": json.dumps(pol), "PATH": os.pathsep.join(path)}
        self.secrets = [self.a.identity, self.b.identity, self.canary_a]
        self.src = tmp / "src"
        self.app = self.src / "team-b" / "app"
        self.app.mkdir(parents=True)
        self.b.write(self.app / "secret.enc.yaml", _secret("b-secret", self.canary_b))
        self.a.write(self.src / "team-a" / "secret.enc.yaml", _secret("a-secret", self.canary_a))
        (tmp / "cmp").mkdir()
        self.cmp = Cmp(tmp / "cmp", tools)

    def run(self, app: str = "team-b/app", *, version: str = "kustomize58", project: str = "team-b",
            sidecar: dict[str, str] | None = None, copy: Path | None = None,
            **kw: Any) -> subprocess.CompletedProcess[bytes]:
        side = {**self.env, "KVSOPS_KUSTOMIZE_BIN": self.tools[version], **(sidecar or {})}
        return self.cmp.run(self.src, app, project=project, sidecar=side, copy=copy, **kw)

    def clean(self, proc: subprocess.CompletedProcess[bytes], marker: Path) -> None:
        """The program never ran; no key material, no other tenant's plaintext in any output."""
        text = proc.stdout + b"\n" + proc.stderr
        found = leaks(text, [self.canary_a]) + [s[:20] for s in self.secrets[:2] if s.encode() in text]
        if b"AGE-SECRET-KEY-1" in text.upper():
            found.append("AGE-SECRET-KEY-1")
        record(CAT, cases=1, leaked=len(found))
        assert not marker.exists(), "a program named by the repository ran"
        assert not found, f"key material or team-a's plaintext in the output: {found}"
        if proc.returncode != 0:
            assert proc.stdout == b"", "a failed render must leave stdout empty"
            assert self.canary_b.encode() not in proc.stderr


@pytest.fixture
def side(tmp_path: Path, tools: Any, kv: tuple[Any, dict[str, str]]) -> Sidecar:
    return Sidecar(tmp_path, tools, kv)


def _secret(name: str, value: str) -> str:
    return f"apiVersion: v1\nkind: Secret\nmetadata:\n    name: {name}\nstringData:\n    token: {value}\n"


def _indent(text: str, n: int) -> str:
    return "".join(" " * n + line + "\n" for line in text.splitlines())


def evil(marker: Path, *, kind: str = "Evil", api: str = "x/v1", key: str = "config.kubernetes.io/function",
         spec: str | None = None, name: str = "e") -> str:
    """A config naming /bin/sh. With no args, sh reads the ResourceList on stdin as its script, so
    the ``run`` lines execute (this needs no exec.args: kustomize 5.6 runs it too)."""
    spec = spec if spec is not None else f"exec:\n  path: {SHELL}\n"
    script = f'touch {marker}\ncat "$SOPS_AGE_KEY_FILE" >&2\nexit 0\n'
    return (f"apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}\n  annotations:\n    {key}: |\n"
            f"{_indent(spec, 6)}run: |\n{_indent(script, 2)}")


def _kust(app: Path, text: str) -> None:
    (app / "kustomization.yaml").write_text(text)


def _executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def _git_repo(path: Path) -> None:
    cmd = "git init -q -b main . && git add -A && git -c user.email=t@t -c user.name=t commit -qm x"
    subprocess.run(cmd, shell=True, cwd=path, check=True, capture_output=True)


# ----------------------------------------------------------------------------- the attempts (kustomize mode)
# Each writes team-b's attempt into the source tree; returns extra run options. The marker is the
# file the named program would create.

Attempt = Callable[[Sidecar, Path], "dict[str, Any] | None"]


def exec_generator(s: Sidecar, m: Path) -> None:
    _kust(s.app, "generators: [gen.yaml]\n")
    (s.app / "gen.yaml").write_text(evil(m))


def exec_with_args(s: Sidecar, m: Path) -> None:
    _kust(s.app, "generators: [gen.yaml]\n")
    (s.app / "gen.yaml").write_text(evil(m, spec=f"exec:\n  path: {SHELL}\n  args: [-c, 'touch {m}']\n"))


def legacy_annotation(s: Sidecar, m: Path) -> None:
    _kust(s.app, "generators: [gen.yaml]\n")
    (s.app / "gen.yaml").write_text(evil(m, key="config.k8s.io/function"))


def config_fn(s: Sidecar, m: Path) -> None:
    _kust(s.app, "generators: [gen.yaml]\n")
    (s.app / "gen.yaml").write_text(
        f"apiVersion: x/v1\nkind: Evil\nmetadata:\n  name: e\n  configFn:\n    exec:\n      path: {SHELL}\n"
        f"run: |\n  touch {m}\n")


def container_function(s: Sidecar, m: Path) -> dict[str, Any]:
    """A container function would run ``docker`` found on PATH: the repo ships one, and the
    sidecar's PATH even has a relative entry."""
    _kust(s.app, "generators: [gen.yaml]\n")
    (s.app / "gen.yaml").write_text(evil(m, spec="container:\n  image: evil.example/steal:latest\n"))
    (s.app / "docker").write_text(f"#!/bin/sh\ntouch {m}\n")
    return {"executable": ["team-b/app/docker"], "path_prefix": "."}


def in_local_base(s: Sidecar, m: Path) -> None:
    base = s.src / "team-b" / "base"
    base.mkdir()
    _kust(base, "generators: [gen.yaml]\n")
    (base / "gen.yaml").write_text(evil(m))
    _kust(s.app, "resources: [../base]\n")


def in_component(s: Sidecar, m: Path) -> None:
    comp = s.src / "team-b" / "comp"
    comp.mkdir()
    (comp / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\ngenerators: [gen.yaml]\n")
    (comp / "gen.yaml").write_text(evil(m))
    _kust(s.app, "components: [../comp]\n")


def symlinked_app_path(s: Sidecar, m: Path) -> dict[str, Any]:
    """ARGOCD_APP_SOURCE_PATH is a symlink to a sibling directory: the old scan looked elsewhere."""
    sibling = s.src / "shared" / "tools"
    sibling.mkdir(parents=True)
    _kust(sibling, "generators: [gen.yaml]\n")
    (sibling / "gen.yaml").write_text(evil(m))
    link = s.src / "team-b" / "linked"
    link.symlink_to("../shared/tools")
    return {"app": "team-b/linked"}


def _remote(s: Sidecar, m: Path) -> None:
    remote = s.tmp / "remote"
    (remote / "base").mkdir(parents=True)
    _kust(remote / "base", "generators: [gen.yaml]\nresources: [cm.yaml]\n")
    (remote / "base" / "gen.yaml").write_text(evil(m))
    (remote / "base" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: remote}\n")
    _git_repo(remote)
    _kust(s.app, f"resources:\n- file://{remote}//base?ref=main\n")


def remote_base_refused_protocol(s: Sidecar, m: Path) -> None:
    """git only speaks https by default: the file:// fetch itself is refused."""
    _remote(s, m)


def remote_base_fetched(s: Sidecar, m: Path) -> dict[str, Any]:
    """With file:// allowed, localize fetches the base into the private copy, where kvsops sees
    (and refuses) its function."""
    _remote(s, m)
    return {"sidecar": {"KVSOPS_GIT_ALLOW_PROTOCOL": "file"}, "code": "PLUGIN_REFUSED"}


def inline(s: Sidecar, m: Path) -> None:
    _kust(s.app, "generators:\n- |\n" + _indent(evil(m), 2))


def wrapped_in_list(s: Sidecar, m: Path) -> None:
    _kust(s.app, "generators: [gen.yaml]\n")
    listed = {"apiVersion": "v1", "kind": "List", "items": [yaml.safe_load(evil(m))]}
    (s.app / "gen.yaml").write_text(yaml.safe_dump(listed))


def very_large_file(s: Sidecar, m: Path) -> None:
    """Past the size the old byte scan read (4 MiB)."""
    _kust(s.app, "generators: [gen.yaml]\n")
    (s.app / "gen.yaml").write_text(evil(m) + f"padding: {'x' * (6 * 1024 * 1024)}\n")


def escaped_annotation_key(s: Sidecar, m: Path) -> None:
    """The annotation key spelled with YAML escapes: no literal 'config.kubernetes.io/function' bytes."""
    _kust(s.app, "generators: [gen.yaml, gen2.yaml]\n")
    (s.app / "gen.yaml").write_text(evil(m, key='"config.kubernetes.io\\x2Ffunction"'))
    (s.app / "gen2.yaml").write_text(evil(m, key='"\\u0063onfig.k8s.io/function"', name="e2"))


def as_transformer(s: Sidecar, m: Path) -> None:
    _kust(s.app, "resources: [cm.yaml]\ntransformers: [gen.yaml]\n")
    (s.app / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    (s.app / "gen.yaml").write_text(evil(m))


def as_validator(s: Sidecar, m: Path) -> None:
    _kust(s.app, "resources: [cm.yaml]\nvalidators: [gen.yaml]\n")
    (s.app / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    (s.app / "gen.yaml").write_text(evil(m))


def case_variant_field(s: Sidecar, m: Path) -> None:
    """kustomize matches kustomization fields case-insensitively (encoding/json)."""
    _kust(s.app, "GENERATORS: [gen.yaml]\n")
    (s.app / "gen.yaml").write_text(evil(m))


def legacy_plugin_traversal(s: Sidecar, m: Path) -> None:
    """No function at all: kustomize joins the legacy plugin path from apiVersion and kind unchecked,
    so this config names /bin/sh, which runs the config file as its script (5.6 and 5.8)."""
    _kust(s.app, "generators: [gen.yaml]\n")
    (s.app / "gen.yaml").write_text(f"apiVersion: g/{'../' * 16}bin/x\nkind: ../sh\nmetadata:\n  name: e\n"
                                    f"run: |\n  touch {m}\n")


def legacy_plugin_into_checkout(s: Sidecar, m: Path) -> dict[str, Any]:
    """The same traversal aimed at an executable the repository ships (with a Go-plugin .so beside)."""
    _kust(s.app, "generators: [gen.yaml]\n")
    (s.app / "plug" / "evil").mkdir(parents=True)
    (s.app / "plug" / "evil" / "evil").write_text(f"#!/bin/sh\ntouch {m}\n")
    (s.app / "plug" / "evil" / "evil.so").write_bytes(b"\x7fELF not really")
    up = "../" * 24
    (s.app / "gen.yaml").write_text(f"apiVersion: g/{up}{{ROOT}}/team-b/app/plug\nkind: evil\nmetadata: {{name: e}}\n")
    return {"executable": ["team-b/app/plug/evil/evil"], "root_in": ["team-b/app/gen.yaml"]}


def served_kind_foreign_program(s: Sidecar, m: Path) -> None:
    _kust(s.app, "generators: [gen.yaml]\n")
    (s.app / "gen.yaml").write_text(evil(m, kind="SopsGenerator", api="kvsops/v1"))


def ksops_container(s: Sidecar, m: Path) -> None:
    _kust(s.app, "generators: [gen.yaml]\n")
    (s.app / "gen.yaml").write_text(evil(m, kind="ksops", api="viaduct.ai/v1",
                                         spec="container:\n  image: ksops:evil\n"))


def generator_directory(s: Sidecar, m: Path) -> None:
    """A generators entry that is a kustomization whose transformers add the function annotation."""
    gens = s.app / "gens"
    gens.mkdir()
    _kust(gens, "resources: [g.yaml]\ncommonAnnotations:\n"
                f"  config.kubernetes.io/function: 'exec: {{path: {SHELL}}}'\n")
    (gens / "g.yaml").write_text(f"apiVersion: x/v1\nkind: Evil\nmetadata: {{name: e}}\nrun: |\n  touch {m}\n")
    _kust(s.app, "generators: [gens]\n")


def kustomize_helm_charts(s: Sidecar, m: Path) -> dict[str, Any]:
    """--enable-alpha-plugins turns kustomize's Helm support on: helm would run with homes (and so
    plugins) from helmGlobals.configHome, a directory of the repository."""
    home = s.app / "helm-home"
    plugin = home / ".data" / "plugins" / "evil"
    plugin.mkdir(parents=True)
    (plugin / "plugin.yaml").write_text("name: evil\nversion: 0.1.0\ncommand: $HELM_PLUGIN_DIR/run.sh\n"
                                        "downloaders:\n- command: run.sh\n  protocols: [evil]\n")
    (plugin / "run.sh").write_text(f"#!/bin/sh\ntouch {m}\n")
    _kust(s.app, "helmGlobals: {configHome: ./helm-home}\nhelmCharts:\n- name: c\n  repo: evil://charts\n"
                 "  version: 1.0.0\n")
    helm_dir = s.tmp / "helm-on-path"  # the image has helm on PATH, as kustomize expects it
    helm_dir.mkdir()
    (helm_dir / "helm").symlink_to(s.tools["helm3"])
    return {"executable": ["team-b/app/helm-home/.data/plugins/evil/run.sh"],
            "sidecar": {"PATH": os.pathsep.join([str(helm_dir), s.env["PATH"]])}}


def builtin_helm_generator(s: Sidecar, m: Path) -> None:
    _kust(s.app, "generators: [helm.yaml]\n")
    (s.app / "helm.yaml").write_text("apiVersion: builtin\nkind: HelmChartInflationGenerator\nmetadata: {name: h}\n"
                                     "chartName: c\nchartRepoUrl: evil://charts\n")


def relative_path_entries(s: Sidecar, m: Path) -> dict[str, Any]:
    """The sidecar's PATH has relative entries and the repo ships kustomize and git: kvsops looks
    tools up on absolute entries outside the checkout only."""
    _kust(s.app, "resources: [cm.yaml]\n")
    (s.app / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
    for name in ("kustomize", "git", "kvsops-krm"):
        (s.app / "bin" / name).parent.mkdir(exist_ok=True)
        (s.app / "bin" / name).write_text(f"#!/bin/sh\ntouch {m}\n")
    return {"executable": [f"team-b/app/bin/{n}" for n in ("kustomize", "git", "kvsops-krm")],
            "path_prefix": "bin:.", "unset_bin": True, "ok": True}


ATTEMPTS: dict[str, Attempt] = {f.__name__: f for f in (
    exec_generator, exec_with_args, legacy_annotation, config_fn, container_function, in_local_base,
    in_component, symlinked_app_path, remote_base_refused_protocol, remote_base_fetched, inline,
    wrapped_in_list, very_large_file, escaped_annotation_key, as_transformer, as_validator,
    case_variant_field, legacy_plugin_traversal, legacy_plugin_into_checkout, served_kind_foreign_program,
    ksops_container, generator_directory, kustomize_helm_charts, builtin_helm_generator, relative_path_entries,
)}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("attempt", list(ATTEMPTS))
def test_repository_cannot_run_a_program(side: Sidecar, attempt: str, version: str) -> None:
    marker = side.tmp / f"ran-{attempt}"
    opts = ATTEMPTS[attempt](side, marker) or {}
    root = side.cmp.copy_repo(side.src)
    for rel in opts.get("root_in", []):  # absolute paths of the private copy, known only now
        p = root / rel
        p.write_text(p.read_text().replace("{ROOT}", str(root).lstrip("/")))
    for rel in opts.get("executable", []):  # as if the cmp-server kept file modes (preserveFileMode)
        (root / rel).chmod(0o755)
    sidecar = dict(opts.get("sidecar", {}))
    if "path_prefix" in opts:
        sidecar["PATH"] = os.pathsep.join([opts["path_prefix"], sidecar.get("PATH", side.env["PATH"])])
    if opts.get("unset_bin"):
        sidecar["KVSOPS_KUSTOMIZE_BIN"] = ""
    proc = side.run(opts.get("app", "team-b/app"), version=version, sidecar=sidecar, copy=root)
    side.clean(proc, marker)
    if opts.get("ok"):
        assert proc.returncode == 0, proc.stderr.decode()
        return
    assert proc.returncode != 0, proc.stdout.decode()[:2000]
    err = proc.stderr.decode()
    assert "kvsops: error:" in err and "Traceback" not in err
    if "code" in opts:
        assert f"[{opts['code']}]" in err, err


LIVE = ["exec_generator", "legacy_annotation", "in_local_base", "symlinked_app_path", "inline", "wrapped_in_list",
        "very_large_file", "escaped_annotation_key", "as_validator", "case_variant_field", "legacy_plugin_traversal",
        "legacy_plugin_into_checkout", "generator_directory", "kustomize_helm_charts", "remote_base_fetched"]


@pytest.mark.parametrize("attempt", LIVE)
def test_attempts_are_live_against_plain_kustomize(side: Sidecar, tmp_path: Path, attempt: str) -> None:
    """Control: the same attempts DO run their program under the command line the sidecar used to
    have (``kustomize build --enable-alpha-plugins --enable-exec``), so an absent marker above means
    kvsops stopped them. (legacy_plugin_traversal and kustomize_helm_charts need no --enable-exec.)"""
    marker = side.tmp / f"ran-{attempt}"
    opts = ATTEMPTS[attempt](side, marker) or {}
    root = side.cmp.copy_repo(side.src)
    for rel in opts.get("root_in", []):
        p = root / rel
        p.write_text(p.read_text().replace("{ROOT}", str(root).lstrip("/")))
    for rel in opts.get("executable", []):
        (root / rel).chmod(0o755)
    home = tmp_path / "plugin-home"
    home.mkdir()
    env = {**side.env, **opts.get("sidecar", {}), "KUSTOMIZE_PLUGIN_HOME": str(home), "HOME": str(tmp_path)}
    flags = ["--enable-alpha-plugins"] + ([] if attempt in ("legacy_plugin_traversal", "kustomize_helm_charts")
                                          else ["--enable-exec"])
    subprocess.run([side.tools.kustomize58, "build", *flags, "."], cwd=root / opts.get("app", "team-b/app"),
                   env=env, capture_output=True, timeout=120)
    assert marker.exists(), f"{attempt} did not run its program under plain kustomize: the attempt is not live"


def test_every_refusal_names_the_config_and_the_way_out(side: Sidecar) -> None:
    marker = side.tmp / "ran"
    exec_generator(side, marker)
    err = side.run().stderr.decode()
    assert "[PLUGIN_REFUSED]" in err and "team-b/app/gen.yaml" in err and "exec function '/bin/sh'" in err
    assert "kvsops: hint:" in err and "never" in err


# ----------------------------------------------------------------------------- positive controls


KRM = {
    "SopsGenerator": ("kvsops/v1", "kvsops-krm",
                      "secrets:\n  - name: b-gen\n    files:\n      - token=secret.enc.yaml\n"),
    "ksops": ("viaduct.ai/v1", "ksops", "files:\n  - ./secret.enc.yaml\n"),
    "SopsSecretGenerator": ("goabout.com/v1beta1", "SopsSecretGenerator",
                            "disableNameSuffixHash: true\nfiles:\n  - token=secret.enc.yaml\n"),
}


def _krm(kind: str, *, function: bool = True, program: str | None = None) -> str:
    api, name, body = KRM[kind]
    ann = f"  annotations:\n    config.kubernetes.io/function: |\n      exec:\n        path: {program or name}\n"
    return f"apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: b-{kind.lower()}\n{ann if function else ''}{body}"


def _token(proc: subprocess.CompletedProcess[bytes]) -> str:
    docs = objs(proc.stdout)
    secret = next(d for d in docs if d["kind"] == "Secret")
    value = secret_value(secret, "token")
    return value if "ENC[" not in value else ""


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kind", list(KRM))
@pytest.mark.parametrize("style", ["krm", "legacy"])
def test_team_b_renders_its_own_generators(side: Sidecar, kind: str, version: str, style: str) -> None:
    _kust(side.app, "generators: [gen.yaml]\n")
    (side.app / "gen.yaml").write_text(_krm(kind, function=style == "krm"))
    proc = side.run(version=version)
    side.clean(proc, side.tmp / "none")
    assert proc.returncode == 0, proc.stderr.decode()
    token = _token(proc)
    assert side.canary_b in token, token[:200]


def test_repo_shipped_function_binary_is_never_run(side: Sidecar) -> None:
    """A KSOPS config naming ``./ksops``, a script the repository ships: kvsops serves the config
    itself; the repository's program never runs."""
    marker = side.tmp / "ran"
    _kust(side.app, "generators: [gen.yaml]\n")
    (side.app / "gen.yaml").write_text(_krm("ksops", program="./ksops"))
    (side.app / "ksops").write_text(f"#!/bin/sh\ntouch {marker}\n")
    root = side.cmp.copy_repo(side.src)
    (root / "team-b/app/ksops").chmod(0o755)
    proc = side.run(copy=root)
    side.clean(proc, marker)
    assert proc.returncode == 0, proc.stderr.decode()
    assert side.canary_b in _token(proc)


def test_exec_envs_cannot_widen_the_root_or_change_the_project(side: Sidecar) -> None:
    """exec.envs is ignored (kvsops' generators run as legacy plugins, which get kustomize's own
    allow-listed environment): no KVSOPS_ALLOW_OUTSIDE_ROOT, no other project."""
    _kust(side.app, "generators: [gen.yaml]\n")
    gen = _krm("ksops").replace("        path: ksops\n", "        path: ksops\n        envs:\n"
                                "          - KVSOPS_ALLOW_OUTSIDE_ROOT=true\n"
                                "          - ARGOCD_APP_PROJECT_NAME=team-a\n")
    (side.app / "gen.yaml").write_text(gen.replace("./secret.enc.yaml", "../../team-a/secret.enc.yaml"))
    proc = side.run()
    side.clean(proc, side.tmp / "none")
    assert proc.returncode != 0 and b"[PATH_REFUSED]" in proc.stderr


def test_team_b_naming_team_a_age_file_is_refused(side: Sidecar) -> None:
    (side.app / "a.enc.yaml").write_bytes((side.src / "team-a" / "secret.enc.yaml").read_bytes())
    _kust(side.app, "generators: [gen.yaml]\n")
    (side.app / "gen.yaml").write_text(_krm("ksops").replace("./secret.enc.yaml", "./a.enc.yaml"))
    proc = side.run()
    side.clean(proc, side.tmp / "none")
    assert proc.returncode != 0 and b"[POLICY_REFUSED]" in proc.stderr
    # team-a itself renders the same file
    ok = side.run(project="team-a")
    assert ok.returncode == 0, ok.stderr.decode()
    assert side.canary_a in objs(ok.stdout)[0]["stringData"]["token"]


def test_team_b_naming_team_a_key_vault_file_is_refused_without_a_call(side: Sidecar) -> None:
    plain = side.tmp / "kv.yaml"
    plain.write_text(_secret("a-kv", side.canary_a))
    enc = subprocess.run([KVSOPS, "encrypt", "--azure-kv", side.emu.key_url("team-a"), "--encrypted-regex",
                          "^stringData$", str(plain)], env={**os.environ, **side.env}, capture_output=True, timeout=60)
    assert enc.returncode == 0, enc.stderr.decode()
    (side.app / "a-kv.enc.yaml").write_bytes(enc.stdout)
    _kust(side.app, "generators: [gen.yaml]\n")
    (side.app / "gen.yaml").write_text(_krm("ksops").replace("./secret.enc.yaml", "./a-kv.enc.yaml"))
    side.emu.reset_counters()
    proc = side.run()
    side.clean(proc, side.tmp / "none")
    assert proc.returncode != 0 and b"[POLICY_REFUSED]" in proc.stderr
    assert sum(side.emu.counts.values()) == 0 and sum(side.emu.token_requests.values()) == 0
    ok = side.run(project="team-a")  # the owner renders it, through Key Vault
    assert ok.returncode == 0, ok.stderr.decode()
    assert side.canary_a in objs(ok.stdout)[0]["stringData"]["token"] and side.emu.counts["decrypt"] >= 1


def test_plain_mode_unchanged(side: Sidecar) -> None:
    proc = side.run()
    side.clean(proc, side.tmp / "none")
    assert proc.returncode == 0, proc.stderr.decode()
    assert side.canary_b in _token(proc)
    assert side.run(project="team-a").returncode != 0  # team-b's file is not team-a's


# ----------------------------------------------------------------------------- Helm mode (real Helm 3)


def _chart(s: Sidecar, marker: Path) -> None:
    """team-b's chart, with Helm plugin directories of its own that claim kvsops' schemes."""
    (s.app / "templates").mkdir()
    (s.app / "Chart.yaml").write_text("apiVersion: v2\nname: b\nversion: 0.1.0\n")
    (s.app / "templates" / "secret.yaml").write_text(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: b\nstringData:\n  token: {{ .Values.stringData.token }}\n")
    for d in ("plugins/evil", "helm-home/data/plugins/evil", ".helm/plugins/evil"):
        plugin = s.app / d
        plugin.mkdir(parents=True)
        (plugin / "plugin.yaml").write_text("name: evil\nversion: 0.1.0\ncommand: $HELM_PLUGIN_DIR/run.sh\n"
                                            "downloaders:\n- command: run.sh\n  protocols: [kvsops, secrets, evil]\n")
        (plugin / "run.sh").write_text(f"#!/bin/sh\ntouch {marker}\n")


def _helm_sidecar(s: Sidecar, marker: Path | None = None) -> dict[str, str]:
    """The image's setup: kvsops' downloader in HELM_PLUGINS (and, to prove init never reaches the
    operator's plugins, a probe getter there)."""
    from tests import helm_harness as hh

    plugins = s.tmp / "helm-plugins"
    if not plugins.exists():
        hh.install(hh.LEGACY_GETTER, plugins)
        if marker is not None:
            probe = plugins / "probe"
            probe.mkdir()
            (probe / "plugin.yaml").write_text("name: probe\nversion: 0.1.0\ndownloaders:\n- command: run.sh\n"
                                               "  protocols: [probe]\n")
            _executable(probe / "run.sh", f"#!/bin/sh\ntouch {marker}\n")
    return {"KVSOPS_HELM_BIN": s.tools["helm3"], "HELM_PLUGINS": str(plugins)}


def test_helm_mode_ignores_the_repositorys_plugins(side: Sidecar) -> None:
    marker = side.tmp / "ran"
    _chart(side, marker)
    root = side.cmp.copy_repo(side.src)
    for p in root.rglob("run.sh"):
        p.chmod(0o755)
    params = [{"name": "values-files", "array": ["secrets://secret.enc.yaml"]}]
    proc = side.run(copy=root, params=params, sidecar=_helm_sidecar(side),
                    plugin_env={"HELM_PLUGINS": "plugins", "HELM_DATA_HOME": "helm-home/data"})
    side.clean(proc, marker)
    assert proc.returncode == 0, proc.stderr.decode()
    assert side.canary_b in _token(proc)
    refused = side.run(copy=root, params=params, project="team-a", sidecar=_helm_sidecar(side))
    side.clean(refused, marker)
    assert refused.returncode != 0 and b"refused by policy" in refused.stderr


@pytest.mark.parametrize("repository", ["probe://charts", "evil://charts", "kvsops://secret.enc.yaml"])
def test_helm_dependency_build_reaches_no_plugin(side: Sidecar, repository: str) -> None:
    """init's ``helm dependency build`` follows the chart's repository URLs with no getter plugin
    (not the operator's, not the repository's) and no key at all."""
    marker = side.tmp / "ran"
    _chart(side, marker)
    (side.app / "Chart.yaml").write_text("apiVersion: v2\nname: b\nversion: 0.1.0\ndependencies:\n"
                                         f"- name: dep\n  version: 1.0.0\n  repository: {repository}\n")
    root = side.cmp.copy_repo(side.src)
    for p in root.rglob("run.sh"):
        p.chmod(0o755)
    proc = side.run(copy=root, sidecar=_helm_sidecar(side, marker),
                    params=[{"name": "values-files", "array": ["secrets://secret.enc.yaml"]}])
    side.clean(proc, marker)
    assert proc.returncode != 0
    assert b"helm dependency build failed" in proc.stderr
    assert not (root / "team-b/app/charts").exists()


# ----------------------------------------------------------------------------- what children receive


SPY_SHIM = """#!/bin/sh
{marker}
{python} -c 'import json, os, sys; open(sys.argv[1], "a").write(json.dumps(sorted(os.environ)) + "\\n")' {log}
exec {target} "$@"
"""
HOSTILE_SIDECAR = {  # what must never reach a child, whatever the sidecar holds
    "ARGOCD_ENV_FOO": "bar", "PARAM_X": "y", "KVSOPS_ALLOW_OUTSIDE_ROOT": "true",
    "KVSOPS_HELM_ALLOW_SYMLINKS_OUTSIDE": "true",
    "PYTHONPATH": "/nonexistent", "GIT_SSH_COMMAND": "/bin/false", "UNRELATED_SIDECAR_VAR": "x",
    "KVSOPS_POLICY_FILE": "/nonexistent/policy.yaml",
}


def _spy_home(s: Sidecar, log: Path) -> Path:
    """An operator's plugin home whose shims record the environment kustomize gives them."""
    from kvsops.plugin_home import MARKER, SERVED, install, krm_executable, plugin_path

    home = s.tmp / "spy-plugins"
    install(home)
    for kind in SERVED:
        _executable(home / plugin_path(kind), SPY_SHIM.format(marker=MARKER, python=BIN / "python", log=log,
                                                             target=krm_executable()))
    return home


def _envs(log: Path) -> list[set[str]]:
    return [set(json.loads(line)) for line in log.read_text().splitlines()] if log.exists() else []


def test_kustomize_plugin_child_gets_only_the_allow_list(side: Sidecar) -> None:
    from kvsops.hosts.argocd import children

    log = side.tmp / "env.log"
    _kust(side.app, "generators: [gen.yaml]\n")
    (side.app / "gen.yaml").write_text(_krm("ksops"))
    extra = {**HOSTILE_SIDECAR, "KVSOPS_KUSTOMIZE_PLUGIN_HOME": str(_spy_home(side, log))}
    proc = side.run(sidecar=extra)
    assert proc.returncode == 0, proc.stderr.decode()
    (names,) = _envs(log)
    allowed = set(children.BASE + children.BUILD_ENV + children.KEYS) | {
        "PATH", "TMPDIR", "KVSOPS_DEADLINE_SECONDS", "KVSOPS_POLICY_GRANT", "KUSTOMIZE_PLUGIN_HOME",
        "KVSOPS_KUSTOMIZE_COPY", "KVSOPS_KUSTOMIZE_SOURCE", "KUSTOMIZE_PLUGIN_CONFIG_STRING",
        "KUSTOMIZE_PLUGIN_CONFIG_ROOT",
        "PWD", "SHLVL", "_"}  # the last three: the shell of the shim
    git = {n for n in names if n.startswith("GIT_")}
    azure = {n for n in names if n.startswith(children.AZURE_PREFIXES)}
    assert names - allowed - git - azure == set(), names - allowed - git - azure
    assert not names & (set(HOSTILE_SIDECAR) | {"KVSOPS_POLICY"})
    assert {"KVSOPS_POLICY_GRANT", "SOPS_AGE_KEY_FILE", "KUSTOMIZE_PLUGIN_HOME", "AZURE_CLIENT_ID"} <= names
    assert "GIT_SSH_COMMAND" not in git and git <= {"GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL", "GIT_CONFIG_COUNT",
                                                    "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0", "GIT_CONFIG_KEY_1",
                                                    "GIT_CONFIG_VALUE_1", "GIT_ALLOW_PROTOCOL", "GIT_TEMPLATE_DIR",
                                                    "GIT_TERMINAL_PROMPT"}


def test_azure_settings_reach_children_only_when_the_policy_allows_key_vault(side: Sidecar) -> None:
    log = side.tmp / "env.log"
    _kust(side.app, "generators: [gen.yaml]\n")
    (side.app / "gen.yaml").write_text(_krm("ksops"))
    pol = json.dumps({"rules": [{"projects": ["team-b"], "age": [side.b.recipient]}]})
    extra = {"KVSOPS_POLICY": pol, "AZURE_CLIENT_SECRET": "not-for-kustomize",
             "KVSOPS_KUSTOMIZE_PLUGIN_HOME": str(_spy_home(side, log))}
    proc = side.run(sidecar=extra)
    assert proc.returncode == 0, proc.stderr.decode()
    (names,) = _envs(log)
    assert not {n for n in names if n.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_"))}


def test_helm_children_get_private_homes_and_the_operators_plugins(side: Sidecar) -> None:
    from tests import helm_harness as hh

    log = side.tmp / "env.log"
    _chart(side, side.tmp / "ran")
    plugins = side.tmp / "helm-plugins"
    spy = plugins / "kvsops-getter-legacy"
    (spy / "bin").mkdir(parents=True)
    (spy / "plugin.yaml").write_bytes((hh.LEGACY_GETTER / "plugin.yaml").read_bytes())
    _executable(spy / "bin/kvsops-helm", SPY_SHIM.format(marker="", python=BIN / "python", log=log,
                                                          target=hh.LEGACY_GETTER / "bin/kvsops-helm"))
    sidecar = {**HOSTILE_SIDECAR, "KVSOPS_HELM_BIN": side.tools["helm3"], "HELM_PLUGINS": str(plugins),
               "HELM_DATA_HOME": str(side.tmp / "shared-helm-data")}
    proc = side.run(params=[{"name": "values-files", "array": ["secrets://secret.enc.yaml"]}], sidecar=sidecar)
    assert proc.returncode == 0, proc.stderr.decode()
    (names,) = _envs(log)
    assert not names & (set(HOSTILE_SIDECAR) | {"KVSOPS_POLICY"})
    assert {"KVSOPS_POLICY_GRANT", "SOPS_AGE_KEY_FILE", "HELM_PLUGINS", "HELM_DATA_HOME"} <= names
    assert not (side.tmp / "shared-helm-data").exists()  # the sidecar's data home was never used
