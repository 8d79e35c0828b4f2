"""Run the emulator in the foreground for an offline demo: ``python -m tests.azure_emulator``.

Prints the environment a shell needs (trust, identity, vault URL) and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import threading

from .server import KeyVaultEmulator


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.azure_emulator")
    p.add_argument("--port", type=int, default=0, help="HTTPS port (vault + token authority); 443 needs root")
    p.add_argument("--mi-port", type=int, default=0, help="plain-HTTP managed-identity port")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--vault-host", default=None, help="host name to print in the vault URL (e.g. an /etc/hosts alias)")
    p.add_argument("--key", default="sops-key", help="key to create at start-up")
    p.add_argument("--identity", choices=("managed", "workload"), default="managed")
    p.add_argument("--secret", action="append", default=[], metavar="NAME=VALUE",
                   help="secret to create at start-up (repeatable), for ref+azurekeyvault:// references")
    args = p.parse_args(argv)

    emu = KeyVaultEmulator(host=args.host, port=args.port, mi_port=args.mi_port).start()
    version = emu.create_key(args.key, key_ops=("encrypt", "decrypt"))
    for item in args.secret:
        name, _, value = item.partition("=")
        emu.set_secret(name, value)
    env = emu.base_env(isolate=False)
    if args.identity == "managed":
        env.update(emu.managed_identity_env())
    else:
        from pathlib import Path
        token_file = Path(emu.ca_path).parent / "federated-token"
        env.update(emu.workload_identity_env("demo-client", token_file))
    if not args.vault_host or not args.vault_host.endswith((".vault.azure.net", ".managedhsm.azure.net")):
        env["KVSOPS_AZURE_VERIFY_CHALLENGE_RESOURCE"] = "false"
    print("# Key Vault emulator (test CA, throwaway keys). Paste into a shell:")
    for k, v in env.items():
        print(f"export {k}={shlex.quote(v)}")
    print(f"# key: {emu.key_url(args.key, version, host=args.vault_host)}")
    print(f"# versionless: {emu.key_url(args.key, host=args.vault_host)}")
    for item in args.secret:
        print(f"# secret: ref+azurekeyvault://{emu.vault_url(args.vault_host).removeprefix('https://')}/{item.partition('=')[0]}")
    print("# Ctrl-C to stop", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
