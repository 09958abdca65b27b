"""``GradualPruningCallback``: gradual magnitude pruning (GMP) from dense to the final sparsity during training."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_sparse_rl.callbacks.dynamic_sparsity import dense_gradients
from lightning_sparse_rl.callbacks.sparsity_distribution import SparsityDistributionCallback, TargetSparsity
from lightning_sparse_rl.seeding import RandomStream, agent_stream_seeds, agent_suffix
from lightning_sparse_rl.sparse import (
    CubicSparsity,
    LayerState,
    MagnitudePrune,
    MaskAdam,
    PruneCriterion,
    SparseNetwork,
    SparsitySchedule,
    active_connections,
    format_schedule_table,
    is_masked,
    optimizer_moment,
    prune_to,
    set_mask,
    trainable_weight,
    weight_mask,
)
from lightning_sparse_rl.types import SparseAlgorithm, TrainBatch


class GradualPruningCallback(SparsityDistributionCallback):
    """Start dense and prune each layer by magnitude to its final level on a cubic schedule (Zhu & Gupta, 2017).

    The "Prune" baseline of Graesser et al. (ICML 2022). The final per-layer levels come from the same
    distributions as :class:`SparsityDistributionCallback` (``uniform``, ``ER``, ``new``; input and output
    layer options). Every layer that ends sparse gets a mask at the start (all ones when ``initial_sparsity``
    is 0). At each pruning step ``t`` (``t_0``, ``t_0 + Δt``, … and ``t_1``, counted in the algorithm's own
    gradient steps) every such layer of every agent keeps ``floor((1 − s_t)·n_in·n_out)`` connections, with
    ``s_t = s_f + (s_i − s_f)(1 − (t − t_0)/(t_1 − t_0))³`` and ``s_f`` the layer's final level: the smallest
    ``|w|`` among the active ones are removed (or by ``prune``). Pruned connections never come back, so the
    connection count falls over time, unlike SET and RigL. With MaskAdam the moments of pruned weights are
    cleared; targets follow as with static masks (``target_sparsity``).

    Logs, at every pruning step, each network's connections (``prune/<net>/connections``, per agent with
    ``/seed_S`` in a population) and the scheduled global sparsity ``prune/sparsity``; at every evaluation,
    the measured ``sparsity/...`` as :class:`SparsityDistributionCallback` does.

    Args:
        global_sparsity: final sparsity of each network's weights, in ``[0, 1)``.
        distribution: how the final level is spread over the layers: ``uniform``, ``ER`` or ``new``.
        input_layer_sparsity: ``-1`` free, ``0`` dense input layer, ``(0, 1)`` pinned final level.
        output_layer_sparse: let the actor's output layer be sparse too (critic outputs stay dense).
        closeness: exponent of the ``new`` distribution.
        target_sparsity: ``magnitude`` or ``shared``, as for :class:`SparsityDistributionCallback`.
        start_step: ``t_0``, the first pruning step (Graesser et al.: 20 % of the gradient updates).
        end_step: ``t_1``, the last pruning step (Graesser et al.: 80 %).
        update_period: ``Δt``, gradient updates between pruning steps.
        initial_sparsity: ``s_i``, the level every sparse layer starts at (0: dense), in ``[0, 1)``.
        prune: a :class:`~lightning_sparse_rl.sparse.PruneCriterion`; ``None``: smallest magnitude.
        schedule: a :class:`~lightning_sparse_rl.sparse.SparsitySchedule` of your own, which replaces the cubic
            one (``start_step``, ``end_step``, ``update_period`` and ``initial_sparsity`` are then not used).
        seed: seed of the initial masks and of the ``prune`` criterion's stream; ``None`` derives them from
            each agent's seed.
        critic_sparsity: the critics' own final sparsity; ``None``: ``global_sparsity``.

    """

    def __init__(
        self,
        global_sparsity: float = 0.9,
        distribution: Literal["uniform", "ER", "new"] = "uniform",
        input_layer_sparsity: float = -1.0,
        output_layer_sparse: bool = False,
        closeness: float = 0.2,
        target_sparsity: TargetSparsity = "magnitude",
        start_step: int = 200_000,
        end_step: int = 800_000,
        update_period: int = 1000,
        initial_sparsity: float = 0.0,
        prune: PruneCriterion | None = None,
        schedule: SparsitySchedule | None = None,
        seed: int | None = None,
        critic_sparsity: float | None = None,
    ) -> None:
        super().__init__(
            global_sparsity,
            distribution,
            input_layer_sparsity,
            output_layer_sparse,
            closeness,
            target_sparsity,
            seed,
            critic_sparsity,
        )
        self.schedule: SparsitySchedule = (
            CubicSparsity(start_step, end_step, update_period, initial_sparsity) if schedule is None else schedule
        )
        self.prune: PruneCriterion = MagnitudePrune() if prune is None else prune
        self.checked_step = 0  # gradient steps up to here have been checked for a pruning step
        self.pruning_steps = 0
        self.streams: list[RandomStream] = []

    @override
    def initial_sparsity(self, level: float) -> float | None:
        """Every layer that ends sparse starts masked, at the schedule's level for step 0."""
        return self.schedule.sparsity(level, 0) if level > 0.0 else None

    # ------------------------------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Masks at the initial level (see :class:`SparsityDistributionCallback`), then the schedule's table."""
        super().setup(trainer, pl_module, stage)
        for family, levels in self.levels.items():
            net = next(net for net in pl_module.sparse_networks() if net.family == family)
            table = format_schedule_table(
                family, net.layer_sizes, levels.sparsity, self._table_steps(), self.schedule.sparsity
            )
            rank_zero_info(table)

    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Create each agent's stream for the prune criterion (unless a checkpoint restored them)."""
        if not self.streams:
            self.streams = [RandomStream(seed) for seed in agent_stream_seeds(pl_module.seeds, "dst", self.seed)]

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: TrainBatch, batch_idx: int
    ) -> None:
        """Prune when a pruning step lies among the gradient steps made since the last check."""
        step = pl_module.gradient_steps
        due = [t for t in range(self.checked_step + 1, step + 1) if self.schedule.is_update_step(t)]
        self.checked_step = step
        if not due:
            return
        connections = self.prune_to_schedule(trainer, pl_module, batch, due[-1])
        self.pruning_steps += 1
        seeds: tuple[int, ...] = pl_module.seeds
        metrics = {"prune/sparsity": self._scheduled_global(due[-1]), "prune/steps": float(self.pruning_steps)}
        for name, per_agent in connections.items():
            metrics[f"prune/{name}/connections"] = sum(per_agent) / len(per_agent)
            if len(seeds) > 1:
                metrics.update(
                    {
                        f"prune/{name}/connections{agent_suffix(seeds, s)}": float(n)
                        for s, n in zip(seeds, per_agent, strict=True)
                    }
                )
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=batch.train_step - 1)

    # ------------------------------------------------------------------------------------------ pruning
    @torch.no_grad()
    def prune_to_schedule(
        self, trainer: L.Trainer, pl_module: SparseAlgorithm, batch: TrainBatch, step: int
    ) -> dict[str, list[int]]:
        """Prune every sparse layer of every agent to its scheduled count at ``step``; connections per network."""
        networks: list[SparseNetwork] = pl_module.sparse_networks()
        generators = [stream.generator(pl_module.device) for stream in self.streams]
        grads = dense_gradients(pl_module, networks, batch.minibatches[-1]) if self.prune.needs_gradient else {}
        mask_adams = [opt for opt in trainer.optimizers if isinstance(opt, MaskAdam)]
        connections: dict[str, list[int]] = {}
        for net in networks:
            counts = [0] * len(net.members)
            targets = net.target_layers or (None,) * len(net.layers)
            for layer, target, final in zip(net.layers, targets, self.levels[net.family].sparsity, strict=True):
                mask = weight_mask(layer)
                if mask is None:
                    counts = [n + layer.in_features * layer.out_features for n in counts]  # a dense layer
                    continue
                n_active = active_connections(
                    self.schedule.sparsity(final, step), layer.in_features * layer.out_features
                )
                weight, grad = layer.weight, grads.get(layer)
                momentum = optimizer_moment(trainer.optimizers, trainable_weight(layer))
                pruned = torch.zeros_like(mask)
                for agent, member in enumerate(net.members):
                    state = LayerState(
                        weight[member],
                        mask[member],
                        step,
                        generators[agent],
                        None if grad is None else grad[member],
                        None if momentum is None else momentum[member],
                    )
                    pruned[member] = prune_to(state, n_active, self.prune)
                new_mask = mask & ~pruned
                set_mask(layer, new_mask)  # zeroes the pruned weights
                for optimizer in mask_adams:
                    optimizer.reset_state(trainable_weight(layer), pruned)
                if target is not None and is_masked(target):
                    set_mask(target, new_mask)
                counts = [n + int(new_mask[member].sum()) for n, member in zip(counts, net.members, strict=True)]
            connections[net.name] = counts
        return connections

    def _table_steps(self) -> list[int]:
        """Steps shown in the start-up table: the cubic schedule's start, quarters and end; else none."""
        if not isinstance(self.schedule, CubicSparsity):
            return []
        start, end = self.schedule.start_step, self.schedule.end_step
        return [start + (end - start) * q // 4 for q in range(5)]

    def _scheduled_global(self, step: int) -> float:
        """Mean over the network families of the scheduled global sparsity at ``step``."""
        values = []
        for levels in self.levels.values():
            active = sum(
                active_connections(self.schedule.sparsity(final, step), possible) if final > 0 else possible
                for final, possible in zip(levels.sparsity, levels.possible, strict=True)
            )
            values.append(1.0 - active / sum(levels.possible))
        return sum(values) / len(values)

    # ------------------------------------------------------------------------------------------ state
    @override
    def state_dict(self) -> dict[str, Any]:
        """Seeds, the step checked up to, the pruning steps so far and the agents' streams."""
        return {
            **super().state_dict(),
            "checked_step": self.checked_step,
            "pruning_steps": self.pruning_steps,
            "streams": [stream.state_dict() for stream in self.streams],
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the seeds, counters and streams."""
        super().load_state_dict(state_dict)
        self.checked_step = state_dict["checked_step"]
        self.pruning_steps = state_dict["pruning_steps"]
        self.streams = [RandomStream.from_state(saved) for saved in state_dict["streams"]]
