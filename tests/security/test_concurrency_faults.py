"""Concurrency and faults: 32 parallel renders of one tree give identical output and leave no file
behind; Key Vault faults (429 storm, 5xx, hung connection, latency past the deadline) end in bounded
time with a precise error and no partial output; SIGTERM mid-render leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.keys import AgeKey
from tests.security.plugin import record
from tests.security.support import KVSOPS, KVSOPS_KRM, canary, clean_env, leaks, run

pytestmark = pytest.mark.security
CAT = "concurrency + faults"
PARALLEL = 32


def _snapshot(*dirs: Path) -> set[str]:
    out = set()
    for d in dirs:
        if d.is_dir():
            for dirpath, dirnames, filenames in os.walk(d):
                out.update(os.path.join(dirpath, n) for n in dirnames + filenames)
    return out


def _shm(d: Path) -> set[str]:
    """What is in the test's private RAM dir (KVSOPS_SHM_DIR): only this test's processes write there."""
    return set(os.listdir(d))


@pytest.fixture
def tree(tmp_path: Path, age: AgeKey) -> dict[str, Any]:
    root = tmp_path / "repo"
    secret = canary("par")
    for i in range(4):
        age.write(root / f"s{i}.enc.yaml", f"password: {secret}-{i}\nlist:\n    - a\n    - {i}\n")
        age.write(root / f"e{i}.enc.env", f"K{i}={secret}\n")
    gen = {"apiVersion": "kvsops/v1", "kind": "SopsGenerator", "metadata": {"name": "g"},
           "secrets": [{"name": f"s{i}", "envs": [f"e{i}.enc.env"], "files": [f"f=s{i}.enc.yaml"]} for i in range(4)]}
    rl = {"apiVersion": "config.kubernetes.io/v1", "kind": "ResourceList", "items": [], "functionConfig": gen}
    return {"root": root, "rl": yaml.safe_dump(rl).encode(), "secret": secret}


def test_32_parallel_renders_identical_and_clean(tree: dict[str, Any], env: dict[str, str], tmp_path: Path,
                                                 shm_dir: Path) -> None:
    root = tree["root"]
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    e = {**env, "TMPDIR": str(tmp), "KVSOPS_SHM_DIR": str(shm_dir)}
    before, shm_before = _snapshot(root, tmp), _shm(shm_dir)

    def krm(_: int) -> Any:
        return run([KVSOPS_KRM], env=e, cwd=root, stdin=tree["rl"], timeout=120)

    def helm(i: int) -> Any:
        return run([KVSOPS, "helm", "downloader", "", "", "", f"secrets://s{i % 4}.enc.yaml"], env=e, cwd=root,
                   stdin=None, timeout=120)

    with ThreadPoolExecutor(PARALLEL) as pool:
        krm_runs = list(pool.map(krm, range(PARALLEL)))
    with ThreadPoolExecutor(PARALLEL) as pool:
        helm_runs = list(pool.map(helm, range(PARALLEL)))
    record(CAT, cases=2 * PARALLEL, written=len(_snapshot(root, tmp) - before) + len(_shm(shm_dir) - shm_before))
    assert all(r.rc == 0 for r in krm_runs + helm_runs), [r.stderr for r in krm_runs + helm_runs if r.rc]
    assert len({r.stdout for r in krm_runs}) == 1
    assert len(yaml.safe_load(krm_runs[0].stdout)["items"]) == 4
    for i in range(4):
        assert len({r.stdout for j, r in enumerate(helm_runs) if j % 4 == i}) == 1
    assert _snapshot(root, tmp) == before and _shm(shm_dir) == shm_before


# ----------------------------------------------------------------------------------- Key Vault faults


def _kv_tree(emu: Any, env: dict[str, str], age: AgeKey, root: Path, secret: str) -> bytes:
    """A generator over two files: one age (fine) and one Key Vault (faulted): all or nothing."""
    from kvsops import api

    sess = api.Session(env=env)
    rec = sess.recipient("azure_kv", emu.key_url("k"))
    root.mkdir(parents=True, exist_ok=True)
    (root / "kv.enc.env").write_bytes(api.encrypt_bytes(f"KV={secret}\n".encode(), "dotenv", [[rec]]))
    age.write(root / "age.enc.env", f"AGE={secret}\n")
    gen = {"apiVersion": "kvsops/v1", "kind": "SopsGenerator", "metadata": {"name": "g"},
           "secrets": [{"name": "a", "envs": ["age.enc.env"]}, {"name": "k", "envs": ["kv.enc.env"]}]}
    rl = {"apiVersion": "config.kubernetes.io/v1", "kind": "ResourceList", "items": [], "functionConfig": gen}
    return yaml.safe_dump(rl).encode()


FAULTS = {
    "429-storm": (lambda e: e.throttle(1000, retry_after=30, ops={"decrypt"}), 3, {"[TIMEOUT]"}),
    "5xx": (lambda e: e.fail(1000, status=503, ops={"decrypt"}), 30, {"[NO_KEY]", "[KEY_SERVICE]"}),
    "hung-connection": (lambda e: e.hang(1000, ops={"decrypt"}), 2, {"[TIMEOUT]"}),
    "latency-past-deadline": (lambda e: setattr(e, "latency", 4.0), 2, {"[TIMEOUT]"}),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_key_vault_faults_bounded_precise_no_partial(kv: Any, tmp_path: Path, age: AgeKey, fault: str) -> None:
    emu, kenv = kv
    secret = canary("kvf")
    root = tmp_path / "repo"
    rl = _kv_tree(emu, kenv, age, root, secret)
    setup, deadline, codes = FAULTS[fault]
    setup(emu)
    env = clean_env(tmp_path / "home", age=age, **kenv, KVSOPS_DEADLINE_SECONDS=str(deadline))
    r = run([KVSOPS_KRM], env=env, cwd=root, stdin=rl, timeout=60)
    record(CAT, cases=1, leaked=len(leaks(r.text, [secret])))
    bound = deadline + 8 if fault != "5xx" else 30
    assert r.seconds < bound, f"{fault}: {r.seconds:.1f}s"
    assert r.rc != 0
    out = yaml.safe_load(r.stdout)
    assert out["items"] == [], "partial output: the age Secret was emitted although the render failed"
    err = r.stderr.decode()
    assert any(c in err for c in codes), err
    assert "Key Vault" in err and "kv.enc.env" in err and "/keys/k" in err  # precise: which file, which key
    assert not leaks(r.text, [secret])


def test_sigterm_mid_render_leaves_nothing(kv: Any, tmp_path: Path, age: AgeKey, shm_dir: Path) -> None:
    """SIGTERM while the KRM function waits on a hung Key Vault: it exits at once, no items, no files."""
    emu, kenv = kv
    secret = canary("term")
    root = tmp_path / "repo"
    rl = _kv_tree(emu, kenv, age, root, secret)
    emu.hang(1000, ops={"decrypt"})
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    env = clean_env(tmp_path / "home", age=age, **kenv, KVSOPS_DEADLINE_SECONDS="60", TMPDIR=str(tmp),
                    KVSOPS_SHM_DIR=str(shm_dir))
    before, shm_before = _snapshot(root, tmp), _shm(shm_dir)
    proc = subprocess.Popen([KVSOPS_KRM], env=env, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(rl)
    proc.stdin.close()
    deadline = time.monotonic() + 30
    def hung() -> bool:  # a decrypt request is being held by the emulator
        with emu.lock:
            return any(f.remaining < 1000 for f in emu.faults)

    while not hung() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hung(), "the render never reached Key Vault"
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=20)
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    written = len(_snapshot(root, tmp) - before) + len(_shm(shm_dir) - shm_before)
    record(CAT, cases=1, written=written, leaked=len(leaks(out + err, [secret])))
    assert time.monotonic() - t0 < 10
    assert proc.returncode != 0
    assert b"kind: Secret" not in out and secret.encode() not in out
    assert written == 0 and not leaks(out + err, [secret])
