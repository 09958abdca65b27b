"""CPU time of one Polyak update in a real fit: sparse targets kept sparse (the "maintain sparsity" rule) vs dense.

Runs ``Trainer.fit`` of SAC on HalfCheetah-v5 (batch 100, as ``dst_throughput.py``) for dense SAC and each
chosen configuration, one after the other in one process, and times every ``polyak_update`` call with the
process's CPU clock. Calls before the first topology update (``--period``) are left out: from then on the
targets of masked layers are out of sync with their online masks and the rule runs at every step. The
ratio to dense SAC's Polyak update is printed per configuration.

To compare two versions of the package, run this script from each checkout (``PYTHONPATH=<checkout>``).

Usage: ``python benchmarks/target_rule_cost.py [--agents 1] [--steps 3000] [--configs "DST 90% ER" ...]``
"""

from __future__ import annotations

import argparse
import time

import torch
from dst_throughput import CONFIGS, steps_per_s
from throughput import cpu_name

import lightning_sparse_rl.algorithms.base as algorithm_base


def polyak_cpu_ms(name: str, steps: int, period: int, agents: int) -> tuple[float, float]:
    """Mean CPU milliseconds per Polyak update after the first ``period`` updates, and env steps/s of the fit."""
    polyak_update = algorithm_base.polyak_update
    spent: list[float] = []

    def timed(*args, **kwargs) -> None:
        start = time.process_time()
        polyak_update(*args, **kwargs)
        spent.append(time.process_time() - start)

    algorithm_base.polyak_update = timed
    try:
        rate = steps_per_s(name, steps, period + 200, period, agents)
    finally:
        algorithm_base.polyak_update = polyak_update
    after_update = spent[period + 200 :]
    return 1e3 * sum(after_update) / len(after_update), rate


def main() -> None:
    """Time the Polyak updates of dense SAC and of each configuration, and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="timed training steps per run")
    parser.add_argument("--period", type=int, default=1000, help="topology update period (gradient updates)")
    parser.add_argument("--agents", type=int, default=1, help="K, agents trained together as one population")
    parser.add_argument("--configs", nargs="+", default=["DST 90% ER"], choices=list(CONFIGS), metavar="NAME")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"SAC HalfCheetah-v5, K={args.agents}, batch 100, topology update every {args.period}; CPU: {cpu_name()}")
    print(f"package: {algorithm_base.__file__}")
    print(f"{'configuration':<44} {'CPU ms per Polyak update':>25} {'ratio to dense':>15} {'env steps/s':>12}")
    dense = None
    for name in ["dense SAC", *(c for c in args.configs if c != "dense SAC")]:
        ms, rate = polyak_cpu_ms(name, args.steps, args.period, args.agents)
        dense = ms if dense is None else dense
        print(f"{name:<44} {ms:>25.3f} {ms / dense:>15.2f} {rate:>12.1f}")


if __name__ == "__main__":
    main()
