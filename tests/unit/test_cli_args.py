"""kvsops.cli.common.Args is what the parser gives: one field per argparse destination, with its default.

The command functions are typed against Args; kvsops.cli.main builds one for ``kvsops decrypt FILE``
without the parser, and sops' flag form (kvsops.cli.legacy) fills a subclass. These tests tie
the three to kvsops.cli.parser: a new flag without a field, or a field whose default drifts from
argparse's, fails here.
"""

from __future__ import annotations

import argparse

import pytest

from kvsops import keys
from kvsops.cli import legacy, main, parser
from kvsops.cli.common import Args

# fields the parser does not set (set_defaults' func aside): see their comments in kvsops.cli.common.Args
NOT_PARSED = {"use_agent", "show_master_keys"}


def key_dests() -> set[str]:
    """The key types' flags: read through the kind table (getattr(args, row.dest)), not fields."""
    return {d for row in keys.backends() if row.flag for d in (row.dest, f"add_{row.dest}", f"rm_{row.dest}")}


def fields() -> dict[str, object]:
    """Args' fields and their defaults (annotations without a default map to ``...``)."""
    return {name: getattr(Args, name, ...) for name in Args.__annotations__}


def parsers(top: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {"": top}
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def destinations(top: argparse.ArgumentParser) -> dict[str, dict[str, object]]:
    """Per (sub)command: destination -> default, for the actions that store a value."""
    out: dict[str, dict[str, object]] = {}
    for name, p in parsers(top).items():
        out[name] = {a.dest: a.default for a in p._actions
                     if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))
                     and a.dest != argparse.SUPPRESS}
    return out


def mismatches(top: argparse.ArgumentParser) -> list[str]:
    have = fields()
    skip = key_dests()
    dests = destinations(top)
    problems = []
    for command, per in dests.items():
        for dest, default in per.items():
            if default is argparse.SUPPRESS:  # the subcommand leaves the top-level parser's value
                default = dests[""].get(dest, have.get(dest))
            if dest in skip:
                continue
            if dest not in have:
                problems.append(f"{command or 'kvsops'}: {dest} has no field in Args")
            elif have[dest] != default:
                problems.append(f"{command or 'kvsops'}: {dest} defaults to {default!r}, Args to {have[dest]!r}")
    return problems


def test_every_destination_is_a_field_with_argparses_default() -> None:
    assert mismatches(parser.build()) == []


def test_a_flag_without_a_field_fails_the_check() -> None:
    built = parser.build()
    parsers(built)["decrypt"].add_argument("--brand-new-flag", help="no field in Args")
    parsers(built)["rotate"].add_argument("--yes", type=int, default=3, dest="yes")
    assert mismatches(built) == ["decrypt: brand_new_flag has no field in Args",
                                 "rotate: yes defaults to 3, Args to False"]


def test_every_field_is_a_destination_or_said_to_be_none() -> None:
    dests = {d for per in destinations(parser.build()).values() for d in per}
    assert set(fields()) - dests == NOT_PARSED | {"func"}
    assert fields()["func"] is ...  # set by every subcommand's set_defaults, no default of its own


@pytest.mark.parametrize("argv,given", [
    (["decrypt", "f.yaml"], {"file": "f.yaml"}),
    (["encrypt", "f.yaml"], {"file": "f.yaml"}),
    (["edit", "f.yaml"], {"file": "f.yaml"}),
    (["set", "f.yaml", '["a"]', "1"], {"file": "f.yaml", "index": '["a"]', "value": "1"}),
    (["unset", "f.yaml", '["a"]'], {"file": "f.yaml", "index": '["a"]'}),
    (["updatekeys"], {"paths": []}),  # argparse's nargs="*" gives [] for no argument
    (["rotate", "-i", "f.yaml"], {"paths": ["f.yaml"], "in_place": True}),
    (["filestatus", "f.yaml"], {"file": "f.yaml"}),
    (["keygen"], {}),
    (["check"], {"paths": []}),
], ids=lambda v: v[0] if isinstance(v, list) else "")
def test_parse_fills_an_args(argv: list[str], given: dict[str, object]) -> None:
    ns = parser.parse(argv)
    assert type(ns) is Args and callable(ns.func)
    want = {**fields(), "command": argv[0], **given}
    for name in fields():
        if name != "func":
            assert getattr(ns, name) == want[name], name


def test_the_decrypt_fast_path_builds_what_the_parser_gives() -> None:
    """``kvsops decrypt FILE`` skips argparse (kvsops.cli.main): same fields, same values."""
    fast = main.decrypt_args("f.yaml")
    parsed = parser.parse(["decrypt", "f.yaml"])
    assert parsed is not None
    for name in fields():
        if name != "func":
            assert getattr(fast, name) == getattr(parsed, name), name
    assert set(vars(fast)) <= set(fields())


def test_legacy_flags_are_fields_with_the_same_defaults() -> None:
    """sops' flag form: every flag is a field of legacy.Namespace (or Args, with the same default)."""
    annotated = set(legacy.Namespace.__annotations__) | set(Args.__annotations__)
    key_changes = set(legacy._KEY_CHANGES)
    flags = {dest for _kind, dest in legacy.FLAGS.values()}
    assert flags - annotated - key_dests() - key_changes == set()
    ns = legacy.Namespace()
    for name, default in fields().items():
        if name in flags:
            assert getattr(ns, name) == default, name
