"""kvsops vs the real sops binary, side by side in one run: medians, ratios, peak memory.

    bash bench/run.sh            # default run (a few minutes at most)
    bash bench/run.sh --quick    # CI smoke: every case, small sizes, few runs
    bash bench/run.sh --cases 1,2 --runs 31

Cases (see issue 8):
  1  one age-encrypted YAML (~50 values): ``kvsops decrypt`` vs ``sops -d``, whole process
  2  the Helm downloader (plugin shim, as Helm starts it) on the same file vs ``sops -d``
  3  ``kustomize build --enable-alpha-plugins --enable-exec`` with one kvsops generator listing 100
     encrypted Secrets vs ``sops -d`` of the 100 files in a loop plus the build of the plain files
  4  a large file (100k values, ~10 MB): decrypt and encrypt vs sops, time and peak memory
  5  100 files with azure_kv keys against the Key Vault emulator (30 ms per request): sequential
     (one kvsops process per file; one process with KVSOPS_CONCURRENCY=1) vs kvsops' generator
     (one process, concurrent, one Key Vault decrypt per distinct wrapped key)
  6  case 1 with a post-quantum age recipient (age1pq1...) vs ``sops -d``
  7  ``helm template`` of a ``helm create`` chart with N encrypted values files
     (``-f secrets://f.yaml``, the getter plugin installed) vs the same N files in plain text, per
     Helm major (the real helm3 and helm4): the added cost per encrypted file, against ``sops -d``
     of one such file (what helm-secrets pays per file at the least)
  8-11  the agent (kvsops agent): see bench/agent_cases.py
  peak memory (ru_maxrss of each child, from os.wait4) is a column of every case

Every child is timed whole (spawn to reap), kvsops and sops runs alternate so that load from
elsewhere on the machine hits both alike, and the medians are compared. Nothing is asserted:
this is a measurement. Outputs of both tools are compared where they must be identical.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv kvsops is installed in (as the README installs it)
KV = BIN  # where the measured kvsops and kvsops-krm are (--kvsops-bin: another build)
TOOLS = Path(os.environ.get("KVSOPS_TOOLS") or REPO / ".tools" / "bin")
HELM_SHIM = REPO / "helm-plugin" / "kvsops-getter-legacy" / "bin" / "kvsops-helm"
DEMO_KEY = REPO / "examples" / "keys" / "demo-age-key.txt"


# ----------------------------------------------------------------------------- measuring children


class Run:
    __slots__ = ("secs", "rss_kb", "out", "err", "rc", "cpu")

    def __init__(self, secs: float, rss_kb: int, out: bytes, err: bytes, rc: int, cpu: float = 0.0) -> None:
        self.secs, self.rss_kb, self.out, self.err, self.rc = secs, rss_kb, out, err, rc
        self.cpu = cpu  # user + system seconds of the child and the descendants it waited for


def spawn(argv: list[str], *, cwd: Path, env: dict[str, str], stdin: bytes | None = None,
          check: bool = True) -> Run:
    """Run a child to completion; wall time from spawn to reap, and its ru_maxrss (os.wait4)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL)
    err: list[bytes] = []
    reader = threading.Thread(target=lambda: err.append(p.stderr.read()))  # type: ignore[union-attr]
    reader.start()
    if stdin is not None:
        writer = threading.Thread(target=lambda: (p.stdin.write(stdin), p.stdin.close()))  # type: ignore[union-attr]
        writer.start()
    out = p.stdout.read()  # type: ignore[union-attr]
    reader.join()
    _pid, status, usage = os.wait4(p.pid, 0)
    secs = time.perf_counter() - t0
    p.returncode = rc = os.waitstatus_to_exitcode(status)
    p.stdout.close()  # type: ignore[union-attr]
    p.stderr.close()  # type: ignore[union-attr]
    if check and rc != 0:
        tail = err[0].decode(errors="replace")[-2000:]
        raise SystemExit(f"bench: {' '.join(map(str, argv))} failed (exit {rc}):\n{tail}")
    return Run(secs, usage.ru_maxrss, out, err[0], rc, usage.ru_utime + usage.ru_stime)


class Series:
    """Samples of one contender: wall times and peak RSS."""

    def __init__(self) -> None:
        self.secs: list[float] = []
        self.rss_kb: list[int] = []
        self.out: bytes = b""

    def add(self, secs: float, rss_kb: int, out: bytes = b"") -> None:
        self.secs.append(secs)
        self.rss_kb.append(rss_kb)
        self.out = out

    @property
    def median(self) -> float:
        return statistics.median(self.secs)

    @property
    def peak_mb(self) -> float:
        return max(self.rss_kb) / 1024


Contender = Callable[[], tuple[float, int, bytes]]  # one run: (seconds, peak RSS in kB, stdout)


def alternate(runs: int, *contenders: Contender) -> list[Series]:
    """Run the contenders in turn, ``runs`` times each (after one warm-up round)."""
    for c in contenders:
        c()
    series = [Series() for _ in contenders]
    for _ in range(runs):
        for s, c in zip(series, contenders, strict=True):
            s.add(*c())
    return series


def one(argv: list[str], cwd: Path, env: dict[str, str], stdin: bytes | None = None) -> Contender:
    def go() -> tuple[float, int, bytes]:
        r = spawn(argv, cwd=cwd, env=env, stdin=stdin)
        return r.secs, r.rss_kb, r.out

    return go


def timed(argv: list[str], cwd: Path, env: dict[str, str], cpu: list[float]) -> Contender:
    """:func:`one` that also appends each run's CPU seconds to ``cpu``."""
    def go() -> tuple[float, int, bytes]:
        r = spawn(argv, cwd=cwd, env=env)
        cpu.append(r.cpu)
        return r.secs, r.rss_kb, r.out

    return go


# ----------------------------------------------------------------------------- table


class Table:
    def __init__(self) -> None:
        self.rows: list[dict[str, object]] = []

    def add(self, case: str, what: str, ours: Series, theirs: Series, target: str, unit: str = "ms",
            note: str = "", peak_target: float | None = None) -> None:
        ratio = ours.median / theirs.median
        mem_ratio = ours.peak_mb / theirs.peak_mb if theirs.peak_mb else float("nan")
        ok_time = _meets(ratio, target)
        ok_mem = None if peak_target is None else mem_ratio <= peak_target
        self.rows.append(dict(case=case, what=what, ours=ours.median, theirs=theirs.median, ratio=ratio,
                              ours_mb=ours.peak_mb, theirs_mb=theirs.peak_mb, mem_ratio=mem_ratio,
                              target=target, met=ok_time, mem_met=ok_mem, unit=unit, note=note,
                              runs=len(ours.secs)))
        self._print_row(self.rows[-1])

    @staticmethod
    def header() -> None:
        print(f"{'case':<4} {'what':<46} {'kvsops':>10} {'baseline':>10} {'ratio':>7} {'target':>8}  "
              f"{'kvsops MB':>9} {'base MB':>8} {'mem':>6}  runs", flush=True)
        print("-" * 126, flush=True)

    @staticmethod
    def _fmt(secs: float, unit: str) -> str:
        return f"{secs * 1000:8.1f}ms" if unit == "ms" else f"{secs:8.2f} s"

    def _print_row(self, r: dict[str, object]) -> None:
        mark = {True: " ", False: "!", None: " "}[r["met"]]  # type: ignore[index]
        mem_mark = {True: " ", False: "!", None: " "}[r["mem_met"]]  # type: ignore[index]
        print(f"{r['case']:<4} {r['what']:<46} {self._fmt(r['ours'], r['unit']):>10} "  # type: ignore[arg-type]
              f"{self._fmt(r['theirs'], r['unit']):>10} {r['ratio']:6.2f}x{mark}{r['target']:>8}  "  # type: ignore[arg-type]
              f"{r['ours_mb']:9.1f} {r['theirs_mb']:8.1f} {r['mem_ratio']:5.2f}x{mem_mark} {r['runs']:>4}",
              flush=True)
        if r["note"]:
            print(f"     {r['note']}", flush=True)


def _meets(ratio: float, target: str) -> bool | None:
    if target.startswith("<="):
        return ratio <= float(target[2:].rstrip("x"))
    if target.startswith("<"):
        return ratio < float(target[1:].rstrip("x"))
    return None


# ----------------------------------------------------------------------------- fixtures


def tool(name: str) -> str:
    for d in (TOOLS, BIN):
        if os.access(d / name, os.X_OK):
            return str(d / name)
    raise SystemExit(f"bench: {name} not found in {TOOLS} or {BIN}: run scripts/setup.sh")


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SOPS_", "KVSOPS_", "AZURE_", "IDENTITY_", "PYTHON"))}
    env.update(HOME=str(home), SOPS_AGE_KEY_FILE=str(DEMO_KEY), SOPS_DISABLE_VERSION_CHECK="1",
               PATH=f"{BIN}:{TOOLS}:{env.get('PATH', '/usr/bin:/bin')}")
    return env


def demo_recipient() -> str:
    for line in DEMO_KEY.read_text().splitlines():
        if "public key:" in line:
            return line.split(":", 1)[1].strip()
    raise SystemExit("bench: no public key line in the demo key file")


def values_yaml(n_groups: int, per_group: int, pad: int = 12) -> str:
    """A values file with mixed scalar types, ``n_groups * per_group`` leaves."""
    lines = []
    for g in range(n_groups):
        lines.append(f"svc{g:05d}:")
        for i in range(per_group):
            kind = i % 4
            if kind == 0:
                lines.append(f"    password{i}: p{g}-{i}-{'x' * pad}")
            elif kind == 1:
                lines.append(f"    port{i}: {1000 + i}")
            elif kind == 2:
                lines.append(f"    enabled{i}: {'true' if i % 8 == 2 else 'false'}")
            else:
                lines.append(f"    url{i}: https://h{g}.example.com/{i}")
    return "\n".join(lines) + "\n"


def sops_encrypt(sops: str, plain: Path, env: dict[str, str], *extra: str) -> bytes:
    return spawn([sops, "encrypt", "--age", demo_recipient(), *extra, str(plain)], cwd=plain.parent, env=env).out


# ----------------------------------------------------------------------------- cases


def case_small(work: Path, env: dict[str, str], runs: int, table: Table, cases: set[str]) -> None:
    sops = tool("sops")
    (work / "values.yaml").write_text(values_yaml(10, 5))  # 50 values
    (work / "secrets.yaml").write_bytes(sops_encrypt(sops, work / "values.yaml", env))
    sops_d = one([sops, "decrypt", "secrets.yaml"], work, env)
    size = (work / "secrets.yaml").stat().st_size
    if "1" in cases:
        floor = alternate(runs, one([sys.executable, "-I", "-S", "-c", "pass"], work, env))[0]
        ours, theirs = alternate(runs, one([str(KV / "kvsops"), "decrypt", "secrets.yaml"], work, env), sops_d)
        same = "identical" if ours.out == theirs.out else "DIFFERENT"
        table.add("1", "kvsops decrypt vs sops -d (50 values)", ours, theirs, "<=1.0x",
                  note=f"{size} bytes encrypted; outputs {same}; interpreter floor "
                       f"(python -I -S -c pass) {floor.median * 1000:.1f} ms, {floor.peak_mb:.1f} MB; "
                       + import_profile(work, env))
    if "2" in cases:
        helm_env = dict(env, HELM_PLUGIN_DIR=str(HELM_SHIM.parent.parent), HELM_PLUGIN_NAME="kvsops-getter-legacy")
        if KV != BIN:  # the shim's documented override: run that build's kvsops
            helm_env["KVSOPS_BIN"] = str(KV / "kvsops")
        ours, theirs = alternate(runs, one([str(HELM_SHIM), "downloader", "", "", "", "secrets://secrets.yaml"],
                                           work, helm_env), sops_d)
        same = "identical" if ours.out == theirs.out else "DIFFERENT"
        table.add("2", "helm downloader (shim) vs sops -d", ours, theirs, "<=1.0x", note=f"outputs {same}")


def case_pq(work: Path, env: dict[str, str], runs: int, table: Table) -> None:
    """Case 6: case 1's file, for a post-quantum age recipient (a key from age 1.3's age-keygen -pq)."""
    sops = tool("sops")
    key = work / "pq-key.txt"
    spawn([tool("age-keygen-1.3"), "-pq", "-o", str(key)], cwd=work, env=env)
    recipient = next(ln.split(":", 1)[1].strip() for ln in key.read_text().splitlines() if "public key:" in ln)
    pq_env = dict(env, SOPS_AGE_KEY_FILE=str(key))
    (work / "pq-values.yaml").write_text(values_yaml(10, 5))
    (work / "pq-secrets.yaml").write_bytes(
        spawn([sops, "encrypt", "--age", recipient, "pq-values.yaml"], cwd=work, env=pq_env).out)
    ours, theirs = alternate(runs, one([str(KV / "kvsops"), "decrypt", "pq-secrets.yaml"], work, pq_env),
                             one([sops, "decrypt", "pq-secrets.yaml"], work, pq_env))
    same = "identical" if ours.out == theirs.out else "DIFFERENT"
    table.add("6", "case 1, post-quantum age key (age1pq1)", ours, theirs, "<=1.0x", note=f"outputs {same}")


def import_profile(work: Path, env: dict[str, str], runs: int = 5) -> str:
    """Import time of `kvsops decrypt` on the age file (``-X importtime``, best of ``runs``) and
    whether any Azure SDK module was imported (it must not be, for an age-only file). The command
    script itself is run (not ``-m kvsops``: runpy imports modules the command does not)."""
    best, modules, azure = float("inf"), 0, set()
    for _ in range(runs):
        proc = subprocess.run([str(KV / "python"), "-X", "importtime", str(KV / "kvsops"), "decrypt", "secrets.yaml"],
                              cwd=work, env=env, capture_output=True, check=True)
        lines = [ln for ln in proc.stderr.decode().splitlines() if ln.startswith("import time:")][1:]
        total = sum(int(ln.split("|")[0].split(":")[1]) for ln in lines)  # self times, microseconds
        best, modules = min(best, total / 1000), len(lines)
        azure |= {ln.rsplit("|", 1)[1].strip() for ln in lines if ln.rsplit("|", 1)[1].strip().startswith("azure")}
    return f"imports {best:.1f} ms ({modules} modules), Azure SDK imported: {'yes' if azure else 'no'}"


def _secret_manifest(i: int) -> str:
    return (f"apiVersion: v1\nkind: Secret\nmetadata:\n    name: app-{i:03d}\ntype: Opaque\nstringData:\n"
            f"    username: user-{i}\n    password: pw-{i}-{'s' * 16}\n    url: postgres://db-{i}:5432/app\n")


def case_kustomize(work: Path, env: dict[str, str], runs: int, table: Table, n_files: int) -> None:
    sops, kustomize = tool("sops"), tool("kustomize")
    root = work / "kz"
    (root / "enc").mkdir(parents=True)
    (root / "plain").mkdir()
    for i in range(n_files):
        src = root / "plain" / f"s{i:03d}.yaml"
        src.write_text(_secret_manifest(i))
        (root / "enc" / f"s{i:03d}.yaml").write_bytes(
            sops_encrypt(sops, src, env, "--encrypted-regex", "^(data|stringData)$"))
        src.unlink()
    names = [f"s{i:03d}.yaml" for i in range(n_files)]
    gen = ("apiVersion: kvsops/v1\nkind: SopsGenerator\nmetadata:\n    name: secrets\n    annotations:\n"
           f"        config.kubernetes.io/function: |\n            exec:\n              path: {KV / 'kvsops-krm'}\n"
           "files:\n" + "".join(f"    - enc/{n}\n" for n in names))
    (root / "gen.yaml").write_text(gen)
    (root / "kustomization.yaml").write_text("generators:\n    - gen.yaml\n")
    (root / "plain" / "kustomization.yaml").write_text("resources:\n" + "".join(f"    - {n}\n" for n in names))
    build = [kustomize, "build", "--enable-alpha-plugins", "--enable-exec"]

    def ours() -> tuple[float, int, bytes]:
        r = spawn([*build, str(root)], cwd=root, env=env)
        return r.secs, r.rss_kb, r.out

    def theirs() -> tuple[float, int, bytes]:
        t0, rss = time.perf_counter(), 0
        for n in names:
            r = spawn([sops, "decrypt", f"enc/{n}"], cwd=root, env=env)
            (root / "plain" / n).write_bytes(r.out)
            rss = max(rss, r.rss_kb)
        r = spawn([kustomize, "build", str(root / "plain")], cwd=root, env=env)
        secs = time.perf_counter() - t0
        for n in names:
            (root / "plain" / n).unlink()
        return secs, max(rss, r.rss_kb), r.out

    o, t = alternate(runs, ours, theirs)
    same = "identical" if o.out == t.out else "DIFFERENT"
    table.add("3", f"kustomize build, generator of {n_files} files", o, t, "<=0.1x", unit="s",
              note=f"baseline: {n_files} x sops -d in a loop + kustomize build of the plain files; outputs {same}")


def case_large(work: Path, env: dict[str, str], runs: int, table: Table, n_values: int) -> None:
    sops = tool("sops")
    kv = str(KV / "kvsops")
    plain = work / "large.yaml"
    plain.write_text(values_yaml(n_values // 100, 100, pad=40))
    enc = work / "large.enc.yaml"
    enc.write_bytes(sops_encrypt(sops, plain, env))
    dec_o, dec_t = alternate(runs, one([kv, "decrypt", enc.name], work, env),
                             one([sops, "decrypt", enc.name], work, env))
    same = "identical" if dec_o.out == dec_t.out else "DIFFERENT"
    mb = enc.stat().st_size / 1e6
    table.add("4d", f"decrypt {n_values} values ({mb:.1f} MB)", dec_o, dec_t, "<=1.0x", unit="s",
              note=f"outputs {same}; memory target: at most half of sops' peak", peak_target=0.5)
    rec = demo_recipient()
    enc_o, enc_t = alternate(runs, one([kv, "encrypt", "--age", rec, plain.name], work, env),
                             one([sops, "encrypt", "--age", rec, plain.name], work, env))
    table.add("4e", f"encrypt {n_values} values ({plain.stat().st_size / 1e6:.1f} MB plain)", enc_o, enc_t,
              "<=1.0x", unit="s", note="memory target: at most half of sops' peak", peak_target=0.5)


def case_azure(work: Path, env: dict[str, str], table: Table, n_files: int, latency: float, sample: int) -> None:
    sys.path.insert(0, str(REPO))
    from kvsops import api
    from tests.azure_emulator import KeyVaultEmulator  # the test suite's HTTPS Key Vault emulator

    root = work / "az"
    (root / "enc").mkdir(parents=True)
    with KeyVaultEmulator(workdir=work / "emu") as emu:
        emu.create_key("k", key_ops=("encrypt", "decrypt"))
        az_env = dict(env)
        for k in ("SOPS_AGE_KEY_FILE",):
            az_env.pop(k, None)
        az_env.update(emu.base_env())
        az_env.update(emu.workload_identity_env("renderer", work / "federated-token"))
        az_env["KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE"] = "false"
        saved = dict(os.environ)
        os.environ.update(az_env)  # azure-identity reads os.environ in this (encrypting) process
        try:
            sess = api.Session(env=az_env)
            rec = sess.recipient("azure_kv", emu.key_url("k"))
            names = []
            for i in range(n_files):
                data = api.encrypt_bytes(_secret_manifest(i).encode(), "yaml", [[rec]],
                                         rule=_stringdata_rule())
                names.append(f"s{i:03d}.yaml")
                (root / "enc" / names[-1]).write_bytes(data)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        gen = ("apiVersion: kvsops/v1\nkind: SopsGenerator\nmetadata:\n    name: secrets\n"
               "files:\n" + "".join(f"    - enc/{n}\n" for n in names))
        rlist = ("apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems: []\nfunctionConfig:\n"
                 + "".join(f"    {line}\n" for line in gen.splitlines())).encode()
        emu.latency = latency
        results: dict[str, tuple[Series, dict[str, int]]] = {}

        def measure(label: str, fn: Contender) -> None:
            emu.reset_counters()
            s = Series()
            s.add(*fn())
            calls = dict(emu.counts)
            calls["token"] = sum(emu.token_requests.values())
            if label == "per-process" and sample < n_files:
                calls = {k: v * n_files // sample for k, v in calls.items()}
            results[label] = (s, calls)

        def per_process() -> tuple[float, int, bytes]:
            # Each process costs the same (fresh interpreter, SDK import, token, challenge, decrypt):
            # time a sample of them and scale, so that the default run stays short.
            t0, rss = time.perf_counter(), 0
            for n in names[:sample]:
                r = spawn([str(KV / "kvsops"), "decrypt", f"enc/{n}"], cwd=root, env=az_env)
                rss = max(rss, r.rss_kb)
            return (time.perf_counter() - t0) * len(names) / min(sample, len(names)), rss, b""

        def krm(concurrency: str | None) -> Contender:
            e = dict(az_env, KVSOPS_CONCURRENCY=concurrency) if concurrency else az_env

            def go() -> tuple[float, int, bytes]:
                r = spawn([str(KV / "kvsops-krm")], cwd=root, env=e, stdin=rlist)
                return r.secs, r.rss_kb, r.out

            return go

        measure("per-process", per_process)
        measure("workers=1", krm("1"))
        measure("kvsops", krm(None))
    ours, ours_calls = results["kvsops"]
    for label in ("per-process", "workers=1"):
        seq, calls = results[label]
        scaled = f" ({sample} timed, scaled)" if sample < n_files else ""
        what = {"per-process": f"azure_kv {n_files} files: process per file{scaled}",
                "workers=1": f"azure_kv {n_files} files: one process, workers=1"}[label]
        table.add("5", what, ours, seq, "<0.1x", unit="s",
                  note=f"Key Vault calls, baseline {_calls(calls)}; kvsops {_calls(ours_calls)}; "
                       f"latency {latency * 1000:.0f} ms per vault request")


def case_helm(work: Path, env: dict[str, str], runs: int, table: Table, n_files: int) -> None:
    sops = tool("sops")
    root = work / "helm"
    root.mkdir()
    plain = values_yaml(10, 5)  # 50 values, as in cases 1 and 2
    for i in range(n_files):
        src = root / f"plain{i:02d}.yaml"
        src.write_text(plain.replace("svc", f"f{i:02d}svc"))
        (root / f"secrets{i:02d}.yaml").write_bytes(sops_encrypt(sops, src, env))
    for major in ("helm3", "helm4"):
        helm = tool(major)
        homes = root / f"{major}-homes"
        plugins = homes / "data" / "plugins"
        plugins.mkdir(parents=True)
        (plugins / HELM_SHIM.parent.parent.name).symlink_to(HELM_SHIM.parent.parent)  # `helm plugin install DIR`
        (homes / "tmp").mkdir()
        henv = dict(env, HELM_DATA_HOME=str(homes / "data"), HELM_PLUGINS=str(plugins), TMPDIR=str(homes / "tmp"),
                    HELM_CONFIG_HOME=str(homes / "config"), HELM_CACHE_HOME=str(homes / "cache"))
        if KV != BIN:
            henv["KVSOPS_BIN"] = str(KV / "kvsops")
        chart = root / f"chart-{major}"
        spawn([helm, "create", chart.name], cwd=root, env=henv)
        base = [helm, "template", "t", chart.name]
        enc = [*base, *(a for i in range(n_files) for a in ("-f", f"secrets://secrets{i:02d}.yaml"))]
        txt = [*base, *(a for i in range(n_files) for a in ("-f", f"plain{i:02d}.yaml"))]
        cpu: dict[str, list[float]] = {"enc": [], "txt": [], "sops": []}

        e, p, d = alternate(runs, timed(enc, root, henv, cpu["enc"]), timed(txt, root, henv, cpu["txt"]),
                            timed([sops, "decrypt", "secrets00.yaml"], root, env, cpu["sops"]))
        added = Series()
        for es, ps, rss in zip(e.secs, p.secs, e.rss_kb, strict=True):
            added.add((es - ps) / n_files, rss)
        med = {k: statistics.median(v[1:]) for k, v in cpu.items()}  # [0] is the warm-up round
        added_cpu = (med["enc"] - med["txt"]) / n_files
        same = "identical" if e.out == p.out else "DIFFERENT"
        version = spawn([helm, "version", "--template", "{{.Version}}"], cwd=root, env=henv).out.decode()
        table.add(f"7h{major[-1]}", f"{major} template, added per encrypted file", added, d, "<=1.0x",
                  note=f"helm {version}: {n_files} plain files {p.median * 1000:.1f} ms, the same {n_files} "
                       f"encrypted (secrets://) {e.median * 1000:.1f} ms; outputs {same}; CPU (user+sys) added per "
                       f"file {added_cpu * 1000:.1f} ms vs sops -d {med['sops'] * 1000:.1f} ms "
                       f"({added_cpu / med['sops']:.2f}x); kvsops MB is the encrypted helm run's peak (helm and "
                       "the getters)")


def _stringdata_rule():  # type: ignore[no-untyped-def]
    from kvsops.sops.rules import SelectionRule

    return SelectionRule("encrypted_regex", "^(data|stringData)$")


def _calls(c: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items()))


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and few runs (CI smoke)")
    ap.add_argument("--runs", type=int, help="runs per contender for cases 1-2 (default 21, quick 3)")
    ap.add_argument("--cases", default="1,2,3,4,5,6,7,8,9,10,11", help="comma list of cases (default all)")
    ap.add_argument("--helm-files", type=int,
                    help="encrypted values files per helm run in case 7 (default 10, quick 3)")
    ap.add_argument("--large-values", type=int, help="values in case 4 (default 100000, quick 5000)")
    ap.add_argument("--azure-sample", type=int, default=20,
                    help="case 5: how many of the one-process-per-file runs to time (the rest are scaled)")
    ap.add_argument("--kvsops-bin", type=Path,
                    help="directory holding the kvsops and kvsops-krm to measure (default: this venv's)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ns = ap.parse_args(argv)
    cases = set(ns.cases.split(","))
    global KV
    KV = ns.kvsops_bin.resolve() if ns.kvsops_bin else BIN
    runs = ns.runs or (3 if ns.quick else 21)
    big_runs = 1 if ns.quick else 3
    n_files = 10 if ns.quick else 100
    n_values = ns.large_values or (5000 if ns.quick else 100_000)
    started = time.monotonic()
    table = Table()
    with tempfile.TemporaryDirectory(prefix="kvsops-bench-") as tmp:
        work = Path(tmp)
        env = base_env(work)
        sops_version = spawn([tool("sops"), "--version", "--disable-version-check"], cwd=work, env=env).out
        print(f"kvsops bench: {sops_version.decode().splitlines()[0]}, {Path(tool('kustomize')).resolve().name}, "
              f"python {sys.version.split()[0]} ({sys.executable}), {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.2f}{', quick' if ns.quick else ''}", flush=True)
        Table.header()
        if cases & {"1", "2"}:
            case_small(work, env, runs, table, cases)
        if "3" in cases:
            case_kustomize(work, env, big_runs, table, n_files)
        if "4" in cases:
            case_large(work, env, 1, table, n_values)
        if "5" in cases:
            case_azure(work, env, table, n_files, 0.03, min(ns.azure_sample, n_files))
        if "6" in cases:
            case_pq(work, env, runs, table)
        if "7" in cases:
            case_helm(work, env, 2 if ns.quick else (ns.runs or 11), table, ns.helm_files or (3 if ns.quick else 10))
        import agent_cases  # cases 8-11: the agent (bench/agent_cases.py)

        agent_cases.run(sys.modules[__name__], cases, work, env, runs, ns.quick, table)
    missed = [r for r in table.rows if r["met"] is False or r["mem_met"] is False]
    print("-" * 126)
    print(f"{len(table.rows)} rows in {time.monotonic() - started:.0f} s; '!' marks a missed target "
          f"({len(missed)} missed); ratios are kvsops / baseline in this run")
    if ns.json:
        ns.json.write_text(json.dumps(table.rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
