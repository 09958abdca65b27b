"""``FeaturePermutationCallback``: the transfer setting, a new permutation of all input features every P steps."""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from lightning_sparse_rl.seeding import stream_seed
from lightning_sparse_rl.types import TrainBatch
from lightning_sparse_rl.validation import check_positive

RefillMode = Literal["random", "current"]


class FeaturePermutationCallback(Callback):
    """Every ``period`` training steps, at the next episode end, permute the networks' input features.

    As the original's ``--adjust_env_period`` (docs/original_code.md §5.4): at the first episode end after step
    ``period`` (then ``2·period``, …) a fresh random permutation of all ``D`` inputs (real and noise)
    is drawn, never one used before (the identity included), and applied to the algorithm's
    ``input_features``, which every network (actor, critics, targets) reads through. The replay buffer
    keeps its unpermuted observations, so stored transitions are replayed in the new order.

    Optionally the buffer is emptied and refilled with ``refill_timesteps`` env steps taken with
    uniformly random actions (``random``) or the current stochastic policy (``current``). Refill
    steps are not training steps.

    As in the original, a change due at the last training step still happens (before the final
    evaluation), so that a run stopped there and resumed matches an uninterrupted one. The
    permutation history, the next change and the generator are part of the checkpoint; the current
    permutation is in the model's ``state_dict``.

    Args:
        period: training env steps between feature permutations.
        empty_buffer: empty and refill the replay buffer at each permutation.
        refill_timesteps: env steps of the refill.
        refill_mode: ``random`` or ``current``.
        seed: seed of the permutation generator; ``None`` derives it from the run seed (``torch.initial_seed()``,
            stream ``permutation`` of :mod:`lightning_sparse_rl.seeding`).

    """

    def __init__(
        self,
        period: int,
        empty_buffer: bool = False,
        refill_timesteps: int = 25_000,
        refill_mode: RefillMode = "random",
        seed: int | None = None,
    ) -> None:
        check_positive("period", period)
        check_positive("refill_timesteps", refill_timesteps)
        if refill_mode not in ("random", "current"):
            raise ValueError(f"refill_mode={refill_mode!r} must be 'random' or 'current'")
        self.period = int(period)
        self.empty_buffer = empty_buffer
        self.refill_timesteps = int(refill_timesteps)
        self.refill_mode = refill_mode
        self.seed = seed
        self.next_change = self.period
        self.permutations: list[list[int]] = []
        self.generator = torch.Generator()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Seed the permutation generator (a checkpoint's state replaces it when resuming)."""
        if self.seed is None:
            self.seed = stream_seed(torch.initial_seed(), "permutation")
        self.generator.manual_seed(self.seed)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: TrainBatch, batch_idx: int
    ) -> None:
        """At an episode end past the next change: permute (and refill the buffer)."""
        if batch.episode is None or batch.train_step <= self.next_change:
            return
        features = pl_module.input_features
        permutation = self._new_permutation(features.input_dim)
        features.set_permutation(permutation)
        self.permutations.append(permutation.tolist())
        self.next_change += self.period
        rank_zero_info(
            f"Environment change at step {batch.train_step}: new permutation of input features "
            f"({len(self.permutations)} so far)."
        )
        for logger in trainer.loggers:
            logger.log_metrics({"env/permutations": float(len(self.permutations))}, step=batch.train_step - 1)
        if self.empty_buffer:
            agent = pl_module if self.refill_mode == "current" else None
            trainer.datamodule.refill(self.refill_timesteps, agent)

    def _new_permutation(self, size: int) -> torch.Tensor:
        seen = {tuple(p) for p in self.permutations} | {tuple(range(size))}
        if len(seen) >= math.factorial(size):
            raise RuntimeError(f"all {math.factorial(size)} permutations of {size} input features have been used")
        while True:
            permutation = torch.randperm(size, generator=self.generator)
            if tuple(permutation.tolist()) not in seen:
                return permutation

    def state_dict(self) -> dict[str, Any]:
        """Permutation history, next change step, seed and generator state."""
        return {
            "permutations": self.permutations,
            "next_change": self.next_change,
            "seed": self.seed,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.permutations = [list(p) for p in state_dict["permutations"]]
        self.next_change = state_dict["next_change"]
        self.seed = state_dict["seed"]
        self.generator.set_state(state_dict["generator"])
