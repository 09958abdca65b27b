"""Package one trained agent of an ``lsrl sweep`` trial as a shipped agent folder under ``agents/``.

    python scripts/package_agent.py TRIAL_DIR agents/NAME [--seed S]

Writes ``policy.pt`` (``lsrl export`` of the trial's ``last.ckpt``: by default the population's best agent at
the last evaluation), ``config.yaml`` (the trial's config with its logger and output paths moved to
``runs/NAME``, so ``lsrl fit --config`` retrains the same population without touching the sweep folder) and
``train.log`` (the trial's ``fit.log``), and prints every seed's return at the last evaluation and the
chosen seed. The folder's README (what it is, the training command, its ``lsrl view --no-render`` score and
the threshold ``tests/test_agents.py`` checks) is written by hand.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from lightning_sparse_rl.persistence.run_files import read_csv_columns


def last_evaluation(evaluations_csv: Path) -> tuple[int, dict[int, float]]:
    """The last evaluation step of a run and each seed's mean return at it (``evaluations.csv`` rows)."""
    columns = read_csv_columns(evaluations_csv)
    step = int(columns["step"].max())
    last = columns["step"] == step
    seeds, returns = columns["seed"][last], columns["return"][last]
    return step, {int(seed): float(value) for seed, value in zip(seeds, returns, strict=True)}


def retargeted_config(config: dict, name: str) -> dict:
    """The trial's ``lsrl fit`` config with ``ckpt_path`` dropped and every output under ``runs/name/version_N``.

    The loggers write to ``runs/name`` (next free version) and checkpoints go to the logger's folder.
    """
    config = copy.deepcopy(config)
    config.pop("ckpt_path", None)
    trainer = config["trainer"]
    trainer["default_root_dir"] = "runs"
    for logger in _entries(trainer.get("logger")):
        logger["init_args"].update(save_dir="runs", name=name, version=None)
    for callback in _entries(trainer.get("callbacks")):
        if callback["class_path"].endswith(".ModelCheckpoint"):
            callback["init_args"]["dirpath"] = None
    return config


def _entries(value: object) -> list[dict]:
    """The class_path/init_args entries of a config list (or single entry); none for ``true``/``false``/``null``."""
    entries = value if isinstance(value, list) else [value]
    return [entry for entry in entries if isinstance(entry, dict)]


def absolute_paths(value: object) -> list[str]:
    """Every string in a nested config that is an absolute path (a config to ship must have none)."""
    if isinstance(value, dict):
        return [path for item in value.values() for path in absolute_paths(item)]
    if isinstance(value, list):
        return [path for item in value for path in absolute_paths(item)]
    return [value] if isinstance(value, str) and Path(value).is_absolute() else []


def main() -> None:
    """Parse the arguments and write the agent folder."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trial", type=Path, help="a trial folder of lsrl sweep (holds fit.log and version_0/)")
    parser.add_argument("agent", type=Path, help="the agent folder to write (agents/NAME)")
    parser.add_argument("--seed", type=int, help="the agent of this seed (default: the best at the last evaluation)")
    args = parser.parse_args()
    run = args.trial / "version_0"
    name = args.agent.name.replace("-", "_").replace(".", "_")
    config = retargeted_config(yaml.safe_load((run / "config.yaml").read_text()), name)
    if leftover := absolute_paths(config):
        sys.exit(f"error: {run / 'config.yaml'} keeps absolute paths that this script does not move: {leftover}")

    step, returns = last_evaluation(run / "evaluations.csv")
    by_seed = ", ".join(f"seed {seed} {value:.0f}" for seed, value in sorted(returns.items()))
    print(f"returns at step {step}: {by_seed}")
    args.agent.mkdir(parents=True, exist_ok=True)
    export = [sys.executable, "-m", "lightning_sparse_rl.cli", "export", str(run / "checkpoints" / "last.ckpt")]
    export += [str(args.agent / "policy.pt")] + (["--seed", str(args.seed)] if args.seed is not None else [])
    subprocess.run(export, check=True)
    header = f"# The population this agent comes from, as its sweep trial ran it (output paths moved to runs/{name}).\n"
    (args.agent / "config.yaml").write_text(header + yaml.safe_dump(config, sort_keys=False))
    shutil.copy(args.trial / "fit.log", args.agent / "train.log")


if __name__ == "__main__":
    main()
