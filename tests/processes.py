"""Nothing the suite starts may outlive it: private temp dirs, gpg-agent teardown, a session-end check.

* Every pytest process (controller and xdist workers) exports ``PYTEST_KVSOPS_RUN=<run id>``; the
  processes the tests start inherit it (unless a test builds an environment from scratch).
* Each process gets a private ``TMPDIR`` under its pytest base temp dir, so ``tempfile`` in the tests
  and in every child lands there instead of the machine's shared ``/tmp``.
* :func:`stop_gpg` ends the daemons gpg starts for a home (``gpgconf --homedir HOME --kill all``);
  fixtures that create a GnuPG home call it in their teardown.
* At the end of the session (the controller under xdist) :func:`leftovers` lists every process still
  alive that carries the run id, and every GnuPG daemon whose home lies under the run's base temp
  dir: any such process fails the run, and is then stopped.

Registered from ``tests/conftest.py`` (``pytest_plugins``) so that the xdist controller loads it too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable

import pytest

RUN_VAR = "PYTEST_KVSOPS_RUN"
GPG_DAEMONS = ("gpg-agent", "dirmngr", "keyboxd", "scdaemon")
_GRACE_SECONDS = 5.0  # a killed gpg-agent exits shortly after gpgconf returns


def gpgconf(gpg: str | None = None) -> str:
    """The gpgconf beside ``gpg`` (resolving the .tools symlink), else the one on PATH."""
    if gpg:
        sibling = Path(os.path.realpath(gpg)).parent / "gpgconf"
        if os.access(sibling, os.X_OK):
            return str(sibling)
    return shutil.which("gpgconf") or "gpgconf"


def interactive_signals() -> None:
    """preexec_fn for a child that a test interrupts as a terminal would: SIGINT at its default
    disposition. A shell starts background jobs with SIGINT ignored, the ignore survives exec, and
    Python then installs no KeyboardInterrupt handler, so a suite started that way (a background job,
    some CI runners) would see Ctrl-C tests hang instead of testing kvsops."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_gpg(home: str | os.PathLike[str], gpg: str | None = None) -> None:
    """Stop gpg-agent (and dirmngr, keyboxd, scdaemon) of the GnuPG home ``home``."""
    subprocess.run([gpgconf(gpg), "--homedir", str(home), "--kill", "all"], stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=30, check=False)


# ----------------------------------------------------------------------------------- hooks


@pytest.hookimpl(trylast=True)  # after pytest's tmp_path plugin has set up its factory
def pytest_configure(config: pytest.Config) -> None:
    # Workers inherit the controller's run id through their environment; only the first process sets it.
    os.environ.setdefault(RUN_VAR, uuid.uuid4().hex)
    tmp = config._tmp_path_factory.getbasetemp() / "tmp"  # type: ignore[attr-defined]
    tmp.mkdir(mode=0o700, exist_ok=True)
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = str(tmp)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    if getattr(session.config, "workerinput", None) is not None:
        return  # an xdist worker: the controller checks once every worker has finished
    base = session.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    found = wait_gone(lambda: leftovers([base], os.environ[RUN_VAR]))
    if not found:
        return
    lines = [f"  pid {pid}: {' '.join(argv)[:200]}" for pid, argv in found]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    text = f"{len(found)} process(es) started by the test suite are still running:\n" + "\n".join(lines)
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_sep("=", "leftover processes", red=True)
        reporter.write_line(text)
    else:
        print(text)
    _stop(found)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def wait_gone(probe: Callable[[], list[tuple[int, list[str]]]]) -> list[tuple[int, list[str]]]:
    deadline = time.monotonic() + _GRACE_SECONDS
    found = probe()
    while found and time.monotonic() < deadline:
        time.sleep(0.2)
        found = probe()
    return found


# ----------------------------------------------------------------------------------- /proc


def leftovers(roots: Iterable[Path], run_id: str | None = None) -> list[tuple[int, list[str]]]:
    """(pid, argv) of live processes that are GnuPG daemons homed under ``roots`` or carry ``run_id``
    in their environment (this process and its direct children excepted)."""
    me = os.getpid()
    prefixes = [str(r).rstrip("/") + "/" for r in roots]
    mark = f"{RUN_VAR}={run_id}".encode() if run_id else None
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            argv = [a.decode("utf-8", "replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        fields = stat.rsplit(")", 1)[-1].split()
        if not argv or fields[0] == "Z" or int(fields[1]) == me:
            continue
        home = _homedir(argv)
        ours = (mark is not None and mark in environ) or (
            os.path.basename(argv[0]) in GPG_DAEMONS and home is not None
            and any((home.rstrip("/") + "/").startswith(p) for p in prefixes)
        )
        if ours:
            out.append((pid, argv))
    return out


def _homedir(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--homedir" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--homedir="):
            return arg.split("=", 1)[1]
    return None


def _stop(found: list[tuple[int, list[str]]]) -> None:
    for pid, argv in found:
        home = _homedir(argv)
        if os.path.basename(argv[0]) in GPG_DAEMONS and home:
            stop_gpg(home)
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
