#!/usr/bin/env bash
# Set up .venv, check lint, formatting and import rules, and run the whole test suite (about 8 minutes on a 2-core AMD EPYC, set-up included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports  # the import rules in setup.cfg ([importlinter])
exec .venv/bin/python -m pytest -n 2 --dist loadgroup --durations=25 "$@"
