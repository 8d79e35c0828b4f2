"""Tamper fuzzing: generated trees in every store, encrypted by kvsops (age), then ONE change.

Each change must make decryption fail with the error code that names it (``errors.*.code``) and
return nothing: never a partial tree, never a different plaintext. Runs in-process through
``kvsops.api`` for speed (a few thousand cases in CI); ``KVSOPS_FUZZ_EXAMPLES=N`` sets the examples
per store for a nightly-style run (then with a random seed). A handful of cases also go through the
CLI to check the exit code and an empty stdout.

Known limits of the SOPS format (identical in sops; see SECURITY.md) are asserted as such, in their
own tests, rather than generated: the MAC hashes values in order but not key names, ``null`` values
or empty strings, and the type tag is not authenticated (only the value's bytes are).
"""

from __future__ import annotations

import base64
import os
import random
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kvsops import api, errors
from kvsops.sops import stores, values
from kvsops.sops.rules import SelectionRule
from kvsops.sops.tree import Branch
from tests.keys import AgeKey
from tests.security.plugin import record
from tests.security.support import KVSOPS, canary, clean_env, leaks

pytestmark = pytest.mark.security
CAT = "tamper fuzzing"
_N = os.environ.get("KVSOPS_FUZZ_EXAMPLES", "").strip()
EXAMPLES = int(_N) if _N else 300  # generated trees per store; each gets PER_TREE different changes
PER_TREE = 4
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not _N, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])

DECRYPT, MAC, NO_KEY = errors.DecryptValueError.code, errors.MacMismatch.code, errors.NoKeyAvailable.code
FORMAT = {errors.FormatError.code, errors.InputError.code}

# ----------------------------------------------------------------------------------- trees

_key = st.text(alphabet="abcdefgxyz", min_size=1, max_size=5).filter(lambda k: k != "sops")
_mkey = st.one_of(_key, _key.map(lambda k: k + "_unencrypted"))
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\r"), min_size=1,
                max_size=24)
_scalar = st.one_of(_text, st.integers(-(2**63), 2**63 - 1), st.booleans(),
                    st.floats(allow_nan=False, allow_infinity=False, width=64))


def _branch(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Branch]:
    return st.dictionaries(_mkey, children, min_size=1, max_size=4).map(lambda d: Branch(d.items()))


_value = st.recursive(_scalar, lambda c: st.one_of(st.lists(c, min_size=1, max_size=4), _branch(c)), max_leaves=10)
_doc = st.dictionaries(_mkey, _value, min_size=1, max_size=5).map(lambda d: Branch(d.items()))
_flat_key = st.text(alphabet="ABCDEFGXYZ_", min_size=1, max_size=6).filter(lambda k: not k.startswith("sops"))
_flat_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1,
                     max_size=24).map(str.strip).filter(bool)
_ini_key = st.text(alphabet="abcdefgxyz", min_size=1, max_size=5)

TREES: dict[str, st.SearchStrategy[list[Branch]]] = {
    "yaml": st.lists(_doc, min_size=1, max_size=2),
    "json": _doc.map(lambda d: [d]),
    "dotenv": st.dictionaries(_flat_key, _flat_text, min_size=1, max_size=6).map(lambda d: [Branch(d.items())]),
    "ini": st.dictionaries(_ini_key, st.dictionaries(_ini_key, _flat_text, min_size=1, max_size=4), min_size=1,
                           max_size=3).map(lambda d: [Branch([("DEFAULT", Branch())] + [
                               (s, Branch(kv.items())) for s, kv in d.items()])]),
    "binary": st.binary(min_size=1, max_size=256).map(
        lambda b: [Branch([("data", b.decode("utf-8", "surrogateescape"))])]),
}


# ----------------------------------------------------------------------------------- encryption


class Keyring:
    """One identity and one wrapped data key for a whole fuzz run (wrapping is the slow part)."""

    def __init__(self, tmp: Path) -> None:
        self.age = AgeKey(tmp)
        self.other = AgeKey(tmp / "other")
        self.data_key = os.urandom(32)
        self.groups, _ = api.wrap_data_key(self.data_key, [[self.age.master_key()]])

    def encrypt(self, docs: list[Branch], fmt: str) -> bytes:
        rule = None if fmt == "binary" else SelectionRule()
        return api.encrypt_docs(docs, fmt, self.groups, self.data_key, rule=rule)

    def decrypt(self, data: bytes, fmt: str) -> bytes:
        return api.decrypt_bytes(data, fmt, session=self.age.session())

    def decrypt_docs(self, data: bytes, fmt: str) -> list[Branch]:
        return api.decrypt(data, fmt, session=self.age.session()).docs


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring(tmp_path_factory.mktemp("tamper-keys"))


# ----------------------------------------------------------------------------------- mutations
# Each takes (docs, metadata Branch, rnd) and changes one thing in place, returning the set of
# acceptable error codes, or None when the tree has nothing it applies to.

Mutation = Callable[[list[Branch], Branch, random.Random], "set[str] | None"]


def _leaves(node: Any, path: tuple = (), out: list | None = None) -> list[tuple[Any, Any, tuple]]:
    """(container, index-or-key-position, path) of every string leaf that is an ENC value."""
    out = [] if out is None else out
    items = list(enumerate(node)) if isinstance(node, Branch) else list(enumerate(node))
    for i, item in items:
        key, v = item if isinstance(node, Branch) else (None, item)
        p = path + ((key,) if key is not None else ())
        if isinstance(v, (Branch, list)):
            _leaves(v, p, out)
        elif values.is_encrypted(v):
            out.append((node, i, p))
    return out


def _get(container: Any, i: int) -> Any:
    return container[i][1] if isinstance(container, Branch) else container[i]


def _put(container: Any, i: int, v: Any) -> None:
    if isinstance(container, Branch):
        container[i] = (container[i][0], v)
    else:
        container[i] = v


def _enc_leaves(docs: list[Branch]) -> list[tuple[Any, int, tuple]]:
    out: list = []
    for d in docs:
        _leaves(d, (), out)
    return out


def _flip_b64(text: str, rnd: random.Random) -> str:
    raw = bytearray(base64.b64decode(text))
    i = rnd.randrange(len(raw))
    raw[i] ^= 1 << rnd.randrange(8)
    return base64.b64encode(bytes(raw)).decode()


def _flip_part(part: str) -> Mutation:
    def mutate(docs: list[Branch], md: Branch, rnd: random.Random) -> set[str] | None:
        leaves = _enc_leaves(docs)
        if not leaves:
            return None
        c, i, _ = rnd.choice(leaves)
        text = _get(c, i)
        fields = dict(f.split(":", 1) for f in text[len("ENC[AES256_GCM,"):-1].split(","))
        if not fields[part]:
            return None
        fields[part] = _flip_b64(fields[part], rnd)
        _put(c, i, "ENC[AES256_GCM," + ",".join(f"{k}:{v}" for k, v in fields.items()) + "]")
        return {DECRYPT}
    return mutate


def m_type_tag(docs: list[Branch], md: Branch, rnd: random.Random) -> set[str] | None:
    leaves = _enc_leaves(docs)
    if not leaves:
        return None
    c, i, _ = rnd.choice(leaves)
    text = _get(c, i)
    old = text[text.rindex("type:") + 5:-1]
    new = rnd.choice([t for t in ("str", "int", "float", "bool", "time", "comment", "bytes", "blob") if t != old])
    _put(c, i, text[: text.rindex("type:") + 5] + new + "]")
    return {DECRYPT, MAC}


def _branches(node: Any, out: list) -> list[Branch]:
    if isinstance(node, Branch):
        out.append(node)
        for _k, v in node:
            _branches(v, out)
    elif isinstance(node, list):
        for v in node:
            _branches(v, out)
    return out


def _has_enc(v: Any) -> bool:
    if isinstance(v, Branch):
        return any(_has_enc(x) for _k, x in v)
    if isinstance(v, list):
        return any(_has_enc(x) for x in v)
    return values.is_encrypted(v)


def m_key_rename(docs: list[Branch], md: Branch, rnd: random.Random) -> set[str] | None:
    """Rename a key above an encrypted value (its AAD changes)."""
    cands = [(b, j) for d in docs for b in _branches(d, []) for j, (k, v) in enumerate(b) if _has_enc(v)]
    if not cands:
        return None
    b, j = rnd.choice(cands)
    k, v = b[j]
    new = k + rnd.choice("qrs")
    if new in b.keys():
        return None
    b[j] = (new, v)
    return {DECRYPT} | FORMAT


def _sig(v: Any) -> Any:
    """What the MAC sees of a subtree: its non-empty leaf byte strings in order."""
    if isinstance(v, Branch):
        return tuple(x for _k, val in v for x in _sig(val))
    if isinstance(v, list):
        return tuple(x for val in v for x in _sig(val))
    return () if v is None or v == "" else (v,)


def m_key_order(docs: list[Branch], md: Branch, rnd: random.Random) -> set[str] | None:
    """Swap two sibling entries whose values differ (each moves with its own key: AADs still hold)."""
    cands = [(b, j) for d in docs for b in _branches(d, []) for j in range(len(b) - 1)
             if _sig(b[j][1]) != _sig(b[j + 1][1]) and _sig(b[j][1]) and _sig(b[j + 1][1])]
    if not cands:
        return None
    b, j = rnd.choice(cands)
    b[j], b[j + 1] = b[j + 1], b[j]
    return {MAC}


def _lists(node: Any, out: list) -> list[list]:
    if isinstance(node, Branch):
        for _k, v in node:
            _lists(v, out)
    elif isinstance(node, list):
        out.append(node)
        for v in node:
            _lists(v, out)
    return out


def m_list_element(docs: list[Branch], md: Branch, rnd: random.Random) -> set[str] | None:
    """Drop, duplicate or replace an element of a list (indices are not in the AAD: only the MAC can tell)."""
    cands = [lst for d in docs for lst in _lists(d, []) if any(_sig(x) for x in lst)]
    if not cands:
        return None
    lst = rnd.choice(cands)
    j = rnd.choice([i for i, x in enumerate(lst) if _sig(x)])
    op = rnd.choice(["drop", "dup", "replace"])
    if op == "drop":
        del lst[j]
    elif op == "dup":
        lst.insert(j, lst[j])
    else:
        others = [i for i, x in enumerate(lst) if _sig(x) and _sig(x) != _sig(lst[j])]
        if not others:
            del lst[j]
        else:
            lst[j] = lst[rnd.choice(others)]
    return {MAC}


def m_swap_values(docs: list[Branch], md: Branch, rnd: random.Random) -> set[str] | None:
    """Move an encrypted value under another key (the AAD binds it to its path)."""
    leaves = [leaf for leaf in _enc_leaves(docs) if isinstance(leaf[0], Branch)]
    pairs = [(a, b) for a in leaves for b in leaves if a[2] != b[2]]
    if not pairs:
        return None
    (ca, ia, _), (cb, ib, _) = rnd.choice(pairs)
    va, vb = _get(ca, ia), _get(cb, ib)
    _put(ca, ia, vb)
    _put(cb, ib, va)
    return {DECRYPT}


def m_unencrypted_value(docs: list[Branch], md: Branch, rnd: random.Random) -> set[str] | None:
    """Change a plaintext value left unencrypted by the rule (``*_unencrypted``): the MAC covers it."""
    cands = [(b, j) for d in docs for b in _branches(d, []) for j, (k, v) in enumerate(b)
             if isinstance(k, str) and k.endswith("_unencrypted") and isinstance(v, (str, int, float, bool))
             and not isinstance(v, bool) and v != ""]
    if not cands:
        return None
    b, j = rnd.choice(cands)
    k, v = b[j]
    b[j] = (k, str(v) + "x")
    return {MAC}


def m_lastmodified(docs: list[Branch], md: Branch, rnd: random.Random) -> set[str] | None:
    lm = md.get("lastmodified")
    sec = int(lm[17:19])
    md.set("lastmodified", f"{lm[:17]}{(sec + rnd.randrange(1, 59)) % 60:02d}{lm[19:]}")
    return {MAC}


def m_mac(docs: list[Branch], md: Branch, rnd: random.Random) -> set[str] | None:
    mac = md.get("mac")
    op = rnd.choice(["flip", "drop", "empty"])
    if op == "flip":
        fields = dict(f.split(":", 1) for f in mac[len("ENC[AES256_GCM,"):-1].split(","))
        part = rnd.choice(["data", "iv", "tag"])
        fields[part] = _flip_b64(fields[part], rnd)
        md.set("mac", "ENC[AES256_GCM," + ",".join(f"{k}:{v}" for k, v in fields.items()) + "]")
    elif op == "drop":
        md.remove_key("mac")
    else:
        md.set("mac", "")
    return {MAC}


def _age_entry(md: Branch) -> Branch:
    return md.get("age")[0]  # type: ignore[index]


def m_data_key(docs: list[Branch], md: Branch, rnd: random.Random) -> set[str] | None:
    """Flip a bit of the wrapped data key (the age file inside the armor)."""
    entry = _age_entry(md)
    from kvsops.keys.armor import armor, dearmor

    raw = bytearray(dearmor(entry.get("enc")))
    i = rnd.randrange(len(raw))
    raw[i] ^= 1 << rnd.randrange(8)
    entry.set("enc", armor(bytes(raw)))
    return {NO_KEY}


RULES = [("encrypted_suffix", "_unencrypted"), ("encrypted_suffix", "a"), ("unencrypted_suffix", "a"),
         ("unencrypted_regex", "^"), ("unencrypted_regex", "a"), ("encrypted_regex", "^[a-f]"),
         ("encrypted_comment_regex", "x"), ("unencrypted_comment_regex", "^")]


def m_rule(docs: list[Branch], md: Branch, rnd: random.Random) -> set[str] | None:
    """Change the selection rule (or mac_only_encrypted) recorded in the metadata."""
    if rnd.random() < 0.2:
        md.set("mac_only_encrypted", True)
        return {MAC}
    for kind in ("unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex",
                 "unencrypted_comment_regex", "encrypted_comment_regex"):
        md.remove_key(kind)
    kind, value = rnd.choice(RULES)
    md.insert(len(md) - 1, (kind, value))
    return {DECRYPT, MAC}


def m_recipient(docs: list[Branch], md: Branch, rnd: random.Random, *, other: str = "") -> set[str] | None:
    _age_entry(md).set("recipient", other)
    return {NO_KEY}


MUTATIONS: dict[str, Mutation] = {
    "data": _flip_part("data"), "iv": _flip_part("iv"), "tag": _flip_part("tag"), "type-tag": m_type_tag,
    "key-name": m_key_rename, "key-order": m_key_order, "list-element": m_list_element,
    "moved-value": m_swap_values, "unencrypted-value": m_unencrypted_value, "lastmodified": m_lastmodified,
    "mac": m_mac, "wrapped-data-key": m_data_key, "selection-rule": m_rule, "recipient": m_recipient,
}
# Changes that may be invisible by construction (the new rule selects the same leaves; the new type
# reads the same bytes): accepted only when the output is byte-identical to the original plaintext.
# Swapping two keys whose values have the same bytes, or replacing a list element by an equal one,
# is invisible to the MAC too (ciphertexts differ, plaintexts do not): accepted when the result is
# the same mapping (key order aside) or the same file.
MAY_BE_NOOP = {"selection-rule", "type-tag", "key-order", "list-element"}

stats: dict[str, int] = {}


def _tamper(keyring: Keyring, fmt: str, docs: list[Branch], name: str, rnd: random.Random,
            data: bytes | None = None) -> tuple[bytes, set[str]] | None:
    data = keyring.encrypt(docs, fmt) if data is None else data
    enc_docs, md = stores.get(fmt).load_encrypted(data)
    mutate = MUTATIONS[name]
    if name == "recipient":
        expected = m_recipient(enc_docs, md, rnd, other=keyring.other.recipient)
    else:
        expected = mutate(enc_docs, md, rnd)
    if expected is None:
        return None
    try:
        return stores.get(fmt).emit_encrypted(enc_docs, md), expected
    except errors.KvsopsError:
        return None  # the store cannot even write this change (e.g. a duplicate key): nothing to decrypt


def _check(keyring: Keyring, fmt: str, docs: list[Branch], name: str, rnd: random.Random,
           data: bytes | None = None) -> bool:
    """Apply one change; False when it does not apply to this tree."""
    original = api.emit_plain(docs, fmt)
    made = _tamper(keyring, fmt, docs, name, rnd, data)
    if made is None:
        stats["not-applicable"] = stats.get("not-applicable", 0) + 1
        return False
    tampered, expected = made
    record(CAT, cases=1)
    try:
        out_docs = keyring.decrypt_docs(tampered, fmt)
    except errors.KvsopsError as exc:
        assert exc.code in expected, f"{name}: got {exc.code} ({exc}), expected one of {sorted(expected)}"
        return True
    assert name in MAY_BE_NOOP, f"{name}: tampered {fmt} file decrypted"
    if name == "type-tag":  # a format limit: the MAC covers each value's bytes, not its type tag
        assert _leaf_bytes(out_docs) == _leaf_bytes(docs), f"{name}: decrypted to DIFFERENT bytes"
    elif name == "key-order":
        from kvsops.sops.tree import to_plain

        assert [to_plain(d) for d in out_docs] == [to_plain(d) for d in docs], f"{name}: DIFFERENT mapping"
    else:
        out = api.emit_plain(out_docs, fmt)
        assert out == original, f"{name}: tampered {fmt} file decrypted to a DIFFERENT plaintext"
    stats[f"{name}-noop"] = stats.get(f"{name}-noop", 0) + 1
    return True


def _leaf_bytes(v: Any) -> list[bytes]:
    if isinstance(v, Branch):
        return [b for _k, x in v for b in _leaf_bytes(x)]
    if isinstance(v, list):
        return [b for x in v for b in _leaf_bytes(x)]
    return [] if v is None else [values.to_bytes(v)]


@pytest.mark.parametrize("fmt", stores.FORMATS)
def test_one_change_never_decrypts(keyring: Keyring, fmt: str) -> None:
    names = sorted(MUTATIONS)

    @FUZZ
    @given(docs=TREES[fmt], picked=st.lists(st.sampled_from(names), min_size=PER_TREE, max_size=PER_TREE, unique=True),
           rnd=st.randoms(use_true_random=False))
    def run(docs: list[Branch], picked: list[str], rnd: random.Random) -> None:
        data = keyring.encrypt(docs, fmt)  # one encryption, PER_TREE independent changes of it
        for name in picked:
            _check(keyring, fmt, docs, name, rnd, data)

    run()


def test_every_mutation_applies_somewhere(keyring: Keyring) -> None:
    """Guard against a fuzzer that silently skips: each mutation fires and fails on a rich tree."""
    doc = Branch([("a", Branch([("b", "s3cret"), ("c", [1, "two", 3.5, True])])), ("d_unencrypted", "plain"),
                  ("e", "other")])
    for fmt, docs in (("yaml", [doc]), ("json", [doc]), ("dotenv", [Branch([("A", "x"), ("B", "y")])]),
                      ("ini", [Branch([("DEFAULT", Branch()), ("s", Branch([("a", "x"), ("b", "y")]))])]),
                      ("binary", [Branch([("data", "blob")])])):
        applied = {name for name in MUTATIONS for seed in range(6)
                   if _check(keyring, fmt, _deep_copy(docs), name, random.Random(seed))}
        flat_only = {"list-element", "unencrypted-value"} if fmt != "yaml" and fmt != "json" else set()
        if fmt == "binary":
            flat_only |= {"key-order", "moved-value"}
        assert applied >= set(MUTATIONS) - flat_only, (fmt, set(MUTATIONS) - applied)


def _deep_copy(v: Any) -> Any:
    if isinstance(v, Branch):
        return Branch((k, _deep_copy(x)) for k, x in v)
    if isinstance(v, list):
        return [_deep_copy(x) for x in v]
    return v


# ----------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("name", ["data", "key-name", "list-element", "lastmodified", "mac", "wrapped-data-key",
                                  "recipient", "selection-rule"])
def test_cli_exit_code_and_empty_stdout(keyring: Keyring, tmp_path: Path, name: str) -> None:
    secret = canary("tamper")
    docs = [Branch([("db", Branch([("password", secret), ("hosts", ["a", "b", "c"])])), ("user", "app")])]
    made = None
    for seed in range(20):
        made = _tamper(keyring, "yaml", _deep_copy(docs), name, random.Random(seed))
        if made:
            break
    assert made
    data, expected = made
    f = tmp_path / "s.enc.yaml"
    f.write_bytes(data)
    env = clean_env(tmp_path / "home", age=keyring.age)
    proc = subprocess.run([KVSOPS, "decrypt", str(f)], env=env, capture_output=True, timeout=60)
    record(CAT, cases=1, leaked=len(leaks(proc.stderr, [secret])))
    codes = {c: getattr(errors, n).exit_code for n in dir(errors) for c in [getattr(getattr(errors, n), "code", None)]
             if isinstance(getattr(errors, n), type) and c}
    assert proc.stdout == b""
    assert proc.returncode in {codes[c] for c in expected}, (proc.returncode, proc.stderr)
    assert any(f"[{c}]".encode() in proc.stderr for c in expected), proc.stderr
    assert not leaks(proc.stderr, [secret])


# ----------------------------------------------------------------------------------- format limits


def test_format_limits_are_what_sops_has(keyring: Keyring) -> None:
    """Not authenticated by the SOPS MAC (documented in SECURITY.md, identical in sops): key names of
    unencrypted values, null values, empty strings, and a type tag that reads the same bytes."""
    base = [Branch([("a_unencrypted", "x"), ("b", "1.5"), ("c", Branch([("d", "v")]))])]
    data = keyring.encrypt(base, "yaml")

    def variant(change: Callable[[list[Branch], Branch], None]) -> bytes:
        docs, md = stores.get("yaml").load_encrypted(data)
        change(docs, md)
        return keyring.decrypt(stores.get("yaml").emit_encrypted(docs, md), "yaml")

    renamed = variant(lambda d, m: d[0].__setitem__(0, ("z_unencrypted", "x")))
    assert b"z_unencrypted: x" in renamed
    added_null = variant(lambda d, m: d[0].append(("extra", None)))
    assert b"extra: null" in added_null
    added_empty = variant(lambda d, m: d[0].append(("extra", "")))
    assert b'extra: ""' in added_empty

    def retype(d: list[Branch], m: Branch) -> None:
        v = d[0].get("b")
        d[0].set("b", v.replace("type:str", "type:float"))

    assert b"b: 1.5\n" in variant(retype)  # was the string "1.5": same bytes, now a float
    record(CAT, cases=4)


MANIFESTS = """apiVersion: v1
kind: Secret
metadata:
    name: db
    namespace: team-a
stringData:
    password: hunter2
---
apiVersion: v1
kind: ConfigMap
metadata:
    name: settings
data:
    mode: fast
"""
APPENDED = """---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
    name: added
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: User, name: mallory}]
"""


@pytest.mark.parametrize("mac_only", [True, False], ids=["mac_only_encrypted", "full-mac"])
def test_mac_only_encrypted_covers_values_only(tmp_path: Path, tools: Any, mac_only: bool) -> None:
    """SECURITY.md, 'What is not protected': with mac_only_encrypted: true the MAC covers encrypted
    values only, so a committer can move a Secret to another namespace or append a whole document
    without any key, and it still renders -- in sops 3.11 exactly as in kvsops (files made by each,
    decrypted by both, and through the KRM function). Without the option both refuse."""
    age = AgeKey(tmp_path / "k")
    work = tmp_path / "w"
    work.mkdir()
    (work / ".sops.yaml").write_text(f"creation_rules:\n  - encrypted_regex: ^(data|stringData)$\n"
                                     f"    mac_only_encrypted: {str(mac_only).lower()}\n    age: {age.recipient}\n")
    (work / "plain.yaml").write_text(MANIFESTS)
    env = clean_env(tmp_path / "home", age=age)
    sops_env = tools.env(**env)

    def sops(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([tools.sops, *args], cwd=work, env=sops_env, capture_output=True, timeout=60, check=False)

    def kvsops(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([KVSOPS, *args], cwd=work, env=env, capture_output=True, timeout=60, check=False)

    made = {"sops": sops("-e", "plain.yaml").stdout, "kvsops": kvsops("encrypt", "plain.yaml").stdout}
    for maker, data in made.items():
        assert b"mac_only_encrypted: true" in data if mac_only else b"mac_only_encrypted" not in data
        for change, edited, shows in (
            ("namespace", data.replace(b"namespace: team-a", b"namespace: kube-system"), b"namespace: kube-system"),
            ("appended", data + APPENDED.encode(), b"name: mallory"),
        ):
            (work / "edited.enc.yaml").write_bytes(edited)
            ours, theirs = kvsops("decrypt", "edited.enc.yaml"), sops("-d", "edited.enc.yaml")
            record(CAT, cases=2)
            what = f"{maker}-made, {change}"
            if mac_only:
                assert theirs.returncode == 0 and shows in theirs.stdout, what
                assert ours.returncode == 0 and ours.stdout == theirs.stdout, f"{what}: {ours.stderr!r}"
                assert b"password: hunter2" in ours.stdout
            else:
                assert theirs.returncode != 0 and b"MAC mismatch" in theirs.stderr, what
                assert ours.returncode == 51 and b"[MAC_MISMATCH]" in ours.stderr and ours.stdout == b"", what
    if mac_only:  # the render itself: kustomize's generator puts the Secret where the committer says
        (work / "gen.yaml").write_text("apiVersion: viaduct.ai/v1\nkind: ksops\nmetadata: {name: g}\n"
                                       "files: [edited.enc.yaml]\n")
        (work / "edited.enc.yaml").write_bytes(made["sops"].replace(b"namespace: team-a", b"namespace: kube-system"))
        r = subprocess.run([str(Path(KVSOPS).parent / "kvsops-krm"), "gen.yaml"], cwd=work, env=env,
                           capture_output=True, timeout=60, check=False)
        assert r.returncode == 0 and b"namespace: kube-system" in r.stdout, r.stderr
