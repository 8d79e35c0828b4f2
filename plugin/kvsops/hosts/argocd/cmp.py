"""``kvsops argocd init`` / ``generate``, as argocd-cmp-server runs them (cwd = the app directory).

generate: settings -> key policy -> mode -> render in memory -> validate -> one write to stdout.
Any failure raises before the write, so stdout stays empty and the exit code is non-zero.
"""

from __future__ import annotations

import os
import time

from kvsops import errors, policy
from kvsops.hosts.argocd import render, settings

# Every render starts here: typing and pathlib stay off its path (see kvsops.hosts.argocd.render).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

DEFAULT_DEADLINE_SECONDS = 55.0  # Argo CD's repo-server default is 60 s for the whole request


def _deadline(env: Mapping[str, str]) -> float:
    text = env.get("KVSOPS_DEADLINE_SECONDS", "").strip()
    try:
        seconds = float(text) if text else DEFAULT_DEADLINE_SECONDS
    except ValueError:
        raise errors.ConfigError("KVSOPS_DEADLINE_SECONDS is not a number") from None
    return time.monotonic() + max(seconds, 0.1)


def _cmp_request_dir(app_dir: str, env: Mapping[str, str]) -> str | None:
    """argocd-cmp-server unpacks each request into ``<ARGOCD_CMP_WORKDIR or TMPDIR>/_cmp_server/<random>``
    (0700) and runs the commands in the app path below it: that random directory is the checkout."""
    base = env.get("ARGOCD_CMP_WORKDIR", "").strip() or env.get("TMPDIR", "").strip() or "/tmp"
    workdir = os.path.realpath(os.path.join(base, "_cmp_server"))
    inside = workdir.rstrip("/") + "/"
    if app_dir.startswith(inside):
        return inside + app_dir[len(inside):].split("/", 1)[0]
    return None


def _parts(path: str) -> list[str]:
    """A path's names, as pathlib splits them (no empty or ``.`` names)."""
    return [p for p in path.split("/") if p not in ("", ".")]


def repo_root(app_dir: str, env: Mapping[str, str]) -> str:
    """The checkout root of the app dir (absolute and real): the cmp-server's request directory,
    else the app dir minus ``ARGOCD_APP_SOURCE_PATH`` (the app dir when neither is known)."""
    request = _cmp_request_dir(app_dir, env)
    if request is not None:
        return request
    rel = env.get("ARGOCD_APP_SOURCE_PATH", "").strip().strip("/")
    if not rel or rel == ".":
        return app_dir
    parts, names = _parts(rel), _parts(app_dir)
    if not parts or ".." in parts or len(parts) > len(names) or names[-len(parts):] != parts:
        return app_dir
    return "/" + "/".join(names[: -len(parts)])


def context(env: Mapping[str, str], cwd: str | None = None) -> render.Context:
    env = dict(env)
    app_dir = os.path.realpath(cwd or os.getcwd())
    s = settings.load(env)
    allowed = policy.resolve(env)
    return render.Context(app_dir, repo_root(app_dir, env), env, s, allowed, _deadline(env))


def mode_of(ctx: render.Context) -> str:
    return render.detect_mode(ctx.app_path) if ctx.settings.mode == "auto" else ctx.settings.mode


def generate(env: Mapping[str, str], cwd: str | None = None) -> bytes:
    """The manifest stream for the app in ``cwd`` (validated; raises on any failure)."""
    ctx = context(env, cwd)
    mode = mode_of(ctx)
    what = f"{mode} render"
    try:
        if mode == "plain" and not ctx.settings.references:
            return render.render_plain(ctx, finish=what)  # validated whole (by the agent, when one serves it)
        stream = render.MODES[mode](ctx)
        if ctx.settings.references:
            from kvsops.hosts.argocd.references import resolve_stream

            stream = resolve_stream(ctx, stream, what)
    finally:
        ctx.cleanup()  # the private work dir: grant, localized copy, plugin and Helm homes
    from kvsops import manifests

    return manifests.finish(stream, allow_empty=ctx.settings.allow_empty, what=what)


def init(env: Mapping[str, str], cwd: str | None = None) -> None:
    """Fail early on bad parameters or a bad policy; fetch Helm dependencies when helm exists.

    ``helm dependency build`` follows the chart's repository URLs, so it runs with no key variable,
    no grant and an empty ``HELM_PLUGINS``: no getter plugin (kvsops' included) can be reached by a
    ``repository:`` scheme, and Helm fetches over its built-in http(s)/oci getters only."""
    from kvsops.hosts.argocd.children import helm_dependency_env, tool

    ctx = context(env, cwd)
    if mode_of(ctx) != "helm":
        return
    helm = tool(ctx, "KVSOPS_HELM_BIN", "helm")
    try:
        chart = render.read_inside(ctx.app_path, "Chart.yaml")
    except errors.FileMissing:
        chart = b""
    if helm and b"dependencies:" in chart and not (ctx.app_dir / "charts").exists():
        try:
            render.run_tool(ctx, [helm, "dependency", "build"], helm_dependency_env(ctx), "helm dependency build")
        finally:
            ctx.cleanup()
