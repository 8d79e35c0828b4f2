"""One voice on stderr: ``kvsops: error: ...`` then ``kvsops: hint: ...``.

Every entry point runs its work through :func:`guarded`, so a failure always means: nothing on
stdout, a non-zero exit code, and a message with no secret in it. Unexpected exceptions are
reported by type only, because their text may quote input (a YAML parser echoing a line, say);
``--debug`` adds the traceback's frames, still without the exception's text.
"""

from __future__ import annotations

import sys

from kvsops.errors import Interrupted, KvsopsError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Mapping, TextIO

INTERNAL_EXIT = 70
# Set by guarded(debug=True) (--debug, KVSOPS_DEBUG): lets optional layers speak, e.g. the Azure SDK's
# own logs, which are silenced otherwise (kvsops.azure.common.sdk_logging).
debug_mode = False


def print_error(exc: KvsopsError, stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    stream.write(f"kvsops: error: {exc.render()} [{exc.code}]\n")
    if exc.hint:
        stream.write(f"kvsops: hint: {exc.hint}\n")
    stream.flush()


def warn(message: str, stream: TextIO | None = None) -> None:
    """One line, in kvsops' voice, for what is accepted but probably not what the author meant."""
    stream = stream or sys.stderr
    stream.write(f"kvsops: warning: {message}\n")
    stream.flush()


# How to get the stack frames of an [INTERNAL] error: a flag where the user types the command, the
# environment where a host runs it (Helm, kustomize and Argo CD start kvsops themselves and pass
# their environment through, but no flag of ours).
DEBUG_BY_FLAG = "run with --debug for the stack frames, and report it"
DEBUG_BY_ENV = ("set KVSOPS_DEBUG=1 in the environment of the command that runs kvsops for the stack frames, "
                "and report it")


def env_debug(environ: Mapping[str, str]) -> bool:
    """``KVSOPS_DEBUG=1|true|yes``: the debug switch of the entry points a host starts."""
    return environ.get("KVSOPS_DEBUG", "").strip().lower() in ("1", "true", "yes")


def guarded(work: Callable[[], int], *, debug: bool = False, stream: TextIO | None = None,
            debug_hint: str = DEBUG_BY_FLAG) -> int:
    """Run ``work``; turn every failure into a clean message and an exit code."""
    global debug_mode
    debug_mode = debug_mode or debug
    stream = stream or sys.stderr
    try:
        return work()
    except KvsopsError as exc:
        if debug:
            _frames(exc, stream)
        print_error(exc, stream)
        return exc.exit_code
    except KeyboardInterrupt:
        print_error(Interrupted("interrupted"), stream)
        return Interrupted.exit_code
    except BrokenPipeError:
        return 141
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug:
            _frames(exc, stream)
        stream.write(f"kvsops: error: internal error ({type(exc).__name__}) [INTERNAL]\n")
        stream.write(f"kvsops: hint: {debug_hint}\n")
        stream.flush()
        return INTERNAL_EXIT


def one_file_process() -> None:
    """Called first by a process that decrypts one file and ends with :func:`finish`: the cyclic
    garbage collector only costs time there (its passes during the imports ~0.5-1 ms; ~5% of a
    100k-value decrypt). Trees, values and the walk make no reference cycles, so reference counting
    frees them and the peak memory of a 100k-value decrypt is unchanged."""
    import gc

    gc.disable()


def full_site() -> None:
    """Load ``site`` now if the process started without it. The Helm shims start Python with
    ``-S`` when an agent may answer (``site`` costs 3-4 ms of every values file, and the agent's
    client needs only the kvsops package, found beside it); work done in-process needs the venv's
    site-packages and ``.pth`` files, which ``site.main()`` adds as a normal start would."""
    if sys.flags.no_site and "site" not in sys.modules:
        import site

        site.main()


def finish(code: int) -> int:
    """End a process that has written its whole answer: flush stdout and stderr, then leave with
    ``os._exit``. Interpreter teardown (freeing every module and object) costs more than decrypting
    a small file, and kustomize, Helm and Argo CD start one process per file. Call it only from a
    process entry point (never from a library call or an in-process test); if a flush fails, the
    code is returned for the normal exit path to handle."""
    import os

    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - e.g. a closed pipe: let the normal exit report it
        return code
    os._exit(code)


def _frames(exc: BaseException, stream: TextIO) -> None:
    import traceback

    stream.write("kvsops: debug: traceback (exception text omitted: it may quote input)\n")
    for line in traceback.format_tb(exc.__traceback__):
        stream.write(line)
    stream.write(f"kvsops: debug: {type(exc).__name__}\n")
