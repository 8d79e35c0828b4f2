#!/usr/bin/env bash
# Run the end-to-end demo (examples/demo.py) against the real peer tools.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

bash scripts/setup.sh >&2

export PATH="$ROOT/.tools/bin:$ROOT/.venv/bin:$PATH"
export KVSOPS_TOOLS="$ROOT/.tools/bin"
export SOPS_DISABLE_VERSION_CHECK=1

if [ ! -f examples/demo.py ]; then
    echo "demo.sh: ERROR: examples/demo.py does not exist (yet)" >&2
    exit 1
fi
exec .venv/bin/python examples/demo.py "$@"
