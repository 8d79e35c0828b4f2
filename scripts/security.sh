#!/usr/bin/env bash
# The security suite alone (issue 7), with its summary table at the end:
#
#   bash scripts/security.sh                          # tests/security, -n 2
#   KVSOPS_FUZZ_EXAMPLES=5000 bash scripts/security.sh  # nightly-style: more trees, random seed
#
# scripts/test.sh runs the same tests as part of tests/ and prints the same table.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if [ $# -eq 0 ]; then
    set -- tests/security -q -n "${KVSOPS_TEST_WORKERS:-2}"
fi
exec bash scripts/test.sh "$@"
