"""What code that reaches the outside world (key backends, Key Vault clients) may read of it,
injected by the caller: never read from ``os.environ`` by the code itself."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Mapping, Sequence

    # (argv, stdin, the whole environment, timeout in seconds) -> (exit status, stdout, stderr)
    Runner = Callable[[Sequence[str], bytes, Mapping[str, str], float], tuple[int, bytes, bytes]]


def run_command(argv: Sequence[str], stdin: bytes, env: Mapping[str, str], timeout: float) -> tuple[int, bytes, bytes]:
    """Run a program without a shell and wait for it: FileNotFoundError when there is no such
    program, TimeoutError (the child killed) when it outlives ``timeout``."""
    import subprocess  # only for backends that run a program (gpg, key commands)

    try:
        proc = subprocess.run(list(argv), input=stdin, capture_output=True, env=dict(env), timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"{argv[0]} did not answer within {timeout:g}s") from None
    return proc.returncode, proc.stdout, proc.stderr


class KeyContext:
    """What a backend may read from the outside world, injected (never read from os.environ)."""

    env: Mapping[str, str]
    home: str
    # How a backend runs a program (gpg): run_command, or what the caller injects.
    run: Runner
    # Absolute monotonic deadline for network operations (time.monotonic() value), or None.
    deadline: float | None
    # Free-form per-process state shared by backends (clients, credentials).
    state: dict[str, object]

    def __init__(self, env: Mapping[str, str], home: str, run: Runner | None = None,
                 deadline: float | None = None, state: dict[str, object] | None = None) -> None:
        self.env = env
        self.home = home
        self.run = run_command if run is None else run
        self.deadline = deadline
        self.state = {} if state is None else state

    def __repr__(self) -> str:  # the environment may hold secrets: never print it
        return f"KeyContext(home={self.home!r}, deadline={self.deadline!r})"
