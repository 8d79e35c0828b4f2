"""``kvsops agent``: its three forms, its socket and peers, fallback and ``required``, a killed agent,
the key policy through it, and every host's output byte-identical with and without it.

Every comparison runs the same command twice, once with ``KVSOPS_AGENT=required`` (so a silent
fallback would fail the test) and once without the agent, and compares exit code, stdout and stderr.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from kvsops.agent import client, protocol
from tests.agent_support import KVSOPS, Agent, wait_until
from tests.cmp_harness import DEMO_KEY, EXAMPLES, Cmp, failed, policy
from tests.integration.test_argocd import DEMO_RECIPIENT, HELM_PARAMS, OTHER_RECIPIENT, helm_sidecar

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "vectors" / "plain"
NOBODY = 65534


def run(argv: list[str], env: dict[str, str], cwd: Path, **kw: Any) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=120, **kw)


def same(with_agent: subprocess.CompletedProcess[bytes], without: subprocess.CompletedProcess[bytes]) -> None:
    assert with_agent.returncode == without.returncode, (with_agent.stderr, without.stderr)
    assert with_agent.stdout == without.stdout
    assert with_agent.stderr == without.stderr


def base_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOPS_", "KVSOPS_", "AZURE_", "ARGOCD_"))}
    env.update(HOME=str(home), SOPS_AGE_KEY_FILE=str(DEMO_KEY), SOPS_DISABLE_VERSION_CHECK="1",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    env.update(extra)
    return env


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def agent(home: Path) -> Iterator[Agent]:
    with Agent(base_env(home)) as a:
        yield a


def encrypt(path: Path, env: dict[str, str], *args: str) -> bytes:
    proc = run([KVSOPS, "encrypt", "--age", DEMO_RECIPIENT, *args, str(path)], env, path.parent)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


@pytest.fixture
def secret_file(tmp_path: Path, home: Path) -> Path:
    plain = tmp_path / "plain.yaml"
    plain.write_text("db:\n    user: app\n    password: pw-for-the-agent-test\nport: 5432\n")
    out = tmp_path / "work" / "secret.yaml"
    out.parent.mkdir()
    out.write_bytes(encrypt(plain, base_env(home)))
    return out


# ----------------------------------------------------------------------------- the three forms


def test_start_eval_stop(tmp_path: Path, home: Path, secret_file: Path) -> None:
    script = (f'eval "$({KVSOPS} agent --start)"\n'
              'echo "sock=$KVSOPS_AGENT_SOCK pid=$KVSOPS_AGENT_PID"\n'
              f'KVSOPS_AGENT=required {KVSOPS} decrypt secret.yaml || exit 9\n'
              f'stat -c "%a %u" "$(dirname "$KVSOPS_AGENT_SOCK")" "$KVSOPS_AGENT_SOCK"\n'
              f'eval "$({KVSOPS} agent --stop)"\n'
              'echo "after=[$KVSOPS_AGENT_SOCK][$KVSOPS_AGENT_PID]"\n')
    proc = run(["sh", "-c", script], base_env(home), secret_file.parent)
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    sock, pid = (w.split("=", 1)[1] for w in lines[0].split())
    assert b"pw-for-the-agent-test" in proc.stdout
    assert lines[-3:] == [f"700 {os.geteuid()}", f"600 {os.geteuid()}", "after=[][]"]
    assert not os.path.exists(os.path.dirname(sock))
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 5)


def test_start_ends_with_the_shell_that_started_it(home: Path) -> None:
    proc = run(["sh", "-c", f'eval "$({KVSOPS} agent --start)"; echo "$KVSOPS_AGENT_PID $KVSOPS_AGENT_SOCK"'],
               base_env(home), home)
    assert proc.returncode == 0, proc.stderr.decode()
    pid, sock = proc.stdout.decode().split()
    assert wait_until(lambda: not os.path.exists(sock) and not os.path.exists(f"/proc/{pid}"), 10)


def test_foreground_agent_cleans_up_on_sigterm(home: Path) -> None:
    a = Agent(base_env(home))
    directory = os.path.dirname(a.sock)
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(a.sock).st_mode) == 0o600 and stat.S_ISSOCK(os.stat(a.sock).st_mode)
    assert a.stop() == 0
    assert not os.path.exists(directory)


def test_idle_timeout(home: Path) -> None:
    a = Agent(base_env(home), "--idle-timeout", "1")
    try:
        assert a.proc.wait(timeout=15) == 0
        assert not os.path.exists(a.sock)
    finally:
        a.stop()


def test_foreground_agent_ends_with_its_parent(home: Path, tmp_path: Path) -> None:
    """A parent that dies without stopping it (SIGKILL) leaves no agent behind."""
    out = tmp_path / "agent.out"
    parent = subprocess.Popen(["sh", "-c", f'{KVSOPS} agent > "{out}" & wait'], env=base_env(home))
    try:
        assert wait_until(lambda: out.exists() and b"KVSOPS_AGENT_PID=" in out.read_bytes(), 15)
        pid = int(out.read_text().split("KVSOPS_AGENT_PID=")[1].split(";")[0])
        sock = out.read_text().split("KVSOPS_AGENT_SOCK=")[1].split(";")[0]
    finally:
        parent.kill()
        parent.wait()
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid), 10)
    assert wait_until(lambda: not os.path.exists(sock), 5)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_run_form_passes_the_socket_and_the_exit_code(home: Path, secret_file: Path) -> None:
    script = 'echo "sock=$KVSOPS_AGENT_SOCK"; KVSOPS_AGENT=required kvsops decrypt secret.yaml || exit 9; exit 7'
    proc = run([KVSOPS, "agent", "--", "sh", "-c", script], base_env(home), secret_file.parent)
    assert proc.returncode == 7, proc.stderr.decode()
    first, *rest = proc.stdout.decode().splitlines()
    sock = first.removeprefix("sock=")
    assert sock and "pw-for-the-agent-test" in "\n".join(rest)
    assert not os.path.exists(sock) and not os.path.exists(os.path.dirname(sock))
    # a command that cannot run: the agent's error, nothing left behind
    bad = run([KVSOPS, "agent", "--", str(home / "no-such-program")], base_env(home), home)
    assert bad.returncode == 12 and b"[AGENT]" in bad.stderr and bad.stdout == b""


def test_run_form_forwards_signals_and_restarts_a_killed_agent(home: Path, secret_file: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ready"
    script = (f'{KVSOPS} agent --status > "{marker}.status"; touch "{marker}"\n'
              'trap "echo got-term; exit 5" TERM\n'
              'while :; do sleep 0.05; done\n')
    sup = subprocess.Popen([KVSOPS, "agent", "--", "sh", "-c", script], env=base_env(home), cwd=secret_file.parent,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert wait_until(marker.exists, 20)
        import json

        status = json.loads(Path(f"{marker}.status").read_text())
        os.kill(status["pid"], signal.SIGKILL)  # the serving child, as the OOM killer would
        env = base_env(home, KVSOPS_AGENT_SOCK=status["socket"], KVSOPS_AGENT="required")
        again = run([KVSOPS, "decrypt", "secret.yaml"], env, secret_file.parent)
        assert again.returncode == 0 and b"pw-for-the-agent-test" in again.stdout, again.stderr.decode()
        sup.send_signal(signal.SIGTERM)
        out, err = sup.communicate(timeout=20)
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
    assert sup.returncode == 5 and out.strip().endswith(b"got-term"), err.decode()
    assert b"starting it again" in err
    assert not os.path.exists(status["socket"])


# ----------------------------------------------------------------------------- socket and peers


def test_socket_option_needs_a_private_directory(home: Path, tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    os.chmod(open_dir, 0o755)
    proc = run([KVSOPS, "agent", "--socket", str(open_dir / "a.sock")], base_env(home), home)
    assert proc.returncode == 12 and b"must be a directory of this user with mode 0700" in proc.stderr
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "file").write_text("x")
    proc = run([KVSOPS, "agent", "--socket", str(private / "file")], base_env(home), home)
    assert proc.returncode == 12 and b"is not a socket" in proc.stderr
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(private / "a.sock"))
    stale.close()  # a socket file nobody listens on: what a killed agent leaves
    with Agent(base_env(home), "--socket", str(private / "a.sock")) as a:
        assert a.sock == str(private / "a.sock")
        again = run([KVSOPS, "agent", "--socket", a.sock], base_env(home), home)
        assert again.returncode == 12 and b"an agent already listens" in again.stderr
    assert not (private / "a.sock").exists() and private.exists()


def _as_nobody(fn: Any) -> int:
    """Run ``fn`` in a forked child that has dropped to uid/gid nobody; its exit code."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = fn()
        finally:
            os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _connect_and_ask(path: str) -> int:
    try:
        client.Link(path).call({"op": "ping"}, 10)
    except client.Unavailable as exc:
        text = str(exc)
        if "Permission denied" in text:
            return 13
        if "served by another user" in text:
            return 20
        return 30
    return 0


def _refused_by_the_agent(path: str) -> int:
    """Connect and read the agent's answer without our own client's uid check."""
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
    except PermissionError:
        return 13
    s.sendall(protocol.frame({"op": "ping"}))
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    answer = protocol.decode(data[protocol.HEADER:])
    return 21 if answer == {"unavailable": "this agent serves only its own user"} else 31


def test_another_user_is_refused(home: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: a child that switches to another uid")
    import tempfile

    private = tempfile.mkdtemp(prefix="kvsops-test-", dir="/tmp")  # the suite's TMPDIR is closed to others
    try:
        with Agent(base_env(home), "--socket", f"{private}/agent.sock") as agent:
            # the socket's permissions keep other users out...
            assert _as_nobody(lambda: _connect_and_ask(agent.sock)) == 13
            # ...and if they were loosened, the agent's peer check (SO_PEERCRED) still refuses them
            os.chmod(private, 0o711)
            os.chmod(agent.sock, 0o666)
            assert _as_nobody(lambda: _refused_by_the_agent(agent.sock)) == 21
            assert "refused a connection from uid 65534" in agent.stderr()
            assert agent.status()["requests"] == {}
    finally:
        shutil.rmtree(private, ignore_errors=True)


def test_client_refuses_an_agent_of_another_user(home: Path, secret_file: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: a server that switches to another uid")
    import tempfile

    from kvsops.agent import protocol  # imported before the fork: nobody may not read the checkout

    outer = tempfile.mkdtemp(prefix="kvsops-test-", dir="/tmp")  # the suite's TMPDIR is closed to others
    os.chmod(outer, 0o755)
    d = Path(outer) / "nobody"
    d.mkdir()
    os.chown(d, NOBODY, NOBODY)
    path = str(d / "agent.sock")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a fake agent run by nobody: answers every request with a forged plaintext
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            srv = socket.socket(socket.AF_UNIX)
            srv.bind(path)
            os.chmod(path, 0o777)
            srv.listen(8)
            os.write(w, b"x")
            while True:
                conn, _ = srv.accept()
                try:
                    conn.recv(1 << 20)
                    conn.sendall(protocol.frame({"ok": b"forged: true\n"}))
                except OSError:
                    pass
                conn.close()
        finally:
            os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"x", "the fake agent did not start"
        env = base_env(home, KVSOPS_AGENT_SOCK=path)
        auto = run([KVSOPS, "decrypt", "secret.yaml"], env, secret_file.parent)
        assert auto.returncode == 0 and b"pw-for-the-agent-test" in auto.stdout and b"forged" not in auto.stdout
        req = run([KVSOPS, "decrypt", "secret.yaml"], {**env, "KVSOPS_AGENT": "required"}, secret_file.parent)
        assert req.returncode == 12 and req.stdout == b""
        assert b"served by another user [AGENT]" in req.stderr
    finally:
        os.close(r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        shutil.rmtree(outer)


def test_hostile_clients_are_bounded(home: Path) -> None:
    with Agent(base_env(home), "--max-clients", "2") as a:
        def ask(raw: bytes) -> object:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(20)
            s.connect(a.sock)
            s.sendall(raw)
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            s.close()
            return protocol.decode(data[protocol.HEADER:]) if data else None

        huge = b"KVA\x01" + (protocol.MAX_REQUEST + 1).to_bytes(4, "big")
        limit = protocol.MAX_REQUEST
        assert ask(huge) == {"unavailable": f"a frame of {limit + 1} bytes is larger than the limit of {limit}"}
        assert ask(b"GET / HTTP/1.1\r\n\r\n") == {"unavailable": "not a kvsops agent frame"}
        # an operation this agent does not know (a newer client): "unavailable", so the client falls back
        assert ask(protocol.frame({"op": "format-disk"})) == {
            "unavailable": "this agent does not serve 'format-disk' (an older kvsops; restart the agent)"}
        assert ask(protocol.frame({"op": "decrypt"}))["error"]["code"] == "USAGE"  # type: ignore[index]
        # two idle connections take both slots: a third request waits for one of them
        idle = [socket.socket(socket.AF_UNIX) for _ in range(2)]
        for s in idle:
            s.connect(a.sock)
        time.sleep(1.0)
        t0 = time.monotonic()
        idle[0].close()
        assert ask(protocol.frame({"op": "ping"}))["ok"]["pid"] == a.pid  # type: ignore[index]
        idle[1].close()
        assert time.monotonic() - t0 < 10


# ----------------------------------------------------------------------------- fallback and required


def test_no_agent_falls_back_or_fails_when_required(home: Path, secret_file: Path, tmp_path: Path) -> None:
    without = run([KVSOPS, "decrypt", "secret.yaml"], base_env(home), secret_file.parent)
    env = base_env(home, KVSOPS_AGENT_SOCK=str(tmp_path / "gone.sock"))
    same(run([KVSOPS, "decrypt", "secret.yaml"], env, secret_file.parent), without)
    req = run([KVSOPS, "decrypt", "secret.yaml"], {**env, "KVSOPS_AGENT": "required"}, secret_file.parent)
    assert req.returncode == 12 and req.stdout == b""
    lines = req.stderr.decode().splitlines()
    assert lines[0].startswith("kvsops: error: the agent at ") and lines[0].endswith(
        "did not serve the request: cannot connect (No such file or directory) [AGENT]")
    assert lines[1].startswith("kvsops: hint: ") and len(lines) == 2
    unset = run([KVSOPS, "decrypt", "secret.yaml"], base_env(home, KVSOPS_AGENT="required"), secret_file.parent)
    assert unset.returncode == 12 and b"KVSOPS_AGENT=required but KVSOPS_AGENT_SOCK is not set [AGENT]" in unset.stderr
    bad = run([KVSOPS, "decrypt", "secret.yaml"], base_env(home, KVSOPS_AGENT="maybe"), secret_file.parent)
    assert bad.returncode != 0 and b"KVSOPS_AGENT must be auto, required or off [CONFIG]" in bad.stderr
    off = run([KVSOPS, "decrypt", "secret.yaml"], {**env, "KVSOPS_AGENT": "off"}, secret_file.parent)
    same(off, without)


def test_a_client_with_other_keys_works_in_process(agent: Agent, home: Path, secret_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-key.txt"
    other.write_text(DEMO_KEY.read_text())  # the same identity, found at another path: other keys for the agent
    env = agent.env(base_env(home, SOPS_AGE_KEY_FILE=str(other)), mode="auto")
    without = run([KVSOPS, "decrypt", "secret.yaml"], base_env(home, SOPS_AGE_KEY_FILE=str(other)), secret_file.parent)
    same(run([KVSOPS, "decrypt", "secret.yaml"], env, secret_file.parent), without)
    req = run([KVSOPS, "decrypt", "secret.yaml"], {**env, "KVSOPS_AGENT": "required"}, secret_file.parent)
    assert req.returncode == 12
    assert b"the agent holds the keys of another environment (SOPS_AGE_KEY_FILE differ)" in req.stderr
    assert agent.status()["requests"] == {"declined": 2}  # asked once per run, never served


# ----------------------------------------------------------------------------- kvsops decrypt, both ways


def _corpus(tmp_path: Path, home: Path) -> list[Path]:
    work = tmp_path / "corpus"
    work.mkdir()
    out = []
    for src in sorted(CORPUS.iterdir()):
        target = work / src.name
        target.write_bytes(encrypt(src, base_env(home)))
        out.append(target)
    return out


def test_cli_decrypt_is_identical_for_every_store(agent: Agent, home: Path, tmp_path: Path) -> None:
    files = _corpus(tmp_path, home)
    work = files[0].parent
    cases: list[list[str]] = [["decrypt", f.name] for f in files]
    cases += [["decrypt", "--output-type", "json", "types.yaml"], ["decrypt", "--extract", '["name"]', "data.json"],
              ["decrypt", "--input-type", "yaml", "-"], ["decrypt", "--decryption-order", "age", "secret.yaml"]]
    for args in cases:
        stdin = (work / "secret.yaml").read_bytes() if args[-1] == "-" else None
        with_agent = run([KVSOPS, *args], agent.env(base_env(home)), work, input=stdin)
        without = run([KVSOPS, *args], base_env(home), work, input=stdin)
        assert without.returncode == 0, (args, without.stderr)
        same(with_agent, without)
    # .sops.yaml's stores block, read after the decryption, as in-process
    (work / ".sops.yaml").write_text("stores:\n    yaml:\n        indent: 2\n")
    same(run([KVSOPS, "decrypt", "types.yaml"], agent.env(base_env(home)), work),
         run([KVSOPS, "decrypt", "types.yaml"], base_env(home), work))
    assert agent.status()["requests"]["decrypt"] == len(files) + 1


def test_cli_errors_are_identical(agent: Agent, home: Path, tmp_path: Path, secret_file: Path) -> None:
    work = secret_file.parent
    data = secret_file.read_text()
    (work / "tampered.yaml").write_text(data.replace("port: ENC[AES256_GCM,data:", "port: ENC[AES256_GCM,data:AA"))
    (work / "plain.yaml").write_text("a: 1\n")
    (work / "mac.yaml").write_text(data.replace("mac: ENC[AES256_GCM,data:", "mac: ENC[AES256_GCM,data:AA"))
    other = tmp_path / "other.yaml"
    other.write_text("x: 1\n")
    proc = run([KVSOPS, "encrypt", "--age", OTHER_RECIPIENT, str(other)], base_env(home), tmp_path)
    (work / "nokey.yaml").write_bytes(proc.stdout)
    for name in ("tampered.yaml", "plain.yaml", "mac.yaml", "nokey.yaml", "missing.yaml", "."):
        with_agent = run([KVSOPS, "decrypt", name], agent.env(base_env(home)), work)
        without = run([KVSOPS, "decrypt", name], base_env(home), work)
        assert without.returncode != 0 and without.stdout == b""
        same(with_agent, without)
    env = {"SOPS_CONFIG": str(tmp_path / "missing.sops.yaml"), "SOPS_DECRYPTION_ORDER": "age,age"}
    for extra in ({"SOPS_CONFIG": env["SOPS_CONFIG"]}, {"SOPS_DECRYPTION_ORDER": env["SOPS_DECRYPTION_ORDER"]},
                  {"KVSOPS_DEADLINE_SECONDS": "soon"}):
        same(run([KVSOPS, "decrypt", "secret.yaml"], agent.env(base_env(home, **extra)), work),
             run([KVSOPS, "decrypt", "secret.yaml"], base_env(home, **extra), work))


def test_cli_decrypt_through_the_agent_imports_no_heavy_module(agent: Agent, home: Path, secret_file: Path) -> None:
    proc = run([sys.executable, "-X", "importtime", KVSOPS, "decrypt", "secret.yaml"], agent.env(base_env(home)),
               secret_file.parent)
    assert proc.returncode == 0 and b"pw-for-the-agent-test" in proc.stdout, proc.stderr.decode()
    modules = {ln.rsplit("|", 1)[1].strip() for ln in proc.stderr.decode().splitlines()
               if ln.startswith("import time:")}
    heavy = {m for m in modules if m.split(".")[0] in ("yaml", "cryptography", "pyrage", "azure", "re", "json",
                                                        "socket", "threading", "_yaml", "ruamel")}
    assert not heavy, sorted(heavy)
    assert {"kvsops.agent.client", "_socket"} <= modules
    assert not {m for m in modules if m.startswith(("kvsops.sops.stores.", "kvsops.keys", "kvsops.api"))}


# ----------------------------------------------------------------------------- Helm downloader, both ways


def test_helm_downloader_is_identical(agent: Agent, home: Path, secret_file: Path, tmp_path: Path) -> None:
    from tests import helm_harness as hh

    work = secret_file.parent
    plugins = tmp_path / "plugins"
    installed = hh.install(hh.LEGACY_GETTER, plugins)
    (work / "refs.yaml").write_text("from_sops: ref+sops://secret.yaml#/db/password\nplain: x\n")
    literal = "secrets+literal://" + run([KVSOPS, "encrypt", "--age", DEMO_RECIPIENT, "--input-type", "json",
                                         "--output-type", "json", "/dev/stdin"], base_env(home), work,
                                        input=b'{"k": "literal-secret"}').stdout.decode()
    key = tmp_path / "import-key.txt"
    shutil.copy(DEMO_KEY, key)
    hrefs = ["secrets://secret.yaml", "kvsops://secret.yaml", "kvsops+refs://refs.yaml", literal,
             f"secrets+age-import://{key}?secret.yaml", "secrets://missing.yaml", "secrets://?missing.yaml",
             "secrets://../outside.yaml", "kvsops://refs.yaml"]
    for href in hrefs:
        extra = {"KVSOPS_HELM_KEY_PREFIX": str(tmp_path)}
        with_agent = hh.run_downloader(installed, href, cwd=work, base_env=agent.env(base_env(home)), extra_env=extra,
                                       home=home)
        without = hh.run_downloader(installed, href, cwd=work, base_env=base_env(home), extra_env=extra, home=home)
        assert (with_agent.returncode, with_agent.stdout, with_agent.stderr) == \
            (without.returncode, without.stdout, without.stderr), href
    # two files, the literal and the plain file (refused by the agent as in-process); the refs file's key
    assert agent.status()["requests"] == {"decrypt": 4, "recover": 1}


def test_helm_downloader_through_the_agent_imports_no_heavy_module(agent: Agent, home: Path, secret_file: Path) -> None:
    code = ("import sys\nfrom kvsops.hosts.helm.main import main\n"
            "rc = main(['downloader', '', '', '', 'secrets://secret.yaml'])\n"
            "sys.stderr.write('MODULES ' + ' '.join(sorted(sys.modules)) + '\\n')\nsys.exit(rc)\n")
    proc = run([sys.executable, "-I", "-c", code], agent.env(base_env(home)), secret_file.parent)
    assert proc.returncode == 0 and b"pw-for-the-agent-test" in proc.stdout, proc.stderr.decode()
    modules = set(proc.stderr.decode().split("MODULES ", 1)[1].split())
    heavy = {m for m in modules if m.split(".")[0] in ("yaml", "cryptography", "pyrage", "azure", "json", "socket")}
    assert not heavy, sorted(heavy)


# ----------------------------------------------------------------------------- kustomize, both ways


def test_kustomize_build_is_identical(agent: Agent, home: Path, tools: Any, tmp_path: Path) -> None:
    overlay = tmp_path / "kz"
    shutil.copytree(EXAMPLES / "kustomize", overlay)
    argv = [tools.kustomize58, "build", "--enable-alpha-plugins", "--enable-exec", str(overlay / "overlay")]
    with_agent = run(argv, agent.env(base_env(home)), overlay)
    without = run(argv, base_env(home), overlay)
    assert without.returncode == 0, without.stderr.decode()
    same(with_agent, without)
    assert agent.status()["requests"]["recover"] >= 3
    # a damaged input fails the same way through the agent
    env_file = overlay / "overlay/prod-db.enc.env"
    mac = "sops_mac=ENC[AES256_GCM,data:"
    env_file.write_text(env_file.read_text().replace(mac, mac + "AA"))
    same(run(argv, agent.env(base_env(home)), overlay), run(argv, base_env(home), overlay))


# ----------------------------------------------------------------------------- Argo CD, both ways


@pytest.fixture
def cmp(tmp_path: Path, tools: Any) -> Cmp:
    return Cmp(tmp_path, tools)


def cmp_agent(cmp: Cmp, sidecar: dict[str, str] | None = None, *args: str) -> Agent:
    """An agent started with the sidecar's environment (what `kvsops agent -- argocd-cmp-server` sees)."""
    return Agent(cmp.env(app=".", sidecar=sidecar), *args)


def both(cmp: Cmp, agent: Agent, app: str, sidecar: dict[str, str] | None = None,
         **kw: Any) -> tuple[subprocess.CompletedProcess[bytes], subprocess.CompletedProcess[bytes]]:
    root = cmp.copy_repo(EXAMPLES)
    side = dict(sidecar or {})
    with_agent = cmp.run(EXAMPLES, app, copy=root, sidecar={**side, "KVSOPS_AGENT_SOCK": agent.sock,
                                                            "KVSOPS_AGENT": "required"}, **kw)
    without = cmp.run(EXAMPLES, app, copy=root, sidecar=side, **kw)
    return with_agent, without


@pytest.mark.parametrize("app,params", [("argocd/plain", None), ("kustomize/overlay", None),
                                        ("argocd/helm", HELM_PARAMS)], ids=["plain", "kustomize", "helm-engine"])
def test_argocd_generate_is_identical(cmp: Cmp, app: str, params: Any) -> None:
    if params:
        pytest.importorskip("helm_python")
    with cmp_agent(cmp) as agent:
        with_agent, without = both(cmp, agent, app, params=params)
        assert without.returncode == 0, without.stderr.decode()
        same(with_agent, without)
        served = agent.status()["requests"]
        # plain: the whole render in one request (decrypt, checks, output); kustomize: the KRM function's data keys
        assert served == {"render_plain": 1} if app == "argocd/plain" else served.get("recover", 0) >= 1, served


PLAIN_BREAKAGES: dict[str, dict[str, str | None]] = {
    "not-yaml": {"configmap.yaml": "apiVersion: v1\nkind: ConfigMap\ndata: {a: [\n"},
    "not-an-object": {"deployment.yaml": "just: a mapping\n"},
    "ciphertext-passing-through": {"extra.yaml": "apiVersion: v1\nkind: Secret\nsops:\n  mac: x\n  lastmodified: y\n"},
    "not-json": {"extra.json": '{"apiVersion": "v1", "kind": '},
    "json-list": {"extra.json": '[{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}}]'},
    "mac-mismatch": {"credentials.enc.yaml": None},
    "mentions-sops-only": {"credentials.enc.yaml": "apiVersion: v1\nkind: ConfigMap\ndata: {tool: sops}\n"},
    "long-integer": {"configmap.yaml": "apiVersion: v1\nkind: ConfigMap\ndata: {n: " + "9" * 5000 + "}\n"},
    # each file is fine alone; the stream of them is not (its first line loses its indentation), or is empty
    "indented": {"configmap.yaml": "  apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: i}\n"},
    "no-objects": {"configmap.yaml": "# sops\n", "deployment.yaml": "", "credentials.enc.yaml": "---\n"},
}


@pytest.mark.parametrize("params", [None, [{"name": "references", "string": "true"}]], ids=["", "references"])
@pytest.mark.parametrize("case", sorted(PLAIN_BREAKAGES))
def test_argocd_plain_errors_are_identical(cmp: Cmp, case: str, params: Any) -> None:
    """The agent checks and assembles plain mode's files: every outcome is the in-process one."""
    root = cmp.copy_repo(EXAMPLES)
    for name, text in PLAIN_BREAKAGES[case].items():
        target = root / "argocd/plain" / name
        if text is None:  # a value changed after encryption
            text = target.read_text().replace("password: ENC[AES256_GCM,data:", "password: ENC[AES256_GCM,data:AA")
        target.write_text(text)
    with cmp_agent(cmp) as agent:
        with_agent = cmp.run(EXAMPLES, "argocd/plain", copy=root, params=params,
                             sidecar={"KVSOPS_AGENT_SOCK": agent.sock, "KVSOPS_AGENT": "required"})
        served = agent.status()["requests"]
    without = cmp.run(EXAMPLES, "argocd/plain", copy=root, params=params)
    same(with_agent, without)
    assert (without.returncode == 0) == (case in ("json-list", "mentions-sops-only")), without.stderr.decode()
    assert served == {"render_plain": 1}, served


def test_argocd_plain_generate_through_the_agent_imports_no_heavy_module(cmp: Cmp) -> None:
    """Plain mode with SOPS files and an agent: the agent decrypts, checks and assembles; the client
    reads the files and writes the answer (Argo CD runs it for every app on every refresh)."""
    root = cmp.copy_repo(EXAMPLES)
    with cmp_agent(cmp) as agent:
        # no parameters: Argo CD sends an empty list (read without json)
        env = cmp.env(app="argocd/plain", params=[],
                      sidecar={"KVSOPS_AGENT_SOCK": agent.sock, "KVSOPS_AGENT": "required"})
        proc = run([sys.executable, "-X", "importtime", KVSOPS, "argocd", "generate"], env, root / "argocd/plain")
        assert agent.status()["requests"] == {"render_plain": 1}
    without = cmp.run(EXAMPLES, "argocd/plain", copy=root, init=False, params=[])
    assert proc.returncode == 0 and proc.stdout == without.stdout and b"kind: Secret" in proc.stdout, \
        proc.stderr[-2000:]
    modules = {ln.rsplit("|", 1)[1].strip() for ln in proc.stderr.decode().splitlines()
               if ln.startswith("import time:")}
    heavy = {m for m in modules if m.split(".")[0] in (
        "yaml", "_yaml", "cryptography", "pyrage", "azure", "json", "socket", "threading", "typing", "dataclasses",
        "pathlib", "subprocess", "tempfile", "shutil", "signal", "inspect", "concurrent", "re", "enum")}
    assert not heavy, sorted(heavy)
    assert {"kvsops.agent.client", "_socket", "kvsops.hosts.argocd.render"} <= modules
    assert not {m for m in modules if m.startswith(("kvsops.sops.stores", "kvsops.sops.values", "kvsops.api",
                                                    "kvsops.manifests", "kvsops.agent.session", "kvsops.datakey"))}


@pytest.mark.parametrize("major", ["helm3", "helm4"])
def test_argocd_helm_binary_mode_is_identical(cmp: Cmp, tmp_path: Path, major: str) -> None:
    side = helm_sidecar(tmp_path, cmp.tools[major])
    with cmp_agent(cmp, side) as agent:
        with_agent, without = both(cmp, agent, "argocd/helm", side, params=HELM_PARAMS)
        assert without.returncode == 0, without.stderr.decode()
        same(with_agent, without)
        assert agent.status()["requests"] == {"decrypt": 1}  # the downloader's file, decrypted by the agent


def test_argocd_policy_is_enforced_by_the_agent(cmp: Cmp, tmp_path: Path) -> None:
    pol = policy({"projects": ["team-a"], "age": [DEMO_RECIPIENT]}, {"projects": ["team-b"], "age": [OTHER_RECIPIENT]})
    side = {**helm_sidecar(tmp_path, cmp.tools.helm3), "KVSOPS_POLICY": pol}
    with cmp_agent(cmp, side) as agent:
        for app, params in (("argocd/plain", None), ("kustomize/overlay", None), ("argocd/helm", HELM_PARAMS)):
            ok, ok_without = both(cmp, agent, app, side, project="team-a", params=params)
            same(ok, ok_without)
            assert ok.returncode == 0
            refused, refused_without = both(cmp, agent, app, side, project="team-b", params=params)
            assert "refused by policy" in failed(refused)
            same(refused, refused_without)


def test_the_agent_checks_the_grant_itself(home: Path, secret_file: Path, tmp_path: Path) -> None:
    """A request that names no valid grant gets what the policy gives it, whatever the client claims."""
    from kvsops.errors import PolicyRefused

    pol = policy({"projects": ["team-b"], "age": [OTHER_RECIPIENT]})
    with Agent(base_env(home)) as agent:
        link = client.Link(agent.sock)
        data = secret_file.read_bytes()

        def decrypt(run_env: dict[str, str]) -> object:
            env = {**base_env(home), **run_env}
            return link.call({"op": "decrypt", "data": data, "fmt": "yaml", "out": "yaml", "where": "s.yaml",
                              "session": client.session_spec(env, policy=True)})

        with pytest.raises(PolicyRefused):
            decrypt({"KVSOPS_POLICY": pol, "ARGOCD_APP_PROJECT_NAME": "team-b"})
        forged = tmp_path / "grant.json"  # not in a private directory: not a grant
        forged.write_text('{"v": 1, "allowed": {"age": ["%s"]}}' % DEMO_RECIPIENT)
        with pytest.raises(PolicyRefused, match="not a private file written by kvsops argocd"):
            decrypt({"KVSOPS_POLICY_GRANT": str(forged)})
        assert b"pw-for-the-agent-test" in decrypt({})  # type: ignore[operator]


# ----------------------------------------------------------------------------- a killed agent


def kv_env(emu: Any) -> dict[str, str]:
    env = emu.base_env()
    env.update(emu.managed_identity_env())
    env.update({"KVSOPS_AZURE_CREDENTIAL": "managed_identity", "KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE": "false"})
    return env


def kv_app(emu: Any, tmp_path: Path, home: Path, n: int = 3, key: str = "k") -> Path:
    src = tmp_path / "src"
    (src / "app").mkdir(parents=True, exist_ok=True)
    if key not in emu.keys:
        emu.create_key(key, key_ops=("encrypt", "decrypt"))
    env = {**base_env(home), **kv_env(emu)}
    for i in range(n):
        plain = tmp_path / f"s{i}.yaml"
        plain.write_text(
            f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: s{i}\nstringData:\n  token: kv-secret-{i}\n"
        )
        enc = run([KVSOPS, "encrypt", "--azure-kv", emu.key_url(key), "--encrypted-regex", "^stringData$", str(plain)],
                  env, tmp_path)
        assert enc.returncode == 0, enc.stderr.decode()
        (src / f"app/{key}-s{i}.enc.yaml").write_bytes(enc.stdout)
    return src


@pytest.mark.parametrize("mode", ["auto", "required"])
def test_agent_killed_mid_render(cmp: Cmp, emu: Any, tmp_path: Path, mode: str) -> None:
    src = kv_app(emu, tmp_path, cmp.home)
    side = kv_env(emu)
    without = cmp.run(src, "app", sidecar=side)
    assert without.returncode == 0, without.stderr.decode()
    with cmp_agent(cmp, side) as agent:
        emu.latency = 1.5
        emu.reset_counters()
        root = cmp.copy_repo(src)
        env = cmp.env(app="app", sidecar={**side, "KVSOPS_AGENT_SOCK": agent.sock, "KVSOPS_AGENT": mode})
        render = subprocess.Popen([KVSOPS, "argocd", "generate"], cwd=root / "app", env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        assert wait_until(lambda: emu.in_flight > 0, 60)  # the agent is waiting on Key Vault for this render
        agent.kill()
        out, err = render.communicate(timeout=120)
        emu.latency = 0.0
    if mode == "auto":  # the render finished in-process: complete and identical
        assert render.returncode == 0, err.decode()
        assert out == without.stdout
    else:  # it failed cleanly: nothing on stdout, one voice
        assert render.returncode != 0 and out == b""
        lines = err.decode().splitlines()
        assert lines[0].startswith("kvsops: error: ") and lines[0].endswith("[AGENT]"), lines
        assert "kv-secret" not in err.decode()


# ----------------------------------------------------------------------------- Key Vault through the agent


def test_key_vault_renders_share_one_token(cmp: Cmp, emu: Any, tmp_path: Path) -> None:
    src = kv_app(emu, tmp_path, cmp.home, n=3)
    side = kv_env(emu)
    without = cmp.run(src, "app", sidecar=side)
    assert without.returncode == 0, without.stderr.decode()
    with cmp_agent(cmp, side) as agent:
        emu.reset_counters()
        for _ in range(4):
            same(cmp.run(src, "app", sidecar={**side, "KVSOPS_AGENT_SOCK": agent.sock, "KVSOPS_AGENT": "required"}),
                 without)
        status = agent.status()
    # one token, one challenge and one read of the key for all four renders; one decrypt per file and
    # render (the data-key cache is off); every request went through the agent's limiter
    assert sum(emu.token_requests.values()) == 1 and emu.counts["challenge"] == 1
    assert emu.counts["decrypt"] == 12
    assert status["vault_clients"] == 1 and status["limiter"]["calls"] == sum(emu.counts.values())


def test_data_key_cache_in_the_agent(cmp: Cmp, emu: Any, tmp_path: Path) -> None:
    """Opt-in (--data-key-cache-ttl): later renders get the data keys from the agent's memory; the
    cache stays bound to the grant (a render whose policy refuses the key gets nothing from it)."""
    src = kv_app(emu, tmp_path, cmp.home, n=2)
    side = kv_env(emu)
    allow = policy({"projects": ["default"], "azure_kv": [emu.key_url("k")]})
    deny = policy({"projects": ["default"], "azure_kv": [emu.key_url("other")]})
    with cmp_agent(cmp, side, "--data-key-cache-ttl", "300") as agent:
        env_side = {**side, "KVSOPS_AGENT_SOCK": agent.sock, "KVSOPS_AGENT": "required"}
        calls = []
        for extra in ({}, {}, {"KVSOPS_POLICY": allow}, {"KVSOPS_POLICY": allow}):
            emu.reset_counters()
            proc = cmp.run(src, "app", sidecar={**env_side, **extra})
            assert proc.returncode == 0, proc.stderr.decode()
            calls.append(emu.counts["decrypt"])
        # without a policy, then with one (another binding: unwrapped again once, then cached)
        assert calls == [2, 0, 2, 0]
        emu.reset_counters()
        failed(cmp.run(src, "app", sidecar={**env_side, "KVSOPS_POLICY": deny}), "POLICY_REFUSED")
        assert sum(emu.counts.values()) == 0
        assert agent.status()["data_keys_cached"] == 0  # another policy emptied the cache (revocation)


def test_key_vault_key_refused_by_policy_is_never_called(cmp: Cmp, emu: Any, tmp_path: Path) -> None:
    src = kv_app(emu, tmp_path, cmp.home, n=2, key="team-b")
    pol = policy({"projects": ["team-a"], "azure_kv": [emu.key_url("team-a-key")]},
                 {"projects": ["team-b"], "azure_kv": [emu.key_url("team-b")]})
    side = {**kv_env(emu), "KVSOPS_POLICY": pol}
    with cmp_agent(cmp, side) as agent:
        emu.reset_counters()
        env_side = {**side, "KVSOPS_AGENT_SOCK": agent.sock, "KVSOPS_AGENT": "required"}
        err = failed(cmp.run(src, "app", project="team-a", sidecar=env_side), "POLICY_REFUSED")
        assert "team-b" in err
        assert sum(emu.counts.values()) == 0 and sum(emu.token_requests.values()) == 0
        ok = cmp.run(src, "app", project="team-b", sidecar=env_side)
        assert ok.returncode == 0, ok.stderr.decode()
        assert emu.counts["decrypt"] == 2


def test_throttled_vault_concurrent_renders_stay_under_the_rate(home: Path, emu: Any, tmp_path: Path) -> None:
    src = kv_app(emu, tmp_path, home, n=2)
    files = sorted((src / "app").iterdir())
    env = {**base_env(home), **kv_env(emu)}
    rate, concurrency = 8, 3
    with Agent(env, "--rate", str(rate), "--concurrency", str(concurrency)) as agent:
        emu.reset_counters()
        emu.throttle(6, retry_after=1.0, ops=("decrypt",))
        t0 = time.monotonic()
        procs = [subprocess.Popen([KVSOPS, "decrypt", str(files[i % 2])], env=agent.env(env), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for i in range(20)]
        results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
        elapsed = time.monotonic() - t0
        status = agent.status()
    assert all(rc == 0 and b"kv-secret-" in out for out, _err, rc in results), [r[1] for r in results if r[2]]
    # what the vault saw: never more than the rate in any second, never more than the concurrency at once
    arrivals = sorted(emu.arrivals)
    worst = max(sum(1 for t in arrivals if a <= t < a + 1.0) for a in arrivals)
    assert worst <= rate, (worst, [round(t - arrivals[0], 3) for t in arrivals])
    assert emu.max_in_flight <= concurrency
    assert status["limiter"]["throttled"] >= 6 and emu.counts["decrypt"] == 20 + 6
    assert elapsed < 55  # Argo CD's render deadline


def test_key_vault_references_through_the_agent(cmp: Cmp, emu: Any, tmp_path: Path) -> None:
    pytest.importorskip("azure.keyvault.secrets")
    emu.set_secret("db-password", "ref-secret-value")
    vault = emu.vault_url().removeprefix("https://")
    src = tmp_path / "src"
    (src / "app").mkdir(parents=True)
    secret = (f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: r\nstringData:\n"
              f"  password: ref+azurekeyvault://{vault}/db-password\n"
              f"  encoded: {base64.b64encode(b'x').decode()}\n")
    (src / "app/secret.yaml").write_text(secret)
    side = kv_env(emu)
    params = [{"name": "references", "string": "true"}]
    allowed = policy({"projects": ["default"], "azure_secrets": [f"{emu.vault_url()}/secrets/db-password"]})
    refused = policy({"projects": ["default"], "azure_secrets": [f"{emu.vault_url()}/secrets/other"]})
    with cmp_agent(cmp, side) as agent:
        outcomes = []
        for extra in ({}, {"KVSOPS_POLICY": allowed}, {"KVSOPS_POLICY": refused}):
            s = {**side, **extra}
            emu.reset_counters()
            with_agent = cmp.run(src, "app", params=params, sidecar={**s, "KVSOPS_AGENT_SOCK": agent.sock,
                                                                     "KVSOPS_AGENT": "required"})
            calls = emu.counts["secret_get"]
            same(with_agent, cmp.run(src, "app", params=params, sidecar=s))
            outcomes.append((with_agent, calls))
        status = agent.status()
    for proc, calls in outcomes[:2]:
        assert proc.returncode == 0 and b"ref-secret-value" in proc.stdout and calls == 1, proc.stderr.decode()
    assert "secret not allowed" in failed(outcomes[2][0], "POLICY_REFUSED") and outcomes[2][1] == 0
    assert status["requests"] == {"check_secret": 3, "secret": 2}
