"""Throughput cost of sparse training relative to dense SAC, measured side by side in one process.

Each configuration runs a real ``Trainer.fit`` of SAC on HalfCheetah-v5 (batch 100, 2x256, 1000 random
warm-up steps) for ``--steps`` training steps; the clock covers the training steps after the first
``--skip`` (no evaluation). Topology updates run every ``--period`` gradient updates, so the cost of the
updates and of keeping the target networks sparse afterwards is included. Each of ``--rounds`` rounds runs
every configuration together with a run of dense SAC, the two fits taking turns of ``--block`` training steps
(``fit_timing.lockstep_seconds_per_step``; dense first in even rounds), and takes the ratio of their times per
step: a change of the machine's speed (shared machines drift by ±20 % over minutes) reaches both alike. The
median over the rounds is reported, with each round.

GMP prunes from dense to 90 % during the timed steps (every ``--period`` updates); RLx2 adds 3-step targets,
the dynamic-capacity buffer (checked every ``--period`` steps) and target networks carrying the online masks (as
``configs/rlx2_td3.yaml``) to RigL. ``--agents K`` trains a population of K.

Usage: ``python benchmarks/dst_throughput.py [--steps 3000] [--rounds 2] [--threads 1] [--agents 1] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import statistics

import lightning as L
import torch
from fit_timing import Fit, fit_steps_per_s, lockstep_seconds_per_step
from throughput import cpu_name

from lightning_sparse_rl import SAC, EnvDataModule
from lightning_sparse_rl.callbacks import DynamicSparsityCallback, GradualPruningCallback, SparsityDistributionCallback
from lightning_sparse_rl.data.dynamic_buffer import DynamicCapacity

ER90 = {"global_sparsity": 0.9, "distribution": "ER"}
#: name → {"sparsity": SparsityDistributionCallback kwargs, "dynamic": DynamicSparsityCallback kwargs,
#: "pruning": GradualPruningCallback kwargs, "rlx2": 3-step targets and the dynamic buffer}; {} is dense SAC.
CONFIGS: dict[str, dict] = {
    "dense SAC": {},
    "static 50% uniform": {"sparsity": {"global_sparsity": 0.5}},
    "DST 50% uniform": {"sparsity": {"global_sparsity": 0.5}, "dynamic": {}},
    "DST 90% uniform": {"sparsity": {"global_sparsity": 0.9}, "dynamic": {}},
    "DST 90% ER": {"sparsity": ER90, "dynamic": {}},
    "DST 50% uniform, shared target masks": {
        "sparsity": {"global_sparsity": 0.5, "target_sparsity": "shared"},
        "dynamic": {},
    },
    "ANF input layer 80%, maskadam": {"sparsity": {"input_layer_sparsity": 0.8}, "dynamic": {}},
    "RigL 90% ER": {"sparsity": ER90, "dynamic": {"growth": "gradient"}},
    "GMP dense to 90% ER": {"pruning": ER90},
    # as configs/rlx2_td3.yaml and the authors' code: the targets carry the online masks
    "RLx2 90% ER (RigL, 3-step, dynamic buffer)": {
        "sparsity": {**ER90, "target_sparsity": "shared"},
        "dynamic": {"growth": "gradient"},
        "rlx2": True,
    },
    "RLx2 90% ER, magnitude targets": {"sparsity": ER90, "dynamic": {"growth": "gradient"}, "rlx2": True},
}


def build(name: str, steps: int, skip: int, period: int, agents: int = 1) -> Fit:
    """One configuration's model, data and callbacks for a fit of ``skip + steps`` training steps."""
    config = CONFIGS[name]
    L.seed_everything(0, verbose=False)
    rlx2 = (
        {"n_step": 3, "dynamic_buffer": DynamicCapacity(check_interval=period, min_size=500, samples=2048)}
        if config.get("rlx2")
        else {}
    )
    dm = EnvDataModule(
        "HalfCheetah-v5",
        seed=0,
        seeds=list(range(agents)) if agents > 1 else None,
        start_timesteps=1000,
        max_timesteps=skip + steps,
        eval_freq=10**9,
        **rlx2,
    )
    model = SAC(dm.env_spec, optimizer="maskadam" if "maskadam" in name else "adam", agent_seeds=dm.seeds)
    callbacks: list[L.Callback] = []
    if "sparsity" in config:
        callbacks.append(SparsityDistributionCallback(**config["sparsity"]))
    if "dynamic" in config:
        callbacks.append(DynamicSparsityCallback(update_period=period, **config["dynamic"]))
    if "pruning" in config:
        schedule = {"start_step": skip, "end_step": skip + steps, "update_period": period}
        callbacks.append(GradualPruningCallback(**config["pruning"], **schedule))
    return model, dm, callbacks


def steps_per_s(name: str, steps: int, skip: int, period: int, agents: int = 1) -> float:
    """Env steps (one gradient update each) per second of one configuration's ``Trainer.fit``, run alone."""
    model, data, callbacks = build(name, steps, skip, period, agents)
    return fit_steps_per_s(model, data, skip, steps, callbacks)


def main() -> None:
    """Run the interleaved rounds and print steps/s and the ratio to dense per configuration."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000, help="timed training steps per run")
    parser.add_argument("--skip", type=int, default=200, help="untimed training steps at the start of a run")
    parser.add_argument("--period", type=int, default=1000, help="topology update period (gradient updates)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--block", type=int, default=10, help="training steps per turn of the paired fits")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--agents", type=int, default=1, help="K, agents trained together as one population")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS), metavar="NAME")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = ["dense SAC", *(name for name in args.configs if name != "dense SAC")]
    sps: dict[str, list[float]] = {name: [] for name in names}
    ratios: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(args.rounds):
        for name in names[1:]:
            pair = ["dense SAC", name] if round_index % 2 == 0 else [name, "dense SAC"]
            fits = [build(n, args.steps, args.skip, args.period, args.agents) for n in pair]
            seconds = dict(zip(pair, lockstep_seconds_per_step(fits, args.skip, args.steps, args.block), strict=True))
            sps[name].append(1 / seconds[name])
            sps["dense SAC"].append(1 / seconds["dense SAC"])
            ratios[name].append(seconds[name] / seconds["dense SAC"])  # time per step relative to dense
            ratios["dense SAC"].append(1.0)
    device = "cuda" if torch.cuda.is_available() else f"cpu, {args.threads} thread(s)"
    print(
        f"SAC HalfCheetah-v5, K={args.agents}, {args.steps} timed steps x {args.rounds} rounds, topology update every "
        f"{args.period}, paired fits taking turns of {args.block} step(s)"
    )
    print(f"device: {device}; CPU: {cpu_name()}")
    print(f"{'configuration':<40} {'env steps/s':>12} {'time per step / dense: median':>30} {'mean':>7}")
    results = {}
    for name in names:
        mean_sps, mean_ratio = statistics.mean(sps[name]), statistics.mean(ratios[name])
        median_ratio = statistics.median(ratios[name])
        spread = "" if name == "dense SAC" else f"(rounds: {', '.join(f'{r:.3f}' for r in ratios[name])})"
        print(f"{name:<40} {mean_sps:>12.1f} {median_ratio:>30.3f} {mean_ratio:>7.3f}  {spread}")
        results[name] = {
            "steps_per_s": sps[name],
            "time_ratio_to_dense": ratios[name],
            "median_time_ratio": median_ratio,
        }
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "cpu": cpu_name(), "args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
