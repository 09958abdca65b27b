"""One trial of a sweep: its ``lsrl fit`` in a child process, continued from ``last.ckpt``, its evaluations reported.

:func:`run_trial` is the Ray Tune function trainable. It is idempotent: a finished trial returns at once, a trial
with a checkpoint resumes it exactly (``lsrl fit --config RUN_DIR/config.yaml --ckpt_path last``), any other
starts afresh. So a trial that Ray retries after its worker died (``max_failures``), or that ``lsrl sweep --resume``
starts again after Ctrl-C or a crash, loses no step and repeats none: its ``evaluations.csv`` is the one an
uninterrupted run writes.

The child runs in a session of its own and stops with its worker: when the worker ends (Linux:
``PR_SET_PDEATHSIG``) or the trial is stopped, it gets SIGTERM, writes a checkpoint and exits. A new attempt waits
until the previous one has released its run folder. Its output goes to ``TRIAL_DIR/fit.log``.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ray import tune

from lightning_sparse_rl.persistence.run_files import EVALUATION_COLUMNS, read_csv_columns
from lightning_sparse_rl.persistence.run_lock import LOCK_FILE, lock_owner, wait_until_released
from lightning_sparse_rl.sweep.layout import FIT_LOG, RUN_FOLDER, TRIAL_CONFIG, trial_folder
from lightning_sparse_rl.sweep.spec import Trial

#: Seconds between two looks at the run's ``evaluations.csv``.
POLL_SECONDS = 2.0
#: Seconds a stopping ``lsrl fit`` is given to write its checkpoint (a population's replay buffers can take GBs).
STOP_GRACE_SECONDS = 600.0
#: ``prctl`` option: a signal for the child when the thread that started it ends.
_PR_SET_PDEATHSIG = 1
#: libc's ``prctl``, looked up before any fork (the child between fork and exec may only call it).
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


@dataclass(frozen=True)
class TrialProgress:
    """Where a trial's run is, from its ``evaluations.csv``.

    Attributes:
        env_steps: training env steps of the last evaluation of every agent (0 before the first).
        eval_return: mean over agents of that evaluation's return (NaN before the first).
        finished: every agent has its evaluation at ``max_timesteps``.

    """

    env_steps: int
    eval_return: float
    finished: bool

    def metrics(self, max_timesteps: int) -> dict[str, Any]:
        """The values reported to Ray Tune for this progress."""
        return {
            "env_steps": self.env_steps,
            "max_timesteps": max_timesteps,
            "eval_return": self.eval_return,
            "finished": self.finished,
        }


def read_progress(run_dir: Path, seeds: list[int], max_timesteps: int) -> TrialProgress:
    """The progress of a trial's run folder (nothing yet when it has no ``evaluations.csv``)."""
    file = run_dir / "evaluations.csv"
    if not file.exists():
        return TrialProgress(0, float("nan"), False)
    columns = read_csv_columns(file, EVALUATION_COLUMNS)
    steps = [columns["step"][columns["seed"] == seed] for seed in seeds]
    if any(len(s) == 0 for s in steps):
        return TrialProgress(0, float("nan"), False)
    last = int(min(s.max() for s in steps))
    at_last = columns["step"] == last
    returns = columns["return"][at_last & np.isin(columns["seed"], seeds)]
    return TrialProgress(last, float(np.mean(returns)), last >= max_timesteps)


def fit_command(trial: Trial, folder: Path) -> list[str]:
    """The ``lsrl fit`` arguments that start the trial, or continue it from its ``last.ckpt``."""
    run_dir = folder / RUN_FOLDER
    if (run_dir / "checkpoints" / "last.ckpt").exists() and (run_dir / "config.yaml").exists():
        return ["fit", "--config", str(run_dir / "config.yaml"), "--ckpt_path", "last"]
    return ["fit", "--config", str(folder / TRIAL_CONFIG), *trial.fit_args]


def _die_with_parent() -> None:  # runs in the child between fork and exec: no imports, no allocations
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _stop(child: subprocess.Popen) -> None:
    """SIGTERM (``lsrl fit`` checkpoints and stops), then SIGKILL after :data:`STOP_GRACE_SECONDS`."""
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _wait_for_previous_attempt(run_dir: Path, log: Path) -> None:
    """Wait until an earlier attempt's ``lsrl fit`` has written its checkpoint and released the run folder.

    An attempt on another host that still holds the lock after :data:`STOP_GRACE_SECONDS` is taken to be gone
    with its node (Ray retries a trial once its worker is lost): its lock is removed, with a line in the log.

    Raises:
        RuntimeError: a process of this host still holds the run folder after :data:`STOP_GRACE_SECONDS`.

    """
    if wait_until_released(run_dir, STOP_GRACE_SECONDS):
        return
    owner = lock_owner(run_dir)
    if owner.get("host") in (None, socket.gethostname()):
        raise RuntimeError(f"{run_dir} is still in use by PID {owner.get('pid')} after {STOP_GRACE_SECONDS:g} s")
    with open(log, "a") as handle:
        handle.write(f"\nTaking over the lock of an earlier attempt on host {owner['host']} (PID {owner.get('pid')})\n")
    (run_dir / LOCK_FILE).unlink(missing_ok=True)


def run_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: train trial ``config["point"]["trial"]`` of sweep folder ``...["sweep_dir"]``.

    Reports ``env_steps``, ``eval_return`` (mean over the population), ``max_timesteps`` and ``finished`` to
    Tune after every evaluation.

    Raises:
        RuntimeError: ``lsrl fit`` ended before the trial finished (Ray retries the trial up to ``max_failures``
            times; each retry continues from the last checkpoint).

    """
    point = config["point"]
    trial = Trial.from_dict(point["trial"])
    folder = trial_folder(point["sweep_dir"], trial.name)
    run_dir = folder / RUN_FOLDER
    progress = read_progress(run_dir, trial.seeds, trial.max_timesteps)
    if progress.finished:
        tune.report(progress.metrics(trial.max_timesteps))
        return
    _wait_for_previous_attempt(run_dir, folder / FIT_LOG)
    command = fit_command(trial, folder)
    if command[-1] != "last" and run_dir.exists():  # a start that wrote no checkpoint: nothing to continue
        shutil.rmtree(run_dir)
    threads = str(max(1, int(point["threads"])))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
    reported = progress
    with open(folder / FIT_LOG, "a") as log:
        log.write(f"\n$ lsrl {' '.join(command)}\n")
        log.flush()
        child = subprocess.Popen(
            [sys.executable, "-m", "lightning_sparse_rl.cli", *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=folder,
            start_new_session=True,  # not in Ray's process group: a stop reaches it as one SIGTERM, and it checkpoints
            preexec_fn=_die_with_parent if _PRCTL is not None else None,
        )
        try:
            while child.poll() is None:
                time.sleep(POLL_SECONDS)
                progress = read_progress(run_dir, trial.seeds, trial.max_timesteps)
                if progress.env_steps > reported.env_steps:
                    tune.report(progress.metrics(trial.max_timesteps))
                    reported = progress
        finally:
            _stop(child)
    progress = read_progress(run_dir, trial.seeds, trial.max_timesteps)
    if (progress.env_steps, progress.finished) != (reported.env_steps, reported.finished):
        tune.report(progress.metrics(trial.max_timesteps))
    if not progress.finished:
        raise RuntimeError(
            f"lsrl fit of trial {trial.name} ended with status {child.returncode} at {progress.env_steps} of "
            f"{trial.max_timesteps} steps; see {folder / FIT_LOG}"
        )
