"""``SparsityDistributionCallback``: per-layer sparsity levels and random masks, set up before training."""

from __future__ import annotations

from itertools import groupby
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from typing_extensions import override

from lightning_sparse_rl.floating_point import count_nonzero_entries
from lightning_sparse_rl.seeding import RandomStream, agent_stream_seeds, agent_suffix
from lightning_sparse_rl.sparse import (
    LayerCount,
    LayerSparsity,
    MemberLinear,
    SparseNetwork,
    active_connections,
    active_count,
    check_sparsity_arguments,
    compute_layer_sparsity,
    format_sparsity_table,
    is_masked,
    masked_layers,
    random_mask,
    set_mask,
    trainable_weight,
)
from lightning_sparse_rl.sparse import (
    global_sparsity as measured_global_sparsity,
)

TargetSparsity = Literal["magnitude", "shared"]


def layer_counts(layers: tuple[MemberLinear, ...], member: int, count_nonzero: bool = False) -> list[LayerCount]:
    """Connections of member ``member`` in each layer: a mask's active entries, else all of them.

    With ``count_nonzero`` an unmasked layer counts its non-zero weights (targets kept sparse by magnitude).
    """
    counts = []
    for layer in layers:
        if is_masked(layer):
            active = int(active_count(layer)[member])
        elif count_nonzero:
            active = count_nonzero_entries(layer.weight[member])
        else:
            active = layer.in_features * layer.out_features
        counts.append(LayerCount(layer.in_features, layer.out_features, active))
    return counts


class SparsityDistributionCallback(Callback):
    """Compute per-layer sparsity levels from the model's layer shapes and create the masks.

    Runs in ``setup``, before optimizers exist, on the algorithm's
    :meth:`~lightning_sparse_rl.algorithms.OffPolicyAlgorithm.sparse_networks`. The actor and the critic
    get levels of their own (``compute_layer_sparsity``); Q1 and Q2 share levels but draw independent
    masks with exactly ``floor((1 − s)·n_in·n_out)`` connections each. In a population every agent's
    networks have the same levels and masks of their own, drawn from the agent's own stream. Biases are
    never masked. Prints a table per network and logs the levels as hyperparameters and the measured
    sparsity of online and target networks after every evaluation (per agent with ``/seed_S`` in a
    population; the plain keys are the means over agents).

    Args:
        global_sparsity: target sparsity of each network's weights, in ``[0, 1)``.
        distribution: ``uniform``, ``ER`` or ``new`` (docs/original_code.md §3.2).
        input_layer_sparsity: ``-1`` free, ``0`` dense input layer, ``(0, 1)`` pinned (ANF: 0.8).
        output_layer_sparse: let the actor's output layer be sparse too (critic outputs stay dense).
        closeness: exponent of the ``new`` distribution.
        target_sparsity: ``magnitude`` (default; ANF and DS-TD3): targets carry no mask; after each
            Polyak update their smallest weights beyond the online connection count are zeroed, so they
            stay exactly as sparse as the online network while their pattern may lag behind it.
            ``shared``: targets carry a copy of the online masks (updated with every topology change),
            which is cheaper and keeps the patterns identical.
        seed: seed of the mask draws (agent ``k`` of a population: ``seed + k``); ``None`` derives each
            agent's from its seed (stream ``masks`` of :mod:`lightning_sparse_rl.seeding`).
        critic_sparsity: the critics' own target sparsity (RLx2 trains the actor sparser than the critics);
            ``None``: ``global_sparsity`` for every network.

    """

    def __init__(
        self,
        global_sparsity: float = 0.0,
        distribution: Literal["uniform", "ER", "new"] = "uniform",
        input_layer_sparsity: float = -1.0,
        output_layer_sparse: bool = False,
        closeness: float = 0.2,
        target_sparsity: TargetSparsity = "magnitude",
        seed: int | None = None,
        critic_sparsity: float | None = None,
    ) -> None:
        check_sparsity_arguments(global_sparsity, distribution, input_layer_sparsity, closeness)
        if critic_sparsity is not None:
            check_sparsity_arguments(critic_sparsity, distribution, input_layer_sparsity, closeness)
        if target_sparsity not in ("magnitude", "shared"):
            raise ValueError(f"target_sparsity={target_sparsity!r} must be 'magnitude' or 'shared'")
        self.global_sparsity = global_sparsity
        self.critic_sparsity = critic_sparsity
        self.distribution = distribution
        self.input_layer_sparsity = input_layer_sparsity
        self.output_layer_sparse = output_layer_sparse
        self.closeness = closeness
        self.target_sparsity = target_sparsity
        self.seed = seed
        self.agent_seeds: list[int] = []  # of the mask streams, one per agent (set up with the model)
        self.levels: dict[str, LayerSparsity] = {}

    # ------------------------------------------------------------------------------------------ setup
    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Create the masks (unless the model is already masked), print the tables, log the levels."""
        networks: list[SparseNetwork] = pl_module.sparse_networks()
        already_masked = bool(masked_layers(networks))
        agents = len(pl_module.seeds)
        self.agent_seeds = agent_stream_seeds(pl_module.seeds, "masks", self.seed)
        generators = [RandomStream(seed).generator(pl_module.device) for seed in self.agent_seeds]
        masks: dict[MemberLinear, Tensor] = {}
        families = {family: list(nets) for family, nets in groupby(networks, key=lambda net: net.family)}
        for family, nets in families.items():
            self.levels[family] = self._levels_for(nets[0])
            if not already_masked:
                for net in nets:
                    self._draw_masks(net, self.levels[family], generators, masks)
        self._install(networks, masks)
        for family, nets in families.items():
            self._report(family, nets, agents)
        hparams = {
            f"sparsity/{family}/layer{i}": round(s, 6)
            for family, levels in self.levels.items()
            for i, s in enumerate(levels.sparsity, start=1)
        }
        for logger in trainer.loggers:
            logger.log_hyperparams(hparams)

    def _levels_for(self, net: SparseNetwork) -> LayerSparsity:
        n_layers = len(net.layers)
        keep_dense = [False] * n_layers
        keep_dense[-1] = not (self.output_layer_sparse and net.output_may_be_sparse)
        return compute_layer_sparsity(
            self.requested(net.family),
            net.layer_sizes,
            keep_dense,
            self.distribution,
            self.closeness,
            self.input_layer_sparsity,
        )

    def requested(self, family: str) -> float:
        """The global sparsity asked for the network family (``actor`` or ``critic``)."""
        return self.critic_sparsity if family == "critic" and self.critic_sparsity is not None else self.global_sparsity

    def initial_sparsity(self, level: float) -> float | None:
        """The sparsity a layer's mask starts at, given its level; ``None``: the layer stays dense, without a mask."""
        return level if level > 0.0 else None

    def _draw_masks(
        self,
        net: SparseNetwork,
        levels: LayerSparsity,
        generators: list[torch.Generator],
        masks: dict[MemberLinear, Tensor],
    ) -> None:
        """Draw ``net``'s masks, agent ``k``'s from ``generators[k]``, into ``masks`` (one tensor per layer)."""
        for layer, level in zip(net.layers, levels.sparsity, strict=True):
            sparsity = self.initial_sparsity(level)
            if sparsity is None:
                continue
            n_active = active_connections(sparsity, layer.in_features * layer.out_features)
            mask = masks.setdefault(layer, torch.ones_like(layer.weight, dtype=torch.bool))
            for member, generator in zip(net.members, generators, strict=True):
                mask[member] = random_mask((layer.in_features, layer.out_features), n_active, generator)

    @torch.no_grad()
    def _install(self, networks: list[SparseNetwork], masks: dict[MemberLinear, Tensor]) -> None:
        """Mask the layers; each target starts as an exact copy of its masked online network."""
        for layer, mask in masks.items():
            set_mask(layer, mask)
        pairs = {
            layer: target
            for net in networks
            if net.target_layers is not None
            for layer, target in zip(net.layers, net.target_layers, strict=True)
        }
        for layer, target in pairs.items():
            if layer in masks:
                if self.target_sparsity == "shared":
                    set_mask(target, masks[layer].clone())
                trainable_weight(target).copy_(layer.weight)

    def _report(self, family: str, nets: list[SparseNetwork], agents: int) -> None:
        levels = self.levels[family]
        names = ", ".join(net.name for net in nets)
        title = (
            f"{family} [{names}]: {'-'.join(map(str, nets[0].layer_sizes))}, {self.distribution}, "
            f"global sparsity requested {self.requested(family):g}, achieved {levels.global_sparsity:.5f}"
        )
        networks = len(nets) * agents
        if networks > 1:
            title += f" (each of the {networks} networks: same levels, independent masks)"
        table = format_sparsity_table(title, layer_counts(nets[0].layers, nets[0].members[0]))
        if levels.fallback:
            table += (
                f"\nNote: global_sparsity {self.requested(family):g} cannot be met with input_layer_sparsity "
                f"{self.input_layer_sparsity:g}: all other layers are dense, so the global sparsity is "
                f"{levels.global_sparsity:.5f} (docs/original_code.md §3.3)."
            )
        rank_zero_info(table)

    # ------------------------------------------------------------------------------------------ logging
    @override
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Log measured per-layer (sparse layers) and global sparsity of each online and target network."""
        seeds: tuple[int, ...] = pl_module.seeds
        values: dict[str, list[float]] = {}
        for net in pl_module.sparse_networks():
            for name, layers, is_target in (
                (net.name, net.layers, False),
                (f"{net.name}_target", net.target_layers, True),
            ):
                if layers is None:
                    continue
                for agent, member in enumerate(net.members):
                    counts = layer_counts(layers, member, count_nonzero=is_target)
                    keys = {f"sparsity/{name}/global": measured_global_sparsity(counts)}
                    for i, (count, layer) in enumerate(zip(counts, net.layers, strict=True), start=1):
                        if is_masked(layer):
                            keys[f"sparsity/{name}/layer{i}"] = count.sparsity
                    for key, value in keys.items():
                        values.setdefault(key, []).append(value)
                        if len(seeds) > 1:
                            values[key + agent_suffix(seeds, seeds[agent])] = [value]
        pl_module.log_dict({key: sum(v) / len(v) for key, v in values.items()}, on_epoch=True)

    # ------------------------------------------------------------------------------------------ state
    @override
    def state_dict(self) -> dict[str, Any]:
        """The mask seeds (the masks themselves are module buffers in the model's state)."""
        return {"seed": self.seed, "agent_seeds": self.agent_seeds}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the seeds."""
        self.seed = state_dict["seed"]
        self.agent_seeds = list(state_dict["agent_seeds"])
