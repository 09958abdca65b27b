#!/usr/bin/env bash
# The package as a user installs it: build the sdist and the wheel (python -m build), install the wheel (not
# editable) into a fresh venv outside the repository, and there run a shipped config by name (lsrl fit --config
# sac, 300 steps on Pendulum-v1), the tutorial front, lsrl export and lsrl view of the policy file (a video).
# Usage: bash scripts/package_check.sh   (about 2 minutes; needs .venv from scripts/setup.sh for `build`)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
wheel=$(ls "$work"/dist/*.whl)
echo "Built $(basename "$(ls "$work"/dist/*.tar.gz)") and $(basename "$wheel") ($(unzip -l "$wheel" | tail -1 | awk '{print $2}') files," \
  "$(unzip -l "$wheel" | grep -c 'lightning_sparse_rl/configs/.*\.yaml') shipped configs)"
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel"
cd "$work"  # outside the repository: nothing of the clone is on the path
export MUJOCO_GL=${MUJOCO_GL:-egl} OMP_NUM_THREADS=1
lsrl=$work/venv/bin/lsrl
"$work/venv/bin/python" - "$repo" <<'EOF'
import sys
from pathlib import Path
import lightning_sparse_rl
from lightning_sparse_rl import shipped_configs
assert not Path(lightning_sparse_rl.__file__).is_relative_to(sys.argv[1]), lightning_sparse_rl.__file__
assert shipped_configs.configs_folder().is_relative_to(Path(lightning_sparse_rl.__file__).parent)
print("Installed package:", Path(lightning_sparse_rl.__file__).parent)
EOF
"$lsrl" --version
"$lsrl" configs >configs.txt && head -3 configs.txt
short=(--data.env_id Pendulum-v1 --data.start_timesteps 100 --data.max_timesteps 300 --data.eval_freq 150
  --data.eval_episodes 1 --data.buffer_size 1000 --model.init_args.hidden_width 32)
"$lsrl" fit --config sac "${short[@]}" >fit.log 2>&1 || { tail -40 fit.log; exit 1; }
if grep -q $'\r' fit.log; then echo "carriage returns (a progress bar) in fit.log"; exit 1; fi
checkpoint=$(ls runs/*/version_0/checkpoints/last.ckpt)
echo "lsrl fit --config sac: $(tail -1 runs/*/version_0/evaluations.csv) (last evaluation), $checkpoint"
"$work/venv/bin/python" -m lightning_sparse_rl.main --policy SAC --env Pendulum-v1 --start_timesteps 100 \
  --max_timesteps 300 --eval_freq 150 --eval_episodes 1 --batch_size 32 --wandb_mode disabled >tutorial.log 2>&1 \
  || { tail -40 tutorial.log; exit 1; }
echo "tutorial front: $(grep -c '^Evaluation over' tutorial.log) evaluations"
"$lsrl" export "$checkpoint" policy.pt
"$lsrl" view policy.pt --record episode.mp4 --episodes 1
test -s episode.mp4
echo "Package check passed: wheel installed outside the repository, shipped config, tutorial front, export, view"
