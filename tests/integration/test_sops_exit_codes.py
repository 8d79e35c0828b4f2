"""Where sops refuses, kvsops refuses with the same exit code: a table of refusals run against the
real sops 3.11 and kvsops, each in its own copy of the same workspace (tests/integration/sops_table).

For every line: both exit with the same non-zero code, kvsops prints nothing on stdout and one
``kvsops: error: ... [CODE]`` line (plus hints/warnings) on stderr, and neither tool changed a file.

Left out on purpose (sops' behaviour is not a refusal worth copying): an ``--extract``/``set`` index
used on the wrong kind of node (sops 3.11 panics or picks a map item by position), ``set FILE '['``
(a panic), ``decrypt`` without a file (kvsops says no file was given; sops reads stdin as JSON), and
``--indent`` after a subcommand (kvsops accepts it there; sops only as a global flag).
"""

from __future__ import annotations

import pytest

from tests.integration.sops_table import Workspace, build_workspace

R = "$R"
# (argv, extra env, cwd); the argv may use $R (the workspace's age recipient).
REFUSALS: list[tuple[list[str], dict[str, str], str]] = [
    # decrypt: files that are not (valid) sops files
    (["decrypt", "plain.yaml"], {}, "."),
    (["decrypt", "empty.yaml"], {}, "."),
    (["decrypt", "ws.yaml"], {}, "."),
    (["decrypt", "bad.yaml"], {}, "."),
    (["decrypt", "seq.yaml"], {}, "."),
    (["decrypt", "scalar.yaml"], {}, "."),
    (["decrypt", "bad.json"], {}, "."),
    (["decrypt", "arr.json"], {}, "."),
    (["decrypt", "empty.json"], {}, "."),
    (["decrypt", "bad.env"], {}, "."),
    (["decrypt", "bad.ini"], {}, "."),
    (["decrypt", "plain.bin"], {}, "."),
    (["decrypt", "plain.txt"], {}, "."),
    (["decrypt", "--input-type", "json", "enc.yaml"], {}, "."),
    (["decrypt", "--input-type", "dotenv", "enc.yaml"], {}, "."),
    (["decrypt", "--input-type", "ini", "enc.yaml"], {}, "."),
    (["decrypt", "--input-type", "binary", "enc.yaml"], {}, "."),
    (["decrypt", "nonexistent.yaml"], {}, "."),
    (["decrypt", "dir"], {}, "."),
    # decrypt: valid files that do not decrypt
    (["decrypt", "tampered.yaml"], {}, "."),
    (["decrypt", "--ignore-mac", "tampered.yaml"], {}, "."),
    (["decrypt", "nomac.yaml"], {}, "."),
    (["decrypt", "badvalue.yaml"], {}, "."),
    (["decrypt", "otherkey.yaml"], {}, "."),
    (["decrypt", "enc_uint.yaml"], {}, "."),
    (["decrypt", "--ignore-mac", "enc_uint.yaml"], {}, "."),
    # decrypt: outputs that cannot be produced, bad options
    (["decrypt", "--output-type", "binary", "enc.yaml"], {}, "."),
    (["decrypt", "--output-type", "binary", "enc.json"], {}, "."),
    (["decrypt", "--output-type", "ini", "enc.json"], {}, "."),
    (["decrypt", "--extract", '["nope"]', "enc.yaml"], {}, "."),
    (["decrypt", "--extract", '["db"]["nope"]', "enc.yaml"], {}, "."),
    (["decrypt", "--extract", '["list"][7]', "enc.yaml"], {}, "."),
    (["decrypt", "--extract", "nope", "enc.yaml"], {}, "."),
    (["decrypt", "--decryption-order", "age,age", "enc.yaml"], {}, "."),
    (["decrypt", "--in-place", "--output", "out.yaml", "enc.yaml"], {}, "."),
    (["decrypt", "--output", "no/such/dir/out.yaml", "enc.yaml"], {}, "."),
    (["decrypt", "--no-such-flag", "enc.yaml"], {}, "."),
    (["decrypt", "enc.yaml"], {"SOPS_DECRYPTION_ORDER": "pgp,pgp"}, "."),
    # encrypt
    (["encrypt", "--age", R, "enc.yaml"], {}, "."),
    (["encrypt", "--age", R, "enc.json"], {}, "."),
    (["encrypt", "--age", R, "enc.env"], {}, "."),
    (["encrypt", "--age", R, "sops_key.yaml"], {}, "."),
    (["encrypt", "--age", R, "empty.yaml"], {}, "."),
    (["encrypt", "--age", R, "ws.yaml"], {}, "."),
    (["encrypt", "--age", R, "comment.yaml"], {}, "."),
    (["encrypt", "--age", R, "bad.yaml"], {}, "."),
    (["encrypt", "--age", R, "seq.yaml"], {}, "."),
    (["encrypt", "--age", R, "scalar.yaml"], {}, "."),
    (["encrypt", "--age", R, "big.yaml"], {}, "."),
    (["encrypt", "--age", R, "empty.json"], {}, "."),
    (["encrypt", "--age", R, "bad.json"], {}, "."),
    (["encrypt", "--age", R, "arr.json"], {}, "."),
    (["encrypt", "--age", R, "bad.env"], {}, "."),
    (["encrypt", "--age", R, "bad.ini"], {}, "."),
    (["encrypt", "--age", R, "--input-type", "json", "plain.yaml"], {}, "."),
    (["encrypt", "--age", R, "--input-type", "dotenv", "plain.yaml"], {}, "."),
    (["encrypt", "--age", R, "--output-type", "ini", "plain.yaml"], {}, "."),
    (["encrypt", "--age", R, "nonexistent.yaml"], {}, "."),
    (["encrypt", "--age", R, "dir"], {}, "."),
    (["encrypt", "plain.yaml"], {}, "."),
    (["encrypt", "--age", "age1notarecipient", "plain.yaml"], {}, "."),
    (["encrypt", "--age", "bogus", "plain.yaml"], {}, "."),
    (["encrypt", "--age", R, "--pgp", "0" * 40, "plain.yaml"], {}, "."),
    (["encrypt", "--age", R, "--encrypted-regex", "a", "--unencrypted-regex", "b", "plain.yaml"], {}, "."),
    (["encrypt", "--age", R, "--encrypted-suffix", "a", "--unencrypted-suffix", "b", "plain.yaml"], {}, "."),
    (["encrypt", "--age", R, "--in-place", "--output", "x.yaml", "plain.yaml"], {}, "."),
    (["encrypt", "--age", R], {}, "."),
    (["encrypt", "plain.yaml"], {}, "badcfg"),
    # rotate
    (["rotate", "plain.yaml"], {}, "."),
    (["rotate", "bad.yaml"], {}, "."),
    (["rotate", "empty.yaml"], {}, "."),
    (["rotate", "otherkey.yaml"], {}, "."),
    (["rotate", "tampered.yaml"], {}, "."),
    (["rotate", "nonexistent.yaml"], {}, "."),
    (["rotate", "--add-age", R, "nonexistent.yaml"], {}, "."),
    (["rotate", "--add-age", "bogus", "enc.yaml"], {}, "."),
    (["rotate", "--rm-age", R, "enc.yaml"], {}, "."),
    (["rotate", "--in-place", "--output", "x.yaml", "enc.yaml"], {}, "."),
    (["rotate"], {}, "."),
    # set / unset
    (["set", "enc.yaml", '["db"]', "not json"], {}, "."),
    (["set", "enc.yaml", "nope", "1"], {}, "."),
    (["set", "enc.yaml", '["db"]', "[1, 2]"], {}, "."),  # sops 3.11 sets no array as a whole
    (["set", "enc.yaml", '["db"]'], {}, "."),
    (["set", "enc.yaml"], {}, "."),
    (["set"], {}, "."),
    (["set", "--value-stdin", "enc.yaml", '["db"]', "1"], {}, "."),
    (["set", "--value-file", "--value-stdin", "enc.yaml", '["db"]'], {}, "."),
    (["set", "--value-file", "enc.yaml", '["db"]', "nonexistent.json"], {}, "."),
    (["set", "nonexistent.yaml", '["a"]', "1"], {}, "."),
    (["set", "plain.yaml", '["a"]', "1"], {}, "."),
    (["set", "bad.yaml", '["a"]', "1"], {}, "."),
    (["set", "otherkey.yaml", '["a"]', "1"], {}, "."),
    (["unset", "enc.yaml", '["nope"]'], {}, "."),
    (["unset", "enc.yaml", '["db"]["user"]["x"]'], {}, "."),
    (["unset", "enc.yaml", "nope"], {}, "."),
    (["unset", "enc.yaml"], {}, "."),
    (["unset", "nonexistent.yaml", '["a"]'], {}, "."),
    (["unset", "bad.yaml", '["a"]'], {}, "."),
    # edit
    (["edit", "enc.yaml"], {}, "."),  # the editor changes nothing: 200
    (["edit", "enc.yaml"], {"EDITOR_MODE": "fail"}, "."),
    (["edit", "plain.yaml"], {}, "."),
    (["edit", "bad.yaml"], {}, "."),
    (["edit", "otherkey.yaml"], {}, "."),
    (["edit", "dir"], {}, "."),
    (["edit", "new.yaml"], {}, "."),  # no keys for a new file
    (["edit"], {}, "."),
    # filestatus / updatekeys
    (["filestatus", "bad.yaml"], {}, "."),
    (["filestatus", "nonexistent.yaml"], {}, "."),
    (["filestatus"], {}, "."),
    (["updatekeys", "-y", "enc.yaml"], {}, "."),  # no .sops.yaml
    (["updatekeys", "-y"], {}, "cfg"),
    (["updatekeys", "-y", "nonexistent.yaml"], {}, "cfg"),
    (["updatekeys", "-y", "../otherkey.yaml"], {}, "cfg"),
    # a selection flag next to a different selection field of the creation rule (cfg: encrypted_regex)
    (["encrypt", "--unencrypted-suffix", "_x", "new.yaml"], {}, "cfg"),
    (["encrypt", "--encrypted-suffix", "_x", "new.yaml"], {}, "cfg"),
    (["encrypt", "--unencrypted-regex", "^x$", "new.yaml"], {}, "cfg"),
    (["-e", "--encrypted-comment-regex", "x", "new.yaml"], {}, "cfg"),
]


@pytest.fixture(scope="module")
def ws(tools, tmp_path_factory) -> Workspace:  # type: ignore[no-untyped-def]
    return build_workspace(tools, tmp_path_factory.mktemp("exit-codes"))


@pytest.mark.parametrize("argv, env, cwd", REFUSALS, ids=[" ".join(a) + (f" @{c}" if c != "." else "")
                                                         + "".join(f" {k}={v}" for k, v in e.items())
                                                         for a, e, c in REFUSALS])
def test_refusal_exit_code_matches_sops(ws: Workspace, argv: list[str], env: dict[str, str], cwd: str) -> None:
    theirs = ws.run("sops", argv, env=env, cwd=cwd)
    ours = ws.run("kvsops", argv, env=env, cwd=cwd)
    why = f"\nsops: {theirs.stderr.decode(errors='replace')[-600:]}\nkvsops: {ours.stderr.decode(errors='replace')}"
    assert theirs.code != 0, "the table lists refusals" + why
    assert ours.code == theirs.code, why
    assert ours.stdout == b""
    lines = ours.stderr.decode().splitlines()  # updatekeys prints the key diff first
    errors = [i for i, ln in enumerate(lines) if ln.startswith("kvsops: error: ")]
    assert len(errors) == 1 and lines[errors[0]].endswith("]"), lines
    assert all(ln.startswith("kvsops: hint: ") for ln in lines[errors[0] + 1:]), lines
    before = ws.files()
    assert theirs.files == before and ours.files == before, "a refusal changes no file"
