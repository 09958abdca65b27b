"""Steady-state throughput: training speed of networks hours into a run, not of fresh ones (issue 26).

A run's first minutes are not its hours: on x86 CPUs, weights and optimizer moments that decay into denormal
floats (|x| < 1.18e-38) make every operation that touches them take a slow path, so a benchmark of fresh
networks can overstate the speed of a long run several times over. This benchmark times the same 1 000
updates in two states of the same run:

- ``lsrl`` cases resume a *state*: a real ``lsrl fit`` of ``configs/sac.yaml`` / ``td3.yaml`` on
  ``HalfCheetah-v5`` (batch 256, ``--learning-starts`` random steps), stopped at 1 000 and at 20 000 updates
  with its weights, optimizer moments and replay buffer. Each state is made once per configuration (algorithm,
  K agents, flushing on or off; fp32, 2 threads) under ``benchmarks/.states/`` (not committed; delete it to
  make them again), and the number of denormal weights and moments in it is printed. A timing case resumes the
  state with the case's precision and threads, runs ``--skip`` untimed updates, then times ``--steps``:
  updates 1 100–2 100 ("fresh") and 20 100–21 100 ("trained").
- ``plain`` cases (:mod:`plain_loop`, the eager-PyTorch reference, one agent) train one run straight through
  and time the same two windows of updates in it.
- ``unflushed`` cases run ``lsrl`` with ``LSRL_FLUSH_DENORMALS=0`` (states made that way too): the arithmetic
  of the package before denormals were flushed.

Stable-Baselines3 cannot load these states, and a straight 21 000-update run of it per case costs more than
the plain loop's, which stands for the peers that keep the slow path (both use Adam with weight decay 2e-4).

Each case's two windows are timed ``--rounds`` times, alternating, in fresh processes; the table gives the
medians of the rates and of the per-round ratios (the JSON keeps every round).

Usage: ``python benchmarks/steady_state.py [--threads 1 2] [--rounds 3] [--cases ...] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from throughput import ENV_ID, bf16_support, cpu_name

HERE = Path(__file__).resolve().parent
STATES = HERE / ".states"


def _cases() -> dict[str, dict[str, Any]]:
    """Case name → runner, algorithm, population size, precision and whether denormals are flushed."""
    cases: dict[str, dict[str, Any]] = {}
    for algo in ("SAC", "TD3"):
        for agents in (1, 8):
            for precision in ("fp32", "bf16"):
                cases[f"lsrl {algo} K={agents} {precision}"] = {
                    "runner": "lsrl",
                    "algo": algo,
                    "agents": agents,
                    "precision": precision,
                    "flush": True,
                }
        cases[f"lsrl {algo} K=1 fp32 unflushed"] = {
            "runner": "lsrl",
            "algo": algo,
            "agents": 1,
            "precision": "fp32",
            "flush": False,
        }
        cases[f"plain {algo}"] = {"runner": "plain", "algo": algo, "agents": 1, "precision": "fp32", "flush": False}
    return cases


CASES = _cases()


def state_folder(case: dict[str, Any], args: argparse.Namespace) -> Path:
    """Where the states of ``case``'s configuration live."""
    flush = "flushed" if case["flush"] else "unflushed"
    at = "-".join(map(str, args.at))
    return STATES / f"{case['algo']}-K{case['agents']}-{flush}-b{args.batch_size}-ls{args.learning_starts}-at{at}"


# ------------------------------------------------------------------------------------------- child side
def make_state(case: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Train the case's configuration to the ``--at`` updates (fresh, trained); count denormals in each."""
    import lsrl_runner
    import torch

    from lightning_sparse_rl.floating_point import count_denormals
    from lightning_sparse_rl.persistence.checkpoint_io import RunCheckpointIO

    torch.set_num_threads(args.threads[0])
    folder = state_folder(case, args)
    checkpoints = lsrl_runner.make_state(
        case["algo"].lower(),
        args.batch_size,
        args.learning_starts,
        args.seed,
        case["agents"],
        list(args.at),
        str(folder),
    )
    states = {}
    for updates, path in checkpoints.items():
        checkpoint = RunCheckpointIO().load_checkpoint(path)
        weights = [t for t in checkpoint["state_dict"].values() if t.is_floating_point()]
        moments = [
            t
            for optimizer in checkpoint["optimizer_states"]
            for state in optimizer["state"].values()
            for t in state.values()
            if torch.is_tensor(t) and t.is_floating_point() and t.dim() > 0
        ]
        states[str(updates)] = {
            "checkpoint": path,
            "denormal_weights": sum(count_denormals(t) for t in weights),
            "weights": sum(t.numel() for t in weights),
            "denormal_moments": sum(count_denormals(t) for t in moments),
            "moments": sum(t.numel() for t in moments),
        }
    (folder / "states.json").write_text(json.dumps(states, indent=2))
    return states


def time_case(name: str, window: str, args: argparse.Namespace) -> float:
    """Env steps/s of ``name`` over the ``window`` (``fresh`` / ``trained``) updates, in this process."""
    import torch

    torch.set_num_threads(args.threads[0])
    case = CASES[name]
    start = args.at[0] if window == "fresh" else args.at[1]
    if case["runner"] == "plain":
        raise ValueError("plain cases time both windows in one run (plain_windows)")
    import lsrl_runner

    state = json.loads((state_folder(case, args) / "states.json").read_text())[str(start)]["checkpoint"]
    return lsrl_runner.run(
        case["algo"].lower(),
        args.batch_size,
        args.learning_starts,
        args.skip,
        args.steps,
        args.seed,
        "cpu",
        agents=case["agents"],
        precision="bf16-mixed" if case["precision"] == "bf16" else None,
        state=(state, start),
    )


def plain_windows(name: str, args: argparse.Namespace) -> list[float]:
    """The plain loop's env steps/s over the fresh and the trained window of one straight run."""
    import plain_loop
    import torch

    torch.set_num_threads(args.threads[0])
    windows = [(start + args.skip, start + args.skip + args.steps) for start in args.at]
    return plain_loop.run_windows(
        CASES[name]["algo"], ENV_ID, args.batch_size, args.learning_starts, windows, args.seed, "cpu"
    )


# ------------------------------------------------------------------------------------------ parent side
def spawn(args: argparse.Namespace, threads: int, flush: bool, *child: str) -> Any:
    """Run ``steady_state.py --child ...`` in a fresh process with ``threads`` threads; its JSON result."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["LSRL_FLUSH_DENORMALS"] = "1" if flush else "0"
    cmd = [sys.executable, str(Path(__file__)), *child, "--threads", str(threads), "--seed", str(args.seed)]
    for flag in ("batch_size", "learning_starts", "skip", "steps"):
        cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    cmd += ["--at", *map(str, args.at)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=HERE.parent)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(child)} failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["result"]


def ensure_states(names: list[str], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Make the states the lsrl cases need (once: kept in :data:`STATES`); their denormal counts by folder."""
    counts = {}
    for name in names:
        case = CASES[name]
        folder = state_folder(case, args)
        if case["runner"] != "lsrl" or folder.name in counts:
            continue
        if not (folder / "states.json").exists():
            print(f"making the states of {folder.name} ({args.state_threads} thread(s)) ...", flush=True)
            spawn(args, args.state_threads, case["flush"], "--make-state", name)
        counts[folder.name] = json.loads((folder / "states.json").read_text())
    return counts


def main() -> None:
    """Parse arguments; run one child job, or make the states and time every case in both windows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=1000, help="timed updates per window")
    parser.add_argument("--skip", type=int, default=100, help="untimed updates after resuming")
    parser.add_argument(
        "--rounds", type=int, default=1, help="times each window is timed (alternating); medians are reported"
    )
    parser.add_argument(
        "--at", type=int, nargs=2, default=[1000, 20000], metavar=("FRESH", "TRAINED"), help="updates of the states"
    )
    parser.add_argument("--state-threads", type=int, default=2, help="threads of the runs that make the states")
    parser.add_argument("--states-only", action="store_true", help="make the states and count denormals; time nothing")
    parser.add_argument("--learning-starts", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES), metavar="CASE")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--make-state", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: must be at least 1")
    sys.path.insert(0, str(HERE))
    if args.make_state:
        print(json.dumps({"result": make_state(CASES[args.make_state], args)}))
        return
    if args.child:
        name, window = args.child
        result = plain_windows(name, args) if window == "both" else time_case(name, window, args)
        print(json.dumps({"result": result}))
        return

    print(f"CPU: {cpu_name()}; bf16: {bf16_support()}; {os.cpu_count()} cores; {ENV_ID}, batch {args.batch_size}")
    states = ensure_states(args.cases, args)
    print("\nDenormal floats in the states (fp32 runs): weights, optimizer moments")
    for folder, by_updates in states.items():
        for updates, s in by_updates.items():
            print(
                f"  {folder:<40} {int(updates):>6} updates: {s['denormal_weights']:>7} of {s['weights']} weights, "
                f"{s['denormal_moments']:>7} of {s['moments']} moments"
            )
    if args.states_only:
        return
    report: dict[str, Any] = {
        "machine": {"cpu": cpu_name(), "bf16": bf16_support(), "cores": os.cpu_count()},
        "args": {k: v for k, v in vars(args).items() if k not in ("child", "make_state", "states_only")},
        "states": states,
        "threads": {},
    }
    first, second = args.at[0] + args.skip, args.at[1] + args.skip
    for threads in args.threads:
        timed: dict[str, list[tuple[float, float]]] = {name: [] for name in args.cases}
        for round_ in range(args.rounds):
            for name in args.cases:
                case = CASES[name]
                if case["runner"] == "plain":
                    fresh, trained = spawn(args, threads, False, "--child", name, "both")
                else:
                    fresh = spawn(args, threads, case["flush"], "--child", name, "fresh")
                    trained = spawn(args, threads, case["flush"], "--child", name, "trained")
                timed[name].append((fresh, trained))
                print(
                    f"  [{threads} thread(s), round {round_ + 1}] {name}: {fresh:.1f} → {trained:.1f} env steps/s "
                    f"({trained / fresh:.3f})",
                    flush=True,
                )
        rows = [
            {
                "case": name,
                "fresh": statistics.median(f for f, _ in pairs),
                "trained": statistics.median(t for _, t in pairs),
                "ratio": statistics.median(t / f for f, t in pairs),
                "rounds": [{"fresh": f, "trained": t, "ratio": t / f} for f, t in pairs],
            }
            for name, pairs in timed.items()
        ]
        print(
            f"\n=== {threads} thread(s): env steps/s (of each agent) at updates {first}-{first + args.steps} "
            f"and {second}-{second + args.steps}, medians of {args.rounds} round(s); CPU {cpu_name()}"
        )
        print(f"{'case':<30}{'fresh':>10}{'trained':>10}{'trained/fresh':>15}{'denormals flushed':>19}")
        for row in rows:
            flushed = "yes" if CASES[row["case"]]["flush"] else "no"
            print(f"{row['case']:<30}{row['fresh']:>10.1f}{row['trained']:>10.1f}{row['ratio']:>15.3f}{flushed:>19}")
        ratios = [row["ratio"] for row in rows if CASES[row["case"]]["flush"]]
        if ratios:
            lowest, mean = min(ratios), statistics.mean(ratios)
            print(f"lowest trained/fresh with denormals flushed: {lowest:.3f} (mean {mean:.3f})")
        report["threads"][str(threads)] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
