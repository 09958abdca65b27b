#!/usr/bin/env bash
# Create .venv at the repository root and install lightning-sparse-rl into it (idempotent:
# reinstalls only when setup.cfg, setup.py or pyproject.toml changed). torch is pinned to 2.13.0; a CUDA
# build of torch 2.13.0 already in .venv (e.g. 2.13.0+cu128) satisfies the pin and is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.lsrl-install-stamp
want=$(cat setup.cfg setup.py pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0" \
    || .venv/bin/python -c "import torch" # keep a torch build the user installed on purpose
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev,sweep,docs]"
  echo "$want" > "$stamp"
fi
echo "lightning-sparse-rl is installed in $(pwd)/.venv"
