"""``kvsops argocd init`` / ``generate``, as argocd-cmp-server runs them (cwd = the app directory).

generate: settings -> key policy -> mode -> render in memory -> validate -> one write to stdout.
Any failure raises before the write, so stdout stays empty and the exit code is non-zero.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from kvsops import errors, policy
from kvsops.hosts.argocd import output, render, settings

DEFAULT_DEADLINE_SECONDS = 55.0  # Argo CD's repo-server default is 60 s for the whole request


def _deadline(env: Mapping[str, str]) -> float:
    text = env.get("KVSOPS_DEADLINE_SECONDS", "").strip()
    try:
        seconds = float(text) if text else DEFAULT_DEADLINE_SECONDS
    except ValueError:
        raise errors.ConfigError("KVSOPS_DEADLINE_SECONDS is not a number") from None
    return time.monotonic() + max(seconds, 0.1)


def repo_root(app_dir: Path, env: Mapping[str, str]) -> Path:
    """The checkout root: the app dir minus ``ARGOCD_APP_SOURCE_PATH`` (the app dir when unknown)."""
    rel = env.get("ARGOCD_APP_SOURCE_PATH", "").strip().strip("/")
    if not rel or rel == ".":
        return app_dir
    parts = Path(rel).parts
    if ".." in parts or len(parts) > len(app_dir.parts) - 1 or app_dir.parts[-len(parts):] != parts:
        return app_dir
    return Path(*app_dir.parts[: -len(parts)])


def context(env: Mapping[str, str], cwd: str | None = None) -> render.Context:
    env = dict(env)
    app_dir = Path(os.path.realpath(cwd or os.getcwd()))
    s = settings.load(env)
    allowed = policy.resolve(env)
    return render.Context(app_dir, repo_root(app_dir, env), env, s, allowed, _deadline(env))


@contextmanager
def _grant(ctx: render.Context) -> Iterator[None]:
    """A private grant file for child processes, removed when the render ends."""
    if ctx.allowed is None:
        yield
        return
    tmp = Path(tempfile.mkdtemp(prefix="kvsops-grant-"))
    try:
        ctx.grant = policy.write_grant(tmp, ctx.allowed, ctx.settings.project, ctx.settings.repo_url)
        yield
    finally:
        ctx.grant = None
        shutil.rmtree(tmp, ignore_errors=True)


def mode_of(ctx: render.Context) -> str:
    return render.detect_mode(ctx.app_dir) if ctx.settings.mode == "auto" else ctx.settings.mode


def generate(env: Mapping[str, str], cwd: str | None = None) -> bytes:
    """The manifest stream for the app in ``cwd`` (validated; raises on any failure)."""
    ctx = context(env, cwd)
    mode = mode_of(ctx)
    with _grant(ctx):
        stream = render.MODES[mode](ctx)
        if ctx.settings.references:
            from kvsops.hosts.argocd.references import resolve_stream

            stream = resolve_stream(ctx, stream, f"{mode} render")
    return output.finish(stream, allow_empty=ctx.settings.allow_empty, what=f"{mode} render")


def init(env: Mapping[str, str], cwd: str | None = None) -> None:
    """Fail early on bad parameters or a bad policy; fetch Helm dependencies when helm exists."""
    ctx = context(env, cwd)
    if mode_of(ctx) != "helm":
        return
    helm = render._which(ctx.env, "KVSOPS_HELM_BIN", "helm")
    try:
        chart = render.read_inside(ctx.app_dir, "Chart.yaml")
    except errors.FileMissing:
        chart = b""
    if helm and b"dependencies:" in chart and not (ctx.app_dir / "charts").exists():
        render.run_tool(ctx, [helm, "dependency", "build"], render.child_env(ctx), "helm dependency build")
