"""What each program the sidecar starts receives: an environment built from an allow-list, and
tools found by absolute path only.

The sidecar's environment holds every tenant's keys (key file locations, sometimes the keys
themselves, the Azure identity) and the policy; the request adds values a repository influences
(``ARGOCD_ENV_*``, parameters). No child gets that environment whole:

=====================  ==========================================================================
child                  receives
=====================  ==========================================================================
every child            ``HOME``, locale (``LANG``, ``LC_ALL``, ``LC_CTYPE``, ``TZ``), ``PATH`` cleaned
                       (absolute entries outside the checkout and the work dir, kvsops' own bin
                       first), ``TMPDIR`` = the render's private work dir, Argo CD's build env
                       (``ARGOCD_APP_NAME`` ... ``KUBE_API_VERSIONS``; never ``ARGOCD_ENV_*`` or
                       parameters), ``PYTHONDONTWRITEBYTECODE``, names listed in
                       ``KVSOPS_CHILD_ENV`` (an operator's escape hatch, e.g. a CA bundle variable)
``kustomize localize`` the above, plus the git restrictions below; no key variable at all
``kustomize build``    the above, ``KUSTOMIZE_PLUGIN_HOME``, and what kvsops' plugins need, because a
                       legacy exec plugin inherits kustomize's environment and has no other
                       channel: key locations (``SOPS_AGE_KEY_FILE``, ``GNUPGHOME``, ...), the grant
                       path, the remaining deadline, Azure identity settings (only when the policy
                       allows a Key Vault key or secret), TLS/proxy settings; with a kvsops agent,
                       its socket and every key-locating variable unchanged (the agent serves a
                       child only when they equal its own, and calls Key Vault itself)
``helm template``      the "every child" set, ``HELM_PLUGINS`` (the operator's, outside the
                       checkout), private ``HELM_CACHE_HOME``/``HELM_CONFIG_HOME``/``HELM_DATA_HOME``,
                       and the same key set for kvsops' downloader
``helm dependency``    the "every child" set, an empty ``HELM_PLUGINS``, private homes, the
``build`` (init)       operator's repository/registry config if set; no key variable at all
=====================  ==========================================================================

Never passed: ``KVSOPS_POLICY``/``KVSOPS_POLICY_FILE`` (children trust only the grant),
``KVSOPS_ALLOW_OUTSIDE_ROOT`` and the Helm downloader's relaxing settings, ``ARGOCD_ENV_*``,
``ARGOCD_APP_PARAMETERS``/``PARAM_*``, ``GIT_*`` and ``HELM_*`` of the sidecar, ``LD_*``,
``PYTHONPATH`` and the like, and any other variable.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping

from kvsops import errors
from kvsops.policy import GRANT_ENV, restrict_env

if TYPE_CHECKING:
    from kvsops.hosts.argocd.render import Context

EXTRA_ENV = "KVSOPS_CHILD_ENV"
GIT_PROTOCOLS_ENV = "KVSOPS_GIT_ALLOW_PROTOCOL"  # colon separated, git's GIT_ALLOW_PROTOCOL syntax

BASE = ("HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONDONTWRITEBYTECODE", "SOPS_DISABLE_VERSION_CHECK")
BUILD_ENV = (
    "ARGOCD_APP_NAME", "ARGOCD_APP_NAMESPACE", "ARGOCD_APP_PROJECT_NAME", "ARGOCD_APP_REVISION",
    "ARGOCD_APP_REVISION_SHORT", "ARGOCD_APP_REVISION_SHORT_8", "ARGOCD_APP_SOURCE_PATH",
    "ARGOCD_APP_SOURCE_REPO_URL", "ARGOCD_APP_SOURCE_TARGET_REVISION", "KUBE_VERSION", "KUBE_API_VERSIONS",
)
KEYS = (
    "SOPS_AGE_KEY", "SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY_CMD", "SOPS_AGE_SSH_PRIVATE_KEY_FILE",
    "SOPS_AGE_SSH_PRIVATE_KEY_CMD", "SOPS_DECRYPTION_ORDER", "SOPS_GPG_EXEC", "GNUPGHOME", "XDG_CONFIG_HOME",
    "KVSOPS_AZURE_CREDENTIAL", "KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE", "KVSOPS_AZURE_DISABLE_INSTANCE_DISCOVERY",
    "KVSOPS_CONCURRENCY", "KSOPS_CONCURRENCY_LIMIT", "KVSOPS_DEBUG", "KVSOPS_BIN",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy",
)
AZURE_PREFIXES = ("AZURE_", "IDENTITY_", "MSI_", "IMDS_")
HELM_ADMIN = ("HELM_REPOSITORY_CONFIG", "HELM_REPOSITORY_CACHE", "HELM_REGISTRY_CONFIG")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def clean_path(ctx: Context) -> str:
    """The sidecar's PATH without relative entries or entries inside the checkout or the work dir."""
    forbidden = [os.path.realpath(ctx.repo_root)] + ([os.path.realpath(ctx.work)] if ctx.work else [])
    parts = [str(Path(sys.executable).parent)]
    for p in ctx.env.get("PATH", os.defpath).split(os.pathsep):
        if p and os.path.isabs(p) and not any(_inside(os.path.realpath(p), f) for f in forbidden):
            parts.append(p)
    return os.pathsep.join(dict.fromkeys(parts))


def tool(ctx: Context, override: str, name: str) -> str | None:
    """A tool's absolute path: ``override`` (absolute, outside the checkout) or the cleaned PATH."""
    given = ctx.env.get(override, "").strip()
    if given:
        real = os.path.realpath(given)
        if not os.path.isabs(given) or _inside(real, os.path.realpath(ctx.repo_root)):
            raise errors.ConfigError(f"{override} must be an absolute path outside the checkout")
        return given
    found = shutil.which(name, path=clean_path(ctx))
    return os.path.abspath(found) if found else None


def _pick(env: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    return {n: env[n] for n in names if n in env}


def base_env(ctx: Context) -> dict[str, str]:
    """What every child gets."""
    out = _pick(ctx.env, BASE + BUILD_ENV)
    extra = [n.strip() for n in ctx.env.get(EXTRA_ENV, "").split(",") if n.strip()]
    out.update(_pick(ctx.env, extra))
    out["PATH"] = clean_path(ctx)
    out["TMPDIR"] = str(ctx.workdir())
    out.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    return out


def _wants_azure(ctx: Context) -> bool:
    allowed = ctx.allowed
    return allowed is None or bool(allowed.items("azure_kv") or allowed.azure_secrets)


def _agent(ctx: Context) -> bool:
    from kvsops.agent import client

    return bool(ctx.env.get(client.SOCK_ENV)) and ctx.env.get(client.MODE_ENV, "auto") != "off"


def key_env(ctx: Context) -> dict[str, str]:
    """What a kvsops child (legacy plugin, Helm downloader) needs to find its keys under the policy.

    With a kvsops agent, the child's key-locating variables must be the agent's (it compares their
    digests before it serves a request, kvsops.agent.client.identity), so all of them pass unchanged
    and Key Vault is called from the agent; without one, SSH identities (unless allowed) and, when the
    policy allows no Key Vault key or secret, the Azure identity are left out."""
    from kvsops.agent import client

    if _agent(ctx):
        out = {k: v for k, v in ctx.env.items() if client.is_key_variable(k)}
        out.update(_pick(ctx.env, KEYS + (client.SOCK_ENV, client.MODE_ENV)))
    else:
        source = ctx.env if ctx.allowed is None else restrict_env(ctx.env, ctx.allowed)
        out = _pick(source, KEYS)
        if _wants_azure(ctx):
            out.update({k: v for k, v in source.items() if k.startswith(AZURE_PREFIXES)})
    out["KVSOPS_DEADLINE_SECONDS"] = f"{max(ctx.remaining() - 1.0, 0.5):.1f}"  # children stop first
    grant = ctx.grant_path()
    if grant is not None:
        out[GRANT_ENV] = str(grant)
    return out


def git_env(ctx: Context) -> dict[str, str]:
    """git runs only for remote bases (``kustomize localize``): no system or user config, no hooks,
    no templates, no prompt, and only the protocols the operator allows (https by default)."""
    templates = ctx.workdir() / "git-templates"
    templates.mkdir(mode=0o700, exist_ok=True)
    protocols = ctx.env.get(GIT_PROTOCOLS_ENV, "").strip() or "https"
    return {
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_COUNT": "2",
        "GIT_CONFIG_KEY_0": "core.hooksPath",
        "GIT_CONFIG_VALUE_0": os.devnull,
        "GIT_CONFIG_KEY_1": "protocol.allow",
        "GIT_CONFIG_VALUE_1": "never",
        "GIT_ALLOW_PROTOCOL": protocols,
        "GIT_TEMPLATE_DIR": str(templates),
        "GIT_TERMINAL_PROMPT": "0",
    }


def localize_env(ctx: Context) -> dict[str, str]:
    return {**base_env(ctx), **git_env(ctx)}


def kustomize_env(ctx: Context, plugin_home: str, extra: Mapping[str, str]) -> dict[str, str]:
    return {**base_env(ctx), **key_env(ctx), **git_env(ctx), "KUSTOMIZE_PLUGIN_HOME": plugin_home, **extra}


def helm_homes(ctx: Context, plugins: str) -> dict[str, str]:
    home = ctx.workdir() / "helm"
    out = {"HELM_PLUGINS": plugins}
    for name in ("cache", "config", "data"):
        (home / name).mkdir(parents=True, exist_ok=True, mode=0o700)
        out[f"HELM_{name.upper()}_HOME"] = str(home / name)
    return out


def _empty_plugins(ctx: Context) -> str:
    empty = ctx.workdir() / "no-helm-plugins"
    empty.mkdir(mode=0o700, exist_ok=True)
    return str(empty)


def helm_plugins(ctx: Context, *, needed: bool) -> str:
    """The operator's Helm plugin directory (the image's), never one inside the checkout."""
    given = ctx.env.get("HELM_PLUGINS", "").strip()
    if not given and not needed:
        return _empty_plugins(ctx)
    if not given:
        raise errors.ConfigError(
            "HELM_PLUGINS is not set: helm cannot reach kvsops' downloader",
            hint="point HELM_PLUGINS at the image's plugin directory (the Dockerfile sets /opt/helm/plugins)",
        )
    for part in given.split(os.pathsep):
        if not os.path.isabs(part) or _inside(os.path.realpath(part), os.path.realpath(ctx.repo_root)):
            raise errors.ConfigError("HELM_PLUGINS must hold absolute directories outside the checkout")
    return given


def helm_env(ctx: Context, *, needs_plugins: bool) -> dict[str, str]:
    return {**base_env(ctx), **key_env(ctx), **helm_homes(ctx, helm_plugins(ctx, needed=needs_plugins))}


def helm_dependency_env(ctx: Context) -> dict[str, str]:
    return {**base_env(ctx), **_pick(ctx.env, HELM_ADMIN), **helm_homes(ctx, _empty_plugins(ctx))}
