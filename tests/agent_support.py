"""A ``kvsops agent`` for tests: started in the foreground by the test, stopped by its pid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

BIN = Path(sys.executable).parent
KVSOPS = str(BIN / "kvsops")


class Agent:
    """``with Agent(env) as agent:`` serves with ``env`` (whose key-locating variables the clients
    must share); ``agent.env(base)`` is ``base`` with ``KVSOPS_AGENT_SOCK`` (and ``KVSOPS_AGENT``)."""

    def __init__(self, env: Mapping[str, str], *args: str) -> None:
        self.base = dict(env)
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([KVSOPS, "agent", *args], env=self.base, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self._err)
        assert self.proc.stdout is not None
        lines = [self.proc.stdout.readline().decode() for _ in range(2)]
        if not lines[0].startswith("KVSOPS_AGENT_SOCK="):
            self.stop()
            raise RuntimeError(f"the agent did not start: {lines!r} {self.stderr()!r}")
        self.sock = _value(lines[0])
        self.pid = int(_value(lines[1]))

    def env(self, base: Mapping[str, str] | None = None, *, mode: str = "required") -> dict[str, str]:
        env = dict(self.base if base is None else base)
        env["KVSOPS_AGENT_SOCK"] = self.sock
        env["KVSOPS_AGENT"] = mode
        return env

    def status(self) -> dict[str, Any]:
        out = subprocess.run([KVSOPS, "agent", "--status"], env=self.env(), capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr.decode()
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    def stderr(self) -> str:
        self._err.seek(0)
        return self._err.read().decode(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL, as the OOM killer would: nothing is cleaned up."""
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=15)

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._err.close()


def _value(line: str) -> str:
    import shlex

    return shlex.split(line.split(";", 1)[0].split("=", 1)[1])[0]


def wait_until(cond: Any, timeout: float = 10.0, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())
