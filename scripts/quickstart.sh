#!/usr/bin/env bash
# Set up .venv and train dense SAC on HalfCheetah-v5 for a few minutes (configs/quickstart.yaml).
# Extra arguments are passed to `lsrl fit`, e.g. `bash scripts/quickstart.sh --seed_everything 1`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/lsrl fit --config configs/quickstart.yaml "$@"
