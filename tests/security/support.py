"""Shared helpers of the security suite: clean environments, entry-point runners, strace (keys: tests/keys.py).

Nothing here imports kvsops at module level (a broken package must not stop collection).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from tests.keys import AgeKey

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
KVSOPS = str(VENV_BIN / "kvsops")
KVSOPS_KRM = str(VENV_BIN / "kvsops-krm")
# Variables of the developer's shell that would change what an entry point does.
_DROP_PREFIXES = ("KVSOPS_", "SOPS_", "ARGOCD_", "AZURE_", "HELM_", "GNUPG", "XDG_", "KSOPS_")


# ----------------------------------------------------------------------------------- environment


def clean_env(home: Path, *, age: AgeKey | None = None, **extra: str) -> dict[str, str]:
    """os.environ minus kvsops/sops/host settings, plus an empty HOME, no bytecode writes, tools on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES)}
    home.mkdir(parents=True, exist_ok=True)
    tools = [str(d) for d in (REPO / ".tools" / "bin",) if d.is_dir()]
    env.update(
        HOME=str(home),
        PATH=os.pathsep.join([str(VENV_BIN), *tools, "/usr/local/bin", "/usr/bin", "/bin"]),
        PYTHONDONTWRITEBYTECODE="1",
        SOPS_DISABLE_VERSION_CHECK="1",
        LC_ALL="C.UTF-8",
    )
    env.pop("PYTHONPATH", None)
    if age is not None:
        env["SOPS_AGE_KEY_FILE"] = str(age.file)
    env.update(extra)
    return env


# ----------------------------------------------------------------------------------- running


@dataclass
class Run:
    argv: list[str]
    rc: int
    stdout: bytes
    stderr: bytes
    seconds: float
    trace: "Trace | None" = None

    @property
    def text(self) -> str:
        """stdout + stderr as text (for canary scans)."""
        return (self.stdout + b"\n" + self.stderr).decode("utf-8", "replace")


def strace_path() -> str | None:
    for d in (REPO / ".tools" / "bin", Path("/usr/bin"), Path("/bin")):
        p = d / "strace"
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return shutil.which("strace")


def run(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | str | None = None, stdin: bytes | None = b"",
        timeout: float = 60, trace_to: Path | None = None, limits: "Limits | None" = None) -> Run:
    """Run a command; with ``trace_to``, under ``strace -f`` (file and process syscalls)."""
    cmd = list(argv)
    if trace_to is not None:
        st = strace_path()
        assert st, "strace missing"
        cmd = [st, *STRACE_OPTS, "-o", str(trace_to), "--", *cmd]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=dict(env), cwd=cwd, input=stdin, capture_output=True, timeout=timeout,
                          check=False, preexec_fn=limits.apply if limits else None)
    r = Run(list(argv), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)
    if trace_to is not None:
        r.trace = Trace.parse(trace_to.read_text("utf-8", "replace"), cwd=str(cwd or os.getcwd()))
    return r


@dataclass
class Limits:
    """Resource limits for a hostile-input child: address space (bytes) and CPU seconds."""

    address_space: int = 1 << 30
    cpu_seconds: int = 30

    def apply(self) -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (self.address_space, self.address_space))
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, self.cpu_seconds))


# ----------------------------------------------------------------------------------- strace

# -y prints the path behind every fd argument: unlinkat(3</dir>, "name") resolves to /dir/name.
STRACE_OPTS = ("-f", "-qq", "-y", "-s", "4096", "-e", "trace=%file,%process")
_TOKEN = re.compile(r'AT_FDCWD|-?\d+<[^>]*>|"(?:[^"\\]|\\.)*"')
_PID_LINE = re.compile(r"^(\d+)\s+(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(-?\d+|\?|0x[0-9a-f]+)(.*)$", re.S)
_STR = re.compile(r'"((?:[^"\\]|\\.)*)"')
_WRITE_FLAGS = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC")
_OPEN = {"open", "openat", "openat2", "creat"}
_MODIFY = {"rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat", "unlink", "unlinkat",
           "rmdir", "mkdir", "mkdirat", "mknod", "mknodat", "truncate", "chmod", "fchmodat", "fchmodat2",
           "chown", "lchown", "fchownat", "utime", "utimes", "utimensat", "futimesat", "setxattr", "lsetxattr",
           "removexattr", "lremovexattr"}
_FORKS = {"clone", "clone3", "fork", "vfork"}
_EXECS = {"execve", "execveat"}
# Opening these for writing creates nothing: the terminal and the bit bucket.
NEUTRAL = ("/dev/null", "/dev/tty", "/dev/pts/", "/dev/ptmx")


def _resolve(args: str, cwd: str) -> list[str]:
    """Absolute paths of the string arguments, each against the dirfd before it (or the cwd)."""
    out, base = [], cwd
    for tok in _TOKEN.findall(args):
        if tok == "AT_FDCWD":
            base = cwd
        elif tok.startswith('"'):
            path = _unescape(tok[1:-1])
            out.append(path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path)))
            base = cwd
        else:
            base = _unescape(tok.split("<", 1)[1][:-1])
    return out


def _unescape(s: str) -> str:
    return s.encode("latin-1", "backslashreplace").decode("unicode_escape", "replace")


@dataclass
class Event:
    pid: int
    call: str
    paths: list[str]
    ok: bool
    raw: str
    exe: str = ""


@dataclass
class Trace:
    writes: list[Event] = field(default_factory=list)  # successful creates/opens-for-write/renames/...
    attempts: list[Event] = field(default_factory=list)  # the same, failed
    execs: list[Event] = field(default_factory=list)  # successful execve (the first is the command)
    exe_of: dict[int, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, cwd: str = "/") -> "Trace":
        t = cls()
        pending: dict[int, str] = {}
        cwd_of: dict[int, str] = {}
        root: int | None = None
        for line in text.splitlines():
            m = _PID_LINE.match(line)
            if not m:
                continue
            pid, body = int(m.group(1)), m.group(2)
            if root is None:
                root = pid
                cwd_of[pid] = cwd
            if body.startswith(("---", "+++")):
                continue
            if body.endswith("<unfinished ...>"):
                pending[pid] = body[: -len("<unfinished ...>")].rstrip()
                continue
            rm = re.match(r"^<\.\.\. (\w+) resumed>(.*)$", body, re.S)
            if rm:
                body = pending.pop(pid, rm.group(1) + "(") + rm.group(2)
            cm = _CALL.match(body)
            if not cm:
                continue
            call, args, ret = cm.group(1), cm.group(2), cm.group(3)
            ok = ret not in ("?",) and not ret.startswith("-")
            here = cwd_of.get(pid, cwd)
            paths = [_unescape(p) for p in _STR.findall(args)]
            if call in _FORKS and ok and ret.isdigit():
                child = int(ret)
                t.exe_of.setdefault(child, t.exe_of.get(pid, ""))
                cwd_of.setdefault(child, here)
                continue
            if call in _EXECS:
                if ok and paths:
                    t.exe_of[pid] = paths[0]
                    t.execs.append(Event(pid, call, paths[:1], True, body, paths[0]))
                continue
            if call in ("chdir",) and ok and paths:
                cwd_of[pid] = os.path.normpath(os.path.join(here, paths[0]))
                continue
            if call in _OPEN:
                if not any(f in args for f in _WRITE_FLAGS) or not paths:
                    continue
                targets = paths[:1]
            elif call in _MODIFY:
                targets = paths[:2] if call.startswith(("rename", "link", "symlink")) else paths[:1]
            else:
                continue
            targets = _resolve(args, here)[: len(targets)]
            if all(p.startswith(NEUTRAL) for p in targets):
                continue
            ev = Event(pid, call, targets, ok, body, t.exe_of.get(pid, ""))
            (t.writes if ok else t.attempts).append(ev)
        return t

    def child_execs(self) -> list[str]:
        """Programs exec'd after the command itself (basenames)."""
        return [os.path.basename(e.exe) for e in self.execs[1:]]

    def writes_by(self, exes: Iterable[str] | None = None) -> list[Event]:
        """Writes by processes running one of ``exes`` (basenames), or all writes."""
        if exes is None:
            return list(self.writes)
        names = set(exes)
        return [e for e in self.writes if os.path.basename(e.exe) in names]


# ----------------------------------------------------------------------------------- canaries


def canary(tag: str = "") -> str:
    """A unique, greppable secret: never appears in any message unless a plaintext leaked."""
    return f"CANARY{tag}{os.urandom(9).hex()}Z"


def leaks(text: str | bytes, canaries: Iterable[str]) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    found = []
    low = text.lower()
    for c in canaries:
        # the canary itself, or its distinctive core, in any case (a sliced or upper-cased quote)
        core = c[6:-1].lower()
        if c.lower() in low or core[:12] in low or core[-12:] in low:
            found.append(c)
    return found


def terminate_tree(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass
