"""The Argo CD render's path arithmetic, done on strings (pathlib stays off the render's start-up),
checked against the pathlib code it replaced: the checkout root from the cmp-server's request
directory or ``ARGOCD_APP_SOURCE_PATH``, and the app's manifest files as checkout-relative names."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import example, given, settings, strategies as st

from kvsops.hosts.argocd import cmp, render

SETTINGS = settings(max_examples=600, deadline=None)


def _request_dir_pathlib(app_dir: Path, env: dict[str, str]) -> Path | None:
    base = env.get("ARGOCD_CMP_WORKDIR", "").strip() or env.get("TMPDIR", "").strip() or "/tmp"
    workdir = Path(os.path.realpath(os.path.join(base, "_cmp_server")))
    if workdir in app_dir.parents:
        return workdir / app_dir.relative_to(workdir).parts[0]
    return None


def _repo_root_pathlib(app_dir: Path, env: dict[str, str]) -> Path:
    request = _request_dir_pathlib(app_dir, env)
    if request is not None:
        return request
    rel = env.get("ARGOCD_APP_SOURCE_PATH", "").strip().strip("/")
    if not rel or rel == ".":
        return app_dir
    parts = Path(rel).parts
    if ".." in parts or len(parts) > len(app_dir.parts) - 1 or app_dir.parts[-len(parts):] != parts:
        return app_dir
    return Path(*app_dir.parts[: -len(parts)])


_NAMES = st.sampled_from(["a", "b", "app", "apps", "_cmp_server", "x1", "tmp", "work", "..", ".", ""])
_REL = st.lists(st.one_of(_NAMES, st.text(alphabet="ab./ ", max_size=4)), max_size=6).map("/".join)
_APP = st.lists(st.sampled_from(["a", "b", "app", "apps", "_cmp_server", "x1", "tmp", "work"]), max_size=6).map(
    lambda names: "/" + "/".join(names))


@SETTINGS
@given(app=_APP, rel=_REL, base=st.sampled_from(["", "/tmp", "/work", "/tmp/", "/a/b", " /tmp "]),
       tmpdir=st.sampled_from(["", "/tmp", "/var/tmp", "/a"]))
@example(app="/tmp/_cmp_server/abc/apps/web", rel="apps/web", base="", tmpdir="")
@example(app="/tmp/_cmp_server", rel="", base="", tmpdir="")
@example(app="/", rel="a", base="", tmpdir="/x")
@example(app="/a/b/c", rel="./b/./c/", base="", tmpdir="/x")
@example(app="/a/b/c", rel="b//c", base="", tmpdir="/x")
@example(app="/a/b/c", rel="a/../c", base="", tmpdir="/x")
@example(app="/a/b/c", rel="/a/b/c/", base="", tmpdir="/x")
@example(app="/a/b/c", rel="./.", base="", tmpdir="/x")
def test_repo_root_is_what_pathlib_gave(app: str, rel: str, base: str, tmpdir: str) -> None:
    env = {"ARGOCD_APP_SOURCE_PATH": rel, "ARGOCD_CMP_WORKDIR": base, "TMPDIR": tmpdir}
    assert cmp.repo_root(app, env) == str(_repo_root_pathlib(Path(app), env))


def _manifest_files_pathlib(app_dir: Path, recurse: bool) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(app_dir, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recurse else []
        for name in sorted(filenames):
            if name.startswith(".") or not name.endswith(render.MANIFEST_EXT):
                continue
            found.append((Path(dirpath) / name).relative_to(app_dir).as_posix())
    return found


def test_manifest_files_are_what_pathlib_gave(tmp_path: Path) -> None:
    app = tmp_path / "app"
    for rel in ["a.yaml", "b.yml", "c.json", "d.txt", ".sops.yaml", "sub/e.yaml", "sub/deeper/f.json", ".git/g.yaml",
                "sub/.hidden/h.yaml", "x.yaml.bak", "sub2/i.yml"]:
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_text("k: v\n")
    (app / "link").symlink_to(app / "sub")  # not followed
    for recurse in (False, True):
        got = render.manifest_files(str(app), recurse)
        assert got == _manifest_files_pathlib(app, recurse)
    assert render.manifest_files(str(app), True) == ["a.yaml", "b.yml", "c.json", "sub/e.yaml", "sub/deeper/f.json",
                                                      "sub2/i.yml"]
