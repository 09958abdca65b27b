"""The parity table: evaluation returns of the fp32 and bf16-mixed populations, mean and 95 % Student-t interval.

Usage: ``python results/population_parity/table.py`` (reads the two evaluations_*.csv next to it).
"""

import csv
from pathlib import Path

import numpy as np

from lightning_sparse_rl.plots import mean_confidence_band

rows = []
HERE = Path(__file__).resolve().parent
for label, name in (("fp32", "evaluations_fp32.csv"), ("bf16-mixed", "evaluations_bf16.csv")):
    with open(HERE / name) as f:
        table = list(csv.DictReader(f))
    steps = sorted({int(r["step"]) for r in table})
    for step in [s for s in steps if s % 25000 == 0] or steps[-1:]:
        returns = np.array([float(r["return"]) for r in table if int(r["step"]) == step])
        mean, half = mean_confidence_band(returns[:, None])
        per_seed = ", ".join(f"{v:.0f}" for v in returns)
        rows.append((label, step, len(returns), mean[0], mean[0] - half[0], mean[0] + half[0], per_seed))
print("| precision | training steps | agents | mean return | 95 % interval | per seed (1-8) |")
print("|---|---|---|---|---|---|")
for label, step, n, mean, low, high, per_seed in rows:
    print(f"| {label} | {step:,} | {n} | {mean:.0f} | [{low:.0f}, {high:.0f}] | {per_seed} |")
