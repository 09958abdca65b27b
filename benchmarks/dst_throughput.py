"""Throughput cost of sparse training relative to dense SAC, measured side by side in one process.

Each configuration runs a real ``Trainer.fit`` of SAC on HalfCheetah-v5 (batch 100, 2x256, 1000 random
warm-up steps) for ``--steps`` training steps; the clock covers the training steps after the first
``--skip`` (no evaluation). Topology updates run every ``--period`` gradient updates, so the cost of the
updates and of keeping the target networks sparse afterwards is included. Configurations are interleaved
over ``--rounds`` rounds and each is reported as a ratio to dense SAC of the same round.

Usage: ``python benchmarks/dst_throughput.py [--steps 3000] [--rounds 2] [--threads 1] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import statistics

import lightning as L
import torch
from fit_timing import fit_steps_per_s

from lightning_sparse_rl import SAC, EnvDataModule
from lightning_sparse_rl.callbacks import DynamicSparsityCallback, SparsityDistributionCallback

#: name → (SparsityDistributionCallback kwargs or None for dense, dynamic sparse training on?)
CONFIGS: dict[str, tuple[dict | None, bool]] = {
    "dense SAC": (None, False),
    "static 50% uniform": ({"global_sparsity": 0.5}, False),
    "DST 50% uniform": ({"global_sparsity": 0.5}, True),
    "DST 90% uniform": ({"global_sparsity": 0.9}, True),
    "DST 90% ER": ({"global_sparsity": 0.9, "distribution": "ER"}, True),
    "DST 50% uniform, shared target masks": ({"global_sparsity": 0.5, "target_sparsity": "shared"}, True),
    "ANF input layer 80%, maskadam": ({"input_layer_sparsity": 0.8}, True),
}


def steps_per_s(name: str, steps: int, skip: int, period: int) -> float:
    """Env steps (one gradient update each) per second of one configuration's ``Trainer.fit``."""
    sparsity, dynamic = CONFIGS[name]
    L.seed_everything(0, verbose=False)
    dm = EnvDataModule("HalfCheetah-v5", seed=0, start_timesteps=1000, max_timesteps=skip + steps, eval_freq=10**9)
    model = SAC(dm.env_spec, optimizer="maskadam" if "maskadam" in name else "adam")
    callbacks: list[L.Callback] = []
    if sparsity is not None:
        callbacks.append(SparsityDistributionCallback(**sparsity))
    if dynamic:
        callbacks.append(DynamicSparsityCallback(update_period=period))
    return fit_steps_per_s(model, dm, skip, steps, callbacks)


def main() -> None:
    """Run the interleaved rounds and print steps/s and the ratio to dense per configuration."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="timed training steps per run")
    parser.add_argument("--skip", type=int, default=200, help="untimed training steps at the start of a run")
    parser.add_argument("--period", type=int, default=1000, help="topology update period (gradient updates)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sps: dict[str, list[float]] = {name: [] for name in CONFIGS}
    ratios: dict[str, list[float]] = {name: [] for name in CONFIGS}
    for _ in range(args.rounds):
        dense = None
        for name in CONFIGS:
            value = steps_per_s(name, args.steps, args.skip, args.period)
            dense = value if dense is None else dense
            sps[name].append(value)
            ratios[name].append(value / dense)
    device = "cuda" if torch.cuda.is_available() else f"cpu, {args.threads} thread(s)"
    print(f"SAC HalfCheetah-v5, {args.steps} timed steps x {args.rounds} rounds, topology update every {args.period}")
    print(f"device: {device}")
    print(f"{'configuration':<40} {'env steps/s':>12} {'ratio to dense':>16}")
    results = {}
    for name in CONFIGS:
        mean_sps, mean_ratio = statistics.mean(sps[name]), statistics.mean(ratios[name])
        spread = f"(rounds: {', '.join(f'{r:.3f}' for r in ratios[name])})"
        print(f"{name:<40} {mean_sps:>12.1f} {mean_ratio:>16.3f}  {spread}")
        results[name] = {"steps_per_s": sps[name], "ratio_to_dense": ratios[name]}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
