"""``kvsops agent``: start, stop and run the agent (see README.md, "Agent").

    eval "$(kvsops agent --start)"     a background agent; prints KVSOPS_AGENT_SOCK=... (sh syntax)
    eval "$(kvsops agent --stop)"      stops it (through its socket) and unsets the variables
    kvsops agent -- CMD [ARGS...]      runs CMD with KVSOPS_AGENT_SOCK set; ends with CMD (exit code
                                       CMD's); the Argo CD sidecar form
    kvsops agent                       serves in the foreground until SIGTERM/SIGINT
    kvsops agent --status              what the agent at KVSOPS_AGENT_SOCK holds (JSON)

The socket is ``agent.sock`` (mode 0600) in a new private directory (mode 0700) under ``$TMPDIR``,
or ``--socket PATH`` in an existing private directory of this user. Every connection's peer is
checked (``SO_PEERCRED``): another user's process is refused even if the permissions were loosened.
One request per connection; requests are size-capped and must arrive within READ_TIMEOUT; at most
``--max-clients`` are served at once (the rest wait in the listen backlog). Nothing is written to
disk but the socket, which is removed on exit.

The agent ends on SIGTERM/SIGINT/SIGHUP, ``--stop``, after ``--idle-timeout`` seconds without a
request, and when the process it was started from ends (``--start``: the shell that ran it; the
foreground form: its parent; ``-- CMD``: the supervisor). In the ``-- CMD`` form this process
supervises: it forwards signals to CMD, reaps orphans (it may be PID 1 of a container), serves
through a child process, and starts that child again if it dies while CMD runs.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import sys
import threading
import time
from typing import Any, Callable, Sequence

from kvsops import errors, report
from kvsops.agent import client, protocol

USAGE = """\
usage: eval "$(kvsops agent --start [OPTIONS])"    start an agent in the background
       eval "$(kvsops agent --stop)"               stop the agent at $KVSOPS_AGENT_SOCK
       kvsops agent [OPTIONS] -- CMD [ARGS...]     run CMD with an agent; stop it when CMD ends
       kvsops agent [OPTIONS]                      serve in the foreground
       kvsops agent --status                       what the agent at $KVSOPS_AGENT_SOCK holds
options: --socket PATH (in a private directory), --idle-timeout SECONDS (default 0: none),
         --rate CALLS_PER_SECOND (Key Vault, default 100), --concurrency N (Key Vault, default 16),
         --max-clients N (default 32), --data-key-cache-ttl SECONDS (default: off)
environment: KVSOPS_AGENT_SOCK, KVSOPS_AGENT=auto|required|off (clients); see README.md, "Agent"
"""

READ_TIMEOUT = 30.0  # a whole request must arrive within this
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the final NUL (Linux)
WRITE_TIMEOUT = 30.0
TICK = 0.5  # how often the accept loop looks at the idle timeout, the parent and stop requests
DEFAULTS = {"rate": 100, "concurrency": 16, "max_clients": 32}


class Options:
    def __init__(self) -> None:
        self.action = "serve"  # serve | start | stop | status | run
        self.socket: str | None = None
        self.idle = 0.0
        self.rate = DEFAULTS["rate"]
        self.concurrency = DEFAULTS["concurrency"]
        self.max_clients = DEFAULTS["max_clients"]
        self.cache_ttl: str | None = None
        self.command: list[str] = []


def parse(args: Sequence[str]) -> Options:
    opts = Options()
    args = list(args)
    if "--" in args:
        i = args.index("--")
        args, opts.command, opts.action = args[:i], args[i + 1:], "run"
        if not opts.command:
            raise errors.UsageError("kvsops agent --: no command given", hint=USAGE.splitlines()[2].strip())
    actions = {"--start": "start", "--stop": "stop", "--status": "status"}
    numbers: dict[str, tuple[str, Callable[[str], float]]] = {
        "--idle-timeout": ("idle", float), "--rate": ("rate", int), "--concurrency": ("concurrency", int),
        "--max-clients": ("max_clients", int)}
    it = iter(args)
    for arg in it:
        name, eq, value = arg.partition("=")
        if arg in actions and opts.action == "serve":
            opts.action = actions[arg]
        elif name in numbers or name in ("--socket", "--data-key-cache-ttl"):
            value = value if eq else next(it, "")
            if not value:
                raise errors.UsageError(f"{name} needs a value")
            if name == "--socket":
                opts.socket = value
            elif name == "--data-key-cache-ttl":
                opts.cache_ttl = value
            else:
                attr, conv = numbers[name]
                try:
                    setattr(opts, attr, conv(value))
                except ValueError:
                    raise errors.UsageError(f"{name} needs a number") from None
                if getattr(opts, attr) < (0 if attr == "idle" else 1):
                    raise errors.UsageError(f"{name} is out of range")
        else:
            raise errors.UsageError(f"kvsops agent: unexpected argument {arg[:60]!r}", hint="kvsops agent --help")
    return opts


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["agent"]:
        args = args[1:]
    if args[:1] in (["-h"], ["--help"], ["help"]):
        sys.stdout.write(USAGE)
        return 0
    return report.guarded(lambda: run(parse(args)))


def run(opts: Options) -> int:
    if opts.action == "stop":
        return stop()
    if opts.action == "status":
        return status()
    if not hasattr(socket, "SO_PEERCRED"):
        raise errors.AgentError("kvsops agent needs SO_PEERCRED (Linux) to tell who connects to it")
    if opts.cache_ttl is not None:
        os.environ["KVSOPS_DATA_KEY_CACHE_TTL"] = opts.cache_ttl
    listener = Listener.bind(opts.socket)
    if opts.action == "start":
        return start(listener, opts)
    if opts.action == "run":
        return supervise(listener, opts)
    parent = os.getppid()
    stopper = stop_on_signals()  # before the variables are printed: a SIGTERM right after still cleans up
    sys.stdout.write(shell_lines(listener.path, os.getpid()))
    sys.stdout.flush()
    try:
        serve(listener, opts, lambda: os.getppid() == parent, stopper)
    finally:
        listener.remove()
    return 0


class _Stop:
    """Why the agent is asked to stop (set from a signal handler or a request)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.why = ""

    def __call__(self, why: str) -> None:
        if not self.event.is_set():
            self.why = why
            self.event.set()


def stop_on_signals() -> _Stop:
    stop = _Stop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: stop(f"signal {signum}"))
    return stop


def shell_lines(path: str, pid: int) -> str:
    import shlex

    return (f"{client.SOCK_ENV}={shlex.quote(path)}; export {client.SOCK_ENV};\n"
            f"{client.PID_ENV}={pid}; export {client.PID_ENV};\n")


def _log(message: str) -> None:
    try:
        sys.stderr.write(f"kvsops agent: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


# ----------------------------------------------------------------------------- the socket


class Listener:
    """The listening socket, its path, and the private directory made for it (if any)."""

    def __init__(self, sock: socket.socket, path: str, made_dir: str | None, ident: tuple[int, int]) -> None:
        self.sock, self.path, self.made_dir, self.ident = sock, path, made_dir, ident

    @classmethod
    def bind(cls, path: str | None) -> "Listener":
        made = None
        if path is None:
            import tempfile

            # $TMPDIR, without tempfile.gettempdir(): its probe writes a file there
            base = os.environ.get("TMPDIR") or "/tmp"
            if len(os.fsencode(os.path.join(base, "kvsops-agent-XXXXXXXX", "agent.sock"))) > MAX_SOCKET_PATH:
                base = "/tmp"  # a long $TMPDIR: sockets have a short path limit
            try:
                made = tempfile.mkdtemp(prefix="kvsops-agent-", dir=base)  # mode 0700
            except OSError as exc:
                raise errors.AgentError(f"cannot make a socket directory in {base} ({type(exc).__name__})") from None
            path = os.path.join(made, "agent.sock")
        else:
            path = os.path.abspath(path)
            if len(os.fsencode(path)) > MAX_SOCKET_PATH:
                raise errors.AgentError(f"the socket path {path} is longer than {MAX_SOCKET_PATH} bytes")
            _check_private_dir(os.path.dirname(path))
            _clear_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # the socket is created 0600: no window with a wider mode
        try:
            sock.bind(path)
        except OSError as exc:
            sock.close()
            if made:
                os.rmdir(made)
            raise errors.AgentError(f"cannot listen on {path} ({exc.strerror or type(exc).__name__})") from None
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(128)
        st = os.stat(path)
        return cls(sock, path, made, (st.st_dev, st.st_ino))

    def remove(self) -> None:
        """Remove the socket (only if it is still the one bound here) and the directory made for it."""
        self.sock.close()
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self.ident:
                os.unlink(self.path)
        except OSError:
            pass
        if self.made_dir:
            try:
                os.rmdir(self.made_dir)
            except OSError:
                pass


def _check_private_dir(directory: str) -> None:
    try:
        st = os.stat(directory)
    except OSError:
        raise errors.AgentError(f"the socket directory {directory} does not exist") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise errors.AgentError(
            f"the socket directory {directory} must be a directory of this user with mode 0700",
            hint="or leave out --socket: the agent makes a private directory itself")


def _clear_stale(path: str) -> None:
    """A socket left by a killed agent is removed; a live agent or any other file is an error."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise errors.AgentError(f"{path} exists and is not a socket")
    try:
        client.Link(path).call({"op": "ping"}, 2.0)
    except client.Unavailable:
        os.unlink(path)
        return
    raise errors.AgentError(f"an agent already listens on {path}")


# ----------------------------------------------------------------------------- serving


class Server:
    def __init__(self, listener: Listener, service: Any, *, idle: float, parent_alive: Callable[[], bool],
                 max_clients: int, stop: _Stop) -> None:
        self.listener = listener
        self.service = service
        self.idle = idle
        self.parent_alive = parent_alive
        self.slots = threading.BoundedSemaphore(max_clients)
        self._stop = stop
        self.stopping = stop.event
        self._lock = threading.Lock()
        self.active = 0
        self.served = 0
        self.last = time.monotonic()
        self.started = time.time()

    def stop(self, why: str) -> None:
        self._stop(why)

    @property
    def why(self) -> str:
        return self._stop.why

    def serve(self) -> None:
        sock = self.listener.sock
        sock.settimeout(TICK)
        while not self.stopping.is_set():
            self._housekeeping()
            if not self.slots.acquire(timeout=TICK):
                continue
            try:
                conn, _addr = sock.accept()
            except (TimeoutError, socket.timeout):
                self.slots.release()
                continue
            except OSError:
                self.slots.release()
                if self.stopping.is_set():
                    break
                time.sleep(TICK)  # e.g. EMFILE: let connections finish
                continue
            with self._lock:
                self.active += 1
            threading.Thread(target=self._connection, args=(conn,), name="kvsops-agent-conn", daemon=True).start()

    def _housekeeping(self) -> None:
        if not self.parent_alive():
            self.stop("the process it was started from has ended")
        with self._lock:
            idle = self.active == 0 and time.monotonic() - self.last
        if self.idle and idle and idle > self.idle:
            self.stop(f"idle for {self.idle:g} s")

    def _connection(self, conn: socket.socket) -> None:
        try:
            answer = self._answer(conn)
            if answer is not None:
                conn.settimeout(WRITE_TIMEOUT)
                conn.sendall(protocol.frame(answer))
        except OSError:
            pass  # the client went away; it falls back or fails on its side
        finally:
            _close(conn)
            with self._lock:
                self.active -= 1
                self.served += 1
                self.last = time.monotonic()
            self.slots.release()

    def _answer(self, conn: socket.socket) -> dict[str, object] | None:
        uid = client.peer_uid(conn)
        if uid != os.geteuid():
            _log(f"refused a connection from uid {uid}: this agent serves only uid {os.geteuid()}")
            return {"unavailable": "this agent serves only its own user"}
        try:
            request = protocol.decode(_read_frame(conn))
        except protocol.ProtocolError as exc:
            return {"unavailable": str(exc)}
        if not isinstance(request, dict):
            return {"unavailable": "malformed request"}
        op = request.get("op")
        if op == "ping":
            return {"ok": {"pid": os.getpid(), "version": protocol.VERSION}}
        if op == "stop":
            self.stop("asked to stop")
            return {"ok": os.getpid()}
        if op == "status":
            return {"ok": self.status()}
        try:
            return {"ok": self.service.handle(request)}
        except client.Unavailable as exc:
            return {"unavailable": str(exc)}
        except Exception as exc:  # noqa: BLE001 - every failure becomes an answer
            if not isinstance(exc, errors.KvsopsError):
                _log(f"internal error ({type(exc).__name__}) in {str(op)[:20]!r}")
            return {"error": client.error_info(exc)}

    def status(self) -> dict[str, object]:
        with self._lock:
            active, served = self.active, self.served
        out: dict[str, object] = {"pid": os.getpid(), "version": protocol.VERSION, "socket": self.listener.path,
                                  "uptime_s": int(time.time() - self.started), "active": active, "served": served}
        out.update(memory())
        out.update(self.service.status())
        return out


def _close(conn: socket.socket) -> None:
    """Close after the answer. What a refused or malformed request left unread is drained first
    (a bounded amount, briefly): closing over unread bytes would reset the connection before the
    client has read why it was refused."""
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(0.2)
        left = 1 << 20
        while left > 0:
            chunk = conn.recv(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)
    except OSError:
        pass
    conn.close()


def _read_frame(conn: socket.socket) -> bytes:
    """One request, within READ_TIMEOUT in all and MAX_REQUEST bytes."""
    end = time.monotonic() + READ_TIMEOUT

    def recv(n: int) -> bytes:
        parts = []
        while n > 0:
            left = end - time.monotonic()
            if left <= 0:
                raise protocol.ProtocolError("the request did not arrive in time")
            conn.settimeout(left)
            try:
                chunk = conn.recv(min(n, 1 << 20))
            except (TimeoutError, socket.timeout):
                raise protocol.ProtocolError("the request did not arrive in time") from None
            if not chunk:
                raise protocol.ProtocolError("the connection closed mid-request")
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    return recv(protocol.payload_length(recv(protocol.HEADER), protocol.MAX_REQUEST))


def memory() -> dict[str, int]:
    """Resident and peak memory of this process, in KiB (Linux /proc), and its CPU time so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {"cpu_ms": int((usage.ru_utime + usage.ru_stime) * 1000)}
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith((b"VmRSS:", b"VmHWM:")):
                    out["rss_kb" if line.startswith(b"VmRSS") else "peak_rss_kb"] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return out


def serve(listener: Listener, opts: Options, parent_alive: Callable[[], bool], stop: _Stop) -> str:
    """Serve until stopped; returns why it stopped."""
    from kvsops.agent import service

    svc = service.Service(dict(os.environ), rate=opts.rate, concurrency=opts.concurrency)
    server = Server(listener, svc, idle=opts.idle, parent_alive=parent_alive, max_clients=opts.max_clients,
                    stop=stop)
    _warm(svc)  # before the first request is accepted (clients wait in the backlog meanwhile)
    server.serve()
    return server.why


def _warm(svc: Any) -> None:
    from kvsops.agent import service

    try:
        service.warm()
    except Exception as exc:  # noqa: BLE001 - a request will report the real problem
        _log(f"could not preload modules ({type(exc).__name__})")
    svc.ready = True


# ----------------------------------------------------------------------------- the three forms


def start(listener: Listener, opts: Options) -> int:
    """Double-fork a daemon that serves on ``listener``; print the variables for ``eval``."""
    shell = os.getppid()  # the shell that runs eval "$(kvsops agent --start)": the agent ends with it
    shell_started = _start_time(shell)
    read_end, write_end = os.pipe()
    first = os.fork()
    if first == 0:
        os.close(read_end)
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        os.write(write_end, str(os.getpid()).encode())
        os.close(write_end)
        stopper = stop_on_signals()
        _detach()
        try:
            why = serve(listener, opts, lambda: _start_time(shell) == shell_started, stopper)
            _log(f"stopped: {why}")
        finally:
            listener.remove()
            os._exit(0)
    os.close(write_end)
    os.waitpid(first, 0)
    pid = int(os.read(read_end, 32) or b"0")
    os.close(read_end)
    listener.sock.close()
    if not pid:
        raise errors.AgentError("the agent did not start")
    sys.stdout.write(shell_lines(listener.path, pid))
    return 0


def _detach() -> None:
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _start_time(pid: int) -> str | None:
    """The start time of ``pid`` (field 22 of /proc/PID/stat), None once it has ended: a pid
    reused by another process does not pass for the one we watch."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2:].split()
    return fields[19].decode() if len(fields) > 19 and fields[0] != b"Z" else None


def _ask_running(op: str, why: str = "") -> tuple[str, object]:
    """(socket path, answer) of the agent KVSOPS_AGENT_SOCK names, asked ``op``; AgentError when none answers."""
    path = os.environ.get(client.SOCK_ENV, "").strip()
    if not path:
        raise errors.AgentError(f"{client.SOCK_ENV} is not set" + (f": {why}" if why else ""))
    try:
        return path, client.Link(path).call({"op": op}, 10.0)
    except client.Unavailable as exc:
        raise errors.AgentError(f"no agent answered at {path} ({exc})") from None


def stop() -> int:
    path, pid = _ask_running("stop", "no agent to stop")
    end = time.monotonic() + 5.0  # until it has removed its socket and ended
    while (os.path.exists(path) or (isinstance(pid, int) and _start_time(pid) is not None)) and time.monotonic() < end:
        time.sleep(0.02)
    sys.stdout.write(f"unset {client.SOCK_ENV};\nunset {client.PID_ENV};\n")
    return 0


def status() -> int:
    import json

    _, info = _ask_running("status")
    sys.stdout.write(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return 0


def supervise(listener: Listener, opts: Options) -> int:
    """``kvsops agent -- CMD``: the agent in a child process, CMD in another; returns CMD's exit code."""
    me = os.getpid()
    env = dict(os.environ)
    env[client.SOCK_ENV] = listener.path
    env.pop(client.PID_ENV, None)
    agent = _fork_agent(listener, opts, me)
    try:
        # Python ignores SIGPIPE; CMD gets the default dispositions back, as subprocess gives them.
        child = os.posix_spawnp(opts.command[0], opts.command, env, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    except OSError as exc:
        _end_agent(agent)
        listener.remove()
        raise errors.AgentError(f"cannot run {opts.command[0][:80]!r} ({exc.strerror or type(exc).__name__})") from None

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, forward)
    started = time.monotonic()
    backoff = 0.1
    while True:
        pid, wstatus = os.waitpid(-1, 0)  # also reaps orphans: this process may be PID 1
        if pid == child:
            code = os.waitstatus_to_exitcode(wstatus)
            break
        if pid == agent:
            if wstatus == 0:  # stopped on purpose: clients work in-process from now on
                agent = 0
                continue
            backoff = min(backoff * 2, 30.0) if time.monotonic() - started < 5.0 else 0.1
            _log(f"the agent process ended ({_how(wstatus)}); starting it again in {backoff:g} s")
            time.sleep(backoff)
            started = time.monotonic()
            agent = _fork_agent(listener, opts, me)
    if agent:
        _end_agent(agent)
    listener.remove()
    return 128 - code if code < 0 else code


def _how(wstatus: int) -> str:
    code = os.waitstatus_to_exitcode(wstatus)
    return f"signal {-code}" if code < 0 else f"exit {code}"


def _fork_agent(listener: Listener, opts: Options, supervisor: int) -> int:
    """The serving child of ``-- CMD``. It exits 0 when stopped on purpose (``--stop``, the idle
    timeout, a signal): the supervisor starts it again only after a crash."""
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            for sig in (signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
                signal.signal(sig, signal.SIG_DFL)
            why = serve(listener, opts, lambda: os.getppid() == supervisor, stop_on_signals())
            if not why.startswith(("signal", "the process")):
                _log(f"stopped: {why}")
            code = 0
        except BaseException as exc:  # noqa: BLE001 - never return into the supervisor's code
            _log(f"failed ({type(exc).__name__})")
        finally:
            os._exit(code)
    return pid


def _end_agent(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + 5.0
    while time.monotonic() < end:
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
