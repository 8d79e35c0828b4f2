#!/usr/bin/env bash
# The benchmark suite: kvsops vs the real sops binary in one run (see bench/run.py for the cases).
#
#   bash bench/run.sh            # default run, a few minutes
#   bash bench/run.sh --quick    # CI smoke
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -x "$ROOT/.venv/bin/python" ] && [ -x "$ROOT/.tools/bin/sops" ] || bash "$ROOT/scripts/setup.sh" >&2
export KVSOPS_TOOLS="$ROOT/.tools/bin"
exec "$ROOT/.venv/bin/python" "$ROOT/bench/run.py" "$@"
