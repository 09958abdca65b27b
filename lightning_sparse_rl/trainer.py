"""The trainer ``lsrl fit`` builds, for Python: the same defaults, always-on callbacks and checkpoint files.

``lsrl fit`` (LightningCLI) and :func:`make_trainer` share :data:`TRAINER_DEFAULTS` and
:func:`arrange_for_rl`, so a script and the command line train the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from lightning_sparse_rl.callbacks import EvaluationResults, RLProgressReporter, RunCheckpoints
from lightning_sparse_rl.loggers import CSVLogger
from lightning_sparse_rl.persistence.checkpoint_io import RunCheckpointIO

#: Trainer settings that make Lightning's loops fit RL (see README): epochs end on our env-step budget
#: (``max_epochs=-1``), there is no sanity evaluation, and runs go to ``runs/``.
TRAINER_DEFAULTS: dict[str, Any] = {"max_epochs": -1, "num_sanity_val_steps": 0, "default_root_dir": "runs"}


def arrange_for_rl(trainer: L.Trainer) -> L.Trainer:
    """Give ``trainer`` the run's checkpoint files and callback order; returns it.

    * checkpoints are written by :class:`RunCheckpointIO` (atomic, checksummed, the replay buffer in a side
      file), unless another ``CheckpointIO`` was configured;
    * :class:`RunCheckpoints` comes after every other callback: after those that change the training state
      at a step's end (its periodic checkpoints include their work) and after ``ModelCheckpoint`` (whose
      ``last.ckpt`` of an evaluation it then need not write again).
    """
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = RunCheckpointIO()
    ours = [callback for callback in trainer.callbacks if isinstance(callback, RunCheckpoints)]
    trainer.callbacks = [callback for callback in trainer.callbacks if callback not in ours] + ours
    return trainer


def make_trainer(
    name: str = "run",
    save_dir: str | Path = "runs",
    callbacks: Sequence[L.Callback] = (),
    every_n_env_steps: int | None = None,
    **trainer_kwargs: Any,
) -> L.Trainer:
    """A ``Trainer`` as ``lsrl fit`` builds it: ``trainer.fit(SAC(data.env_spec), data)`` trains like the CLI.

    It logs to ``save_dir/name/version_N`` (CSV, continued on resume) and always has the console reporter
    (:class:`RLProgressReporter`), the run files (:class:`EvaluationResults`) and ``last.ckpt`` after every
    evaluation and on SIGINT/SIGTERM (:class:`RunCheckpoints`). As in ``lsrl fit``, the progress bar is the one in
    ``callbacks`` (the shipped configs use :class:`RLProgressBar`: plain lines when stdout is not a terminal),
    else Lightning's default.

    Args:
        name: the run's name (a folder of ``save_dir``).
        save_dir: where runs go.
        callbacks: more callbacks (sparsity, connectivity, ``ModelCheckpoint`` for ``best.ckpt``, ...).
        every_n_env_steps: also write ``last.ckpt`` every that many training env steps.
        **trainer_kwargs: any other ``lightning.Trainer`` argument (``accelerator``, ``precision``, ...).

    """
    always = [RLProgressReporter(), EvaluationResults(), RunCheckpoints(every_n_env_steps=every_n_env_steps)]
    settings = {**TRAINER_DEFAULTS, "default_root_dir": str(save_dir), "logger": CSVLogger(save_dir, name=name)}
    trainer = L.Trainer(callbacks=[*callbacks, *always], **{**settings, **trainer_kwargs})
    return arrange_for_rl(trainer)
