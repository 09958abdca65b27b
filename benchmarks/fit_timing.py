"""Shared by the benchmarks: the steady-state throughput of a real ``Trainer.fit``."""

from __future__ import annotations

import time

import lightning as L

from lightning_sparse_rl import EnvDataModule
from lightning_sparse_rl.algorithms import OffPolicyAlgorithm


def fit_steps_per_s(
    model: OffPolicyAlgorithm, data: EnvDataModule, skip: int, steps: int, callbacks: list[L.Callback] = ()
) -> float:
    """Training env steps per second of ``Trainer.fit(model, data)`` over ``steps`` steps after the first ``skip``.

    ``data.max_timesteps`` must be ``skip + steps``; no evaluation, logging or checkpointing.
    """
    marks: dict[str, float] = {}

    class Clock(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch.train_step == skip:
                marks["start"] = time.perf_counter()
            if batch.train_step == skip + steps:
                marks["end"] = time.perf_counter()

    trainer = L.Trainer(
        max_epochs=-1,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        callbacks=[*callbacks, Clock()],
    )
    trainer.fit(model, data)
    return steps / (marks["end"] - marks["start"])
