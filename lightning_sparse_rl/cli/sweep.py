"""``lsrl sweep``: a grid of ``lsrl fit`` configurations × environments on Ray Tune, a population of seeds per trial."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import gymnasium as gym
import yaml
from lightning.pytorch.cli import ArgsType, LightningArgumentParser
from typing_extensions import override

from lightning_sparse_rl import shipped_configs
from lightning_sparse_rl.cli.errors import ToolParser, one_line
from lightning_sparse_rl.cli.fit import SparseRLCLI, cli_options
from lightning_sparse_rl.data.envs import make_env, resolve_env_id
from lightning_sparse_rl.persistence.run_files import atomic_write_bytes
from lightning_sparse_rl.persistence.run_lock import wait_until_released
from lightning_sparse_rl.provenance import machine_description, source_commit
from lightning_sparse_rl.sweep.layout import SWEEP_COPY, TRIAL_CONFIG, TRIALS_FILE, trial_folder, trial_run_folder
from lightning_sparse_rl.sweep.spec import Resources, SweepSpec, Trial, expand_trials, load_sweep_file, trial_config
from lightning_sparse_rl.validation import UserInputError


class _SettingsCheck(SparseRLCLI):
    """``lsrl fit``'s parser, without instantiating anything: checks a trial's arguments as ``lsrl fit`` would."""

    @override
    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse and check as ``lsrl fit`` does; then ``seed_everything: false``, so that a check seeds nothing."""
        super().parse_arguments(parser, args)
        self.config["seed_everything"] = False

    @override
    def instantiate_classes(self) -> None:
        """Nothing is instantiated by a check."""


def _check_environment(trial: Trial, checked: set[str]) -> None:
    """Make the trial's env once (as ``lsrl fit`` would), unless an earlier trial made the same one."""
    if trial.env_id in checked:
        return
    try:
        make_env(resolve_env_id(trial.env_id)[0]).close()
    except (ValueError, gym.error.Error) as err:
        raise UserInputError(f"trial {trial.name}: {one_line(err)}") from None
    checked.add(trial.env_id)


def check_trials(trials: Sequence[Trial], sweep_dir: Path) -> None:
    """Check every trial as ``lsrl fit`` would before Ray starts; fill in ``max_timesteps``.

    Its env is made, and its arguments are parsed with ``lsrl fit``'s own parser (which also checks that its
    networks fit in memory).

    Raises:
        UserInputError: the first trial whose env or settings ``lsrl fit`` refuses, naming it and the reason.

    """
    checker: SparseRLCLI | None = None
    environments: set[str] = set()
    with tempfile.TemporaryDirectory() as scratch:
        for trial in trials:
            _check_environment(trial, environments)
            config_file = Path(scratch) / f"{trial.name}.yaml"
            config_file.write_text(yaml.safe_dump(trial_config(trial, trial_folder(sweep_dir, trial.name))))
            args = ["--config", str(config_file), *trial.fit_args]
            try:
                if checker is None:
                    checker = _SettingsCheck(**cli_options(args, run=False))
                else:
                    checker.parse_arguments(checker.parser, args)
            except (ValueError, TypeError, KeyError, argparse.ArgumentError) as err:
                reason = one_line(err).replace(str(config_file), Path(trial.config_file).name)
                raise UserInputError(f"trial {trial.name}: {reason}") from None
            trial.max_timesteps = int(checker.config["data"]["max_timesteps"])


def _write_json(path: Path, content: Any) -> None:
    atomic_write_bytes(path, (json.dumps(content, indent=1) + "\n").encode())


@dataclass
class _SweepRun:
    """What ``lsrl sweep`` runs: the sweep folder, its trials, their resources and retries.

    ``spec``: the sweep file of a new sweep, whose folder is still to be written (``None`` for ``--resume``).
    """

    sweep_dir: Path
    trials: list[Trial]
    resources: Resources
    max_failures: int
    spec: SweepSpec | None = None


def sweep(argv: Sequence[str]) -> None:
    """``lsrl sweep SWEEP_FILE`` (or ``--resume SWEEP_DIR``): run a grid of trials on Ray Tune."""
    parser = _sweep_parser()
    args = parser.parse_args(argv)
    if (args.sweep_file is None) == (args.resume is None):
        parser.error("give a sweep file, or --resume SWEEP_DIR")
    run = _saved_sweep(parser, args) if args.resume else _new_sweep(parser, args)
    _check_local_cpus(parser, args, run.resources)
    engine = _sweep_engine()
    # Before the sweep folder is written: a wrong address leaves nothing behind.
    where = engine.start_ray(args.address, args.cpus)
    if run.spec is not None:
        _write_sweep_folder(run, run.spec, argv)
    print(
        f"Sweep {run.sweep_dir}: {len(run.trials)} trials × {len(run.trials[0].seeds)} seeds on {where}; "
        f"{run.resources.cpus_per_trial:g} CPUs and {run.resources.gpus_per_trial:g} GPUs per trial, "
        f"up to {run.max_failures} retries each. Logs: {run.sweep_dir}/trials/NAME/fit.log",
        flush=True,
    )
    statuses = engine.run_trials(run.sweep_dir, run.trials, run.resources, run.max_failures, resume=bool(args.resume))
    _wait_for_unfinished_trials(run.sweep_dir, statuses)
    _report_and_exit(run, statuses)


def _sweep_parser() -> ToolParser:
    parser = ToolParser(prog="lsrl sweep", description=sweep.__doc__)
    parser.add_argument(
        "sweep_file", nargs="?", help="the sweep file (YAML), or the name of a shipped one (lsrl configs lists them)"
    )
    parser.add_argument("--dir", help="the sweep folder (default: runs/sweeps/NAME, NAME the sweep file's)")
    parser.add_argument("--resume", metavar="SWEEP_DIR", help="continue this sweep folder's unfinished trials")
    parser.add_argument("--address", help="a Ray cluster: auto, or ray://HOST:10001 (default: a local Ray instance)")
    parser.add_argument(
        "--cpus", type=int, help="CPUs the local Ray instance may use (default: all of this machine's); no --address"
    )
    parser.add_argument("--cpus-per-trial", type=float, help="CPUs of each trial (threads of its lsrl fit)")
    parser.add_argument("--gpus-per-trial", type=float, help="GPUs of each trial (a fraction shares a GPU)")
    parser.add_argument("--max-failures", type=int, help="retries of a trial whose process or node died")
    return parser


def _saved_sweep(parser: ToolParser, args: argparse.Namespace) -> _SweepRun:
    """The sweep in ``--resume SWEEP_DIR``, with the trials, resources and retries it was started with."""
    sweep_dir = Path(args.resume)
    if not (sweep_dir / TRIALS_FILE).is_file():
        parser.error(f"--resume {sweep_dir}: not a sweep folder (no {TRIALS_FILE})")
    saved = json.loads((sweep_dir / TRIALS_FILE).read_text())
    trials = [Trial.from_dict(trial) for trial in saved["trials"]]
    resources, max_failures = Resources(**saved["resources"]), saved["max_failures"]
    given = (args.dir, args.cpus_per_trial, args.gpus_per_trial, args.max_failures)
    if any(option is not None for option in given):
        parser.error(
            "--resume continues the sweep in SWEEP_DIR with its own resources and retries; give no --dir, "
            "--cpus-per-trial, --gpus-per-trial or --max-failures"
        )
    return _SweepRun(sweep_dir, trials, resources, max_failures)


def _new_sweep(parser: ToolParser, args: argparse.Namespace) -> _SweepRun:
    """The sweep of the sweep file, its trials expanded and checked as ``lsrl fit`` would (its folder unwritten)."""
    spec = load_sweep_file(shipped_configs.find(args.sweep_file, "sweep") or args.sweep_file)
    resources = Resources(
        spec.resources.cpus_per_trial if args.cpus_per_trial is None else args.cpus_per_trial,
        spec.resources.gpus_per_trial if args.gpus_per_trial is None else args.gpus_per_trial,
    )
    if not resources.within_bounds():
        parser.error(
            f"cpus per trial {resources.cpus_per_trial:g} must be {Resources.bound('cpus_per_trial')}, "
            f"gpus per trial {Resources.bound('gpus_per_trial')}"
        )
    max_failures = spec.max_failures if args.max_failures is None else args.max_failures
    if max_failures < 0:
        parser.error(f"--max-failures {max_failures} must be >= 0")
    sweep_dir = Path(args.dir or Path("runs") / "sweeps" / spec.path.stem).resolve()
    if (sweep_dir / TRIALS_FILE).exists():
        parser.error(f"{sweep_dir} already holds a sweep: continue it with --resume {sweep_dir}, or give --dir")
    trials = expand_trials(spec)
    print(f"Checking the settings of {len(trials)} trials with lsrl fit's parser ...", flush=True)
    check_trials(trials, sweep_dir)
    return _SweepRun(sweep_dir, trials, resources, max_failures, spec)


def _check_local_cpus(parser: ToolParser, args: argparse.Namespace, resources: Resources) -> None:
    """``--cpus`` sizes a local Ray instance only, and leaves room for one trial."""
    if args.cpus is not None and args.address is not None:
        parser.error(f"--cpus {args.cpus} sizes the local Ray instance: a cluster (--address) has its own CPUs")
    if args.cpus is not None and args.cpus < resources.cpus_per_trial:
        parser.error(f"--cpus {args.cpus} must be at least the CPUs of one trial ({resources.cpus_per_trial:g})")


def _sweep_engine() -> ModuleType:
    """:mod:`lightning_sparse_rl.sweep.engine`, or a one-line error when Ray Tune is not installed."""
    try:
        from lightning_sparse_rl.sweep import engine
    except ImportError as err:
        raise UserInputError(
            f"lsrl sweep needs Ray Tune ({err.name} is missing): pip install -e '.[sweep]' (scripts/setup.sh does)"
        ) from None
    return engine


def _write_sweep_folder(run: _SweepRun, spec: SweepSpec, argv: Sequence[str]) -> None:
    """Write each trial's config, a copy of the sweep file and ``trials.json`` (the trials as checked)."""
    for trial in run.trials:
        folder = trial_folder(run.sweep_dir, trial.name)
        config = yaml.safe_dump(trial_config(trial, folder), sort_keys=False)
        atomic_write_bytes(folder / TRIAL_CONFIG, config.encode())
    shutil.copyfile(spec.path, run.sweep_dir / SWEEP_COPY)
    saved = {
        "command": "lsrl sweep " + " ".join(argv),
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": source_commit(),
        "machine": machine_description(),
        "sweep_file": str(spec.path.resolve()),
        "resources": run.resources.__dict__,
        "max_failures": run.max_failures,
        "trials": [trial.to_dict() for trial in run.trials],
    }
    _write_json(run.sweep_dir / TRIALS_FILE, saved)


def _wait_for_unfinished_trials(sweep_dir: Path, statuses: dict[str, str]) -> None:
    """Wait until the ``lsrl fit`` of each unfinished trial has written its checkpoint and released its folder."""
    from lightning_sparse_rl.sweep.trial import STOP_GRACE_SECONDS  # Ray is installed: _sweep_engine imported it

    stopping = [trial_run_folder(sweep_dir, name) for name, status in statuses.items() if status != "TERMINATED"]
    stopping = [run_dir for run_dir in stopping if run_dir.exists()]
    if stopping:
        print(f"Waiting for {len(stopping)} unfinished trial(s) to write their checkpoints ...", flush=True)
        for run_dir in stopping:
            wait_until_released(run_dir, STOP_GRACE_SECONDS)


def _report_and_exit(run: _SweepRun, statuses: dict[str, str]) -> None:
    """Say how many trials finished; exit with status 1 if any failed, 130 if any is unfinished."""
    finished = [name for name, status in statuses.items() if status == "TERMINATED"]
    failed = [name for name, status in statuses.items() if status == "ERROR"]
    print(f"{len(finished)} of {len(run.trials)} trials finished. Report: lsrl report {run.sweep_dir}")
    if failed:
        print(f"Failed after {run.max_failures} retries: {', '.join(failed)} (see their fit.log)", file=sys.stderr)
        sys.exit(1)
    if len(finished) < len(run.trials):
        print(f"Unfinished trials remain; continue with: lsrl sweep --resume {run.sweep_dir}", file=sys.stderr)
        sys.exit(130)
