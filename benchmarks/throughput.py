"""Training throughput of ``lsrl fit`` against a plain PyTorch loop and Stable-Baselines3, side by side.

Every case trains on ``HalfCheetah-v5`` with one gradient update per env step (batch 256, 2x256 networks,
the same hyperparameters everywhere) after ``--learning-starts`` random steps; the clock covers ``--steps``
training steps after ``--skip`` untimed ones (allocation, caches, ``torch.compile``). Each case runs in its
own process; rounds alternate the cases (reversed every other round) so that machine drift cancels, and
every ratio is taken within a round, then averaged.

Cases, for SAC and TD3: ``lsrl`` (a real ``lsrl fit`` of ``configs/sac.yaml`` / ``td3.yaml``, progress bar and
checkpointing on), ``lsrl ANF 90% DST`` (``configs/anf_*.yaml`` at 90 % ER global sparsity with dynamic
sparse training, the tutorial's ``--policy ANF-SAC --sparsity_distribution_method ER --global_sparsity
0.9``), ``lsrl compiled`` (``model.compile: true``), ``plain`` (:mod:`plain_loop`, the eager-PyTorch
reference) and ``SB3`` (:mod:`sb3_runner`; skipped when Stable-Baselines3 is not installed).

Also reported: the update's floating-point work (multiply-adds counted from the layer sizes, only what the
maths needs), the achieved GFLOP/s and its fraction of the CPU's peak, both measured (a large ``sgemm``
on the same threads) and nominal (clock x 32 FP32 FLOP/cycle per core: two 256-bit FMA units).

``--suite population`` measures populations instead (issue 15): **agent-steps/s per machine** (agents x env
steps/s) of ``lsrl`` with K = 1, 4, 8, 16 agents in one process, fp32 and ``bf16-mixed``, SAC and TD3, and
90 % DST at K = 8, against what a user gets from the same cores with one process per seed: two 1-thread
processes at the same time of the plain loop and of SB3 (``2x plain``, ``2x SB3``: the sum of their
steps/s). Run it with ``--threads 2``. The CPU's bf16 support (AMX, AVX-512 BF16) is printed.

Usage: ``python benchmarks/throughput.py [--suite single|population] [--threads 1 2] [--rounds 2]
[--steps 1500] [--json out.json]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ENV_ID, OBS_DIM, ACTION_DIM, WIDTH = "HalfCheetah-v5", 17, 6, 256
ANF_90 = {"global_sparsity": 0.9, "distribution": "ER", "input_layer_sparsity": -1.0}

#: case name → (runner, algorithm, runner options)
CASES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "lsrl SAC": ("lsrl", "SAC", {"config": "sac"}),
    "lsrl SAC compiled": ("lsrl", "SAC", {"config": "sac", "model_args": {"compile": True}}),
    "lsrl ANF-SAC 90% DST": ("lsrl", "SAC", {"config": "anf_sac", "sparsity": ANF_90}),
    "plain SAC": ("plain", "SAC", {}),
    "SB3 SAC": ("sb3", "SAC", {}),
    "lsrl TD3": ("lsrl", "TD3", {"config": "td3"}),
    "lsrl TD3 compiled": ("lsrl", "TD3", {"config": "td3", "model_args": {"compile": True}}),
    "lsrl ANF-TD3 90% DST": ("lsrl", "TD3", {"config": "anf_td3", "sparsity": ANF_90}),
    "plain TD3": ("plain", "TD3", {}),
    "SB3 TD3": ("sb3", "TD3", {}),
}


#: Population sizes of the population suite's cases (``--agents`` picks among them; K = 32 is for GPUs).
POPULATION_SIZES = (1, 4, 8, 16, 32)


def _population_cases() -> dict[str, tuple[str, str, dict[str, Any]]]:
    """``lsrl`` populations (K agents, fp32 / bf16-mixed, 90 % DST at K = 8) and the one-process-per-seed peers."""
    cases: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for algo, config, anf in (("SAC", "sac", "anf_sac"), ("TD3", "td3", "anf_td3")):
        graphs = {"compile": True, "compile_mode": "reduce-overhead"}
        cases[f"lsrl {algo} K=1 fp32 CUDA graphs"] = ("lsrl", algo, {"config": config, "model_args": graphs})
        for agents in POPULATION_SIZES:
            for precision in ("fp32", "bf16"):
                options = {
                    "config": config,
                    "agents": agents,
                    "precision": "bf16-mixed" if precision == "bf16" else None,
                }
                cases[f"lsrl {algo} K={agents} {precision}"] = ("lsrl", algo, options)
        cases[f"lsrl {algo} K=8 fp32 DST 90%"] = ("lsrl", algo, {"config": anf, "sparsity": ANF_90, "agents": 8})
        cases[f"2x plain {algo}"] = ("pair", algo, {"runner": "plain"})
        cases[f"2x SB3 {algo}"] = ("pair", algo, {"runner": "sb3"})
    return cases


#: The ``--suite population`` cases.
POPULATION_CASES = _population_cases()


def population_case_names(agents: list[int], cuda_graphs: bool) -> list[str]:
    """The population suite's default cases for the population sizes ``agents`` (``--agents``)."""
    names = []
    for name, (runner, _, options) in POPULATION_CASES.items():
        if name.endswith("CUDA graphs"):
            keep = cuda_graphs
        elif runner == "lsrl":
            keep = options.get("agents", 1) in agents and ("DST" not in name or 8 in agents)
        else:
            keep = True
        if keep:
            names.append(name)
    return names


def update_flops(algo: str, batch_size: int, d: int = OBS_DIM, a: int = ACTION_DIM, w: int = WIDTH) -> float:
    """FLOPs (2 x multiply-adds) of one env step's update: forward passes and the gradients the maths needs.

    Counted: target computation, critic forward + weight gradients + input gradients (not for the first
    layer), actor forward through the critic, gradients into the actor (critic input gradients, actor weight
    and input gradients). Not counted: critic weight gradients of the actor loss, elementwise work, Adam.
    TD3 updates its actor every second step, so its actor part counts half.
    """
    q = (d + a) * w + w * w + w  # one Q network's multiply-adds per sample
    twin = 2 * q
    if algo == "SAC":
        actor = d * w + w * w + w * 2 * a
        macs = (actor + twin) + (3 * twin - 2 * (d + a) * w) + (actor + twin + twin + 2 * actor - d * w)
    else:
        actor = d * w + w * w + w * a
        macs = (actor + twin) + (3 * twin - 2 * (d + a) * w) + 0.5 * (actor + 2 * q + 2 * actor - d * w)
    return 2.0 * macs * batch_size


def nominal_peak_gflops(threads: int) -> float | None:
    """Clock (from ``/proc/cpuinfo``) x 32 FP32 FLOP/cycle x threads, or ``None`` if the clock is unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":")[1]) * 1e-3 * 32 * threads
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU model name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


# ------------------------------------------------------------------------------------------- child side
def measured_peak_gflops(device: str, size: int = 2048, seconds: float = 2.0) -> float:
    """GFLOP/s of repeated ``size``-cubed float32 matmuls (the practical peak of the BLAS)."""
    import torch

    x = torch.randn(size, size, device=device)
    y = torch.randn(size, size, device=device)
    for _ in range(3):
        torch.mm(x, y)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(x, y)
        count += 1
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def run_case(name: str, args: argparse.Namespace) -> float:
    """Env steps/s of one case (in this process)."""
    import torch

    torch.set_num_threads(args.threads)
    if name == "peak":
        return measured_peak_gflops(args.device)
    runner, algo, options = {**CASES, **POPULATION_CASES}[name]
    common = (args.batch_size, args.learning_starts, args.skip, args.steps, args.seed, args.device)
    if runner == "lsrl":
        import lsrl_runner

        return lsrl_runner.run(
            options["config"],
            *common,
            options.get("sparsity"),
            options.get("model_args"),
            options.get("agents", 1),
            options.get("precision"),
        )
    if runner == "plain":
        import plain_loop

        return plain_loop.run(algo, ENV_ID, *common)
    import sb3_runner

    return sb3_runner.run(algo, ENV_ID, *common)


# ------------------------------------------------------------------------------------------ parent side
def _start(name: str, args: argparse.Namespace, threads: int, seed: int) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, str(Path(__file__)), "--child", name, "--threads", str(threads), "--seed", str(seed)]
    for flag in ("batch_size", "learning_starts", "skip", "steps", "device"):
        cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE.parent)


def _result(name: str, process: subprocess.Popen) -> float:
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"case {name!r} failed (exit {process.returncode}):\n{(stdout + stderr)[-3000:]}")
    return json.loads(stdout.strip().splitlines()[-1])["result"]


def spawn(name: str, args: argparse.Namespace, threads: int) -> float:
    """Run one case in a fresh process with ``threads`` threads; returns its result.

    A ``pair`` case runs its single-agent runner in two 1-thread processes at the same time (seeds ``seed`` and
    ``seed + 1``) and returns the mean of their steps/s (x 2 agents: what one process per seed gives on two cores).
    """
    runner, algo, options = POPULATION_CASES.get(name, CASES.get(name, ("", "", {})))
    if runner != "pair":
        return _result(name, _start(name, args, threads, args.seed))
    single = f"{options['runner'] if options['runner'] == 'plain' else 'SB3'} {algo}"
    processes = [_start(single, args, 1, args.seed + k) for k in range(2)]
    return statistics.mean(_result(single, process) for process in processes)


def bf16_support() -> str:
    """The CPU's bf16 matrix support (AMX-BF16, AVX-512 BF16), ``none`` or ``unknown``."""
    from lightning_sparse_rl.floating_point import cpu_bf16_instructions

    found = cpu_bf16_instructions()
    return "unknown" if found is None else ", ".join(found) or "none"


def agents_of(name: str) -> int:
    """Agents trained by a case: K of a population, 2 for a pair of processes, else 1."""
    runner, _, options = POPULATION_CASES.get(name, CASES.get(name, ("", "", {})))
    return 2 if runner == "pair" else options.get("agents", 1)


def _mean_ratio(values: list[float], references: list[float] | None) -> float | None:
    """Mean of the per-round ratios ``values[r] / references[r]`` (``None`` without references)."""
    if references is None:
        return None
    return statistics.mean(v / ref for v, ref in zip(values, references, strict=True))


def summarise_population(algo: str, names: list[str], sps: dict[str, list[float]]) -> list[dict]:
    """Agent-steps/s per case and within-round ratios to the better two-process peer and to K=1 fp32."""
    rounds = range(len(sps[names[0]]))
    agent_sps = {name: [agents_of(name) * v for v in sps[name]] for name in names}
    peers = [n for n in (f"2x plain {algo}", f"2x SB3 {algo}") if n in agent_sps]
    best_peer = [max(agent_sps[p][r] for p in peers) for r in rounds] if peers else None
    single = agent_sps.get(f"lsrl {algo} K=1 fp32")
    print(f"\n{algo}: agent-steps/s (agents x env steps/s)")
    print(f"{'case':<28}{'agent steps/s':>14}{'env steps/s':>12}{'x best peer':>12}{'x K=1 fp32':>11}   per round")
    rows = []
    for name in names:
        mean = statistics.mean(agent_sps[name])
        row = {
            "case": name,
            "agents": agents_of(name),
            "agent_steps_per_s": agent_sps[name],
            "mean_agent_steps_per_s": mean,
            "mean_env_steps_per_s": statistics.mean(sps[name]),
            "ratio_to_best_peer": _mean_ratio(agent_sps[name], best_peer),
            "ratio_to_k1_fp32": _mean_ratio(agent_sps[name], single),
        }
        rows.append(row)
        peer, one = row["ratio_to_best_peer"], row["ratio_to_k1_fp32"]
        print(
            f"{name:<28}{mean:>14.1f}{row['mean_env_steps_per_s']:>12.1f}"
            f"{peer if peer is None else format(peer, '.3f'):>12}{one if one is None else format(one, '.3f'):>11}   "
            + ", ".join(f"{v:.1f}" for v in agent_sps[name])
        )
    dense, sparse = f"lsrl {algo} K=8 fp32", f"lsrl {algo} K=8 fp32 DST 90%"
    if dense in sps and sparse in sps:
        ratio = statistics.mean(sps[dense][r] / sps[sparse][r] for r in rounds)
        print(f"DST 90 % time / dense time at K=8: {ratio:.3f}")
    return rows


def summarise(algo: str, names: list[str], sps: dict[str, list[float]], peak: dict[str, float], args) -> list[dict]:
    """Per-case mean steps/s and within-round ratios for one algorithm, printed as a table."""
    rounds = range(len(sps[names[0]]))
    plain, sb3, dense = f"plain {algo}", f"SB3 {algo}", f"lsrl {algo}"
    flops = update_flops(algo, args.batch_size)
    rows = []
    print(f"\n{algo}: {flops / 1e9:.3f} GFLOP per update (batch {args.batch_size})")
    header = f"{'case':<24}{'env steps/s':>12}{'x plain':>9}{'x SB3':>8}{'time/dense':>11}{'GFLOP/s':>9}"
    print(header + f"{'% sgemm':>9}{'% nominal':>10}   per round (steps/s)")
    for name in names:

        def ratio(ref: str, invert: bool = False, name: str = name) -> float | None:
            if ref not in sps:
                return None
            values = [(sps[ref][r] / sps[name][r]) if invert else (sps[name][r] / sps[ref][r]) for r in rounds]
            return statistics.mean(values)

        mean = statistics.mean(sps[name])
        gflops = mean * flops / 1e9
        row = {
            "case": name,
            "steps_per_s": sps[name],
            "mean_steps_per_s": mean,
            "ratio_to_plain": ratio(plain),
            "ratio_to_sb3": ratio(sb3),
            "time_ratio_to_dense": ratio(dense, invert=True) if name.startswith("lsrl") else None,
            "gflops": gflops,
            "fraction_of_sgemm_peak": gflops / peak["measured"],
            "fraction_of_nominal_peak": gflops / peak["nominal"] if peak["nominal"] else None,
        }
        rows.append(row)

        def fmt(value: float | None, width: int, spec: str = ".3f") -> str:
            return f"{value:>{width}{spec}}" if value is not None else f"{'-':>{width}}"

        nominal = row["fraction_of_nominal_peak"]
        print(
            f"{name:<24}{mean:>12.1f}{fmt(row['ratio_to_plain'], 9)}{fmt(row['ratio_to_sb3'], 8)}"
            f"{fmt(row['time_ratio_to_dense'], 11)}{gflops:>9.1f}{100 * row['fraction_of_sgemm_peak']:>8.1f}%"
            f"{fmt(None if nominal is None else 100 * nominal, 9, '.1f')}%   "
            + ", ".join(f"{v:.1f}" for v in sps[name])
        )
    return rows


def main() -> None:
    """Parse arguments; run one case (``--child``) or the whole alternating comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch/OpenMP threads to test")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1500, help="timed training steps per run")
    parser.add_argument("--skip", type=int, default=300, help="untimed training steps before the clock starts")
    parser.add_argument("--learning-starts", type=int, default=5000, help="random steps before training")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (lsrl runs with trainer.accelerator=gpu)")
    parser.add_argument("--suite", default="single", choices=("single", "population"))
    parser.add_argument(
        "--agents", type=int, nargs="+", default=[1, 4, 8, 16], choices=POPULATION_SIZES, help="population suite"
    )
    parser.add_argument(
        "--cuda-graphs", action="store_true", help="population suite: also K=1 with compile_mode reduce-overhead"
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        default=None,
        choices=[*CASES, *POPULATION_CASES],
        metavar="CASE",
        help="default: the suite's",
    )
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.threads = args.threads[0]
        print(json.dumps({"result": run_case(args.child, args)}))
        return
    suite = POPULATION_CASES if args.suite == "population" else CASES
    if args.cases is None:
        args.cases = population_case_names(args.agents, args.cuda_graphs) if args.suite == "population" else list(CASES)
    has_sb3 = importlib.util.find_spec("stable_baselines3") is not None
    names = [n for n in args.cases if "SB3" not in n or has_sb3]
    skipped = sorted(set(args.cases) - set(names))
    if skipped:
        print(f"Stable-Baselines3 is not installed: skipping {', '.join(skipped)} (pip install stable-baselines3)")
    report: dict[str, Any] = {
        "machine": {
            "cpu": cpu_name(),
            "bf16": bf16_support(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "suite": args.suite,
        "args": {k: v for k, v in vars(args).items() if k != "child"},
        "env_id": ENV_ID,
        "threads": {},
    }
    for threads in args.threads:
        peak = {"measured": spawn("peak", args, threads), "nominal": nominal_peak_gflops(threads)}
        if args.suite == "population":
            print(f"CPU: {cpu_name()}; bf16: {bf16_support()}; sgemm peak {peak['measured']:.1f} GFLOP/s", flush=True)
        sps: dict[str, list[float]] = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                sps[name].append(spawn(name, args, threads))
                print(f"  [{threads} thread(s), round {r + 1}] {name}: {sps[name][-1]:.1f} env steps/s", flush=True)
        print(f"\n=== {ENV_ID}, {args.device}, {threads} thread(s), {args.rounds} rounds x {args.steps} timed steps")
        nominal = f"{peak['nominal']:.0f}" if peak["nominal"] else "unknown"
        print(f"CPU: {cpu_name()}; sgemm peak {peak['measured']:.1f} GFLOP/s, nominal {nominal} GFLOP/s")
        print(f"CPU: {cpu_name()}; bf16: {bf16_support()}")
        rows = []
        for algo in ("SAC", "TD3"):
            algo_names = [n for n in names if suite[n][1] == algo]
            if algo_names and args.suite == "population":
                rows += summarise_population(algo, algo_names, sps)
            elif algo_names:
                rows += summarise(algo, algo_names, sps, peak, args)
        report["threads"][str(threads)] = {"peak_gflops": peak, "cases": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
