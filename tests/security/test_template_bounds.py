"""Template bounds: a SopsGenerator template is repository content running inside a renderer that
holds keys. Each case below asks for gigabytes, hours or unbounded recursion; each must end with a
``[LIMIT]`` error that names its bound (not an out-of-memory report: the bound must be hit before the
allocation), an empty item list (no partial output), in bounded time, in a kvsops-krm child under
RLIMIT_AS 1 GiB (tests/security/test_hostile_input.py's limits). The bounds are documented in
``kvsops/hosts/kustomize/template.py`` and SECURITY.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.keys import AgeKey
from tests.security.plugin import record, tally
from tests.security.support import KVSOPS_KRM, Limits, run

pytestmark = pytest.mark.security
CAT = "template bounds"
LIMITS = Limits(address_space=1 << 30, cpu_seconds=30)
WALL = 25.0

# name -> (template, words the [LIMIT] message must hold)
CASES: dict[str, tuple[str, str]] = {
    "repeat-string": ("{{ ('a' * 1000000) * 3000 }}", "larger than"),
    "repeat-list": ("{{ ([0] * 1000000) * 3000 }}", "larger than"),
    "nested-loops": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "steps"),
    "huge-output": ("{% for i in range(100000) %}{{ 'a' * 1000 }}{% endfor %}", "output"),
    "doubling-concat": ("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
                        "{% endfor %}{{ ns.s | length }}", "larger than"),
    "doubling-plus": ("{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
                      "{% endfor %}{{ ns.s | length }}", "larger than"),
    "percent-width": ("{{ '%0999999999d' % 1 }}", "format width"),
    "percent-star": ("{{ '%*d' % (999999999, 1) }}", "from an argument"),
    "format-width": ("{{ '{:>999999999}'.format(1) }}", "format width"),
    "format-nested": ("{{ '{:>{}}'.format(1, 999999999) }}", "from an argument"),
    "format-filter": ("{{ '%999999999s' | format('x') }}", "format width"),
    "ljust": ("{{ 'a'.ljust(999999999) }}", "width"),
    "center": ("{{ 'a' | center(999999999) }}", "width"),
    "indent": ("{{ ('a\\n' * 100000) | indent('x' * 100000) }}", "larger than"),
    "wordwrap": ("{{ ('a ' * 100000) | wordwrap(1, wrapstring='x' * 100000) }}", "larger than"),
    "replace-method": ("{{ ('a' * 100000).replace('', 'b' * 100000) }}", "larger than"),
    "replace-filter": ("{{ ('a' * 100000) | replace('a', 'b' * 100000) }}", "larger than"),
    "join": ("{{ (['x' * 1000000] * 1000) | join }}", "larger than"),
    "list-output": ("{{ ['x' * 1000000] * 1000 }}", "larger than"),
    "tojson": ("{{ (['x' * 1000000] * 1000) | tojson }}", "larger than"),
    "sum": ("{{ ([['x'] * 1000000] * 1000) | sum(start=[]) | length }}", "larger than"),
    "big-int": ("{{ 2 ** 100000000 }}", "integer"),
    "block-capture": ("{% set s %}{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}{% endset %}{{ s | length }}",
                      "larger than"),
    "macro-recursion": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion"),
    "budget": ("{% for i in range(200) %}{{ (('x' * 1000000) ~ i) | length }}{% endfor %}", "in all"),
    "deadline": ("{% for i in range(100000) %}{{ d.big.count('x') }}{% endfor %}", "deadline"),
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    from tests.security.support import clean_env

    tmp = tmp_path_factory.mktemp("bounds")
    age = AgeKey(tmp / "keys")
    root = tmp / "repo"
    age.write(root / "s.enc.yaml", f"pin: 987654\nbig: {'y' * 4_000_000}\n")
    return root, clean_env(tmp / "home", age=age)


def _krm(root: Path, env: dict[str, str], source: str) -> Any:
    gen = {"apiVersion": "kvsops/v1", "kind": "SopsGenerator", "metadata": {"name": "g"},
           "secrets": [{"name": "s", "templates": [{"key": "k", "inline": source, "values": {"d": "s.enc.yaml"}}]}]}
    rl = {"apiVersion": "config.kubernetes.io/v1", "kind": "ResourceList", "items": [], "functionConfig": gen}
    return run([KVSOPS_KRM], env=env, cwd=root, stdin=yaml.safe_dump(rl).encode(), limits=LIMITS, timeout=WALL + 10)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bound_is_hit(repo: tuple[Path, dict[str, str]], case: str) -> None:
    root, env = repo
    source, words = CASES[case]
    r = _krm(root, {**env, "KVSOPS_DEADLINE_SECONDS": "3"} if case == "deadline" else env, source)
    err = r.stderr.decode("utf-8", "replace")
    hit = r.rc != 0 and "[LIMIT]" in err and words in err and "out of memory" not in err
    record(CAT, cases=1)
    tally("template bounds hit", int(hit), 1, want="all")
    assert hit, f"{case}: rc={r.rc}\n{err}"
    assert r.seconds < WALL, f"{case}: took {r.seconds:.1f}s"
    out = yaml.safe_load(r.stdout)
    assert out["items"] == [] and out["results"][0]["severity"] == "error"  # nothing of the template's output
    assert re.search(r"template limit( at line \d+)?: ", err), err
    assert "Traceback" not in err and "MemoryError" not in err


def test_ordinary_templates_still_render(repo: tuple[Path, dict[str, str]]) -> None:
    """The bounds leave room for what templates are for."""
    import base64

    root, env = repo
    source = ("pin={{ d.pin }}\n"
              "{% for i in range(1000) %}{{ '%05d' % i }}{{ ',' if not loop.last else '' }}{% endfor %}\n"
              "{{ ['a', 'b'] | join('-') }} {{ '{:>8}'.format('x') }} {{ ('ab' * 1000) | length }} "
              "{{ d.big | length }} {{ (d.big[:10] ~ 'z') | upper }} {{ {'k': 'v'} | tojson }}\n")
    r = _krm(root, env, source)
    assert r.rc == 0, r.stderr.decode()
    out = yaml.safe_load(r.stdout)
    text = base64.b64decode(out["items"][0]["data"]["k"]).decode()
    assert text.startswith("pin=987654\n00000,00001,") and "a-b        x 2000 4000000 YYYYYYYYYYZ" in text
