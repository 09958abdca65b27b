"""Where a run is: its training-step count, its run directory and its checkpoint folder."""

from __future__ import annotations

from pathlib import Path

import lightning as L


def training_steps(trainer: L.Trainer) -> int:
    """Training env steps so far (the DataModule's counter; Lightning's ``global_step`` without one)."""
    return int(trainer.datamodule.train_steps if trainer.datamodule is not None else trainer.global_step)


def training_budget(trainer: L.Trainer) -> int | None:
    """The run's training env steps in all (the DataModule's ``max_timesteps``); ``None`` without one."""
    budget = getattr(trainer.datamodule, "max_timesteps", None)
    return int(budget) if budget is not None else None


def run_directory(trainer: L.Trainer) -> Path:
    """The run's directory: the first logger's ``log_dir``, else the trainer's ``default_root_dir``."""
    return Path(trainer.log_dir or trainer.default_root_dir)


def checkpoint_directory(trainer: L.Trainer) -> Path:
    """Where the run's checkpoints go: the ``ModelCheckpoint``'s folder, else ``RUN_DIR/checkpoints``."""
    dirpath = getattr(trainer.checkpoint_callback, "dirpath", None)
    return Path(dirpath) if dirpath else run_directory(trainer) / "checkpoints"
