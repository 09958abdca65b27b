#!/usr/bin/env bash
# The GPU checks, in under 8 minutes on one GPU: the tests that need CUDA, then the population throughput
# harness on the GPU (agent-steps/s of K = 1 and 32 agents, fp32 and bf16-mixed, and K = 1 with CUDA graphs
# through torch.compile's reduce-overhead mode). Paste the printed tables into an issue or docs/performance.md.
# Usage: bash scripts/gpu_check.sh [output folder]   (default: gpu_check/; the JSON report goes there)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu_check}
mkdir -p "$out"
bash scripts/setup.sh
.venv/bin/python - <<'EOF'
import torch
if not torch.cuda.is_available():
    raise SystemExit("error: no CUDA device: torch " + torch.__version__ + " sees none (a CPU build of torch?)")
print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF
# The GPU tests: every test that asks for a GPU is skipped without one and runs here.
.venv/bin/python -m pytest -q -n 2 -k "gpu or cuda" tests 2>&1 | tee "$out/gpu_tests.txt"
.venv/bin/python benchmarks/throughput.py --suite population --device cuda --threads 1 --rounds 2 \
  --steps 1000 --skip 200 --learning-starts 1000 --agents 1 32 --cuda-graphs \
  --json "$out/gpu_population.json" 2>&1 | grep -v "^  \[" | tee "$out/gpu_population.txt"
