"""Leak fuzzing: unique canary secrets in the plaintexts, every failure path, every entry point.

A canary must never appear (whole, or its distinctive core) on stderr, on stdout, in a KRM
``results`` entry, in exception text or in log records -- with and without ``--debug``. Failure
paths: wrong key, tampered value, tampered MAC (every value decrypted, then refused), a type tag
that does not parse, decrypted content that is not what the generator needs (not a Kubernetes
object, not dotenv), template errors quoting a value, path refusals, and Key Vault errors and
timeouts from the emulator.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from tests.keys import AgeKey
from tests.security.plugin import record, tally
from tests.security.support import KVSOPS, KVSOPS_KRM, canary, clean_env, leaks, run

pytestmark = pytest.mark.security
CAT = "leak fuzzing"
ENTRIES = ("cli", "krm", "legacy", "helm", "argocd")


def _flip_value(data: bytes) -> bytes:
    i = data.index(b"ENC[AES256_GCM,data:") + 20
    return data[:i] + (b"A" if data[i:i + 1] != b"A" else b"B") + data[i + 1:]


def _flip_mac(data: bytes) -> bytes:
    i = data.index(b"mac: ENC[AES256_GCM,data:") + 25
    return data[:i] + (b"A" if data[i:i + 1] != b"A" else b"B") + data[i + 1:]


def _retag(data: bytes) -> bytes:
    return data.replace(b",type:str]", b",type:int]", 1)


def _plain(secrets: list[str]) -> str:
    a, b, c = secrets
    return (f"apiVersion: v1\nkind: Secret\nmetadata:\n    name: s\n# note {c}\nstringData:\n    password: {a}\n"
            f"    list:\n        - {b}\n        - {a}x\n")


# scenario -> (plaintext maker, how to break the encrypted bytes, fails for which entries)
FILE_SCENARIOS: dict[str, tuple[Callable[[list[str]], str], Callable[[bytes], bytes] | None, str]] = {
    "wrong-key": (_plain, None, "all"),
    "tampered-value": (_plain, _flip_value, "all"),
    "tampered-mac": (_plain, _flip_mac, "all"),
    "bad-type-tag": (lambda s: f"password: {s[0]}\nother: {s[1]}\n", _retag, "all"),
    "not-a-k8s-object": (lambda s: f"password: {s[0]}\nlist:\n    - {s[1]}\n# {s[2]}\n", None, "krm legacy argocd"),
}


def _setup(tmp: Path, age: AgeKey, other: AgeKey, scenario: str, secrets: list[str]) -> Path:
    root = tmp / "repo"
    make, breaker, _ = FILE_SCENARIOS[scenario]
    key = other if scenario == "wrong-key" else age
    f = key.write(root / "bad.enc.yaml", make(secrets))
    if breaker:
        f.write_bytes(breaker(f.read_bytes()))
    gen = {"apiVersion": "viaduct.ai/v1", "kind": "ksops", "metadata": {"name": "g"}, "files": ["bad.enc.yaml"]}
    (root / "gen.yaml").write_text(yaml.safe_dump(gen))
    return root


def _invoke(entry: str, root: Path, env: dict[str, str], debug: bool, config: str = "gen.yaml",
            target: str = "bad.enc.yaml") -> Any:
    env = dict(env)
    if debug:
        env["KVSOPS_DEBUG"] = "1"
    dbg = ["--debug"] if debug else []
    if entry == "cli":
        return run([KVSOPS, *dbg, "decrypt", target], env=env, cwd=root)
    if entry == "krm":
        rl = {"apiVersion": "config.kubernetes.io/v1", "kind": "ResourceList", "items": [],
              "functionConfig": yaml.safe_load((root / config).read_text())}
        return run([KVSOPS_KRM], env=env, cwd=root, stdin=yaml.safe_dump(rl).encode())
    if entry == "legacy":
        return run([KVSOPS_KRM, config], env=env, cwd=root)
    if entry == "helm":
        return run([KVSOPS, "helm", *dbg, "downloader", "", "", "", f"secrets://{target}"], env=env, cwd=root,
                   stdin=None)
    if entry == "argocd":
        for extra in ("gen.yaml", "gen2.yaml"):  # plain mode renders every manifest of the directory
            (root / extra).unlink(missing_ok=True)
        env.update(ARGOCD_APP_NAME="app", ARGOCD_APP_NAMESPACE="default")
        return run([KVSOPS, "argocd", *dbg, "generate"], env=env, cwd=root)
    raise AssertionError(entry)


def _assert_clean(r: Any, secrets: list[str], what: str) -> None:
    found = leaks(r.text, secrets)
    record(CAT, cases=1, leaked=len(found))
    assert r.rc != 0, f"{what}: did not fail\n{r.text}"
    assert not found, f"{what}: canary leaked\n{r.text}"
    if r.argv[0] != KVSOPS_KRM or len(r.argv) > 1:
        assert r.stdout == b"", f"{what}: stdout not empty"
    else:  # the KRM error channel: a ResourceList with no items, the message in results
        out = yaml.safe_load(r.stdout)
        assert out["items"] == [] and out["results"][0]["severity"] == "error"
    assert "kvsops: error:" in r.stderr.decode()
    assert "Traceback" not in r.stderr.decode() or "exception text omitted" in r.stderr.decode()


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
@pytest.mark.parametrize("scenario", sorted(FILE_SCENARIOS))
def test_file_failures_leak_nothing(tmp_path: Path, scenario: str, debug: bool) -> None:
    age, other = AgeKey(tmp_path / "k1"), AgeKey(tmp_path / "k2")
    secrets = [canary(str(i)) for i in range(3)]
    env = clean_env(tmp_path / "home", age=age)
    fails_for = FILE_SCENARIOS[scenario][2]
    for entry in ENTRIES:
        if fails_for != "all" and entry not in fails_for.split():
            continue
        root = _setup(tmp_path / entry, age, other, scenario, secrets)
        _assert_clean(_invoke(entry, root, env, debug), secrets, f"{scenario}/{entry}")


# ----------------------------------------------------------------------------------- generators

TEMPLATES = {
    "include": "{% include app.db.password %}",
    "lookup": "{{ {app.db.password: 1}[app.db.password ~ 'x'] }}",
    "attribute": "{{ app.db[app.db.password] }}",
    "filter": "{{ app.db.password | int + app.db.password }}",
    "undefined": "{{ nothere ~ app.db.password }}",
    "transformed": "{{ app.db[app.db.password | upper] }}",
    "sliced": "{{ app.db[app.db.password[1:]] }}",
}


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_generator_content_and_template_errors_leak_nothing(tmp_path: Path, debug: bool) -> None:
    age = AgeKey(tmp_path / "k")
    secrets = [canary("t")]
    root = tmp_path / "repo"
    age.write(root / "app.enc.yaml", f"db:\n    password: {secrets[0]}\n")
    age.write(root / "notenv.enc.bin", f"{secrets[0]} no equals sign here\n", fmt="binary")
    age.write(root / "quote.enc.bin", f'A="{secrets[0]}\n', fmt="binary")
    env = clean_env(tmp_path / "home", age=age)
    configs: dict[str, Any] = {
        f"template-{name}": {"apiVersion": "kvsops/v1", "kind": "SopsGenerator", "metadata": {"name": "g"},
                             "secrets": [{"name": "s", "templates": [{"key": "k", "inline": src,
                                                                       "values": {"app": "app.enc.yaml"}}]}]}
        for name, src in TEMPLATES.items()
    }
    for name, f in (("dotenv-garbage", "notenv.enc.bin"), ("dotenv-unterminated", "quote.enc.bin")):
        configs[name] = {"apiVersion": "viaduct.ai/v1", "kind": "ksops", "metadata": {"name": "g"},
                         "secretFrom": [{"metadata": {"name": "s"}, "envs": [f]}]}
    configs["literal-of-a-map"] = {"apiVersion": "kvsops/v1", "kind": "SopsGenerator", "metadata": {"name": "g"},
                                   "secrets": [{"name": "s", "literals": ["k=app.enc.yaml#/db/password/x"]}]}
    for name, cfg in configs.items():
        (root / "gen2.yaml").write_text(yaml.safe_dump(cfg))
        for entry in ("krm", "legacy"):
            _assert_clean(_invoke(entry, root, env, debug, config="gen2.yaml"), secrets, f"{name}/{entry}")


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_path_refusals_leak_nothing(tmp_path: Path, debug: bool) -> None:
    """A file outside the root is never read: its canary cannot show up, and the refusal is clean."""
    age = AgeKey(tmp_path / "k")
    secrets = [canary("p")]
    other = tmp_path / "other-tenant"
    age.write(other / "s.enc.yaml",
              f"apiVersion: v1\nkind: Secret\nmetadata:\n    name: x\nstringData:\n    a: {secrets[0]}\n")
    root = tmp_path / "repo"
    root.mkdir()
    (root / "link.enc.yaml").symlink_to(other / "s.enc.yaml")
    env = clean_env(tmp_path / "home", age=age)
    for target in ("../other-tenant/s.enc.yaml", str(other / "s.enc.yaml"), "link.enc.yaml"):
        gen = {"apiVersion": "viaduct.ai/v1", "kind": "ksops", "metadata": {"name": "g"}, "files": [target]}
        (root / "gen2.yaml").write_text(yaml.safe_dump(gen))
        for entry in ("krm", "legacy"):
            r = _invoke(entry, root, env, debug, config="gen2.yaml")
            _assert_clean(r, secrets, f"{target}/{entry}")
            assert "PATH_REFUSED" in r.stderr.decode()
        r = _invoke("helm", root, env, debug, target=target)
        _assert_clean(r, secrets, f"{target}/helm")
        assert "PATH_REFUSED" in r.stderr.decode()
    (root / "gen2.yaml").unlink()
    r = _invoke("argocd", root, env, debug)
    _assert_clean(r, secrets, "symlink/argocd")


# ----------------------------------------------------------------------------------- Key Vault


def _kv_file(emu: Any, env: dict[str, str], plain: str) -> tuple[bytes, bytes]:
    from kvsops import api
    from kvsops.sops.rules import SelectionRule
    from kvsops.sops.stores import yaml_store

    sess = api.Session(env=env)
    data_key = os.urandom(32)
    groups, _ = api.wrap_data_key(data_key, [[sess.recipient("azure_kv", emu.key_url("k"))]])
    return api.encrypt_docs(yaml_store.load_plain(plain.encode()), "yaml", groups, data_key,
                            rule=SelectionRule()), data_key


KV_FAULTS: dict[str, tuple[Callable[[Any], None], dict[str, str], set[str]]] = {
    "permission": (lambda e: e.grant("someone-else", "decrypt"), {}, {"NO_KEY", "KEY_SERVICE"}),
    "disabled": (lambda e: e.set_enabled("k", False), {}, {"NO_KEY", "KEY_SERVICE"}),
    "5xx": (lambda e: e.fail(100, status=500, ops={"decrypt"}), {}, {"NO_KEY", "KEY_SERVICE"}),
    "429-storm": (lambda e: e.throttle(100, retry_after=30, ops={"decrypt"}), {"KVSOPS_DEADLINE_SECONDS": "3"},
                  {"TIMEOUT", "NO_KEY"}),
    "hang": (lambda e: e.hang(100, ops={"decrypt"}), {"KVSOPS_DEADLINE_SECONDS": "2"}, {"TIMEOUT", "NO_KEY"}),
}


@pytest.mark.parametrize("fault", sorted(KV_FAULTS))
def test_key_vault_errors_leak_nothing(kv: Any, tmp_path: Path, fault: str, caplog: pytest.LogCaptureFixture) -> None:
    """In-process through kvsops.api with DEBUG logging on (the SDK's logs included), then the CLI
    with --debug: no canary, no data key, no bearer token anywhere."""
    from kvsops import api, errors

    emu, env = kv
    secrets = [canary("kv")]
    data, data_key = _kv_file(emu, env, f"password: {secrets[0]}\n")
    setup, extra, codes = KV_FAULTS[fault]
    setup(emu)
    caplog.set_level(logging.DEBUG)
    t0 = time.monotonic()
    with pytest.raises(errors.KvsopsError) as ei:
        api.decrypt_bytes(data, "yaml", session=api.Session(env={**env, **extra}), where="s.enc.yaml")
    assert time.monotonic() - t0 < 20
    secret_forms = [*secrets, data_key.hex(), data_key.hex().upper()]
    import base64

    secret_forms += [base64.b64encode(data_key).decode(), base64.urlsafe_b64encode(data_key).decode().rstrip("=")]
    secret_forms += list(emu.tokens)
    text = str(ei.value) + (ei.value.hint or "") + caplog.text
    found = [s for s in secret_forms if s in text]
    record(CAT, cases=1, leaked=len(found))
    assert ei.value.code in codes, (ei.value.code, str(ei.value))
    assert not found
    # and the same through the CLI, with --debug (fresh process: no cached token)
    f = tmp_path / "s.enc.yaml"
    f.write_bytes(data)
    cenv = clean_env(tmp_path / "home", **env, **extra)
    r = run([KVSOPS, "--debug", "decrypt", str(f)], env=cenv, cwd=tmp_path, timeout=60)
    found = [s for s in secret_forms if s in r.text]
    record(CAT, cases=1, leaked=len(found))
    assert r.rc != 0 and r.stdout == b"" and not found, r.text
    assert any(f"[{c}]" in r.stderr.decode() for c in codes), r.stderr


# ----------------------------------------------------------------------------------- template errors

# Secrets of every type in the context, and expressions over them (X), put where an error is bound
# to happen (SITES). Jinja's own messages quote keys, indexes and values ("list object has no element
# 987654"); a template error must say only where and what kind of error.
EXPRS = ["d.s", "d.i", "d.f", "d.b", "d.l", "d.l[0]", "d.l[1]", "d.m.k", "d.s | upper", "d.s[1:]", "d.s[::-1]",
         "d.i * 7", "d.i + 1", "d.f * 2", "d.s | list | map('ord') | join | int", "d.s | length", "d.i | string",
         "d.l | first", "d.l | last", "d.m", "d.m.items() | list", "d.s ~ d.i", "d.s.split('A')", "(d.i, d.s)",
         "d.f | round", "d.i // 3", "d.s | replace('C', 'c')", "d.l | join(',')", "d.i | hex if false else d.i"]
SITES = ["{{ [][X] }}", "{{ {}[X] }}", "{{ d[X] }}", "{{ (X).nothere }}", "{{ X | int + 'a' }}", "{{ X / 0 }}",
         "{% include X %}", "{{ X | attr(X) }}", "{{ range(X) }}", "{{ X() }}", "{{ '%d' % X }}",
         "{{ X is divisibleby 0 }}", "{{ nothere ~ X }}", "{{ X.__class__ }}", "{% for a in X %}{{ a.b }}{% endfor %}",
         "{{ X | batch(0) | list }}", "{{ (X | string)[X] }}", "{{ X | dictsort }}", "{{ (X | string).split(X)[999] }}",
         "{% import X as m %}", "{{ X | selectattr(X) | list }}", "{{ X | min(attribute=X) }}", "{{ X | round(X) }}",
         "{{ (X | string).format(X) }}", "{{ '{0[' ~ X ~ ']}'.format(d) }}", "{{ d.l[X] }}", "{{ X | sum }}",
         "{{ X | float / 0 }}", "{{ X | int // 0 }}", "{% set y = X %}{{ y.z.w }}", "{{ X.mro() }}",
         "{{ X | reject(X) | list }}", "{{ ((X | string) * 3000000) * 100 }}", "{{ (X | string).zfill(X) }}",
         "{{ X | indent(X) }}", "{% extends X %}", "{{ X is sameas nothere.x }}", "{{ X | map(X) | list }}",
         "{{ dict(X) }}", "{{ X[X] }}", "{{ X | xmlattr }}", "{{ X | groupby(X) }}"]


def _secret_forms(secrets: dict[str, Any]) -> list[str]:
    """Every secret as text, and the numbers a template can make of them (decimal, hex, octal,
    the string packed into an integer of its code points, scaled)."""
    forms: list[str] = []
    for v in (secrets["s"], secrets["l"][0], secrets["m"]["k"]):
        packed = int("".join(str(ord(c)) for c in v))
        forms += [v, str(packed)[:24], hex(packed)[2:26]]
    for n in (secrets["i"], secrets["l"][1]):
        forms += [str(n), hex(n)[2:], oct(n)[2:], f"{n:,}", str(n * 7), str(n + 1), str(n // 3)]
    forms += [repr(secrets["f"]), repr(secrets["f"] * 2), str(round(secrets["f"]))]
    return forms


def _random_template(rnd: Any) -> str:
    parts = []
    for _ in range(rnd.randint(1, 3)):
        site = rnd.choice(SITES)
        parts.append(site.replace("X", rnd.choice(EXPRS)))
        parts.append(rnd.choice(["", "\n", "text\n", "\n\n  "]))
    return "".join(parts)


def _secrets(rnd: Any) -> dict[str, Any]:
    return {"s": canary("s"), "i": rnd.randrange(10**11, 10**12), "f": rnd.randrange(10**11, 10**12) / 1000,
            "b": rnd.choice([True, False]), "l": [canary("l"), rnd.randrange(10**11, 10**12)],
            "m": {"k": canary("m")}}


def test_template_errors_never_carry_a_value(tmp_path: Path) -> None:
    """Random templates over secrets of every type (str, int, float, bool, list, map), rendered
    in-process (KVSOPS_FUZZ_EXAMPLES of them, default 600): no error text holds a secret or a number
    made from one. Then a sample through kvsops-krm with --debug-style output on."""
    import random

    from kvsops import errors
    from kvsops.hosts.kustomize.template import render

    seed = int(os.environ.get("KVSOPS_FUZZ_SEED", "1313"))
    rnd = random.Random(seed)
    n = int(os.environ.get("KVSOPS_FUZZ_EXAMPLES", "600"))
    failed = leaked = 0
    for i in range(n):
        secrets = _secrets(rnd)
        source = _random_template(rnd)
        try:
            render(source, {"d": secrets}, f"fuzz {i}")
            continue
        except errors.KvsopsError as exc:
            text = f"{exc.render()}\n{exc.hint or ''}"
        failed += 1
        forms = _secret_forms(secrets)
        found = [f for f in forms if f in text] + leaks(text, [secrets["s"], secrets["l"][0], secrets["m"]["k"]])
        record(CAT, cases=1, leaked=len(found))
        tally("template error leaks", len(found), 1)
        leaked += len(found)
        assert not found, f"seed {seed}, template {i}: {source!r} leaked {found}:\n{text}"
    assert failed > n // 2, "the fuzz must mostly produce errors"


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "debug"])
def test_template_errors_through_kvsops_krm(tmp_path: Path, debug: bool) -> None:
    """The issue's cases, end to end: a number and a string packed into a number, as indexes."""
    age = AgeKey(tmp_path / "k")
    pin, word = 987654, canary("w")
    root = tmp_path / "repo"
    age.write(root / "s.enc.yaml", f"stringData:\n    pin: {pin}\n    word: {word}\n    f: 1234.5678\n")
    env = clean_env(tmp_path / "home", age=age)
    packed = str(int("".join(str(ord(c)) for c in word)))
    for source in ("{{ [][d.stringData.pin] }}", "{{ [][d.stringData.word | list | map('ord') | join | int] }}",
                   "{{ {}[d.stringData.f] }}", "{{ d[d.stringData.pin * 3] }}", "line\n\n{{ d.stringData.pin.x.y }}"):
        gen = {"apiVersion": "kvsops/v1", "kind": "SopsGenerator", "metadata": {"name": "g"},
               "secrets": [{"name": "s", "templates": [{"key": "k", "inline": source, "values": {"d": "s.enc.yaml"}}]}]}
        (root / "gen2.yaml").write_text(yaml.safe_dump(gen))
        for entry in ("krm", "legacy"):
            r = _invoke(entry, root, env, debug, config="gen2.yaml")
            _assert_clean(r, [word], f"{source}/{entry}")
            for form in (str(pin), str(pin * 3), packed[:20], "1234.5678"):
                assert form not in r.text, f"{source}/{entry}: {form} in\n{r.text}"
            assert re.search(r"template error at line \d+: ", r.stderr.decode()), r.stderr
