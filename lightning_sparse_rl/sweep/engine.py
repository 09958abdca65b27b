"""Running a sweep's trials on Ray Tune: a local Ray instance by default, or an existing cluster by address.

Each trial is a Tune trial of :func:`~lightning_sparse_rl.sweep.trial.run_trial` with the sweep's resources;
Tune schedules them (as many at once as the cluster's CPUs and GPUs allow), retries a trial whose worker died
(``FailureConfig(max_failures)``) and keeps the experiment's state in ``SWEEP_DIR/ray``, from which
``lsrl sweep --resume`` restores it (finished trials are not run again).
"""

from __future__ import annotations

import collections
import logging
import math
import os
import socket
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray import tune
from typing_extensions import override

from lightning_sparse_rl.sweep.spec import Resources, Trial
from lightning_sparse_rl.sweep.trial import run_trial
from lightning_sparse_rl.validation import UserInputError

#: Tune's experiment folder inside the sweep folder.
RAY_FOLDER = "ray"
#: Tune's experiment name (its state is ``SWEEP_DIR/ray/tune``).
EXPERIMENT = "tune"
#: Seconds between two prints of the trial table while nothing finishes.
TABLE_SECONDS = 30.0


class SweepEngineError(UserInputError):
    """Ray could not be started or reached (the message says which address and why)."""


def start_ray(address: str | None, cpus: int | None = None) -> str:
    """Start a local Ray instance (``address`` ``None``) with ``cpus`` CPUs (``None``: all), or connect to a cluster.

    Returns:
        a description of where the sweep runs, for the console.

    Raises:
        SweepEngineError: the cluster at ``address`` cannot be reached.

    """
    import ray

    if address not in (None, "auto", "local"):
        _check_reachable(address)
    warnings.filterwarnings("ignore", module=r"ray\.util\.client")  # its timeout warning repeats our error
    options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": True}
    try:
        if address is None:
            # Ray SIGKILLs a worker's child processes when the worker exits; a trial's lsrl fit must outlive its
            # worker long enough to write its checkpoint (it gets SIGTERM then, see sweep.trial).
            os.environ.setdefault("RAY_kill_child_processes_on_worker_exit", "0")
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, **options)
        else:  # a Ray Client runs Tune on the cluster: its trial table must reach this console
            ray.init(address=address, **{**options, "log_to_driver": address.startswith("ray://")})
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
        causes = [err]
        while causes[-1].__cause__ is not None:
            causes.append(causes[-1].__cause__)
        if any("InvalidAuthToken" in f"{type(cause).__name__}: {cause}" for cause in causes):  # Ray words it so
            raise SweepEngineError(
                f"the Ray cluster at {address} requires token authentication: set RAY_AUTH_MODE=token, with the "
                "cluster's token in ~/.ray/auth_token or RAY_AUTH_TOKEN"
            ) from None
        raise SweepEngineError(f"cannot reach a Ray cluster at {address}: {' '.join(str(err).split())}") from None
    resources = ray.cluster_resources()
    where = "a local Ray instance" if address is None else f"the Ray cluster at {address}"
    return f"{where} ({resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs)"


#: Seconds to wait for a cluster's port before the sweep gives up (Ray itself retries for minutes).
CONNECT_SECONDS = 10.0


def _check_reachable(address: str) -> None:
    """Fail fast when nothing listens at ``address`` (``HOST:PORT`` or ``ray://HOST:PORT``)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise SweepEngineError(f"--address {address}: give auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as err:
        raise SweepEngineError(f"cannot reach a Ray cluster at {address}: {err.strerror or err}") from None


class TrialTable(tune.Callback):
    """Tune callback: a compact table of the trials (name, status, steps, last evaluation, retries).

    Printed when a trial starts, finishes or fails, and every :data:`TABLE_SECONDS` otherwise.
    """

    def __init__(self) -> None:
        self.printed = time.monotonic()  # the first table comes with the first trial's start

    @override
    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Print the table."""
        self.print_table(trials)

    @override
    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Print the table."""
        self.print_table(trials)

    @override
    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Print the table."""
        self.print_table(trials)

    @override
    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Say that a failed trial is retried."""
        print(f"Trial {_name(trial)} failed (failure {trial.num_failures}); Ray retries it from its last checkpoint.")

    @override
    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        """Print the table if it was last printed :data:`TABLE_SECONDS` ago."""
        if time.monotonic() - self.printed >= TABLE_SECONDS:
            self.print_table(trials)

    @override
    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        """Print the final table."""
        self.print_table(trials)

    def print_table(self, trials: Sequence[Any]) -> None:
        """Print one line per trial."""
        self.printed = time.monotonic()
        width = max([len(_name(trial)) for trial in trials] + [5])
        lines = [f"{'trial':<{width}}  {'status':<10}  {'steps':>17}  {'last eval':>10}  retries"]
        statuses = [_table_status(trial) for trial in trials]
        for trial, status in zip(trials, statuses, strict=True):
            result = trial.last_result or {}
            value = result.get("eval_return")
            shown = "-" if value is None or value != value else f"{value:.1f}"
            steps = f"{result.get('env_steps', 0)}/{trial.config['point']['trial']['max_timesteps']}"
            lines.append(f"{_name(trial):<{width}}  {status:<10}  {steps:>17}  {shown:>10}  {trial.num_failures}")
        counts = collections.Counter(statuses)
        summary = ", ".join(f"{count} {status.lower()}" for status, count in sorted(counts.items()))
        print(f"{time.strftime('%H:%M:%S')} trials: {summary}", *lines, sep="\n", flush=True)


def _name(trial: Any) -> str:
    return trial.config["point"]["trial"]["name"]


def _table_status(trial: Any) -> str:
    """Tune's status, but ``UNFINISHED`` for a trial Tune calls terminated when a stopped sweep ended it early."""
    if trial.status == "TERMINATED" and not (trial.last_result or {}).get("finished"):
        return "UNFINISHED"
    return trial.status


def run_trials(
    sweep_dir: Path, trials: Sequence[Trial], resources: Resources, max_failures: int, resume: bool
) -> dict[str, str]:
    """Run (or, with ``resume``, continue) the trials on the Ray instance :func:`start_ray` connected to.

    Returns:
        each trial's status by name: ``TERMINATED`` (finished), ``ERROR`` (failed ``max_failures + 1`` times) or
        ``UNFINISHED`` (the sweep was interrupted first).

    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's own console output off (verbose=0): ours is TrialTable
    logging.getLogger("ray.tune").setLevel(logging.ERROR)  # its hints name Tuner.restore; ours name lsrl sweep --resume
    trainable = tune.with_resources(run_trial, resources.as_ray())
    storage = str((sweep_dir / RAY_FOLDER).resolve())
    experiment = os.path.join(storage, EXPERIMENT)
    if resume and tune.Tuner.can_restore(experiment):
        tuner = tune.Tuner.restore(
            experiment, trainable, resume_unfinished=True, resume_errored=True, restart_errored=False
        )
    else:
        threads = max(1, math.floor(resources.cpus_per_trial))
        space = [{"sweep_dir": str(sweep_dir.resolve()), "threads": threads, "trial": t.to_dict()} for t in trials]
        tuner = tune.Tuner(
            trainable,
            param_space={"point": tune.grid_search(space)},
            tune_config=tune.TuneConfig(
                trial_name_creator=_name,
                trial_dirname_creator=_name,
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=storage,
                failure_config=tune.FailureConfig(max_failures=max_failures),
                verbose=0,
                callbacks=[TrialTable()],
            ),
        )
    statuses = dict.fromkeys((trial.name for trial in trials), "UNFINISHED")
    for result in tuner.fit():
        if result.config:  # None for a trial the sweep was interrupted before it started
            statuses[result.config["point"]["trial"]["name"]] = _status(result)
    return statuses


def _status(result: Any) -> str:
    if result.error is not None:
        return "ERROR"
    return "TERMINATED" if (result.metrics or {}).get("finished") else "UNFINISHED"
