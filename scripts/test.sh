#!/usr/bin/env bash
# The project's checks: install, lint (ruff), type-check (mypy --strict), then the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"; .venv/bin/ruff check src tests bench
.venv/bin/ruff format --check --quiet src tests bench
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; .venv/bin/python -m pytest -q "$@"
