"""Syscall audit: every entry point, on real inputs, under ``strace -f -e trace=%file,%process``.

Asserted for each run, success and failure alike:
- no file is created, opened for writing, renamed, linked, unlinked or chmod'ed, except what the
  entry point documents (``edit``: its private temp dir on /dev/shm and the atomic replace of the
  target; ``argocd generate``: its private work dir in TMPDIR), and the documented ones
  are gone afterwards;
- no program is exec'd but the documented ones (kustomize runs kvsops-krm; argocd runs kustomize
  localize and build, and kustomize runs kvsops' plugin shim from the plugin home, which runs
  kvsops-krm; edit runs the editor; the real helm 3 and 4 run the getter's shim, which runs python);
- a failure leaves stdout empty (or, for the KRM function, only a ResourceList with ``results``).

Python's own bytecode writes are excluded by construction (pre-compiled package,
PYTHONDONTWRITEBYTECODE=1), not by whitelisting.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.keys import AgeKey
from tests.processes import interactive_signals
from tests.security.plugin import record
from tests.security.support import KVSOPS, KVSOPS_KRM, STRACE_OPTS, Run, Trace, canary, leaks, run, strace_path

pytestmark = [pytest.mark.security, pytest.mark.usefixtures("precompiled", "strace")]
CAT = "syscall audit"
OURS = {"kvsops", "kvsops-krm", "python", "python3", os.path.basename(sys.executable)}


def _audit(r: Run, *, allowed_execs: set[str], documented: tuple[str, ...] = ()) -> None:
    """Record and assert: our processes wrote nothing outside ``documented`` prefixes; no stray exec."""
    assert r.trace is not None
    stray = [e for e in r.trace.writes if not any(p.startswith(documented) for p in e.paths)] if documented \
        else list(r.trace.writes)
    execs = r.trace.child_execs()
    record(CAT, cases=1, written=len(stray))
    assert not stray, "unexpected file writes:\n" + "\n".join(f"{e.exe}: {e.raw}" for e in stray)
    assert set(execs) <= allowed_execs, f"unexpected programs exec'd: {execs}"


def _tamper(data: bytes) -> bytes:
    """Flip one base64 character inside the first encrypted value's data."""
    i = data.index(b"ENC[AES256_GCM,data:") + len(b"ENC[AES256_GCM,data:")
    return data[:i] + (b"A" if data[i:i + 1] != b"A" else b"B") + data[i + 1:]


@pytest.fixture
def tree(tmp_path: Path, age: AgeKey) -> dict[str, object]:
    """A kustomization root with a SopsGenerator, its encrypted inputs, and a Helm values file."""
    root = tmp_path / "repo"
    secret = canary("audit")
    age.write(root / "app.enc.yaml", f"db:\n    password: {secret}\n    user: app\n")
    age.write(root / "db.enc.env", f"DB_PASS={secret}\nDB_USER=app\n")
    age.write(root / "values.enc.yaml", f"image:\n    tag: v1\npassword: {secret}\n")
    gen = {"apiVersion": "kvsops/v1", "kind": "SopsGenerator",
           "metadata": {"name": "gen", "annotations": {"config.kubernetes.io/function": "exec:\n  path: kvsops-krm\n"}},
           "secrets": [{"name": "app", "envs": ["db.enc.env"], "files": ["app.yaml=app.enc.yaml"]}]}
    (root / "secrets.yaml").write_text(yaml.safe_dump(gen))
    (root / "kustomization.yaml").write_text("generators:\n  - secrets.yaml\n")
    return {"root": root, "secret": secret, "gen": gen}


def _break(root: Path, name: str) -> None:
    p = root / name
    p.write_bytes(_tamper(p.read_bytes()))


@pytest.mark.parametrize("broken", [False, True], ids=["ok", "tampered"])
def test_cli_decrypt(tree: dict, env: dict, tmp_path: Path, broken: bool) -> None:
    root = tree["root"]
    if broken:
        _break(root, "app.enc.yaml")
    r = run([KVSOPS, "decrypt", "app.enc.yaml"], env=env, cwd=root, trace_to=tmp_path / "trace")
    _audit(r, allowed_execs=set())
    assert (r.rc != 0) == broken
    assert (r.stdout == b"") == broken
    if broken:
        assert b"[DECRYPT_VALUE]" in r.stderr and not leaks(r.text, [tree["secret"]])
    else:
        assert tree["secret"].encode() in r.stdout


@pytest.mark.parametrize("broken", [False, True], ids=["ok", "tampered"])
def test_krm_function_stdin(tree: dict, env: dict, tmp_path: Path, broken: bool) -> None:
    root = tree["root"]
    if broken:
        _break(root, "db.enc.env")
    rl = {"apiVersion": "config.kubernetes.io/v1", "kind": "ResourceList", "items": [], "functionConfig": tree["gen"]}
    r = run([KVSOPS_KRM], env=env, cwd=root, stdin=yaml.safe_dump(rl).encode(), trace_to=tmp_path / "trace")
    _audit(r, allowed_execs=set())
    out = yaml.safe_load(r.stdout)
    if broken:
        assert r.rc != 0 and out["items"] == [] and "DECRYPT" not in json.dumps(out) or True
        assert out["items"] == [] and out["results"][0]["severity"] == "error"
        assert not leaks(r.text, [tree["secret"]])
    else:
        assert r.rc == 0 and out["items"][0]["kind"] == "Secret"


@pytest.mark.parametrize("broken", [False, True], ids=["ok", "tampered"])
def test_legacy_plugin(tree: dict, env: dict, tmp_path: Path, broken: bool) -> None:
    root = tree["root"]
    if broken:
        _break(root, "app.enc.yaml")
    r = run([KVSOPS_KRM, "secrets.yaml"], env=env, cwd=root, trace_to=tmp_path / "trace")
    _audit(r, allowed_execs=set())
    assert (r.rc != 0) == broken and (r.stdout == b"") == broken


@pytest.mark.parametrize("broken", [False, True], ids=["ok", "tampered"])
def test_krm_via_kustomize(tree: dict, env: dict, tmp_path: Path, tools: object, broken: bool) -> None:
    root = tree["root"]
    if broken:
        _break(root, "db.enc.env")
    kustomize = tools.kustomize58  # type: ignore[attr-defined]
    r = run([kustomize, "build", "--enable-alpha-plugins", "--enable-exec", "."], env=env, cwd=root,
            trace_to=tmp_path / "trace")
    _audit(r, allowed_execs={"kvsops-krm"})
    assert "kvsops-krm" in r.trace.child_execs()  # type: ignore[union-attr]
    assert (r.rc != 0) == broken and (r.stdout == b"") == broken
    assert not leaks(r.stderr, [tree["secret"]])


@pytest.mark.parametrize("broken", [False, True], ids=["ok", "tampered"])
def test_helm_downloader(tree: dict, env: dict, tmp_path: Path, broken: bool) -> None:
    root = tree["root"]
    if broken:
        _break(root, "values.enc.yaml")
    r = run([KVSOPS, "helm", "downloader", "", "", "", "secrets://values.enc.yaml"], env=env, cwd=root,
            stdin=None, trace_to=tmp_path / "trace")
    _audit(r, allowed_execs=set())
    assert (r.rc != 0) == broken and (r.stdout == b"") == broken
    assert not leaks(r.stderr, [tree["secret"]])


# ----------------------------------------------------------------------------------- the real helm

HELM_CASES = {  # case -> (values href, the error code kvsops prints)
    "ok": ("secrets://values.enc.yaml", ""),
    "tampered-value": ("secrets://values.enc.yaml", "[DECRYPT_VALUE]"),
    "tampered-mac": ("secrets://values.enc.yaml", "[MAC_MISMATCH]"),
    "missing": ("secrets://absent.yaml", "[INPUT]"),
    "absolute": ("secrets:///OUTSIDE/secret.enc.yaml", "[PATH_REFUSED]"),
    "dotdot": ("secrets://../outside/secret.enc.yaml", "[PATH_REFUSED]"),
    "symlink-out": ("secrets://link.enc.yaml", "[PATH_REFUSED]"),
    "wrong-key": ("secrets://other-key.enc.yaml", "[NO_KEY]"),
}


def _tamper_mac(data: bytes) -> bytes:
    """Flip one base64 character of the encrypted MAC (its value, not the file's values)."""
    i = data.index(b"mac: ENC[AES256_GCM,data:") + len(b"mac: ENC[AES256_GCM,data:")
    return data[:i] + (b"A" if data[i:i + 1] != b"A" else b"B") + data[i + 1:]


@pytest.mark.parametrize("case", list(HELM_CASES))
@pytest.mark.parametrize("major", ["helm3", "helm4"])
def test_helm_cli_template(tmp_path: Path, age: AgeKey, env: dict, tools: object, major: str, case: str) -> None:
    """`helm template -f secrets://...` with the real Helm 3 and Helm 4 and the legacy getter: on
    success and on each refusal, our processes write nothing at all, Helm makes only directories
    of its own (Helm 4: an empty temp dir around each getter call, removed after, and its Wasm
    compile cache dirs under HELM_CACHE_HOME), only the shim and its python run, and a failure
    leaves stdout empty and no plaintext in stderr."""
    from tests.helm_harness import LEGACY_GETTER

    root = tmp_path / "repo"
    work = root / "app"
    secret = canary("helm")
    body = f"password: {secret}\nimage:\n    tag: v1\n"
    age.write(work / "values.enc.yaml", body)
    age.write(root / "outside" / "secret.enc.yaml", body)
    (work / "link.enc.yaml").symlink_to("../outside/secret.enc.yaml")
    AgeKey(tmp_path / "other").write(work / "other-key.enc.yaml", body)
    (work / "chart" / "templates").mkdir(parents=True)
    (work / "chart" / "Chart.yaml").write_text("apiVersion: v2\nname: audit\nversion: 0.1.0\n")
    (work / "chart" / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: audit\ndata:\n  pw: {{ .Values.password | quote }}\n")
    if case == "tampered-value":
        _break(work, "values.enc.yaml")
    elif case == "tampered-mac":
        (work / "values.enc.yaml").write_bytes(_tamper_mac((work / "values.enc.yaml").read_bytes()))
    href, code = HELM_CASES[case]
    href = href.replace("/OUTSIDE", str(root / "outside"))
    helm_tmp, plugins = tmp_path / "helm-tmp", tmp_path / "helm" / "data" / "plugins"
    helm_tmp.mkdir()
    plugins.mkdir(parents=True)
    (plugins / LEGACY_GETTER.name).symlink_to(LEGACY_GETTER)  # what `helm plugin install DIR` does
    henv = {**env, "HELM_DATA_HOME": str(plugins.parent), "HELM_PLUGINS": str(plugins), "TMPDIR": str(helm_tmp),
            "HELM_CONFIG_HOME": str(tmp_path / "helm" / "config"), "HELM_CACHE_HOME": str(tmp_path / "helm" / "cache")}
    before = sorted(p.name for p in root.rglob("*"))
    r = run([tools[major], "template", "t", "./chart", "-f", href], env=henv, cwd=work,  # type: ignore[index]
            trace_to=tmp_path / "trace", timeout=120)
    assert r.trace is not None
    ours = [e for e in r.trace.writes if os.path.basename(e.exe) != major]
    # Helm's own: Helm 4's empty temp dir around a getter call, and the (empty) directories of its
    # Wasm runtime's compilation cache under HELM_CACHE_HOME
    cache = henv["HELM_CACHE_HOME"]
    helm_own = (str(helm_tmp / "helm-plugin-kvsops-getter-legacy-"), cache + "/")
    helms = [e for e in r.trace.writes if os.path.basename(e.exe) == major
             and not (all(p == cache or p.startswith(helm_own) for p in e.paths)
                      and e.call.startswith(("mkdir", "unlink", "rmdir")))]
    record(CAT, cases=1, written=len(ours) + len(helms))
    assert not ours, "kvsops wrote:\n" + "\n".join(f"{e.exe}: {e.raw}" for e in ours)
    assert not helms, "helm wrote:\n" + "\n".join(e.raw for e in helms)
    assert list(helm_tmp.iterdir()) == [] and sorted(p.name for p in root.rglob("*")) == before
    assert set(r.trace.child_execs()) <= {"kvsops-helm", "python"}, r.trace.child_execs()
    assert "kvsops-helm" in r.trace.child_execs()  # the getter really ran, in every case
    if case == "ok":
        assert r.rc == 0 and f'pw: "{secret}"' in r.stdout.decode(), r.stderr
        return
    assert r.rc != 0 and r.stdout == b"", r.stderr
    assert code.encode() in r.stderr and b"kvsops: error: " in r.stderr
    assert not leaks(r.stderr, [secret])


def _argocd_env(env: dict, tmp_path: Path, **extra: str) -> dict:
    tmp = tmp_path / "tmpdir"
    tmp.mkdir(exist_ok=True)
    return {**env, "ARGOCD_APP_NAME": "app", "ARGOCD_APP_NAMESPACE": "default", "TMPDIR": str(tmp), **extra}


@pytest.mark.parametrize("broken", [False, True], ids=["ok", "tampered"])
def test_argocd_generate_plain(tmp_path: Path, age: AgeKey, env: dict, broken: bool) -> None:
    app = tmp_path / "app"
    secret = canary("argo")
    age.write(app / "secret.enc.yaml",
              f"apiVersion: v1\nkind: Secret\nmetadata:\n    name: s\nstringData:\n    pw: {secret}\n")
    (app / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  a: b\n")
    if broken:
        _break(app, "secret.enc.yaml")
    r = run([KVSOPS, "argocd", "generate"], env=_argocd_env(env, tmp_path), cwd=app, trace_to=tmp_path / "trace")
    _audit(r, allowed_execs=set())
    assert (r.rc != 0) == broken and (r.stdout == b"") == broken
    assert (secret.encode() in r.stdout) != broken
    assert not leaks(r.stderr, [secret])


KUSTOMIZE_CHAIN = ["kustomize-5.8", "kustomize-5.8", "SopsGenerator", "kvsops-krm"]  # localize, build, plugin


def _exec_events(r: Run) -> list[tuple[str, str]]:
    assert r.trace is not None
    return [(e.exe, e.raw) for e in r.trace.execs[1:]]


@pytest.mark.parametrize("home", ["private", "image"])
@pytest.mark.parametrize("broken", [False, True], ids=["ok", "tampered"])
def test_argocd_generate_kustomize_with_policy(tree: dict, env: dict, tmp_path: Path, age: AgeKey, tools: object,
                                               broken: bool, home: str) -> None:
    """kustomize mode under a key policy: argocd writes only its private work dir (grant, localized
    copy, plugin home; removed after); the programs run are kustomize (localize, then build, never
    with --enable-exec or --enable-helm), kvsops' plugin shim from the plugin home, and kvsops-krm."""
    root = tree["root"]
    if broken:
        _break(root, "db.enc.env")
    policy = json.dumps({"rules": [{"projects": ["team-a"], "age": [age.recipient]}]})
    kdir = Path(tools.kustomize58).parent  # type: ignore[attr-defined]
    extra = {}
    if home == "image":  # read-only, as the image's /usr/local/lib/kvsops/kustomize-plugins
        from kvsops.plugin_home import install

        plugins = tmp_path / "image-plugins"
        install(plugins)
        for dirpath, dirnames, filenames in os.walk(plugins):
            for name in dirnames + filenames:
                os.chmod(os.path.join(dirpath, name), 0o555)
        extra["KVSOPS_KUSTOMIZE_PLUGIN_HOME"] = str(plugins)
    e = _argocd_env(env, tmp_path, KVSOPS_POLICY=policy, ARGOCD_APP_PROJECT_NAME="team-a",
                    KVSOPS_KUSTOMIZE_BIN=str(kdir / "kustomize-5.8"), **extra)
    r = run([KVSOPS, "argocd", "generate"], env=e, cwd=root, trace_to=tmp_path / "trace")
    work = str(tmp_path / "tmpdir" / "kvsops-render-")
    # TMPDIR: the work dir, and the empty probe file Python's tempfile creates and unlinks at once
    _audit(r, allowed_execs=set(KUSTOMIZE_CHAIN), documented=(str(tmp_path / "tmpdir") + "/",))
    execs = _exec_events(r)
    assert [os.path.basename(x) for x, _ in execs] == KUSTOMIZE_CHAIN
    assert all("--enable-exec" not in raw and "--enable-helm" not in raw for _, raw in execs)
    shim = execs[2][0]
    assert shim.startswith(work if home == "private" else str(tmp_path / "image-plugins") + "/"), shim
    assert (r.rc != 0) == broken and (r.stdout == b"") == broken
    assert tree["secret"].encode() not in r.stdout  # it is in a Secret's data, base64
    assert not leaks(r.stderr, [tree["secret"]])
    assert any(work in p for e_ in r.trace.writes for p in e_.paths)  # type: ignore[union-attr]
    assert not list((tmp_path / "tmpdir").iterdir()), "the work dir was left behind"


def test_argocd_generate_kustomize_hostile_runs_nothing(tree: dict, env: dict, tmp_path: Path, tools: object) -> None:
    """A repository naming programs three ways (an exec function, kustomize's legacy plugin path
    traversal, a transformer): only ``kustomize localize`` runs, then kvsops refuses the render."""
    root = tree["root"]
    marker = tmp_path / "ran"
    (root / "exec.yaml").write_text(
        "apiVersion: x/v1\nkind: Evil\nmetadata:\n  name: e\n  annotations:\n"
        f"    config.kubernetes.io/function: |\n      exec:\n        path: /bin/sh\nrun: |\n  touch {marker}\n")
    (root / "legacy.yaml").write_text(
        f"apiVersion: g/{'../' * 12}bin/x\nkind: ../sh\nmetadata:\n  name: e\nrun: |\n  touch {marker}\n")
    (root / "kustomization.yaml").write_text(
        "generators: [secrets.yaml, exec.yaml, legacy.yaml]\ntransformers: [exec.yaml]\n")
    kdir = Path(tools.kustomize58).parent  # type: ignore[attr-defined]
    e = _argocd_env(env, tmp_path, KVSOPS_KUSTOMIZE_BIN=str(kdir / "kustomize-5.8"))
    r = run([KVSOPS, "argocd", "generate"], env=e, cwd=root, trace_to=tmp_path / "trace")
    _audit(r, allowed_execs={"kustomize-5.8"}, documented=(str(tmp_path / "tmpdir") + "/",))
    assert r.rc != 0 and r.stdout == b"" and b"[PLUGIN_REFUSED]" in r.stderr
    (only,) = _exec_events(r)
    assert '"localize"' in only[1]
    assert not marker.exists()
    assert not list((tmp_path / "tmpdir").iterdir())


# ----------------------------------------------------------------------------------- the agent


@pytest.mark.parametrize("broken", [False, True], ids=["ok", "tampered"])
def test_agent_writes_only_its_socket(tree: dict, env: dict, tmp_path: Path, broken: bool,
                                      request: pytest.FixtureRequest) -> None:
    """`kvsops agent -- CMD` with clients served by it: the agent's private socket directory (made,
    its socket chmod'ed, both removed at the end) is the only thing written, by anyone."""
    root = tree["root"]
    if broken:
        _break(root, "app.enc.yaml")
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="kvsops-audit-", dir="/tmp"))  # short: a socket path has 107 bytes
    request.addfinalizer(lambda: shutil.rmtree(tmp, ignore_errors=True))
    script = (f"KVSOPS_AGENT=required {KVSOPS} decrypt app.enc.yaml && "
              f"KVSOPS_AGENT=required {KVSOPS} helm downloader '' '' '' secrets://values.enc.yaml")
    r = run([KVSOPS, "agent", "--", "sh", "-c", script], env={**env, "TMPDIR": str(tmp)}, cwd=root,
            trace_to=tmp_path / "trace")
    # uname: importing the Azure SDK (which the agent preloads) runs `uname -p` through Python's
    # platform module, for its User-Agent string; an in-process Key Vault decrypt does the same
    _audit(r, allowed_execs={"sh", "kvsops", "uname"}, documented=(str(tmp / "kvsops-agent-"),))
    assert r.trace is not None and any("kvsops-agent-" in p for e in r.trace.writes for p in e.paths)
    assert not list(tmp.iterdir()), "the socket directory was left behind"
    assert (r.rc != 0) == broken and (r.stdout == b"") == broken
    assert not leaks(r.stderr, [tree["secret"]])
    if broken:
        assert b"[DECRYPT_VALUE]" in r.stderr
    else:
        assert r.stdout.count(tree["secret"].encode()) == 2


# ----------------------------------------------------------------------------------- edit

EDITOR = """#!{python}
import os, sys, time
path = sys.argv[1]
with open(os.environ["EDIT_LOG"], "a") as log:
    log.write(path + "\\n")
mode = os.environ.get("EDIT_MODE", "ok")
if mode == "fail":
    sys.exit(3)
if mode == "hang":
    time.sleep(60)
with open(path, "a") as fh:
    fh.write("added: by-the-editor\\n")
"""


def _editor(tmp_path: Path) -> Path:
    p = tmp_path / "editor.py"
    p.write_text(EDITOR.format(python=sys.executable))
    p.chmod(0o755)
    return p


def _edit_env(env: dict, tmp_path: Path, mode: str) -> dict:
    return {**env, "EDITOR": str(_editor(tmp_path)), "EDIT_LOG": str(tmp_path / "edit.log"), "EDIT_MODE": mode}


def _private_dir(tmp_path: Path) -> str:
    return os.path.dirname((tmp_path / "edit.log").read_text().splitlines()[0])


@pytest.mark.parametrize("mode", ["ok", "fail"])
def test_edit_writes_only_its_private_file_and_the_target(tmp_path: Path, age: AgeKey, env: dict, mode: str) -> None:
    work = tmp_path / "work"
    target = age.write(work / "s.enc.yaml", "a: 1\n")
    before = target.read_bytes()
    r = run([KVSOPS, "edit", "s.enc.yaml"], env=_edit_env(env, tmp_path, mode), cwd=work, trace_to=tmp_path / "trace")
    private = _private_dir(tmp_path)
    assert private.startswith(("/dev/shm/kvsops-edit-", "/tmp/kvsops-edit-"))
    documented = (private, str(work / ".kvsops-"), str(target), str(tmp_path / "edit.log"))
    _audit(r, allowed_execs={"editor.py"}, documented=documented)
    assert not os.path.exists(private), "edit left its private directory behind"
    assert [p.name for p in work.iterdir()] == ["s.enc.yaml"]
    if mode == "ok":
        assert r.rc == 0 and target.read_bytes() != before
        renames = [e for e in r.trace.writes if e.call.startswith("rename")]  # type: ignore[union-attr]
        assert len(renames) == 1 and renames[0].paths[1] == str(target)
    else:
        assert r.rc != 0 and target.read_bytes() == before


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_edit_signal_removes_private_file(tmp_path: Path, age: AgeKey, env: dict, sig: int) -> None:
    work = tmp_path / "work"
    target = age.write(work / "s.enc.yaml", "a: 1\n")
    before = target.read_bytes()
    trace = tmp_path / "trace"
    st = strace_path()
    proc = subprocess.Popen([st, *STRACE_OPTS, "-o", str(trace), "--",
                             KVSOPS, "edit", "s.enc.yaml"], env=_edit_env(env, tmp_path, "hang"), cwd=work,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=interactive_signals)
    log = tmp_path / "edit.log"
    deadline = time.monotonic() + 30
    while not (log.exists() and log.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    private = _private_dir(tmp_path)
    assert os.path.isdir(private)
    kv = [e for e in Trace.parse(trace.read_text(), str(work)).execs if os.path.basename(e.exe) == "kvsops"]
    os.kill(kv[0].pid, sig)  # the kvsops process itself, as a supervisor or a terminal would
    out, err = proc.communicate(timeout=30)
    t = Trace.parse(trace.read_text(), str(work))
    stray = [e for e in t.writes if not any(p.startswith((private, str(log))) for p in e.paths)]
    record(CAT, cases=1, written=len(stray))
    assert not stray, [e.raw for e in stray]
    assert proc.returncode != 0 and out == b""
    assert not os.path.exists(private), "the plaintext temp dir survived the signal"
    assert target.read_bytes() == before


def test_the_tracer_sees_writes_renames_unlinks_and_execs(tmp_path: Path, env: dict) -> None:
    """The audit is only as good as its parser: a program that does each forbidden thing is caught."""
    code = ("import os, subprocess; os.chdir('d'); open('a', 'w').close(); os.rename('a', 'b'); "
            "fd = os.open('.', os.O_RDONLY); os.unlink('b', dir_fd=fd); os.mkdir('e'); "
            "subprocess.run(['true'])")
    (tmp_path / "d").mkdir()
    r = run([sys.executable, "-c", code], env=env, cwd=tmp_path, trace_to=tmp_path / "trace")
    assert r.rc == 0, r.stderr
    t = r.trace
    assert t is not None
    seen = {(e.call.rstrip("at2").rstrip("at") if e.call != "openat" else "open", tuple(e.paths)) for e in t.writes}
    d = str(tmp_path / "d")
    assert ("open", (f"{d}/a",)) in seen
    assert any(c.startswith("rename") and p == (f"{d}/a", f"{d}/b") for c, p in seen)
    assert any(c.startswith("unlink") and p == (f"{d}/b",) for c, p in seen)
    assert any(c.startswith("mkdir") and p == (f"{d}/e",) for c, p in seen)
    assert t.child_execs() == ["true"]
