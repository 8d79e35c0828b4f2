"""``kvsops decrypt FILE`` through the agent: the file is read here and sent; the agent parses,
decrypts, checks the MAC and emits. Nothing heavier than the agent client is imported (no YAML,
no crypto, no Azure SDK), and every step that can fail here fails as it does in-process, in the same
order (the file, then the decryption, then ``.sops.yaml``'s ``stores`` block)."""

from __future__ import annotations

import os

from kvsops import errors
from kvsops.agent import client
from kvsops.cli import common
from kvsops.sops import stores


def decrypt_file(link: client.Link, name: str) -> bool:
    """True once the plaintext is on stdout; False when the agent could not serve (the caller
    then works in-process); a KvsopsError as it would be raised in-process."""
    path = common.existing_file(name)
    fmt = stores.detect(path)
    data = common.read_file(path)
    config: dict[str, object] | None = None
    deferred: errors.KvsopsError | None = None
    try:  # in-process, .sops.yaml is looked at after the decryption: its errors come second
        found = common.indent_config(fmt)
    except errors.KvsopsError as exc:
        found, deferred = None, exc
    if found is not None:
        config = {"path": found[0], "data": found[1], "attr": found[2]}
    env = os.environ
    request = {"op": "decrypt", "data": data, "fmt": fmt, "out": fmt, "where": common.display(path),
               "indent": None, "config": config, "ignore_mac": False,
               "session": client.session_spec(env, policy=False)}
    out = link.answer_bytes(request, client.wait_for(client.env_deadline_ms(env)))
    if out is None:
        return False
    if deferred is not None:
        raise deferred
    common.write_stdout(out)
    return True
