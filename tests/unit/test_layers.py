"""Import direction between the package's layers, read from the source with ``ast`` (no import, no
subprocess): function-level and TYPE_CHECKING imports count like the others.

    format core (sops/)  <-  azure/, keys/  <-  session layer (api, session, datakey, ...)
                         <-  refs/  <-  agent/  <-  hosts/{kustomize,helm,argocd}, cli/

A lower layer never imports a higher one, the hosts do not import each other, and nothing private
is used outside its owner: a name ``_x`` outside its module (``from m import _x``, ``m._x``; for a
package, outside the package), a module ``_m`` outside its package. A helper another module needs
is public in its owner module. docs/architecture.md describes the layers.
"""

from __future__ import annotations

import ast
import functools
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "plugin" / "kvsops"

BASE = ("kvsops.errors", "kvsops._record", "kvsops._b64")
# Layers that may import only what is listed (their own package included).
ONLY = {
    "kvsops.sops": ("kvsops.sops", *BASE),
    # Key Vault plumbing shared by the azure_kv backend and secret references: no key type in it
    "kvsops.azure": ("kvsops.azure", "kvsops.context", "kvsops.report", *BASE),
    "kvsops.keys": ("kvsops.keys", "kvsops.sops", "kvsops.azure", "kvsops.context", *BASE),
}
TOP = ("kvsops.hosts", "kvsops.cli", "kvsops.agent")
# Layers that must not import these (prefixes).
NEVER = {
    "kvsops.keys": (*TOP, "kvsops.refs", "kvsops.api", "kvsops.session", "kvsops.datakey"),
    "kvsops.refs": TOP,
    "kvsops.agent": ("kvsops.hosts", "kvsops.cli"),
    "kvsops.cli": ("kvsops.hosts",),
    "kvsops.hosts": ("kvsops.cli",),
}
# The session layer: the modules at the top of the package (the entry point __main__ excepted).
SESSION_NEVER = (*TOP, "kvsops.refs")
ENTRY = "kvsops.__main__"
HOSTS = "kvsops.hosts"
# (importing host, imported host): why they share code. None today: a need shared by two hosts
# goes one layer down (refs, the session layer) rather than sideways.
BETWEEN_HOSTS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Use:
    """``module`` (line ``line``) uses ``target`` (a module), or its name ``name`` when set."""

    module: str
    line: int
    target: str
    name: str | None = None

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.target}" + (f".{self.name}" if self.name else "")


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def package_modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """{dotted name: (file, is a package)} for every module under ``root`` (a package directory)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def uses(module: str, source: str, is_package: bool, known: set[str], top: str) -> list[Use]:
    """Every import of a module of package ``top`` in ``source``, and every attribute read on a name
    bound to such a module (``m._x``)."""
    tree = ast.parse(source)
    out: list[Use] = []
    bound: dict[str, set[str]] = {}  # local name -> modules it is bound to somewhere in the file
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if within(alias.name, top):
                    out.append(Use(module, node.lineno, alias.name))
                    local = alias.asname or alias.name.split(".")[0]
                    bound.setdefault(local, set()).add(alias.name if alias.asname else alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_package, node)
            if not within(base, top):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in known:
                    out.append(Use(module, node.lineno, full))
                    bound.setdefault(alias.asname or alias.name, set()).add(full)
                else:
                    out.append(Use(module, node.lineno, base, alias.name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            for target in bound[node.value.id]:
                full = f"{target}.{node.attr}"
                use = Use(module, node.lineno, full) if full in known else Use(module, node.lineno, target, node.attr)
                out.append(use)
    return out


def all_uses(root: Path) -> list[Use]:
    mods = package_modules(root)
    known = set(mods)
    return [u for name, (path, is_package) in mods.items()
            for u in uses(name, path.read_text(encoding="utf-8"), is_package, known, root.name)]


def layer_violations(found: list[Use]) -> list[str]:
    bad = []
    for u in found:
        for layer, allowed in ONLY.items():
            if within(u.module, layer) and not any(within(u.target, a) for a in allowed):
                bad.append(f"{u}: {layer} imports only {', '.join(allowed)}")
        for layer, forbidden in NEVER.items():
            if within(u.module, layer) and any(within(u.target, f) for f in forbidden):
                bad.append(f"{u}: {layer} must not import {u.target}")
        if u.module.count(".") == 1 and u.module != ENTRY and any(within(u.target, f) for f in SESSION_NEVER):
            bad.append(f"{u}: the session layer must not import {u.target}")
        host, other = _host(u.module), _host(u.target)
        if host and other and host != other and (host, other) not in BETWEEN_HOSTS:
            bad.append(f"{u}: host {host} imports host {other}")
    return bad


def _host(module: str) -> str | None:
    parts = module.split(".")
    return ".".join(parts[:3]) if within(module, HOSTS) and len(parts) > 2 else None


def private_violations(found: list[Use]) -> list[str]:
    """A private module (``pkg._m``) used outside its package, or a private name (``m._x``) used
    outside its module (for a package: outside the package)."""
    bad = []
    for u in found:
        parts = u.target.split(".")
        for i, part in enumerate(parts):
            owner = ".".join(parts[:i])
            if _private(part) and not within(u.module, owner):
                bad.append(f"{u}: private module of {owner}")
        if u.name and _private(u.name) and not within(u.module, u.target):
            bad.append(f"{u}: private name of {u.target}")
    return bad


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _check(root: Path) -> list[str]:
    found = _package_uses() if root == PACKAGE else all_uses(root)
    return layer_violations(found) + private_violations(found)


@functools.lru_cache(maxsize=1)
def _package_uses() -> list[Use]:
    return all_uses(PACKAGE)


def test_the_package_keeps_its_layers() -> None:
    assert _check(PACKAGE) == []


def test_the_checker_reads_the_real_package() -> None:
    """Guards against a checker that passes because it sees nothing."""
    found = _package_uses()
    assert Use("kvsops.api", _line(PACKAGE / "api.py", "from kvsops.datakey import"), "kvsops.datakey",
               "recover_data_key") in found
    assert {_host(u.module) for u in found} >= {"kvsops.hosts.kustomize", "kvsops.hosts.helm", "kvsops.hosts.argocd"}
    assert sum(within(u.module, "kvsops.sops") for u in found) > 20


def _line(path: Path, start: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(start))


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "kvsops"
    for rel, source in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        for parent in path.relative_to(root).parents:
            (root / parent / "__init__.py").touch()
    return root


CLEAN = {
    "errors.py": "",
    "_record.py": "",
    "api.py": "from kvsops import errors\nfrom kvsops.sops import walk\n",
    "sops/walk.py": "from kvsops import _record, errors\nfrom . import values\n",
    "sops/values.py": "",
    "sops/stores/__init__.py": "def _lazy(): pass\n",
    "sops/stores/_common.py": "def _helper(): pass\ndef helper(): pass\n_helper()\n",
    "sops/stores/yaml.py": "from . import _common\nfrom kvsops.sops import stores\n_common.helper()\nstores._lazy()\n",
    "keys/age.py": "from kvsops.sops import walk\n",
    "hosts/helm/main.py": "from kvsops.hosts.helm import urls\nurls.inside()\n",
    "hosts/helm/urls.py": "def inside(): pass\ndef _check(): pass\n_check()\n",
    "hosts/argocd/main.py": "import kvsops.api\n",
    "cli/main.py": "def run():\n    from kvsops import api\n",
    "__main__.py": "from kvsops.cli.main import run\n",
}


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    assert _check(_tree(tmp_path, CLEAN)) == []


@pytest.mark.parametrize(("rel", "source", "said"), [
    ("sops/walk.py", "from kvsops.keys import age\n", "kvsops.sops imports only"),
    ("sops/walk.py", "def f():\n    import kvsops.api\n", "kvsops.sops imports only"),
    ("sops/values.py", "from .. import api\n", "kvsops.sops imports only"),
    ("sops/values.py", "if TYPE_CHECKING:\n    from kvsops.hosts.helm.urls import x\n", "kvsops.sops imports only"),
    ("keys/age.py", "from kvsops.cli import main\n", "kvsops.keys must not import kvsops.cli.main"),
    ("keys/age.py", "from kvsops.api import decrypt\n", "kvsops.keys imports only"),
    ("api.py", "from kvsops.hosts.helm import urls\n", "the session layer must not import"),
    ("hosts/argocd/main.py", "from kvsops.hosts.helm.urls import inside\n", "host kvsops.hosts.argocd imports host"),
    ("hosts/argocd/main.py", "from ..helm import urls\n", "host kvsops.hosts.argocd imports host"),
    ("hosts/helm/main.py", "urls._check()\n", "private name of kvsops.hosts.helm.urls"),
    ("hosts/helm/main.py", "from kvsops.hosts.helm.urls import _check\n", "private name of kvsops.hosts.helm.urls"),
    ("sops/stores/yaml.py", "_common._helper()\n", "private name of kvsops.sops.stores._common"),
    ("sops/walk.py", "from kvsops.sops.stores import _lazy\n", "private name of kvsops.sops.stores"),
    ("cli/main.py", "from kvsops.sops.stores import _common\n", "private module of kvsops.sops.stores"),
    ("cli/main.py", "from kvsops.sops.stores._common import helper\n", "private module of kvsops.sops.stores"),
    ("cli/main.py", "import kvsops.sops.stores._common as c\n", "private module of kvsops.sops.stores"),
])
def test_a_bad_import_is_found(tmp_path: Path, rel: str, source: str, said: str) -> None:
    files = dict(CLEAN)
    files[rel] = files.get(rel, "") + source
    bad = _check(_tree(tmp_path, files))
    assert any(said in b for b in bad), bad
