"""kvsops.refs.grammar: the vals reference grammar, typed/interpolated substitution, and the resolver
(fetchers injected: no network, no files)."""

from __future__ import annotations

import threading
import time

import pytest

from kvsops import errors
from kvsops.refs import grammar as refs
from kvsops.refs.grammar import Fetched, Ref, Resolver
from kvsops.sops.tree import Branch


@pytest.mark.parametrize("text, vault, name, version, frag", [
    ("ref+azurekeyvault://myvault/db", "https://myvault.vault.azure.net", "db", "", None),
    ("ref+azurekeyvault://myvault/db/", "https://myvault.vault.azure.net", "db", "", None),
    ("ref+azurekeyvault://MyVault/db/0123abcd", "https://myvault.vault.azure.net", "db", "0123abcd", None),
    ("ref+azurekeyvault://v.vault.azure.cn/db#/a/b", "https://v.vault.azure.cn", "db", "", ("a", "b")),
    ("ref+azurekeyvault://v.vault.azure.net:443/db", "https://v.vault.azure.net", "db", "", None),
    ("ref+azurekeyvault://127.0.0.1:8443/db/v1#/", "https://127.0.0.1:8443", "db", "v1", ()),
    ("secretref+azurekeyvault://kv/a-b-c#/x~1y/0", "https://kv.vault.azure.net", "a-b-c", "", ("x/y", "0")),
])
def test_parse_azure(text: str, vault: str, name: str, version: str, frag: tuple[str, ...] | None) -> None:
    r = refs.parse(text)
    assert (r.backend, r.vault_url, r.name, r.version, r.fragment) == ("azurekeyvault", vault, name, version, frag)
    assert r.text == text


def test_parse_sops() -> None:
    r = refs.parse("ref+sops://secrets/db.enc.yaml#/db/password")
    assert (r.backend, r.path, r.fragment) == ("sops", "secrets/db.enc.yaml", ("db", "password"))
    assert refs.parse("ref+sops://a.yaml").fragment is None


@pytest.mark.parametrize("text, why", [
    ("ref+azurekeyvault://vault", "invalid secret specifier"),
    ("ref+azurekeyvault://vault/a/b/c", "invalid secret specifier"),
    ("ref+azurekeyvault://vault/bad_name", "secret name"),
    ("ref+azurekeyvault://vault/db/v-1", "version"),
    ("ref+azurekeyvault://vault:8443/db", "port"),
    ("ref+azurekeyvault://vault/db?version=1", "query"),
    ("ref+azurekeyvault://v/db#a", "fragment"),
    ("ref+vault://secret/data/x#/k", "not supported"),
    ("ref+sops://", r"ref\+sops://FILE"),
])
def test_parse_rejects(text: str, why: str) -> None:
    with pytest.raises(errors.ReferenceFailed, match=why) as e:
        refs.parse(text)
    assert text in str(e.value)


def test_find_follows_vals_terminators() -> None:
    s = 'a ref+azurekeyvault://v/x b "ref+azurekeyvault://v/y", ref+azurekeyvault://v/z+tail'
    assert [r.text for _a, _b, r in refs.find(s)] == [
        "ref+azurekeyvault://v/x", "ref+azurekeyvault://v/y", "ref+azurekeyvault://v/z"]
    assert refs.contains_ref("x ref+sops://f") and not refs.contains_ref("ref: +x, https://y")


VALUES = {
    "ref+azurekeyvault://v/db": "pw",
    "ref+azurekeyvault://v/cfg#/port": 5432,
    "ref+azurekeyvault://v/cfg#/tls": True,
    "ref+azurekeyvault://v/cfg#/nested": {"a": 1},
}


def test_expand_typed_and_interpolated() -> None:
    assert refs.expand("ref+azurekeyvault://v/cfg#/port", VALUES) == 5432
    assert refs.expand("ref+azurekeyvault://v/cfg#/nested", VALUES) == {"a": 1}
    assert refs.expand("db:ref+azurekeyvault://v/cfg#/port+/x", VALUES) == "db:5432/x"
    assert refs.expand("ref+azurekeyvault://v/db+-ref+azurekeyvault://v/cfg#/tls", VALUES) == "pw-true"
    assert refs.expand("no refs here", VALUES) == "no refs here"
    with pytest.raises(errors.ReferenceFailed, match="only a whole-string reference") as e:
        refs.expand("x ref+azurekeyvault://v/cfg#/nested", VALUES)
    assert "'a'" not in str(e.value)


def test_substitute_dicts_lists_and_branches_keys_untouched() -> None:
    tree = {"ref+azurekeyvault://v/db": ["ref+azurekeyvault://v/db", {"n": "ref+azurekeyvault://v/cfg#/nested"}]}
    assert refs.substitute(tree, VALUES) == 2
    assert tree == {"ref+azurekeyvault://v/db": ["pw", {"n": {"a": 1}}]}
    branch = Branch([("port", "ref+azurekeyvault://v/cfg#/port"), ("m", "ref+azurekeyvault://v/cfg#/nested")])
    refs.substitute(branch, VALUES)
    assert branch.get("port") == 5432 and isinstance(branch.get("m"), Branch)


class FakeFetch:
    def __init__(self, texts: dict[str, str], delay: float = 0.0) -> None:
        self.texts, self.delay = texts, delay
        self.calls: list[tuple[str, ...]] = []
        self.lock = threading.Lock()
        self.active = self.peak = 0

    def __call__(self, ref: Ref) -> Fetched:
        with self.lock:
            self.calls.append(ref.source)
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(self.delay)
        with self.lock:
            self.active -= 1
        if ref.name not in self.texts:
            raise errors.ReferenceFailed(f"no such secret {ref.secret_url}")
        return Fetched(self.texts[ref.name])


def test_resolver_fetches_each_source_once_concurrently_bounded() -> None:
    fetch = FakeFetch({f"s{i}": f"{{k: {i}}}" for i in range(6)}, delay=0.05)
    r = Resolver({"azurekeyvault": fetch}, workers=3)
    trees = [{"a": f"ref+azurekeyvault://v/s{i % 6}", "b": f"ref+azurekeyvault://v/s{i % 6}#/k"} for i in range(30)]
    assert r.resolve([(f"f{i}", t) for i, t in enumerate(trees)]) == 60
    wanted = {("azurekeyvault", "https://v.vault.azure.net", f"s{i}", "") for i in range(6)}
    assert sorted(fetch.calls) == sorted(wanted)
    assert 1 < fetch.peak <= 3
    assert trees[7] == {"a": "{k: 1}", "b": 1}
    again = [{"x": "ref+azurekeyvault://v/s1#/k"}]
    r.resolve([(None, again)])
    assert len(fetch.calls) == 6 and again == [{"x": 1}]


def test_resolver_checks_everything_before_any_fetch() -> None:
    fetch = FakeFetch({"ok": "1", "no": "2"})
    r = Resolver({"azurekeyvault": fetch}, check=lambda ref: "not allowed" if ref.name == "no" else None)
    tree = {"a": "ref+azurekeyvault://v/ok", "b": "ref+azurekeyvault://v/no"}
    with pytest.raises(errors.PolicyRefused, match=r"values.yaml: ref\+azurekeyvault://v/no: refused by policy"):
        r.resolve([("values.yaml", tree)])
    assert fetch.calls == [] and tree["a"] == "ref+azurekeyvault://v/ok"


def test_resolver_errors_name_the_reference_never_the_value() -> None:
    fetch = FakeFetch({"cfg": "user: admin\npassword: s3cr3t-value\n", "txt": "s3cr3t-plain: [unclosed"})
    r = Resolver({"azurekeyvault": fetch})
    cases = {
        "ref+azurekeyvault://v/missing": "no such secret",
        "ref+azurekeyvault://v/cfg#/nope": "key path is not in the secret",
        "ref+azurekeyvault://v/txt#/k": "not YAML or JSON",
        "ref+sops://x.yaml": "not available here",
    }
    for text, why in cases.items():
        with pytest.raises(errors.KvsopsError) as e:
            r.resolve([("f.yaml", {"k": f"pre-{text}+-post"})])
        msg = str(e.value)
        assert msg.startswith(f"f.yaml: {text}") and why in msg
        assert "s3cr3t" not in msg and "admin" not in msg


def test_failed_fetch_is_cached_for_the_render() -> None:
    fetch = FakeFetch({})
    r = Resolver({"azurekeyvault": fetch})
    for _ in range(3):
        with pytest.raises(errors.ReferenceFailed):
            r.resolve([(None, {"k": "ref+azurekeyvault://v/gone"})])
    assert len(fetch.calls) == 1


def test_fetched_document_normalizes_yaml() -> None:
    f = Fetched("when: 2024-01-02\nlist: [1, two]\n")
    ref = refs.parse("ref+azurekeyvault://v/x#/when")
    assert refs.value_of(f, ref) == "2024-01-02"
    assert refs.value_of(f, refs.parse("ref+azurekeyvault://v/x#/list/1")) == "two"
