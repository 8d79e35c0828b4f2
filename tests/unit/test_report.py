"""report.guarded: the [INTERNAL] hint names a way to get the stack frames that works where the
entry point runs (a flag for a command a person types, KVSOPS_DEBUG=1 where a host runs kvsops)."""

from __future__ import annotations

import io

import pytest

from kvsops import report

SECRET = "".join(["s3", "cr", "3t"])  # not spelled in any source line a traceback shows


def _boom() -> int:
    raise RuntimeError(f"a message that could quote input: {SECRET}")


@pytest.mark.parametrize("hint", [report.DEBUG_BY_FLAG, report.DEBUG_BY_ENV])
def test_internal_error_hint_and_no_text(hint: str) -> None:
    out = io.StringIO()
    assert report.guarded(_boom, stream=out, debug_hint=hint) == report.INTERNAL_EXIT
    assert out.getvalue() == f"kvsops: error: internal error (RuntimeError) [INTERNAL]\nkvsops: hint: {hint}\n"
    out = io.StringIO()
    report.guarded(_boom, stream=out, debug=True, debug_hint=hint)
    assert "kvsops: debug: traceback" in out.getvalue() and "in _boom" in out.getvalue()
    assert SECRET not in out.getvalue()


@pytest.mark.parametrize("value,on", [("1", True), ("true", True), ("YES", True), (" 1 ", True), ("", False),
                                      ("0", False), ("false", False), ("debug", False)])
def test_env_debug(value: str, on: bool) -> None:
    assert report.env_debug({"KVSOPS_DEBUG": value}) is on
    assert report.env_debug({}) is False


def test_helm_entry_points_hint_at_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Helm runs the downloader and `helm kvsops` itself (and keeps --debug for its own use): the
    hint must name KVSOPS_DEBUG. A NUL byte in the URL is the one way to an unexpected exception
    here (it cannot come through argv, only through an in-process call)."""
    from kvsops.hosts.helm.main import main

    monkeypatch.delenv("KVSOPS_DEBUG", raising=False)
    assert main(["downloader", "", "", "", "secrets://a\x00b"]) == report.INTERNAL_EXIT
    err = capsys.readouterr().err
    assert err.endswith(f"kvsops: hint: {report.DEBUG_BY_ENV}\n") and "traceback" not in err
    monkeypatch.setenv("KVSOPS_DEBUG", "1")
    assert main(["downloader", "", "", "", "secrets://a\x00b"]) == report.INTERNAL_EXIT
    assert "kvsops: debug: traceback" in capsys.readouterr().err
