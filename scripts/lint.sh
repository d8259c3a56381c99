#!/usr/bin/env bash
# The code checks CI runs before the tests: ruff (lint and format) over the tree, mypy over every
# installed module (edge_har/, convert/ and benchmarks/ as edge_har.convert and edge_har.benchmarks
# through typecheck/; see [tool.mypy] in pyproject.toml).
#   scripts/lint.sh          # check
#   scripts/lint.sh --fix    # apply ruff's fixes and formatting, then check
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${EDGE_HAR_VENV:-.venv}"
if [ "${1:-}" = "--fix" ]; then
  "$VENV/bin/ruff" check --fix .
  "$VENV/bin/ruff" format .
fi
echo "lint: ruff check"
"$VENV/bin/ruff" check .
echo "lint: ruff format --check"
"$VENV/bin/ruff" format --check .
echo "lint: mypy"
"$VENV/bin/mypy"
