"""What code that reaches the outside world (key backends, Key Vault clients) may read of it,
injected by the caller: never read from ``os.environ`` by the code itself."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Mapping


class KeyContext:
    """What a backend may read from the outside world, injected (never read from os.environ)."""

    env: Mapping[str, str]
    home: str
    # Runs a command without a shell: (argv, stdin bytes, extra env) -> (rc, stdout, stderr).
    run: Callable[..., tuple[int, bytes, bytes]] | None
    # Absolute monotonic deadline for network operations (time.monotonic() value), or None.
    deadline: float | None
    # Free-form per-process state shared by backends (clients, credentials).
    state: dict[str, object]

    def __init__(self, env: Mapping[str, str], home: str, run: Callable[..., tuple[int, bytes, bytes]] | None = None,
                 deadline: float | None = None, state: dict[str, object] | None = None) -> None:
        self.env = env
        self.home = home
        self.run = run
        self.deadline = deadline
        self.state = {} if state is None else state

    def __repr__(self) -> str:  # the environment may hold secrets: never print it
        return f"KeyContext(home={self.home!r}, deadline={self.deadline!r})"
