"""The agent's cases of bench/run.py (issue 17), against the same baselines, in the same run.

  8  case 1 and case 2 with an agent running: ``kvsops decrypt`` and the Helm downloader shim
     (Python started without site, the client imports no YAML or crypto) vs ``sops -d``
  9  one azure_kv file (40 values) through the HTTPS Key Vault emulator on port 443 with App Service
     managed identity, ``kvsops decrypt`` with and without the agent vs ``sops -d`` (the Go SDK needs
     the vault under *.vault.azure.net: /etc/hosts alias and port 443, so root only)
  10 ``kvsops argocd generate`` of an app with 5 azure_kv files, N renders one after the other,
     agent running vs not: wall time, CPU time (the client's and the agent's), token requests and
     vault calls; the same with the opt-in data-key cache; then the agent's memory at rest and after
     1,000 renders' worth of requests
  11 20 concurrent ``kvsops decrypt`` of azure_kv files against a vault answering 429 with
     Retry-After, agent with --rate 10 --concurrency 4: all succeed, the most requests the vault saw
     in any second, and in flight

kvsops is measured from a non-editable install (a venv made from this tree, its dependencies taken
from this venv), as a user installs it: an editable install's import hook differs.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

KVTEST_HOST = "kvtest.vault.azure.net"
HOSTS = Path("/etc/hosts")


# ----------------------------------------------------------------------------- a non-editable install


def non_editable(work: Path, repo: Path) -> Path:
    """The bin dir of a venv holding kvsops built from ``repo`` (a wheel, not editable); its
    dependencies come from this venv's site-packages (a .pth line: that directory's own .pth files,
    this venv's editable kvsops among them, are not processed)."""
    wheels, venv = work / "wheels", work / "venv"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels),
                    str(repo)], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    wheel = next(wheels.glob("kvsops-*.whl"))
    subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True)
    ours = next(p for p in map(Path, sys.path) if p.name == "site-packages" and (p / "yaml").is_dir())
    theirs = next((venv / "lib").glob("python3*/site-packages"))
    (theirs / "zz_kvsops_bench_dependencies.pth").write_text(f"{ours}\n")
    return venv / "bin"


# ----------------------------------------------------------------------------- an agent


class Agent:
    def __init__(self, kv: Path, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen([str(kv / "kvsops"), "agent", *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        self.proc.stdout.readline()
        if not line.startswith("KVSOPS_AGENT_SOCK="):
            raise SystemExit("bench: the agent did not start")
        self.sock = line.split("=", 1)[1].split(";", 1)[0]
        self.kv = kv

    def env(self, env: dict[str, str]) -> dict[str, str]:
        return dict(env, KVSOPS_AGENT_SOCK=self.sock, KVSOPS_AGENT="required")

    def ready(self, env: dict[str, str]) -> dict[str, Any]:
        """The status once the agent has imported what requests need (its memory at rest)."""
        while not (status := self.status(env))["ready"]:
            time.sleep(0.1)
        return status

    def status(self, env: dict[str, str]) -> dict[str, Any]:
        import json

        out = subprocess.run([str(self.kv / "kvsops"), "agent", "--status"], env=self.env(env), capture_output=True,
                             check=True)
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@contextmanager
def agent(kv: Path, env: dict[str, str], *args: str) -> Iterator[Agent]:
    a = Agent(kv, env, *args)
    try:
        yield a
    finally:
        a.stop()


# ----------------------------------------------------------------------------- the cases


def _cpu(a: Agent, env: dict[str, str], ours: tuple[list[str], dict[str, str]],
         theirs: tuple[list[str], dict[str, str]], cwd: Path, runs: int) -> str:
    """CPU time per run (user + system; ours plus what the agent spent on it) against the baseline's,
    alternating: less sensitive than wall time to what else runs on a busy machine."""
    mine: list[float] = []
    base: list[float] = []
    for _ in range(runs):
        before = a.status(env)["cpu_ms"]
        mine.append(_spawn_cpu(ours[0], cwd, ours[1])[2] + (a.status(env)["cpu_ms"] - before) / 1000)
        base.append(_spawn_cpu(theirs[0], cwd, theirs[1])[2])
    m, t = sorted(mine)[runs // 2], sorted(base)[runs // 2]
    return f"CPU (with the agent's share) {m * 1000:.1f} ms vs {t * 1000:.1f} ms, {m / t:.2f}x"


def case_8(b: ModuleType, kv: Path, work: Path, env: dict[str, str], runs: int, table: Any) -> None:
    sops = b.tool("sops")
    (work / "a-values.yaml").write_text(b.values_yaml(10, 5))
    (work / "a-secrets.yaml").write_bytes(b.sops_encrypt(sops, work / "a-values.yaml", env))
    sops_d = b.one([sops, "decrypt", "a-secrets.yaml"], work, env)
    plugin = work / "plugins" / b.HELM_SHIM.parent.parent.name
    shutil.copytree(b.HELM_SHIM.parent.parent, plugin)
    (plugin / ".venv").symlink_to(kv.parent)  # the shim's first place to look: <plugin>/.venv
    with agent(kv, env) as a:
        aenv = a.env(env)
        sops_argv = ([sops, "decrypt", "a-secrets.yaml"], env)
        decrypt = [str(kv / "kvsops"), "decrypt", "a-secrets.yaml"]
        ours, theirs = b.alternate(runs, b.one(decrypt, work, aenv), sops_d)
        table.add("8", "case 1 with the agent (kvsops decrypt)", ours, theirs, "<=0.7x",
                  note=f"outputs {'identical' if ours.out == theirs.out else 'DIFFERENT'}; "
                       + _cpu(a, env, (decrypt, aenv), sops_argv, work, runs))
        helm_env = dict(aenv, HELM_PLUGIN_DIR=str(plugin), HELM_PLUGIN_NAME=plugin.name)
        shim = [str(plugin / "bin/kvsops-helm"), "downloader", "", "", "", "secrets://a-secrets.yaml"]
        ours, theirs = b.alternate(runs, b.one(shim, work, helm_env), sops_d)
        table.add("8", "case 2 with the agent (Helm downloader shim)", ours, theirs, "<=0.7x",
                  note=f"outputs {'identical' if ours.out == theirs.out else 'DIFFERENT'}; "
                       + _cpu(a, env, (shim, helm_env), sops_argv, work, runs))


@contextmanager
def root_emulator(work: Path) -> Iterator[Any]:
    """The emulator on port 443 under kvtest.vault.azure.net (the Go SDK checks the challenge domain)."""
    from tests.azure_emulator import KeyVaultEmulator

    with open("/tmp/kvsops-azure-root.lock", "w") as lock:  # the tests' lock: one hosts-file user at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        original = HOSTS.read_bytes()
        try:
            HOSTS.write_bytes(original + f"\n127.0.0.1 {KVTEST_HOST} # kvsops bench\n".encode())
            with KeyVaultEmulator(port=443, names=("localhost", "127.0.0.1", "*.vault.azure.net"),
                                  workdir=work / "emu443") as emu:
                yield emu
        finally:
            HOSTS.write_bytes(original)


def _azure_env(env: dict[str, str], emu: Any, hosts: tuple[str, ...] = ()) -> dict[str, str]:
    out = {k: v for k, v in env.items() if k != "SOPS_AGE_KEY_FILE"}
    out.update(emu.base_env(hosts=hosts))
    out.update(emu.managed_identity_env())
    return out


def _encrypt_azure(kv: Path, plain: Path, key_url: str, env: dict[str, str], *extra: str) -> bytes:
    return subprocess.run([str(kv / "kvsops"), "encrypt", "--azure-kv", key_url, *extra, str(plain)], env=env,
                          capture_output=True, check=True).stdout


def case_9(b: ModuleType, kv: Path, work: Path, env: dict[str, str], runs: int, table: Any) -> None:
    if os.geteuid() != 0:
        print("9    skipped: needs root (an /etc/hosts alias and port 443 for the Go SDK)", flush=True)
        return
    sops = b.tool("sops")
    with root_emulator(work) as emu:
        version = emu.create_key("sops-key", key_ops=("encrypt", "decrypt"))
        az_env = _azure_env(env, emu, (KVTEST_HOST,))
        (work / "kv-values.yaml").write_text(b.values_yaml(10, 4))  # 40 values
        (work / "kv-secrets.yaml").write_bytes(
            _encrypt_azure(kv, work / "kv-values.yaml", f"https://{KVTEST_HOST}/keys/sops-key/{version}", az_env))
        sops_d = b.one([sops, "decrypt", "kv-secrets.yaml"], work, az_env)
        plain = b.one([str(kv / "kvsops"), "decrypt", "kv-secrets.yaml"], work, az_env)
        with agent(kv, az_env) as a:
            with_agent = b.one([str(kv / "kvsops"), "decrypt", "kv-secrets.yaml"], work, a.env(az_env))
            ours, no_agent, theirs = b.alternate(runs, with_agent, plain, sops_d)
            same = "identical" if ours.out == theirs.out == no_agent.out else "DIFFERENT"
            table.add("9", "one azure_kv file, agent", ours, theirs, "<=0.5x",
                      note=f"outputs {same}; HTTPS emulator on :443, App Service managed identity")
            table.add("9", "one azure_kv file, no agent", no_agent, theirs, "<=2.8x",
                      note=f"the agent's calls: {a.status(az_env)['limiter']}")


def _kv_app(kv: Path, work: Path, emu: Any, env: dict[str, str], n: int) -> Path:
    app = work / "kv-app"
    app.mkdir()
    emu.create_key("apps", key_ops=("encrypt", "decrypt"))
    for i in range(n):
        plain = work / f"kv-app-{i}.yaml"
        plain.write_text(b_secret(i))
        (app / f"secret-{i}.enc.yaml").write_bytes(
            _encrypt_azure(kv, plain, emu.key_url("apps"), env, "--encrypted-regex", "^(data|stringData)$"))
        plain.unlink()
    return app


def b_secret(i: int) -> str:
    return (f"apiVersion: v1\nkind: Secret\nmetadata:\n    name: app-{i}\ntype: Opaque\nstringData:\n"
            f"    username: user-{i}\n    password: pw-{i}-{'s' * 16}\n")


def _argocd_env(env: dict[str, str], app: Path) -> dict[str, str]:
    return dict(env, ARGOCD_APP_NAME="web", ARGOCD_APP_NAMESPACE="demo", ARGOCD_APP_PROJECT_NAME="default",
                ARGOCD_APP_SOURCE_PATH=app.name, ARGOCD_APP_SOURCE_REPO_URL="https://example.com/apps.git",
                KUBE_VERSION="1.31.0")


def case_10(b: ModuleType, kv: Path, work: Path, env: dict[str, str], renders: int, more: int, table: Any) -> None:
    from tests.azure_emulator import KeyVaultEmulator

    with KeyVaultEmulator(workdir=work / "emu9") as emu:
        az_env = _azure_env(env, emu)
        az_env.update(KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE="false", KVSOPS_AZURE_CREDENTIAL="managed_identity")
        app = _kv_app(kv, work, emu, az_env, 5)
        genv = _argocd_env(az_env, app)
        argv = [str(kv / "kvsops"), "argocd", "generate"]
        emu.latency = 0.01

        def series(run_env: dict[str, str]) -> tuple[Any, dict[str, int], bytes, float]:
            emu.reset_counters()
            s = b.Series()
            t0, rss, out, cpu = time.perf_counter(), 0, b"", 0.0
            for _ in range(renders):
                secs, kb, used, out = _spawn_cpu(argv, app, run_env)
                rss, cpu = max(rss, kb), cpu + used
            s.add(time.perf_counter() - t0, rss, out)
            calls = dict(emu.counts)
            calls["token"] = sum(emu.token_requests.values())
            return s, calls, out, cpu

        without, calls_without, out_without, cpu_without = series(genv)
        with agent(kv, az_env) as a:
            at_rest = a.ready(az_env)
            ours, calls_ours, out_ours, cpu_ours = series(a.env(genv))
            after = a.status(az_env)
            agent_cpu = (after["cpu_ms"] - at_rest["cpu_ms"]) / 1000
            ours_rss = after.get("rss_kb", 0)
            grown = _more_renders(kv, app, a, genv, more)
        with agent(kv, az_env, "--data-key-cache-ttl", "300") as a:  # opt-in: data keys kept in the agent
            cached, calls_cached, out_cached, cpu_cached = series(a.env(genv))
        same = "identical" if out_ours == out_without == out_cached else "DIFFERENT"
        per = 1000 / renders
        table.add("10", f"{renders} argocd renders, 5 azure_kv files, agent", ours, without, "<=0.2x", unit="s",
                  note=f"outputs {same}; CPU per render: {cpu_ours * per:.0f} ms (+ {agent_cpu * per:.0f} ms in the "
                       f"agent) vs {cpu_without * per:.0f} ms, ratio {(cpu_ours + agent_cpu) / cpu_without:.2f}x; "
                       f"Key Vault ({int(emu.latency * 1000)} ms per request) with the agent: "
                       f"{b._calls(calls_ours)}; without: {b._calls(calls_without)}")
        table.add("10", "the same, agent with --data-key-cache-ttl 300", cached, without, "<=0.2x", unit="s",
                  note=f"CPU per render {cpu_cached * per:.0f} ms; Key Vault: {b._calls(calls_cached)}")
        print(f"10   agent memory: at rest {at_rest.get('rss_kb', 0) / 1024:.1f} MB, after {renders} renders "
              f"{ours_rss / 1024:.1f} MB, after {more:,} more {grown['rss_kb'] / 1024:.1f} MB "
              f"(peak {grown.get('peak_rss_kb', 0) / 1024:.1f} MB); holds {grown['vault_clients']} vault client(s), "
              f"{grown['age_keyrings']} age key ring(s), {grown['data_keys_cached']} cached data key(s)", flush=True)


def _spawn_cpu(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, float, bytes]:
    """A child run to completion: wall seconds, peak RSS (KiB), CPU seconds (user + system), stdout."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL)
    assert p.stdout is not None
    out = p.stdout.read()
    _pid, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    p.stdout.close()
    if p.returncode:
        raise SystemExit(f"bench: {argv} failed (exit {p.returncode})")
    return time.perf_counter() - t0, usage.ru_maxrss, usage.ru_utime + usage.ru_stime, out


def _more_renders(kv: Path, app: Path, a: Agent, genv: dict[str, str], n: int) -> dict[str, Any]:
    """``n`` renders' worth of requests (what `kvsops argocd generate` asks in plain mode: the app's
    files in one request), sent from one child process with the installed kvsops: then the agent's
    status."""
    code = (
        "import os\n"
        "from kvsops.hosts.argocd import cmp\n"
        f"for _ in range({n}):\n"
        "    cmp.generate(os.environ)\n"
    )
    subprocess.run([str(kv / "python"), "-c", code], cwd=app, env=a.env(genv), check=True, capture_output=True)
    return a.status(genv)


def case_11(b: ModuleType, kv: Path, work: Path, env: dict[str, str], n: int, throttled: int) -> None:
    from tests.azure_emulator import KeyVaultEmulator

    rate, concurrency = 10, 4
    with KeyVaultEmulator(workdir=work / "emu10") as emu:
        az_env = _azure_env(env, emu)
        az_env.update(KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE="false", KVSOPS_AZURE_CREDENTIAL="managed_identity")
        files = []
        emu.create_key("storm", key_ops=("encrypt", "decrypt"))
        for i in range(4):
            plain = work / f"storm-{i}.yaml"
            plain.write_text(b_secret(i))
            target = work / f"storm-{i}.enc.yaml"
            target.write_bytes(_encrypt_azure(kv, plain, emu.key_url("storm"), az_env))
            files.append(target)
        with agent(kv, az_env, "--rate", str(rate), "--concurrency", str(concurrency)) as a:
            emu.reset_counters()
            emu.throttle(throttled, retry_after=1.0, ops=("decrypt",))
            t0 = time.monotonic()
            procs = [subprocess.Popen([str(kv / "kvsops"), "decrypt", str(files[i % len(files)])], env=a.env(az_env),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(n)]
            ok = sum(1 for p in procs if p.communicate()[0] and p.returncode == 0)
            elapsed = time.monotonic() - t0
            limiter = a.status(az_env)["limiter"]
        arrivals = sorted(emu.arrivals)
        worst = max(sum(1 for t in arrivals if s <= t < s + 1.0) for s in arrivals)  # what the vault saw
        print(f"11   {n} concurrent renders, vault answering 429 ({throttled} x Retry-After 1 s): "
              f"{ok}/{n} succeeded in {elapsed:.1f} s (deadline 55 s); "
              f"most vault requests in any second {worst} (rate {rate}), most at "
              f"once {emu.max_in_flight} (concurrency {concurrency}); {emu.counts['decrypt']} decrypt requests, "
              f"{limiter['throttled']} answered 429", flush=True)


def run(b: ModuleType, cases: set[str], work: Path, env: dict[str, str], runs: int, quick: bool, table: Any) -> None:
    if not cases & {"8", "9", "10", "11"}:
        return
    # --quick (the CI smoke run) measures this venv's kvsops: building an install takes longer than the cases
    kv = b.KV if b.KV != b.BIN or quick else non_editable(work / "install", b.REPO)
    print(f"     agent cases: kvsops from {kv} ({'a non-editable install of this tree' if kv != b.KV else 'as given'})",
          flush=True)
    sys.path.insert(0, str(b.REPO))
    if "8" in cases:
        case_8(b, kv, work, env, runs, table)
    if "9" in cases:
        case_9(b, kv, work, env, runs, table)
    if "10" in cases:
        case_10(b, kv, work, env, 3 if quick else 200, 30 if quick else 1000, table)
    if "11" in cases:
        case_11(b, kv, work, env, 6 if quick else 20, 2 if quick else 8)
