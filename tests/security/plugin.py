"""Counters for the security suite and the summary table printed at the end of a pytest session.

Registered from ``tests/conftest.py`` (``pytest_plugins``) so that the xdist controller, which never
imports ``tests/security/conftest.py``, loads it too. Tests call :func:`record`; workers ship their
counters to the controller through ``workeroutput``; test failures are counted per category from the
reports the controller receives. The table goes to the terminal via ``pytest_terminal_summary``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest

CATEGORIES = {
    "test_syscall_audit": "syscall audit",
    "test_tamper_fuzz": "tamper fuzzing",
    "test_leak_fuzz": "leak fuzzing",
    "test_hostile_input": "hostile input",
    "test_concurrency_faults": "concurrency + faults",
    "test_swap_race": "swap race",
    "test_template_bounds": "template bounds",
    "test_argocd_exec": "argocd exec",
}
FIELDS = ("cases", "leaked", "written")
_KEY = "kvsops_security_counts"

_counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIELDS, 0))
_failures: dict[str, int] = defaultdict(int)
_tests: dict[str, int] = defaultdict(int)
# Claims printed under the table: name -> [count, out of, wanted ("zero" or "all")].
_claims: dict[str, list[Any]] = {}


def record(category: str, *, cases: int = 0, leaked: int = 0, written: int = 0) -> None:
    """Add to a category's counters (call it before asserting, so failures are counted too)."""
    c = _counts[category]
    c["cases"] += cases
    c["leaked"] += leaked
    c["written"] += written


def tally(name: str, count: int, of: int, *, want: str = "zero") -> None:
    """Add to a claim printed under the table, e.g. ``race reads outside the root: 0 (of 4312)``;
    ``want`` says what a healthy run shows: "zero" of them, or "all" of them."""
    c = _claims.setdefault(name, [0, 0, want])
    c[0] += count
    c[1] += of


def category_of(nodeid: str) -> str | None:
    if "tests/security/" not in nodeid:
        return None
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
    return CATEGORIES.get(module)


def _merge(raw: str) -> None:
    got = json.loads(raw)
    for cat, fields in got["counts"].items():
        record(cat, **{k: int(v) for k, v in fields.items() if k in FIELDS})
    for name, (count, of, want) in got["claims"].items():
        tally(name, int(count), int(of), want=want)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "security: the security suite (tests/security, issue 7)")


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand the counters to the controller
        workeroutput[_KEY] = json.dumps({"counts": _counts, "claims": _claims})


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    raw = getattr(node, "workeroutput", {}).get(_KEY)
    if raw:
        _merge(raw)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if getattr(report, "_kvsops_seen", False):
        return
    cat = category_of(report.nodeid)
    if cat is None:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _tests[cat] += 1
    if report.failed:
        _failures[cat] += 1


def summary_lines() -> list[str]:
    cats = [c for c in CATEGORIES.values() if c in _counts or c in _tests]
    if not cats:
        return []
    head = ("category", "tests", "cases tried", "failures", "canaries leaked", "files written*")
    rows = [(c, _tests.get(c, 0), _counts[c]["cases"], _failures.get(c, 0), _counts[c]["leaked"],
             _counts[c]["written"]) for c in cats]
    total = ("total", *(sum(r[i] for r in rows) for i in range(1, 6)))  # type: ignore[misc]
    table = [head, *rows, total]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(head))]

    def fmt(r: tuple[Any, ...]) -> str:
        cells = [str(r[0]).ljust(widths[0])] + [str(v).rjust(widths[i]) for i, v in enumerate(r) if i]
        return "| " + " | ".join(cells) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return [fmt(head), sep, *(fmt(r) for r in rows), sep, fmt(total),
            "* outside the files each entry point documents (edit's private temp file, Argo CD's private work dir)",
            *claim_lines()]


def claim_lines() -> list[str]:
    out = []
    for name, (count, of, want) in sorted(_claims.items()):
        if want == "all":
            text = f"all ({count} of {of})" if count == of else f"{count} of {of} (want all)"
        else:
            text = f"{count} (of {of})" if count == 0 else f"{count} of {of} (want 0)"
        out.append(f"{name}: {text}")
    return out


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = summary_lines()
    if not lines:
        return
    terminalreporter.section("kvsops security summary")
    for line in lines:
        terminalreporter.write_line(line)
