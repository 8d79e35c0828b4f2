"""Key policy: which keys an Argo CD project (and/or repo) may have decrypted for it.

The plugin's identity (age keys in the sidecar, the Key Vault role of its workload identity) is
shared by every Application that can use the plugin. Without a policy, anyone who can commit to a
watched repo can ask it to decrypt a file encrypted for another project's key (a confused deputy).
The policy maps ``ARGOCD_APP_PROJECT_NAME`` / ``ARGOCD_APP_SOURCE_REPO_URL`` patterns to allowed
keys, and is enforced through :class:`kvsops.api.Session`'s ``allowed_entry`` hook, which is
consulted before a key is tried: a refused Key Vault key is never called.

Configuration (first that is set wins)::

    KVSOPS_POLICY        the policy itself, YAML or JSON, in the environment
    KVSOPS_POLICY_FILE   a path to it
    /etc/kvsops/policy.yaml   when neither is set and the file exists

No policy configured means every key is allowed (a single-tenant setup). A policy that is configured
but unreadable, invalid, or has no rule for the project refuses everything (fail closed)::

    rules:
      - projects: [team-a, "team-a-*"]          # glob patterns (fnmatch, case-sensitive)
        repos: ["https://github.com/example/team-a*"]  # optional; every selector given must match
        age: [age1...]                          # recipients
        azure_kv:                               # key URLs; without a version: any version;
          - https://team-a.vault.azure.net/keys/sops          # name "*": any key of that vault
        pgp: [0123...CDEF]                      # full fingerprints
        azure_secrets:                          # ref+azurekeyvault:// references (secret URLs);
          - https://team-a.vault.azure.net/secrets/db-password   # without a version: any version;
          - https://team-a.vault.azure.net/secrets/*             # name "*": any secret of that vault

The allowed keys of a render are the union over every matching rule. A Key Vault reference
(``ref+azurekeyvault://``, see kvsops.refs.grammar) is checked against ``azure_secrets`` before any call;
under a policy, a secret that no matching rule lists is refused.

Child processes (the contract for the KRM function and the Helm downloader)
---------------------------------------------------------------------------
``kvsops argocd generate`` resolves the policy once and hands children a *grant*: a JSON file in a
private 0700 directory (``KVSOPS_POLICY_GRANT``, mode 0600, owned by us). A child calls::

    from kvsops.policy import session_from_env
    session = session_from_env(env)        # instead of api.Session(env=env)

Why a file and not the environment: a kustomization controls a function's environment
(``exec.envs`` is appended after kustomize's own), so a child must not take its project name or its
policy location from the environment. A grant's random path is unknown to the repo and the
ownership/mode checks reject files from a repo checkout (Argo CD writes those 0644). When the fixed
path ``/etc/kvsops/policy.yaml`` exists (the sidecar's mount), a child without a valid grant is
refused: the environment alone cannot vouch for the project there.

The data-key cache (kvsops.keycache) binds its entries to the grant and to the policy's fingerprint
(:func:`binding`; a grant file carries the fingerprint of the policy it was cut from), so a Session
never gets a data key another grant unwrapped, and a changed policy empties the cache.

What the policy binds: Key Vault entries name the key that is called, so they are bound exactly.
age entries are bound because kvsops only tries the identity (X25519 or post-quantum ``age1pq1...``)
whose public key equals the entry's recipient (SSH-key identities are dropped under a policy unless
an ssh recipient is allowed).
PGP fingerprints are claims gpg does not check: with several PGP secret keys in one sidecar, prefer
age or Key Vault for tenant separation.
"""

from __future__ import annotations

import os
import stat

from kvsops import errors, keys
from kvsops._record import Record
from kvsops.sops.metadata import KeyEntry

# Every Helm values file and kustomize generator calls session_from_env: dataclasses, pathlib,
# typing and json stay off that path (kvsops._record has the frozen records).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, Callable, Mapping

    from kvsops import api, keycache

POLICY_ENV = "KVSOPS_POLICY"
POLICY_FILE_ENV = "KVSOPS_POLICY_FILE"
DEFAULT_POLICY_FILE = "/etc/kvsops/policy.yaml"
GRANT_ENV = "KVSOPS_POLICY_GRANT"
PROJECT_ENV = "ARGOCD_APP_PROJECT_NAME"
REPO_ENV = "ARGOCD_APP_SOURCE_REPO_URL"
MAX_POLICY_BYTES = 1024 * 1024
# Patterns are used only when a policy is configured: ``re`` is imported there, not by every render.
_SECRET_KINDS = ("azure_secrets",)
_AKV_SECRET_RE = r"^(https://[^/\s]+)/secrets/([^/\s]+)(?:/([^/\s]*))?/?$"
_SSH_AGE_VARS = ("SOPS_AGE_SSH_PRIVATE_KEY_FILE", "SOPS_AGE_SSH_PRIVATE_KEY_CMD")

if TYPE_CHECKING:
    Checker = Callable[[KeyEntry], "str | None"]


def _vault(url: str) -> str:
    url = url.strip().rstrip("/").lower()
    return url[:-4] if url.endswith(":443") else url


def _akv_secret(spec: str) -> tuple[str, str, str]:
    import re

    m = re.match(_AKV_SECRET_RE, spec.strip())
    if not m:
        raise errors.ConfigError(
            f"key policy: {spec!r} is not a Key Vault secret URL (https://VAULT/secrets/NAME[/VERSION])"
        )
    return _vault(m.group(1)), m.group(2).lower(), (m.group(3) or "").lower()


def _policy_kinds() -> tuple[keys.KindInfo, ...]:
    """The key kinds a policy lists (kvsops.keys' table: each row's ``policy`` list name)."""
    return tuple(row for row in keys.backends() if row.policy)


class Allowed(Record):
    """The keys one render may use (``policy``: the fingerprint of the policy they come from).

    ``keys``: for every kind a policy can list, in table order, its allowed items in the
    canonical form of the kind's backend (``policy_key``)."""

    __slots__ = _fields = ("keys", "azure_secrets", "policy")
    _defaults = {"keys": (), "azure_secrets": frozenset(), "policy": ""}
    keys: tuple[tuple[str, frozenset[str]], ...]
    azure_secrets: frozenset[tuple[str, str, str]]  # (vault, name or "*", version or "")
    policy: str

    def _post_init(self) -> None:
        given = dict(self.keys)
        keys = tuple((row.kind, frozenset(given.get(row.kind, ()))) for row in _policy_kinds())
        object.__setattr__(self, "keys", keys)

    def items(self, kind: str) -> frozenset[str]:
        return dict(self.keys).get(kind, frozenset())

    def union(self, other: "Allowed") -> "Allowed":
        merged = tuple((kind, items | other.items(kind)) for kind, items in self.keys)
        return Allowed(merged, self.azure_secrets | other.azure_secrets, self.policy or other.policy)

    def canonical(self) -> str:
        """The allowance as one stable text (what the data-key cache binds its entries to)."""
        return "\n".join(f"{kind} {item}" for kind, items in self.to_json().items() for item in items)

    def secret_refusal(self, vault_url: str, name: str, version: str) -> str | None:
        """For ``ref+azurekeyvault://`` references (Session ``allowed_secret`` hook)."""
        vault, name, ver = _vault(vault_url), name.lower(), version.lower()
        ok = any(v == vault and n in ("*", name) and (not pv or pv == ver) for v, n, pv in self.azure_secrets)
        return None if ok else "secret not allowed for this Argo CD project"

    def refusal(self, entry: KeyEntry) -> str | None:
        items = self.items(entry.kind)  # nothing allowed: no backend to ask
        ok = bool(items) and keys.backend(entry.kind).policy_allows(items, entry.as_dict())
        return None if ok else "key not allowed for this Argo CD project"

    def to_json(self) -> dict[str, list[str]]:
        out = {row.policy: sorted(self.items(row.kind)) for row in _policy_kinds()}
        out["azure_secrets"] = sorted(f"{v}/secrets/{n}" + (f"/{p}" if p else "") for v, n, p in self.azure_secrets)
        return out

    @classmethod
    def from_lists(cls, raw: Mapping[str, object], where: str) -> "Allowed":
        lists: dict[str, list[str]] = {}
        for name in (*(row.policy for row in _policy_kinds()), *_SECRET_KINDS):
            value = raw.get(name) or []
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise errors.ConfigError(f"key policy: {where}: {name} must be a list of strings")
            lists[name] = value
        return cls(
            tuple((row.kind, _policy_items(row, lists[row.policy])) for row in _policy_kinds()),
            frozenset(_akv_secret(s) for s in lists["azure_secrets"]),
        )


def _policy_items(row: keys.KindInfo, texts: list[str]) -> frozenset[str]:
    if not texts:
        return frozenset()  # nothing listed: the backend is not imported
    backend = keys.backend(row.kind)
    try:
        return frozenset(backend.policy_key(t) for t in texts)
    except ValueError as exc:
        raise errors.ConfigError(f"key policy: {exc}") from None


class Rule(Record):
    __slots__ = _fields = ("name", "projects", "repos", "allowed")
    name: str
    projects: tuple[str, ...]
    repos: tuple[str, ...]
    allowed: Allowed

    def matches(self, project: str, repo: str) -> bool:
        import fnmatch

        if self.projects and not any(fnmatch.fnmatchcase(project, p) for p in self.projects):
            return False
        return not self.repos or any(fnmatch.fnmatchcase(repo, _repo(p)) for p in self.repos)


def _repo(url: str) -> str:
    """Normalise a repo URL the way people write it: no trailing slash or .git, lowercase host."""
    import re

    url = url.strip().rstrip("/").removesuffix(".git")
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)([^/]*)(.*)$", url)
    return f"{m.group(1).lower()}{m.group(2).lower()}{m.group(3)}" if m else url


class Policy(Record):
    __slots__ = _fields = ("rules", "source", "fingerprint")
    _defaults = {"fingerprint": ""}
    rules: tuple[Rule, ...]
    source: str
    fingerprint: str  # a digest of the policy's text: a change of policy empties the data-key cache

    def allowed_for(self, project: str, repo: str) -> Allowed:
        out = Allowed(policy=self.fingerprint)
        for rule in self.rules:
            if rule.matches(project, _repo(repo)):
                out = out.union(rule.allowed)
        return out


def parse_policy(text: str, source: str) -> Policy:
    import yaml

    try:
        raw = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError):  # ValueError: an integer longer than Python reads
        raise errors.ConfigError(f"key policy {source} is not valid YAML or JSON") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("rules"), list):
        raise errors.ConfigError(f"key policy {source} must be a mapping with a 'rules' list")
    _check_fields(raw, source)
    rules = []
    for i, item in enumerate(raw["rules"]):
        where = f"{source}: rule {i + 1}"
        if not isinstance(item, dict):
            raise errors.ConfigError(f"key policy {where} is not a mapping")
        sel = {k: _patterns(item.get(k), f"{where}: {k}") for k in ("projects", "repos")}
        if not sel["projects"] and not sel["repos"]:
            raise errors.ConfigError(
                f"key policy {where} has neither projects nor repos",
                hint="to match every project write projects: ['*']",
            )
        name = str(item.get("name") or f"rule {i + 1}")
        rules.append(Rule(name, sel["projects"], sel["repos"], Allowed.from_lists(item, where)))
    import hashlib

    return Policy(tuple(rules), source, hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32])


def _check_fields(raw: Mapping[str, object], source: str) -> None:
    """Unknown fields fail the whole policy (fail closed): unlike .sops.yaml, whose unknown keys sops
    ignores (kvsops warns), a misspelt field here could widen a rule (``project:`` would leave it
    with no project selector) or narrow it, and either must not pass unnoticed."""
    from kvsops import _schema

    rule = dict.fromkeys(("name", "projects", "repos", *(row.policy for row in _policy_kinds()), *_SECRET_KINDS))
    for found in _schema.findings(raw, {"version": None, "rules": [rule]}):
        raise errors.ConfigError(f"key policy {source}: {found.message()}", hint=found.fields_here())


def _patterns(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise errors.ConfigError(f"key policy {where} must be a list of non-empty strings")
    return tuple(value)


def _exists(path: str) -> bool:
    """``Path(path).exists()`` without pathlib: only "no such file" means absent; any other error
    (a policy directory we may not search) propagates, so a policy is never skipped silently."""
    import errno

    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            return False
        raise
    except ValueError:
        return False
    return True


def _read_small(path: str, what: str) -> str:
    """A policy file (the admins'): regular, non-blocking, capped, in kvsops.fs's words; any
    failure is a CONFIG error (a configured policy that cannot be read refuses everything)."""
    from kvsops import fs

    try:
        return fs.read_path(path, f"the {what} {path}", limit=MAX_POLICY_BYTES).decode("utf-8", "replace")
    except errors.KvsopsError as exc:
        raise errors.ConfigError(exc.message, hint=exc.hint) from None


def load_policy(env: Mapping[str, str], *, default_file: str = DEFAULT_POLICY_FILE) -> Policy | None:
    """The configured policy, or None when none is configured (every key allowed)."""
    if env.get(POLICY_ENV, "").strip():
        return parse_policy(env[POLICY_ENV], POLICY_ENV)
    if env.get(POLICY_FILE_ENV, "").strip():
        path = env[POLICY_FILE_ENV].strip()
        return parse_policy(_read_small(path, "key policy file"), path)
    if default_file and _exists(default_file):
        return parse_policy(_read_small(default_file, "key policy file"), default_file)
    return None


# ----------------------------------------------------------------------------- grants


def write_grant(directory: Path, allowed: Allowed, project: str, repo: str) -> Path:
    """Write the resolved allowance for children (``directory`` must be private, e.g. mkdtemp)."""
    import json

    path = directory / "grant.json"
    body = json.dumps({"v": 1, "project": project, "repo": repo, "allowed": allowed.to_json(),
                       "policy": allowed.policy}).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(body)
    return path


def _private(st: os.stat_result) -> bool:
    return st.st_uid == os.geteuid() and not (st.st_mode & 0o077)


def read_grant(path_text: str) -> Allowed:
    """Load a grant; refuse anything that is not our private file in our private directory."""
    import json

    from kvsops import fs

    bad = errors.PolicyRefused(f"the key policy grant {path_text!r} is not a private file written by kvsops argocd")
    if not path_text.startswith("/") or ".." in path_text.split("/"):
        raise bad
    try:
        fd = os.open(path_text, fs.FILE_FLAGS)  # O_NOFOLLOW, non-blocking, close-on-exec
    except OSError:
        raise bad from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not _private(st) or not _private(os.stat(os.path.dirname(path_text))):
            raise bad
        data = fs.read_fd(fd, "the key policy grant", MAX_POLICY_BYTES, st.st_size)
    except (OSError, errors.LimitExceeded):
        raise bad from None
    finally:
        os.close(fd)
    try:
        raw = json.loads(data)
        return Allowed.from_lists(raw["allowed"], "grant")._replace(policy=str(raw.get("policy") or ""))
    except (ValueError, KeyError, TypeError, errors.ConfigError):
        raise bad from None


# ----------------------------------------------------------------------------- sessions


def checker_for(allowed: Allowed) -> Checker:
    return allowed.refusal


def restrict_env(env: Mapping[str, str], allowed: Allowed) -> dict[str, str]:
    """Drop SSH-key age identities (they are tried for any recipient) unless an ssh recipient is allowed."""
    out = dict(env)
    if not any(r.startswith("ssh-") for r in allowed.items("age")):
        for name in _SSH_AGE_VARS:
            out.pop(name, None)
    out.pop(GRANT_ENV, None)
    return out


def resolve(env: Mapping[str, str], *, default_file: str = DEFAULT_POLICY_FILE) -> Allowed | None:
    """For a trusted process (``kvsops argocd generate``): the allowance for the env's project."""
    policy = load_policy(env, default_file=default_file)
    if policy is None:
        return None
    return policy.allowed_for(env.get(PROJECT_ENV, ""), env.get(REPO_ENV, ""))


def child_allowance(env: Mapping[str, str], *, default_file: str = DEFAULT_POLICY_FILE) -> Allowed | None:
    """For a child of generate (KRM function, Helm downloader): the grant, or the configured policy."""
    if env.get(GRANT_ENV, "").strip():
        return read_grant(env[GRANT_ENV].strip())
    if default_file and _exists(default_file):
        raise errors.PolicyRefused(
            f"a key policy is installed ({default_file}) but this process got no grant",
            hint="under Argo CD, render through `kvsops argocd generate`",
        )
    return resolve(env, default_file="")


def binding(allowed: Allowed | None) -> keycache.Binding:
    """What the data-key cache binds a Session's entries to: its grant and its policy."""
    from kvsops import keycache

    if allowed is None:
        return keycache.NO_POLICY
    return keycache.Binding(grant=allowed.canonical(), policy=allowed.policy)


def session_for(env: Mapping[str, str], allowed: Allowed | None, *,
                session_class: Callable[..., api.Session] | None = None, **kwargs: Any) -> api.Session:
    """A Session for ``env`` under ``allowed`` (None: no policy): the policy hooks, the restricted
    environment and the data-key cache binding, in one place. ``session_class``: a Session
    subclass (or factory) to build instead (the agent's, kvsops.agent.service)."""
    from kvsops.api import Session

    make = session_class or Session
    if allowed is None:
        return make(env=dict(env), cache_binding=binding(None), **kwargs)
    return make(env=restrict_env(env, allowed), allowed_entry=checker_for(allowed),
                allowed_secret=allowed.secret_refusal, cache_binding=binding(allowed), **kwargs)


def session_from_env(env: Mapping[str, str] | None = None, *, default_file: str = DEFAULT_POLICY_FILE,
                     **kwargs: Any) -> api.Session:
    """An :class:`kvsops.api.Session` with the key policy applied (see the module docstring)."""
    env = dict(os.environ if env is None else env)
    return session_for(env, child_allowance(env, default_file=default_file), **kwargs)

