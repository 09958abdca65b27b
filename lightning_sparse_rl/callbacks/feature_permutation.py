"""``FeaturePermutationCallback``: the transfer setting, a new permutation of all input features every P steps."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_sparse_rl.seeding import RandomStream, agent_stream_seeds, agent_suffix
from lightning_sparse_rl.types import BufferRefill, RefillMode, TrainBatch
from lightning_sparse_rl.validation import UserInputError, check_positive


class FeaturePermutationCallback(Callback):
    """Every ``period`` training steps, at the next episode end, permute the networks' input features.

    In a population each agent is permuted at its own episode ends, with its own stream and history.

    As the original's ``--adjust_env_period`` (docs/original_code.md §5.4): at the first episode end after step
    ``period`` (then ``2·period``, …) a fresh random permutation of all ``D`` inputs (real and noise)
    is drawn, never one used before (the identity included), and applied to the algorithm's
    ``input_features``, which every network (actor, critics, targets) reads through. The replay buffer
    keeps its unpermuted observations, so stored transitions are replayed in the new order.

    Optionally the buffer is emptied and refilled with ``refill_timesteps`` env steps taken with
    uniformly random actions (``random``) or the current stochastic policy (``current``): the callback
    requests it from the DataModule (:class:`~lightning_sparse_rl.types.BufferRefill`), which carries it out
    before its next env step (the next training step, or the evaluation that follows). Refill steps are
    not training steps.

    As in the original, a change due at the last training step still happens (before the final
    evaluation), so that a run stopped there and resumed matches an uninterrupted one. The
    permutation history, the next change and the random stream are part of the checkpoint; the current
    permutation is in the model's ``state_dict``.

    Args:
        period: training env steps between feature permutations.
        empty_buffer: empty and refill the replay buffer at each permutation.
        refill_timesteps: env steps of the refill.
        refill_mode: ``random`` or ``current``.
        seed: seed of the permutation stream (agent ``k`` of a population: ``seed + k``); ``None`` derives each
            agent's from its seed (stream ``permutation`` of :mod:`lightning_sparse_rl.seeding`).

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
        self.next_change: list[int] = []  # per agent
        self.permutations: list[list[list[int]]] = []  # per agent, in the order they were applied
        self.streams: list[RandomStream] = []  # per agent: created at setup, or by a checkpoint's state

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Create each agent's permutation stream (a checkpoint's state replaces them when resuming)."""
        agents = len(pl_module.seeds)
        if self.empty_buffer and agents > 1:
            raise UserInputError(
                f"FeaturePermutationCallback(empty_buffer=True) with a population of {agents} agents: the agents' "
                "episodes end at different steps, and refilling one agent's buffer alone is not supported yet; "
                "train the transfer setting with a buffer refill one seed per run"
            )
        self.streams = [RandomStream(seed) for seed in agent_stream_seeds(pl_module.seeds, "permutation", self.seed)]
        self.next_change = [self.period] * agents
        self.permutations = [[] for _ in range(agents)]

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: TrainBatch, batch_idx: int
    ) -> None:
        """At an agent's episode end past its next change: permute its inputs (and refill the buffer)."""
        seeds, features = pl_module.seeds, pl_module.input_features
        for agent, episode in enumerate(batch.episodes):
            if episode is None or batch.train_step <= self.next_change[agent]:
                continue
            permutation = self._new_permutation(agent, features.input_dim)
            features.set_permutation(agent, permutation)
            history = self.permutations[agent]
            history.append(permutation.tolist())
            self.next_change[agent] += self.period
            who = f" of seed {seeds[agent]}" if len(seeds) > 1 else ""
            rank_zero_info(
                f"Environment change at step {batch.train_step}: new permutation of input features{who} "
                f"({len(history)} so far)."
            )
            suffix = agent_suffix(seeds, seeds[agent])
            for logger in trainer.loggers:
                logger.log_metrics({f"env/permutations{suffix}": float(len(history))}, step=batch.train_step - 1)
            if self.empty_buffer:
                data: BufferRefill = trainer.datamodule
                data.request_refill(self.refill_timesteps, self.refill_mode)

    def _new_permutation(self, agent: int, size: int) -> torch.Tensor:
        seen = {tuple(p) for p in self.permutations[agent]} | {tuple(range(size))}
        generator = self.streams[agent].generator("cpu")
        if len(seen) >= math.factorial(size):
            raise RuntimeError(f"all {math.factorial(size)} permutations of {size} input features have been used")
        while True:
            permutation = torch.randperm(size, generator=generator)
            if tuple(permutation.tolist()) not in seen:
                return permutation

    @override
    def state_dict(self) -> dict[str, Any]:
        """Per agent: permutation history, next change step and permutation stream; and the seed."""
        return {
            "permutations": self.permutations,
            "next_change": self.next_change,
            "seed": self.seed,
            "streams": [stream.state_dict() for stream in self.streams],
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.permutations = [[list(p) for p in history] for history in state_dict["permutations"]]
        self.next_change = list(state_dict["next_change"])
        self.seed = state_dict["seed"]
        self.streams = [RandomStream.from_state(saved) for saved in state_dict["streams"]]
