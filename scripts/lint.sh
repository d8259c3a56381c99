#!/usr/bin/env bash
# The code checks CI runs before the tests: ruff (lint and format) over the tree, mypy over the
# parts that run on a Pi (edge_har/core, edge_har/mqtt, edge_har/device, the CLI; see pyproject.toml).
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
