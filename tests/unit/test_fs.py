"""kvsops.fs: the confined, race-free opener (the race itself: tests/security/test_swap_race.py)."""

from __future__ import annotations

import fcntl
import io
import os
from pathlib import Path

import pytest

from kvsops import errors, fs


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/{in.txt, sub/deep.txt, links...}; outside.txt and outdir/ beside the root."""
    root = tmp_path / "root"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "in.txt").write_text("in")
    (root / "sub" / "deep.txt").write_text("deep")
    (tmp_path / "outside.txt").write_text("OUT")
    (tmp_path / "outdir").mkdir()
    (tmp_path / "outdir" / "f").write_text("OUT")
    links = {
        "rel-in": "in.txt", "abs-in": str(root / "in.txt"), "sub/up-in": "../in.txt",
        "dir-in": "sub", "chain": "rel-in", "sub/deeper/far": "../../sub/deep.txt",
        "rel-out": "../outside.txt", "abs-out": str(tmp_path / "outside.txt"), "dir-out": str(tmp_path / "outdir"),
        "sub/climb": "../../outdir", "loop1": "loop2", "loop2": "loop1", "dangling": "nothere",
        "root-itself": ".", "abs-root-then-up": str(root) + "/../outside.txt",
    }
    for name, target in links.items():
        (root / name).symlink_to(target)
    return root


@pytest.mark.parametrize("name, content", [
    ("in.txt", b"in"), ("./in.txt", b"in"), ("sub/deep.txt", b"deep"), ("sub/../in.txt", b"in"),
    ("sub//deep.txt", b"deep"), ("rel-in", b"in"), ("abs-in", b"in"), ("sub/up-in", b"in"),
    ("dir-in/deep.txt", b"deep"), ("chain", b"in"), ("sub/deeper/far", b"deep"),
    ("root-itself/in.txt", b"in"), ("dir-in/../in.txt", b"in"),
])
def test_reads_beneath_the_root(tree: Path, name: str, content: bytes) -> None:
    with fs.Beneath(str(tree)) as root:
        assert root.read(name) == content


@pytest.mark.parametrize("name, why", [
    ("/etc/passwd", "absolute paths are not allowed"),
    ("../outside.txt", "the path leaves the root"),
    ("sub/../../outside.txt", "the path leaves the root"),
    ("rel-out", "a symbolic link leads outside the root"),
    ("abs-out", "a symbolic link leads outside the root"),
    ("dir-out/f", "a symbolic link leads outside the root"),
    ("sub/climb/f", "a symbolic link leads outside the root"),
    ("abs-root-then-up", "a symbolic link leads outside the root"),
    ("loop1", "too many symbolic links"),
])
def test_refusals_one_voice(tree: Path, name: str, why: str) -> None:
    with fs.Beneath(str(tree), hint="a hint") as root, pytest.raises(errors.PathRefused) as ei:
        root.read(name)
    assert str(ei.value) == f"{name}: {why}" and ei.value.hint == "a hint"


def test_label_names_the_root(tree: Path) -> None:
    with fs.Beneath(str(tree), label="the kustomization root") as root, pytest.raises(errors.PathRefused) as ei:
        root.read("rel-out")
    assert str(ei.value) == "rel-out: a symbolic link leads outside the kustomization root"


@pytest.mark.parametrize("name, cls, why", [
    ("missing.txt", errors.FileMissing, "file does not exist"),
    ("sub/missing/x", errors.FileMissing, "file does not exist"),
    ("dangling", errors.FileMissing, "file does not exist"),
    ("in.txt/x", errors.FileMissing, "file does not exist (a path component is not a directory)"),
    ("sub", errors.InputError, "not a regular file"),
    ("dir-in", errors.InputError, "not a regular file"),
    (".", errors.InputError, "not a regular file"),
    ("sub/..", errors.InputError, "not a regular file"),
    ("", errors.InputError, "invalid file path"),
    ("a\x00b", errors.InputError, "invalid file path"),
])
def test_input_errors(tree: Path, name: str, cls: type, why: str) -> None:
    with fs.Beneath(str(tree)) as root, pytest.raises(cls) as ei:
        root.read(name)
    assert str(ei.value).endswith(f": {why}") and ei.value.code == "INPUT"


def test_fifo_is_refused_without_blocking(tree: Path) -> None:
    os.mkfifo(tree / "fifo")  # nobody writes: a blocking open would hang forever
    with fs.Beneath(str(tree)) as root, pytest.raises(errors.InputError, match="not a regular file"):
        root.read("fifo")
    with pytest.raises(errors.InputError, match="not a regular file"):
        fs.read_path(str(tree / "fifo"))


def test_size_cap_one_message_everywhere(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open(tree / "big", "wb") as fh:
        fh.truncate(fs.DEFAULT_MAX_BYTES + 1)  # sparse
    (tree / "ten").write_bytes(b"0123456789")
    with fs.Beneath(str(tree)) as root, pytest.raises(errors.LimitExceeded) as ei:
        root.read("big")
    assert str(ei.value) == f"big: larger than {fs.DEFAULT_MAX_BYTES} bytes"
    with fs.Beneath(str(tree), limit=10) as root:
        assert root.read("ten") == b"0123456789"
    with fs.Beneath(str(tree), limit=9) as root, pytest.raises(errors.LimitExceeded, match="larger than 9 bytes"):
        root.read("ten")
    with pytest.raises(errors.LimitExceeded, match="larger than 9 bytes"):
        fs.read_path(str(tree / "ten"), "ten", limit=9)
    with pytest.raises(errors.LimitExceeded, match="^stdin: larger than 9 bytes"):
        fs.read_stream(io.BytesIO(b"0123456789"), "stdin", 9)
    assert fs.read_stream(io.BytesIO(b"0123456789"), "stdin", 10) == b"0123456789"
    assert fs.max_bytes({fs.MAX_BYTES_ENV: "1234"}) == 1234 and fs.max_bytes({}) == fs.DEFAULT_MAX_BYTES
    for bad in ("0", "-1", "x", "1.5"):
        with pytest.raises(errors.ConfigError):
            fs.max_bytes({fs.MAX_BYTES_ENV: bad})


def test_growing_file_is_cut_at_the_cap(tree: Path) -> None:
    """fstat said small, the read goes on past it (a file growing meanwhile, or /proc): still capped."""
    r, w = os.pipe()
    os.write(w, b"x" * 100)
    os.close(w)
    with pytest.raises(errors.LimitExceeded):
        fs.read_fd(r, "pipe", 50)
    os.close(r)


def test_descriptors_close_on_exec_and_never_leak(tree: Path) -> None:
    before = set(os.listdir("/proc/self/fd"))
    with fs.Beneath(str(tree)) as root:
        fd = root.open("dir-in/deep.txt")
        try:
            assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK
        finally:
            os.close(fd)
        for name in ("in.txt", "sub/deeper/far", "rel-out", "loop1", "missing", "sub", "dir-out/f", "in.txt/x"):
            try:
                root.read(name)
            except errors.KvsopsError:
                pass
    assert set(os.listdir("/proc/self/fd")) == before


def test_root_is_the_current_directory_inode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cwd is opened as "." (the inode the process stands in), not by its path, so renaming an
    ancestor afterwards cannot move the root."""
    root = tmp_path / "a" / "root"
    root.mkdir(parents=True)
    (root / "f").write_text("mine")
    monkeypatch.chdir(root)
    with fs.Beneath(os.getcwd()) as b:
        os.rename(tmp_path / "a", tmp_path / "a-moved")
        root.mkdir(parents=True)
        (root / "f").write_text("theirs")
        assert b.read("f") == b"mine"


def test_unconfined_read_is_still_regular_only(tree: Path) -> None:
    assert fs.read_path(str(tree / "abs-out")) == b"OUT"
    with pytest.raises(errors.FileMissing):
        fs.read_path(str(tree / "nope"))
    with pytest.raises(errors.InputError, match="not a regular file"):
        fs.read_path(str(tree / "sub"))
