#!/usr/bin/env bash
# Run the test suite against the real peer tools.
#
#   bash scripts/test.sh                  # whole tests/ dir, -q, -n 2
#   bash scripts/test.sh tests/unit -x    # any pytest arguments pass through
#
# Runs scripts/setup.sh first (fast when already done). pytest's exit code 5
# ("no tests collected") is reported as a failure, never as success.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

bash scripts/setup.sh >&2

export PATH="$ROOT/.tools/bin:$ROOT/.venv/bin:$PATH"
export KVSOPS_TOOLS="$ROOT/.tools/bin"
export SOPS_DISABLE_VERSION_CHECK=1   # sops must not phone home from tests

if [ $# -eq 0 ]; then
    set -- tests -q
    # pytest-xdist: two workers on the 2-core machines (KVSOPS_TEST_WORKERS=0 for serial).
    workers=${KVSOPS_TEST_WORKERS:-2}
    if [ "$workers" != 0 ] && .venv/bin/python -c 'import xdist' 2>/dev/null; then
        set -- "$@" -n "$workers"
    fi
fi

rc=0
.venv/bin/python -m pytest "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
    echo "test.sh: FAILED: pytest collected no tests (exit 5)" >&2
fi
exit "$rc"
