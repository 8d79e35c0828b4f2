"""The one confined, race-free file opener every host uses.

A repository controls its file names, symlinks and FIFOs, and a concurrent writer (another build in
the same checkout, a hostile test) can swap a directory for a symlink while we read. Resolving a
path first (``realpath``) and opening it afterwards checks one path and opens another: with a
``renameat2(RENAME_EXCHANGE)`` loop swapping an intermediate directory and a symlink to elsewhere,
a check-then-open reader reads outside its root now and then.

:class:`Beneath` never lets the kernel follow a symlink. It holds a descriptor of the root and walks
the path one component at a time, each opened relative to the descriptor of the directory before
it with ``O_NOFOLLOW``; symlinks it meets are read (``readlinkat`` on the link it opened) and
resolved here, against the root, at most :data:`MAX_SYMLINKS` of them; ``..`` pops our own stack of
descriptors, never the kernel's, and cannot climb above the root. Whatever the other writer does,
each step opens an inode that the step before vouched for, so the file finally opened is beneath
the root (or the read is refused). The file itself: a regular file only (no FIFO, device or
directory), opened ``O_NONBLOCK`` (a FIFO never blocks the render), ``O_CLOEXEC``, read up to one
size cap (:func:`max_bytes`, ``KVSOPS_MAX_INPUT_BYTES``, 64 MiB by default), which also caps stdin.

Every refusal speaks one voice: :class:`~kvsops.errors.PathRefused` (absolute path, ``..`` above
the root, a symlink leading outside it, too many symlinks), :class:`~kvsops.errors.InputError`
(missing, not a regular file, unreadable) and :class:`~kvsops.errors.LimitExceeded` (the cap), with
the messages below, whatever the host. Start-up matters (every Helm values file and kustomize
generator is a process): ``os`` and ``stat`` only.
"""

from __future__ import annotations

import errno
import os
import stat

from kvsops import errors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO, Callable, Mapping

MAX_BYTES_ENV = "KVSOPS_MAX_INPUT_BYTES"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
MAX_SYMLINKS = 40  # Linux's own bound on links followed in one lookup
_O_PATH = getattr(os, "O_PATH", os.O_RDONLY)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = _O_PATH | os.O_DIRECTORY | _NOFOLLOW | _CLOEXEC
_LINK_FLAGS = _O_PATH | _NOFOLLOW | _CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | _NOFOLLOW | _CLOEXEC


def max_bytes(env: Mapping[str, str] | None = None) -> int:
    """The input cap: ``KVSOPS_MAX_INPUT_BYTES`` of ``env`` (the process environment when None)."""
    raw = (os.environ if env is None else env).get(MAX_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value <= 0:
        raise errors.ConfigError(f"{MAX_BYTES_ENV} must be a positive number of bytes")
    return value


# ----------------------------------------------------------------------------- one voice


def show(name: str) -> str:
    """A name as messages show it: as given when printable and short, else quoted and cut."""
    return name if name.isprintable() and len(name) <= 200 else repr(name[:200])


def _refused(shown: str, why: str, hint: str | None) -> errors.PathRefused:
    return errors.PathRefused(f"{shown}: {why}", hint=hint)


def missing(shown: str) -> errors.FileMissing:
    return errors.FileMissing(f"{shown}: file does not exist")


def not_regular(shown: str) -> errors.InputError:
    return errors.InputError(f"{shown}: not a regular file")


def too_large(shown: str, limit: int) -> errors.LimitExceeded:
    return errors.LimitExceeded(f"{shown}: larger than {limit} bytes",
                                hint=f"the limit is {MAX_BYTES_ENV} (default {DEFAULT_MAX_BYTES})")


def unreadable(shown: str, exc: OSError) -> errors.InputError:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return missing(shown)
    if exc.errno in (errno.EISDIR, errno.ENXIO):
        return not_regular(shown)
    return errors.InputError(f"{shown}: cannot read it ({exc.strerror or type(exc).__name__})")


# ----------------------------------------------------------------------------- reading


def read_fd(fd: int, shown: str, limit: int, size_hint: int = 0) -> bytes:
    """Read an open descriptor to its end; LimitExceeded past ``limit`` bytes (never reads more)."""
    step = max(size_hint + 1, 1 << 16)  # sized by fstat: one read for a regular file
    return _read_capped(lambda n: os.read(fd, n), shown, limit, step)


def read_stream(stream: BinaryIO, shown: str, limit: int) -> bytes:
    """Read a stream (stdin, a pipe) to its end, up to the cap: the same limit and message as
    files. In chunks: one ``read(limit + 1)`` would allocate the whole cap up front."""
    return _read_capped(stream.read, shown, limit, 1 << 20)


def _read_capped(read: Callable[[int], bytes], shown: str, limit: int, step: int) -> bytes:
    chunks: list[bytes] = []
    left = limit + 1
    while left > 0:
        chunk = read(min(left, step))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    if left <= 0:
        raise too_large(shown, limit)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_regular_fd(fd: int, shown: str, limit: int) -> bytes:
    """The content of an open regular file (closes ``fd``)."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise not_regular(shown)
        if st.st_size > limit:
            raise too_large(shown, limit)
        return read_fd(fd, shown, limit, st.st_size)
    finally:
        os.close(fd)


def read_path(path: str, shown: str | None = None, *, limit: int | None = None) -> bytes:
    """An unconfined read (an operator opted out of confinement, or a path the operator gave):
    still a regular file only, non-blocking, close-on-exec and capped."""
    shown = show(path) if shown is None else shown
    try:
        fd = os.open(path, FILE_FLAGS & ~_NOFOLLOW)
    except OSError as exc:
        raise unreadable(shown, exc) from None
    return read_regular_fd(fd, shown, max_bytes() if limit is None else limit)


# ----------------------------------------------------------------------------- confinement


def _open_root(path: str) -> int:
    """A descriptor of the root. The current directory is opened as ``.`` (the inode the process
    already stands in) so that no lookup of its ancestors can be raced."""
    try:
        same = os.path.realpath(path) == os.getcwd()
    except OSError:
        same = False
    try:
        return os.open("." if same else path, _O_PATH | os.O_DIRECTORY | _CLOEXEC)
    except OSError as exc:
        raise errors.InputError(f"cannot open the directory {show(path)} "
                                f"({exc.strerror or type(exc).__name__})") from None


class Beneath:
    """A root directory; :meth:`read` opens files beneath it and nowhere else.

    ``label`` names the root in refusals ("the kustomization root"), ``hint`` is added to them.
    The root's descriptor is held for the object's life (:meth:`close`, or a ``with`` block).
    """

    __slots__ = ("path", "label", "hint", "limit", "_fd")

    def __init__(self, path: str, *, label: str = "the root", hint: str | None = None,
                 limit: int | None = None) -> None:
        self.path = os.path.realpath(path)
        self.label = label
        self.hint = hint
        self.limit = max_bytes() if limit is None else limit
        self._fd = _open_root(path)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "Beneath":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except (OSError, AttributeError):
            pass

    def read(self, name: str, shown: str | None = None) -> bytes:
        """The content of regular file ``name`` (relative to the root); a missing file raises
        :class:`~kvsops.errors.FileMissing` (an InputError a caller may treat as optional)."""
        shown = show(name) if shown is None else shown
        return read_regular_fd(self.open(name, shown), shown, self.limit)

    def open(self, name: str, shown: str | None = None) -> int:
        """A descriptor (``O_RDONLY``, non-blocking, close-on-exec) of the file ``name`` beneath the
        root; not yet checked to be a regular file (:func:`read_regular_fd` does that)."""
        shown = show(name) if shown is None else shown
        if not name or "\x00" in name:
            raise errors.InputError(f"{shown}: invalid file path")
        if name.startswith("/"):
            raise _refused(shown, "absolute paths are not allowed", self.hint)
        stack = [self._fd]
        try:
            return self._walk(_parts(name), stack, shown)
        finally:
            for fd in stack[1:]:
                os.close(fd)

    def _walk(self, todo: list[str], stack: list[int], shown: str) -> int:
        """Open components off ``todo`` (reversed), pushing directory descriptors on ``stack``."""
        links = 0
        while todo:
            part = todo.pop()
            if part == "..":
                if len(stack) == 1:
                    why = f"a symbolic link leads outside {self.label}" if links else f"the path leaves {self.label}"
                    raise _refused(shown, why, self.hint)
                os.close(stack.pop())
                continue
            got = self._step(part, stack[-1], not todo, shown)
            if isinstance(got, int):
                if not todo:
                    return got
                stack.append(got)
                continue
            links += 1
            if links > MAX_SYMLINKS:
                raise _refused(shown, "too many symbolic links", self.hint)
            if got.startswith("/"):  # restart from the root, if the target is beneath it
                todo.extend(self._beneath_root(got, shown))
                for fd in stack[1:]:
                    os.close(fd)
                del stack[1:]
            else:
                todo.extend(_parts(got))
        raise not_regular(shown)  # the path names a directory (the root, or it ends in "..")

    def _step(self, part: str, parent: int, final: bool, shown: str) -> int | str:
        """Open one component: a directory (not final) or the file (final) as a descriptor; a
        symlink as its target."""
        try:
            return os.open(part, FILE_FLAGS if final else _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise unreadable(shown, exc) from None
        # Not what we asked for: look at the very inode (O_PATH) and read a link off it, so that a
        # concurrent rename cannot make us read one entry and follow another.
        try:
            fd = os.open(part, _LINK_FLAGS, dir_fd=parent)
        except OSError as exc:
            raise unreadable(shown, exc) from None
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISLNK(mode):
                return os.readlink("", dir_fd=fd)
            if stat.S_ISDIR(mode) and not final:
                fd, keep = -1, fd  # swapped back to a directory meanwhile: use this one
                return keep
        except OSError as exc:
            raise unreadable(shown, exc) from None
        finally:
            if fd >= 0:
                os.close(fd)
        if final:
            raise errors.InputError(f"{shown}: the file changed while it was opened")
        raise errors.FileMissing(f"{shown}: file does not exist (a path component is not a directory)")

    def _beneath_root(self, target: str, shown: str) -> list[str]:
        """An absolute symlink target is followed only when it names a place beneath the root."""
        prefix = self.path.rstrip("/")
        if target == prefix or target.startswith(prefix + "/"):
            return _parts(target[len(prefix):])
        raise _refused(shown, f"a symbolic link leads outside {self.label}", self.hint)


def _parts(path: str) -> list[str]:
    """Path components, reversed (a stack: the first component on top); no empty or ``.``."""
    return [p for p in reversed(path.split("/")) if p and p != "."]
