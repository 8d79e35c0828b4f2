"""helm-secrets' URL grammar, the path policy and the wrapper rewrite (pure functions)."""

from __future__ import annotations

import pytest

from kvsops import errors
from kvsops.hosts.helm import urls as helmurl
from kvsops.hosts.helm.urls import AGE_IMPORT, FILE, GPG_IMPORT, LITERAL, Request


@pytest.mark.parametrize("url,req", [
    ("secrets://a.yaml", Request("secrets", FILE, "a.yaml")),
    ("SECRETS://a.yaml", Request("secrets", FILE, "a.yaml")),
    ("kvsops://./x/a b.yaml", Request("kvsops", FILE, "./x/a b.yaml")),
    ("secrets://?a.yaml", Request("secrets", FILE, "a.yaml", "", True)),
    ("secrets://?sops!a.yaml", Request("secrets", FILE, "a.yaml", "", True)),
    ("secrets://a!b.yaml", Request("secrets", FILE, "a!b.yaml")),
    ("secrets://a#b?c.yaml", Request("secrets", FILE, "a#b?c.yaml")),
    ("secrets:///abs/a.yaml", Request("secrets", FILE, "/abs/a.yaml")),
    ("secrets+age-import://k.txt?a?b#c.yaml", Request("secrets+age-import", AGE_IMPORT, "a?b#c.yaml", "k.txt")),
    ("secrets+gpg-import://?k.asc?a.yaml", Request("secrets+gpg-import", GPG_IMPORT, "a.yaml", "k.asc", True)),
    ("secrets+literal://?x!y", Request("secrets+literal", LITERAL, "?x!y")),
    ("kvsops+literal://sops!v", Request("kvsops+literal", LITERAL, "v")),
    ("secrets+literal://ref+echo://87", Request("secrets+literal", LITERAL, "ref+echo://87")),
])
def test_parse(url: str, req: Request) -> None:
    assert helmurl.parse(url) == req


@pytest.mark.parametrize("url,msg", [
    ("a.yaml", "scheme://"),
    ("s3://b/k", "unknown protocol s3://"),
    ("secrets+age-import://k.txt", "Invalid syntax"),
    ("secrets+age-import://?k.txt?", "Invalid syntax"),
    ("secrets+age-import-kubernetes://ns/s#k?a.yaml", "not supported"),
    ("secrets://vals!a.yaml", "not supported"),
    ("secrets://backend.sh!a.yaml", "never runs a backend script"),
    ("secrets://https://example.invalid/a.yaml", "not fetched"),
    ("secrets://", "no file path"),
])
def test_parse_errors(url: str, msg: str) -> None:
    with pytest.raises(errors.GeneratorError, match=msg.replace("?", r"\?").replace("+", r"\+")):
        helmurl.parse(url)


def test_literal_value_never_in_messages() -> None:
    with pytest.raises(errors.GeneratorError) as exc:
        helmurl.parse("secrets+literal://vals!hunter2")
    assert "hunter2" not in str(exc.value)


def _pol(tmp_path, **env):  # type: ignore[no-untyped-def]
    return helmurl.policy_from_env({k: str(v) for k, v in env.items()}, str(tmp_path))


@pytest.mark.parametrize("path", ["a.yaml", "./a.yaml", "d/../a.yaml", "d/./e/../../a.yaml"])
def test_paths_inside(tmp_path, path: str) -> None:  # type: ignore[no-untyped-def]
    assert helmurl.resolve_values_path(_pol(tmp_path), path) == str((tmp_path / "a.yaml").resolve())


@pytest.mark.parametrize("path", ["../a.yaml", "d/../../a.yaml", "..\\a.yaml", "/etc/passwd", "\\x", "C:x.yaml"])
def test_paths_refused(tmp_path, path: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(errors.PathRefused):
        helmurl.resolve_values_path(_pol(tmp_path), path)


def test_root_setting_and_argocd(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cwd = tmp_path / "app"
    cwd.mkdir()
    pol = helmurl.policy_from_env({"KVSOPS_HELM_ROOT": "..", "KVSOPS_HELM_ALLOW_PATH_TRAVERSAL": "true"}, str(cwd))
    assert pol.root == str(tmp_path.resolve()) and pol.allow_traversal
    strict = helmurl.policy_from_env({"KVSOPS_HELM_ROOT": "..", "ARGOCD_APP_NAME": "a"}, str(cwd))
    assert strict.root == str(cwd.resolve()) and strict.notes and "Argo CD" in strict.notes[0]
    forced = helmurl.policy_from_env({"KVSOPS_HELM_ALLOW_ABSOLUTE_PATH": "true", "KVSOPS_HELM_STRICT": "1"}, str(cwd))
    assert not forced.allow_absolute
    with pytest.raises(errors.PathRefused):
        helmurl.policy_from_env({"KVSOPS_HELM_ROOT": "/nonexistent-elsewhere"}, str(cwd))


def test_key_prefix_is_containment_not_string_prefix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys-evil").mkdir()
    pol = helmurl.policy_from_env({"KVSOPS_HELM_KEY_PREFIX": str(tmp_path / "keys")}, str(tmp_path))
    assert helmurl.resolve_key_path(pol, "keys/k.txt").endswith("keys/k.txt")
    for bad in ("keys-evil/k.txt", "keys/../keys-evil/k.txt"):
        with pytest.raises(errors.PathRefused):
            helmurl.resolve_key_path(pol, bad)


def test_executable_env(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pol = _pol(tmp_path)
    env = helmurl.executable_env({"PATH": f"/usr/bin::.:bin:{tmp_path}/bin:/bin"}, pol)
    assert env["PATH"] == "/usr/bin:/bin"
    with pytest.raises(errors.PathRefused):
        helmurl.executable_env({"SOPS_AGE_KEY_CMD": "./get-key --x"}, pol)
    with pytest.raises(errors.PathRefused):
        helmurl.executable_env({"SOPS_GPG_EXEC": f"{tmp_path}/gpg"}, pol)
    assert helmurl.executable_env({"SOPS_GPG_EXEC": "gpg2"}, pol)["SOPS_GPG_EXEC"] == "gpg2"
    relaxed = _pol(tmp_path, KVSOPS_HELM_ALLOW_REPO_EXECUTABLES="true")
    assert helmurl.executable_env({"PATH": "."}, relaxed)["PATH"] == "."


@pytest.mark.parametrize("name,data,fmt", [
    ("a.yaml", b"x", "yaml"), ("a.json", b"x", "json"), ("a.env", b"x", "dotenv"),
    ("a.yaml.gotpl", b"a: 1\nsops:\n    mac: x\n", "yaml"), ("a.raw", b'{\n\t"data": "ENC[AES', "binary"),
    ("a.raw", b'  {"a": 1}', "json"), ("a.bin", b"hello", "binary"),
])
def test_sniff_format(name: str, data: bytes, fmt: str) -> None:
    assert helmurl.sniff_format(name, data) == fmt


def test_downloader_url() -> None:
    assert helmurl.downloader_url("my dir/a.yaml") == "kvsops://./my dir/a.yaml"
    assert helmurl.downloader_url("/abs/a.yaml") == "kvsops:///abs/a.yaml"


def test_rewrite_set_file_escaped_commas() -> None:
    enc = {"s.yaml"}.__contains__
    assert helmurl.rewrite_args(["--set-file", r"a=x\,y,b=s.yaml"], enc) == ["--set-file", r"a=x\,y,b=kvsops://./s.yaml"]
    assert helmurl.rewrite_args(["--set-file=k=s.yaml"], enc) == ["--set-file=k=kvsops://./s.yaml"]
    assert helmurl.rewrite_args(["-f"], enc) == ["-f"]
    assert helmurl.rewrite_args(["-f", '"s.yaml"'], enc) == ["-f", '"s.yaml"']
