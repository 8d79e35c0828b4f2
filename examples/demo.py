#!/usr/bin/env python3
"""End-to-end demo with the bundled DEMO age key (public, never for real secrets).

1. encrypt a sample with `kvsops encrypt` and show the SOPS file;
2. decrypt it with `kvsops decrypt` (and with the real sops binary, when installed);
3. render the kustomize example with real kustomize, kvsops as the KRM function;
4. render the Helm example: values through the kvsops downloader into Helm's template engine;
5. run the Argo CD plugin's generate on the example app.

Run it through `scripts/demo.sh`, which installs what it needs first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DEMO_KEY = EXAMPLES / "keys" / "demo-age-key.txt"
BIN = Path(sys.executable).parent


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def demo_env() -> dict[str, str]:
    env = dict(os.environ)
    tools = ROOT / ".tools" / "bin"
    env["PATH"] = os.pathsep.join([str(BIN), str(tools), env.get("PATH", "")])
    env["SOPS_AGE_KEY_FILE"] = str(DEMO_KEY)
    env["SOPS_DISABLE_VERSION_CHECK"] = "1"
    return env


def run(argv: list[str], *, cwd: Path | None = None, check: bool = True) -> str:
    print("$ " + " ".join(str(a) for a in argv), flush=True)
    proc = subprocess.run(argv, cwd=cwd, env=demo_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        if check:
            raise SystemExit(f"demo step failed (exit {proc.returncode})")
    return proc.stdout


def recipient() -> str:
    for line in DEMO_KEY.read_text().splitlines():
        if line.startswith("# public key: "):
            return line.split(": ", 1)[1].strip()
    raise SystemExit("demo key has no public key line")


def step_cli(work: Path) -> None:
    banner("1. kvsops encrypt (demo age key)")
    plain = EXAMPLES / "demo" / "app-secrets.yaml"
    enc = work / "app-secrets.enc.yaml"
    enc.write_text(run([str(BIN / "kvsops"), "encrypt", "--age", recipient(), str(plain)]))
    print(enc.read_text())
    banner("2. kvsops decrypt")
    print(run([str(BIN / "kvsops"), "decrypt", str(enc)]))
    sops = shutil.which("sops", path=demo_env()["PATH"])
    if sops:
        banner("2b. the real sops decrypts what kvsops wrote")
        print(run([sops, "-d", str(enc)]))


def step_kustomize() -> None:
    overlay = EXAMPLES / "kustomize" / "overlay"
    kustomize = shutil.which("kustomize", path=demo_env()["PATH"])
    if not overlay.is_dir() or not kustomize:
        return
    banner("3. kustomize build with kvsops as the KRM function (nothing decrypted on disk)")
    out = run([kustomize, "build", "--enable-alpha-plugins", "--enable-exec", str(overlay)])
    print(out)
    print(decoded_example(out))


def decoded_example(stream: str) -> str:
    """One value of the rendered Secrets, base64-decoded, so a reader sees the plaintext arrived."""
    import base64

    import yaml

    for obj in yaml.safe_load_all(stream):
        if isinstance(obj, dict) and obj.get("kind") == "Secret" and obj.get("data"):
            key = sorted(obj["data"])[0]
            value = base64.b64decode(obj["data"][key]).decode("utf-8", "replace")
            return (f"# Secret {obj['metadata']['name']}: data.{key} is base64; decoded, as the cluster will see it:\n"
                    f"#   {value!r}")
    raise SystemExit("demo: the kustomize output has no Secret with data")


def step_helm() -> None:
    script = EXAMPLES / "helm" / "render.py"
    if not script.is_file():
        return
    banner("4. Helm: secrets:// values through the kvsops downloader, rendered by Helm's engine")
    print(run([sys.executable, str(script)], cwd=script.parent))


def step_argocd() -> None:
    script = EXAMPLES / "argocd" / "render.py"
    if not script.is_file():
        return
    banner("5. Argo CD config management plugin: generate")
    print(run([sys.executable, str(script)], cwd=script.parent))


def main() -> int:
    print("kvsops demo. The age key in examples/keys/ is a PUBLIC DEMO KEY: never use it for real secrets.")
    with tempfile.TemporaryDirectory(prefix="kvsops-demo-") as tmp:
        step_cli(Path(tmp))
    step_kustomize()
    step_helm()
    step_argocd()
    banner("done")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
