"""The three render modes. Each returns the manifest stream as bytes; nothing decrypted is written.

* kustomize: ``kustomize localize`` into a private copy, kvsops' configs served as legacy plugins
  from kvsops' own plugin home and every other plugin refused (kvsops.hosts.argocd.localize), then
  ``kustomize build --enable-alpha-plugins`` of the copy; never ``--enable-exec`` or ``--enable-helm``;
* helm: ``helm template`` with encrypted values files as ``kvsops://`` URLs (our downloader) when a
  helm binary exists, otherwise Helm's engine (helm-python-sdk) with values decrypted in-process;
* plain: every ``*.yaml|*.yml|*.json`` of the directory, SOPS-encrypted ones decrypted in memory.

Children (kustomize, helm) get an allow-listed environment (kvsops.hosts.argocd.children) and run
from absolute paths; their temporary files go to the render's private work dir, removed after.
"""

from __future__ import annotations

import os
import time

from kvsops import errors, fs
from kvsops.policy import GRANT_ENV, session_for, write_grant

# Every render imports this module, and plain mode served by an agent needs nothing else of it:
# subprocess, tempfile, shutil, re, pathlib, dataclasses, typing, PyYAML and the decrypt path
# (kvsops.api) are imported by the code that uses them.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from subprocess import Popen
    from typing import Any, Mapping

    from kvsops import api
    from kvsops.hosts.argocd.settings import Settings
    from kvsops.policy import Allowed

STDERR_TAIL = 8192
MANIFEST_EXT = (".yaml", ".yml", ".json")
REQUEST_MARGIN = 1024 * 1024  # what a plain render's request carries besides the files (names, settings)


class Context:
    """One render: the app directory and the checkout root (absolute, real paths; ``app_dir`` and
    ``repo_root`` as Paths), its environment, settings, key policy and deadline, and what it makes
    on the way (the private work dir, the grant, the Session)."""

    def __init__(self, app_path: str, root_path: str, env: dict[str, str], settings: Settings,
                 allowed: Allowed | None, deadline: float) -> None:
        self.app_path = app_path
        self.root_path = root_path
        self.env = env
        self.settings = settings
        self.allowed = allowed
        self.deadline = deadline
        self.work: Path | None = None
        self.grant: Path | None = None
        self.agent_lost = False  # the agent did not serve this render: the rest works in-process
        self._session: api.Session | None = None

    @property
    def app_dir(self) -> Path:
        from pathlib import Path

        return Path(self.app_path)

    @property
    def repo_root(self) -> Path:
        from pathlib import Path

        return Path(self.root_path)

    def workdir(self) -> Path:
        """The render's private directory (0700, in TMPDIR), made on first use; see cleanup."""
        if self.work is None:
            import tempfile
            from pathlib import Path

            tmp = self.env.get("TMPDIR", "")
            self.work = Path(tempfile.mkdtemp(prefix="kvsops-render-", dir=tmp if os.path.isabs(tmp) else None))
        return self.work

    def grant_path(self) -> Path | None:
        """The key-policy grant for children (0600 in the work dir), or None without a policy."""
        if self.allowed is not None and self.grant is None:
            self.grant = write_grant(self.workdir(), self.allowed, self.settings.project, self.settings.repo_url)
        return self.grant

    def shown(self, text: str) -> str:
        """A child's stderr with this render's private paths made stable (Argo CD shows and caches
        it): the checkout and the localized copy as checkout-relative paths, the work dir by name,
        kustomize's temporary plugin config files without their random number."""
        import re

        roots = [f"{self.work}/copy", self.root_path] if self.work is not None else [self.root_path]
        for root in roots:
            if len(root) > 1:
                text = text.replace(root + "/", "").replace(root, ".")
        if self.work is not None:
            text = text.replace(str(self.work), "<work dir>")
        return re.sub(r"kust-plugin-config-[0-9]+", "kust-plugin-config-N", text)

    def cleanup(self) -> None:
        if self.work is not None:
            import shutil

            shutil.rmtree(self.work, ignore_errors=True)
        self.work = self.grant = None

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise errors.Timeout("the render ran out of time")
        return left

    @property
    def session(self) -> api.Session:
        """One Session per render: Key Vault clients, credentials and data keys are shared. With
        an agent, data keys and secrets come from it; it checks the render's grant itself."""
        if self._session is None:
            self._session = (None if self.agent_lost else self._agent_session()) or self._local_session()
        return self._session

    def _local_session(self) -> api.Session:
        return session_for(self.env, self.allowed, deadline_seconds=self.remaining())

    def agent_env(self) -> dict[str, str]:
        """The environment the agent serves this render with: the grant, as the children get it."""
        env = dict(self.env)
        env.pop(GRANT_ENV, None)
        grant = self.grant_path()
        if grant is not None:  # the agent reads the grant as the children do (policy.child_allowance)
            env[GRANT_ENV] = str(grant)
        return env

    def _agent_session(self) -> api.Session | None:
        from kvsops.agent import client

        link = client.from_env(self.env)
        if link is None:
            return None
        from kvsops.agent.session import AgentSession

        return AgentSession(link, self.agent_env(), apply_policy=True, fallback=self._local_session,
                            deadline_seconds=self.remaining())


def detect_mode(app_path: str) -> str:
    names = set(os.listdir(app_path))
    if names & {"kustomization.yaml", "kustomization.yml", "Kustomization"}:
        return "kustomize"
    if "Chart.yaml" in names:
        return "helm"
    return "plain"


# ----------------------------------------------------------------------------- files


def read_inside(app_dir: Path | str, rel: str) -> bytes:
    """A regular file beneath the app directory (race-free, capped: kvsops.fs)."""
    with fs.Beneath(str(app_dir), label="the application directory") as root:
        return root.read(rel)


def _fmt(rel: str) -> str:
    from kvsops.manifests import fmt_of

    return fmt_of(rel)


def _encrypted(data: bytes, fmt: str) -> bool:
    from kvsops import api

    return b"sops" in data and api.is_encrypted(data, fmt)


# ----------------------------------------------------------------------------- subprocesses


def run_tool(ctx: Context, argv: list[str], env: Mapping[str, str], what: str, *, cwd: Path | None = None,
             quiet: bool = False) -> bytes:
    """Run a tool without a shell in its own process group; kill the group at the deadline.
    ``quiet``: its stderr is shown only when it fails."""
    import subprocess
    import sys

    try:
        proc = subprocess.Popen(
            argv, cwd=cwd or ctx.app_dir, env=dict(env), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
    except OSError as exc:
        raise errors.GeneratorError(f"cannot run {what} ({type(exc).__name__})") from None
    try:
        out, err = proc.communicate(timeout=ctx.remaining())
    except (subprocess.TimeoutExpired, errors.Timeout):
        _kill_group(proc)
        raise errors.Timeout(f"{what} did not finish before the deadline") from None
    if proc.returncode != 0:
        tail = ctx.shown(err[-STDERR_TAIL:].decode("utf-8", "replace")).rstrip()
        if tail:
            sys.stderr.write(f"{what} stderr (last lines):\n{tail}\n")
        raise errors.GeneratorError(f"{what} failed (exit status {proc.returncode})")
    if err.strip() and not quiet:
        sys.stderr.write(ctx.shown(err[-STDERR_TAIL:].decode("utf-8", "replace")))
    return out


def _kill_group(proc: Popen[bytes]) -> None:
    import signal
    import subprocess

    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=2)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.communicate()


# ----------------------------------------------------------------------------- kustomize


def render_kustomize(ctx: Context) -> bytes:
    from kvsops.hosts.argocd import children, localize

    kustomize = children.tool(ctx, "KVSOPS_KUSTOMIZE_BIN", "kustomize")
    if not kustomize:
        raise errors.MissingDependency("kustomize was not found (set KVSOPS_KUSTOMIZE_BIN or PATH)")
    copy = ctx.workdir() / "copy"
    run_tool(ctx, localize.localize_command(kustomize, ctx.repo_root, ctx.app_dir, copy),
             children.localize_env(ctx), "kustomize localize", cwd=ctx.workdir(), quiet=True)
    localize.serve(copy)
    mapping = {localize.COPY_ENV: str(copy), localize.SOURCE_ENV: str(ctx.repo_root)}
    env = children.kustomize_env(ctx, localize.plugin_dir(ctx), mapping)
    app = copy / ctx.app_dir.relative_to(ctx.repo_root)
    return run_tool(ctx, localize.build_command(kustomize, ctx.workdir()), env, "kustomize build", cwd=app)


# ----------------------------------------------------------------------------- helm


def load_values(ctx: Context) -> list[tuple[str, bytes, bool]]:
    """(relative path, bytes, encrypted) for every values file, in order."""
    out = []
    for spec in ctx.settings.values_files:
        rel = spec.removeprefix("secrets://")
        data = read_inside(ctx.app_dir, rel)
        enc = _encrypted(data, _fmt(rel))
        if spec.startswith("secrets://") and not enc:
            raise errors.MetadataNotFound(f"{rel}: listed as secrets:// but it is not SOPS-encrypted")
        out.append((rel, data, enc))
    return out


def render_helm(ctx: Context) -> bytes:
    from kvsops.hosts.argocd.children import tool

    values = load_values(ctx)
    helm = tool(ctx, "KVSOPS_HELM_BIN", "helm")
    if helm:
        return _helm_binary(ctx, helm, values)
    return _helm_engine(ctx, values)


def _escape_set(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,")


def _helm_binary(ctx: Context, helm: str, values: list[tuple[str, bytes, bool]]) -> bytes:
    s = ctx.settings
    argv = [helm, "template", s.release_name, ".", "--include-crds"]
    if s.namespace:
        argv += ["--namespace", s.namespace]
    if s.kube_version:
        argv += ["--kube-version", s.kube_version]
    for v in s.api_versions:
        argv += ["--api-versions", v]
    for rel, _data, enc in values:
        argv += ["-f", f"kvsops://{rel}" if enc else rel]
    for key, value in s.set_values:
        argv += ["--set-string", f"{key}={_escape_set(value)}"]
    from kvsops.hosts.argocd.children import helm_env

    return run_tool(ctx, argv, helm_env(ctx, needs_plugins=any(enc for _r, _d, enc in values)), "helm template")


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _set_path(values: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    nested: Any = value
    for part in reversed(key.split(".")):
        nested = {part: nested}
    return _deep_merge(values, nested)


def _helm_location(exc: BaseException) -> str:
    """Where a template failed, without Helm's message (it can quote values)."""
    import re

    m = re.search(r"(?:template: |error at \()([\w./-]+:\d+(?::\d+)?)", str(exc))
    return f" at {m.group(1)}" if m else ""


def _helm_engine(ctx: Context, values: list[tuple[str, bytes, bool]]) -> bytes:
    from pathlib import Path

    try:
        import helm_python as helm
    except ImportError:
        raise errors.MissingDependency(
            "neither a helm binary nor Helm's engine (helm-python-sdk) is available",
            hint="put helm on PATH (or set KVSOPS_HELM_BIN), or install the kvsops[helm-engine] extra",
        ) from None
    encrypted = [(rel, data, _fmt(rel)) for rel, data, enc in values if enc]
    plain_of = dict(zip([r for r, _d, _f in encrypted], _decrypt_all(ctx, encrypted), strict=True))
    merged: dict[str, Any] = {}
    try:
        for rel, data, enc in values:
            text = plain_of[rel] if enc else data
            merged = _deep_merge(merged, helm.values_from_yaml(text.decode("utf-8")) or {})
    except (helm.HelmError, UnicodeDecodeError) as exc:
        raise errors.InputError(f"a values file is not valid YAML ({type(exc).__name__})") from None
    for key, value in ctx.settings.set_values:
        merged = _set_path(merged, key, value)
    s = ctx.settings
    try:
        with helm.Chart.load(str(ctx.app_dir)) as chart:
            crds = [(c["filename"], c["data"]) for c in chart.crds]
            rendered = chart.render(merged, name=s.release_name, namespace=s.namespace or "default", is_install=True)
    except helm.HelmError as exc:
        raise errors.GeneratorError(
            f"Helm could not render the chart ({type(exc).__name__}){_helm_location(exc)}"
        ) from None
    parts = [(f"crds/{Path(str(n)).name}", d if isinstance(d, str) else bytes(d).decode()) for n, d in crds]
    parts += sorted((k, v) for k, v in rendered.items() if not k.endswith("NOTES.txt"))
    out = []
    for name, doc in parts:
        if _has_content(doc):
            out.append(f"---\n# Source: {name}\n{doc.strip()}\n")
    return "".join(out).encode()


def _has_content(text: str) -> bool:
    return any(ln.strip() and not ln.lstrip().startswith("#") and ln.strip() != "---" for ln in text.splitlines())


def _plaintexts(ctx: Context, candidates: list[tuple[str, bytes, str]]) -> dict[str, bytes]:
    """{file: its plaintext as YAML} for those candidates that are SOPS files."""
    if not candidates:
        return {}
    from kvsops import api

    done = api.decrypt_files(candidates, "yaml", session=ctx.session)
    return {rel: out for (rel, _d, _f), out in zip(candidates, done, strict=True) if out is not None}


def _decrypt_all(ctx: Context, items: list[tuple[str, bytes, str]]) -> list[bytes]:
    if not items:
        return []
    from kvsops import api

    results = api.decrypt_many([(rel, data, fmt) for rel, data, fmt in items], session=ctx.session)
    return [api.emit_plain(r.docs, "yaml", where=rel) for (rel, _d, _f), r in zip(items, results, strict=True)]


# ----------------------------------------------------------------------------- plain


def manifest_files(app_path: str, recurse: bool) -> list[str]:
    """Manifest files in sorted order; hidden files and directories (``.sops.yaml``, ``.git``) skipped."""
    found = []
    top = app_path.rstrip("/")
    for dirpath, dirnames, filenames in os.walk(app_path, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recurse else []
        for name in sorted(filenames):
            if name.startswith(".") or not name.endswith(MANIFEST_EXT):
                continue
            found.append(name if dirpath == app_path else f"{dirpath[len(top) + 1:]}/{name}")
    return found


def render_plain(ctx: Context, *, finish: str | None = None) -> bytes:
    """Plain mode's stream (kvsops.manifests.plain_stream); with ``finish`` (the render's name),
    also checked whole as the output (kvsops.manifests.finish).

    When the files include SOPS files and an agent is configured, the agent decrypts, checks and
    assembles what this process read, and this process imports neither YAML nor crypto. Without
    SOPS files no agent is asked (none was before it did more than decrypt)."""
    files = [(rel, read_inside(ctx.app_path, rel)) for rel in manifest_files(ctx.app_path, ctx.settings.recurse)]
    if any(b"sops" in data for _rel, data in files):
        done = _plain_by_agent(ctx, files, finish)
        if done is not None:
            return done
    from kvsops import manifests

    stream = manifests.plain_stream(files, _plaintexts(ctx, manifests.sops_candidates(files)))
    return stream if finish is None else manifests.finish(stream, allow_empty=ctx.settings.allow_empty, what=finish)


def _plain_by_agent(ctx: Context, files: list[tuple[str, bytes]], finish: str | None) -> bytes | None:
    """The render as the agent made it, or None: no agent configured, too large for one request
    (data keys still come from the agent), or the agent did not serve it (``KVSOPS_AGENT=required``:
    [AGENT]; else the rest of the render works in-process). The request carries what the
    Session this process would have built carries (grant, decryption order, deadline)."""
    from kvsops.agent import client, protocol

    link = client.from_env(ctx.env)
    if link is None or sum(len(rel) + len(data) for rel, data in files) > protocol.MAX_REQUEST - REQUEST_MARGIN:
        return None
    from kvsops.session import decryption_order

    env = ctx.agent_env()
    deadline_ms = max(1, int(ctx.remaining() * 1000))
    spec = client.session_spec(env, policy=True, order=list(decryption_order(env.get("SOPS_DECRYPTION_ORDER"))),
                               deadline_ms=deadline_ms)
    request = {"op": "render_plain", "files": [[rel, data] for rel, data in files], "what": finish or "plain render",
               "finish": finish is not None, "allow_empty": ctx.settings.allow_empty, "session": spec}
    try:
        done = link.call(request, client.wait_for(deadline_ms))
    except client.Unavailable as exc:
        link.lost(exc)
        ctx.agent_lost = True
        return None
    if not isinstance(done, bytes):
        raise errors.AgentError("the agent sent a malformed answer")
    return done


MODES = {"kustomize": render_kustomize, "helm": render_helm, "plain": render_plain}
