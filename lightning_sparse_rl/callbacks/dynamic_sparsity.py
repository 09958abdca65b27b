"""``DynamicSparsityCallback``: periodic prune-and-regrow of the masks (SET, RigL) during training."""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from torch.nn.utils import parametrize
from typing_extensions import override

from lightning_sparse_rl.seeding import RandomStream, agent_stream_seeds
from lightning_sparse_rl.sparse import (
    ConstantDrop,
    CosineDrop,
    DropSchedule,
    GradientGrowth,
    GrowthCriterion,
    LayerState,
    MagnitudePrune,
    MaskAdam,
    MemberLinear,
    PruneCriterion,
    RandomGrowth,
    SparseNetwork,
    is_masked,
    masked_layers,
    optimizer_moment,
    prune_and_regrow,
    set_mask,
    trainable_weight,
    weight_mask,
)
from lightning_sparse_rl.types import SparseAlgorithm, TrainBatch, Transition, TransitionWindow
from lightning_sparse_rl.validation import check_in_range, check_positive

NewWeightInit = Literal["zero", "unif", "xavier"]


class DynamicSparsityCallback(Callback):
    """Every ``update_period`` gradient updates, prune and regrow a fraction of each mask's connections.

    At gradient step ``t = k·update_period`` (the algorithm's own ``gradient_steps``, checked after each
    training batch), for every masked layer of the actor and critics with ``k`` active connections:
    prune ``floor(ζ_t·k)`` active weights (by default the smallest in magnitude; ties: lower row-major
    index first), regrow as many among all inactive positions, the just-pruned included — uniformly at
    random (SET), where the dense gradient of the network's loss on the current minibatch is largest
    (RigL), or by a criterion of your own — and initialise the new weights. The per-layer connection
    count never changes. With ``optimizer: maskadam`` the Adam moments of pruned and regrown positions are
    cleared. Targets with shared masks get the new mask; the others are kept sparse by the Polyak update.

    Each part is a contract of :mod:`lightning_sparse_rl.sparse.criteria`; ``growth``, ``prune`` and
    ``schedule`` take an object (``class_path`` in YAML) as well as the built-in names.

    Args:
        drop_fraction: ζ, fraction of active connections replaced per update, in ``(0, 1)`` (ANF: 0.05); not
            used when ``schedule`` is an object.
        update_period: gradient updates between topology updates (ANF: 1000).
        stop_step: last gradient step at which the topology may change (``None``: never stop).
        schedule: ``constant`` ζ, ``cosine`` decay of ζ to 0 at ``stop_step`` (Graesser et al. 2022), or a
            :class:`~lightning_sparse_rl.sparse.DropSchedule`.
        growth: ``random`` (SET), ``gradient`` (RigL) or a :class:`~lightning_sparse_rl.sparse.GrowthCriterion`.
        prune: a :class:`~lightning_sparse_rl.sparse.PruneCriterion`; ``None``: smallest magnitude.
        new_weight_init: regrown weights start at ``zero``, or per element ``unif`` ~ U(±1/√fan_in) or
            ``xavier`` ~ U(±√(6/(fan_in+fan_out))).
        seed: seed of the regrowth stream (agent ``k`` of a population: ``seed + k``); ``None`` derives each
            agent's from its seed (stream ``dst`` of :mod:`lightning_sparse_rl.seeding`).

    """

    def __init__(
        self,
        drop_fraction: float = 0.05,
        update_period: int = 1000,
        stop_step: int | None = None,
        schedule: Literal["constant", "cosine"] | DropSchedule = "constant",
        growth: Literal["random", "gradient"] | GrowthCriterion = "random",
        new_weight_init: NewWeightInit = "zero",
        seed: int | None = None,
        prune: PruneCriterion | None = None,
    ) -> None:
        check_in_range("drop_fraction", drop_fraction, 0.0, 1.0, low_inclusive=False)
        check_positive("update_period", update_period)
        if stop_step is not None:
            check_positive("stop_step", stop_step)
        self.schedule: DropSchedule = _drop_schedule(schedule, drop_fraction, stop_step)
        self.growth: GrowthCriterion = _growth_criterion(growth)
        self.prune: PruneCriterion = MagnitudePrune() if prune is None else _checked(prune, PruneCriterion, "prune")
        if new_weight_init not in ("zero", "unif", "xavier"):
            raise ValueError(f"new_weight_init={new_weight_init!r} must be one of 'zero', 'unif', 'xavier'")
        self.drop_fraction = drop_fraction
        self.update_period = int(update_period)
        self.stop_step = stop_step
        self.new_weight_init = new_weight_init
        self.seed = seed
        self.last_update_step = 0
        self.topology_updates = 0
        self.streams: list[RandomStream] = []  # one per agent: created at fit start, or by a checkpoint's state

    # ------------------------------------------------------------------------------------------ hooks
    @override
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Create each agent's regrowth stream (unless a checkpoint restored them); warn when nothing is masked."""
        if not self.streams:
            self.streams = [RandomStream(seed) for seed in agent_stream_seeds(pl_module.seeds, "dst", self.seed)]
        if not masked_layers(pl_module.sparse_networks()):
            warnings.warn(
                "DynamicSparsityCallback: no layer is masked (every sparsity level is 0), so there is nothing "
                "to prune or regrow; set global_sparsity or input_layer_sparsity on SparsityDistributionCallback",
                stacklevel=1,
            )

    @override
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: TrainBatch, batch_idx: int
    ) -> None:
        """Run a topology update when the gradient-step counter reached the next multiple of the period."""
        step = pl_module.gradient_steps
        due = step - step % self.update_period
        if due <= self.last_update_step or (self.stop_step is not None and due > self.stop_step):
            return
        self.last_update_step = due
        zeta = self.schedule.drop_fraction(due)
        changed = self.update_topology(trainer, pl_module, batch.minibatches[-1], zeta)
        self.topology_updates += 1
        seeds: tuple[int, ...] = pl_module.seeds
        metrics: dict[str, float] = {}
        for name, per_agent in changed.items():
            metrics[f"dst/{name}/connections_changed"] = float(sum(per_agent)) / len(per_agent)
            if len(seeds) > 1:
                metrics.update(
                    {
                        f"dst/{name}/connections_changed/seed_{s}": float(n)
                        for s, n in zip(seeds, per_agent, strict=True)
                    }
                )
        metrics["dst/drop_fraction"] = zeta
        metrics["dst/topology_updates"] = float(self.topology_updates)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=batch.train_step - 1)

    # ------------------------------------------------------------------------------------------ update
    @torch.no_grad()
    def update_topology(
        self, trainer: L.Trainer, pl_module: SparseAlgorithm, minibatch: Transition | TransitionWindow, zeta: float
    ) -> dict[str, list[int]]:
        """Prune and regrow a ``zeta`` fraction of every masked layer of every agent once.

        Agent ``k`` draws from its own stream. Returns, per network, the connections moved for each agent.
        """
        assert self.streams, "on_fit_start creates the streams"
        generators = [stream.generator(pl_module.device) for stream in self.streams]
        networks: list[SparseNetwork] = pl_module.sparse_networks()
        needs_gradient = self.growth.needs_gradient or self.prune.needs_gradient
        grads = dense_gradients(pl_module, networks, minibatch) if needs_gradient else {}
        mask_adams = [opt for opt in trainer.optimizers if isinstance(opt, MaskAdam)]
        step = pl_module.gradient_steps
        changed: dict[str, list[int]] = {}
        for net in networks:
            moved = torch.zeros(len(net.members), dtype=torch.long, device=pl_module.device)
            targets = net.target_layers or (None,) * len(net.layers)
            for layer, target in zip(net.layers, targets, strict=True):
                mask = weight_mask(layer)
                if mask is None:
                    continue
                weight, grad = layer.weight, grads.get(layer)
                momentum = optimizer_moment(trainer.optimizers, trainable_weight(layer))
                new_mask, pruned, grown = mask.clone(), torch.zeros_like(mask), torch.zeros_like(mask)
                for agent, member in enumerate(net.members):
                    state = LayerState(
                        weight[member],
                        mask[member],
                        step,
                        generators[agent],
                        None if grad is None else grad[member],
                        None if momentum is None else momentum[member],
                    )
                    new_mask[member], pruned[member], grown[member] = prune_and_regrow(
                        state, zeta, self.prune, self.growth
                    )
                    moved[agent] += (pruned[member] & ~new_mask[member]).sum()
                self._rewire(layer, new_mask, pruned, grown, mask_adams, net.members, generators)
                if target is not None and is_masked(target):
                    set_mask(target, new_mask)
                    trainable_weight(target)[grown] = trainable_weight(layer)[grown]
            changed[net.name] = moved.tolist()
        return changed

    def _rewire(
        self,
        layer: MemberLinear,
        new_mask: Tensor,
        pruned: Tensor,
        grown: Tensor,
        mask_adams: list[MaskAdam],
        members: range,
        generators: list[torch.Generator],
    ) -> None:
        """Install ``new_mask``: zero pruned weights, initialise grown ones, clear MaskAdam moments."""
        weight = trainable_weight(layer)
        set_mask(layer, new_mask)  # also zeroes every inactive weight
        if self.new_weight_init == "zero":
            weight.masked_fill_(grown, 0.0)
        else:
            fan_in, fan_out = layer.in_features, layer.out_features
            bound = 1 / math.sqrt(fan_in) if self.new_weight_init == "unif" else math.sqrt(6 / (fan_in + fan_out))
            for member, generator in zip(members, generators, strict=True):
                draws = torch.rand(int(grown[member].sum()), generator=generator, device=generator.device)
                weight[member][grown[member]] = ((2 * draws - 1) * bound).to(weight.device, weight.dtype)
        for optimizer in mask_adams:
            optimizer.reset_state(weight, pruned | grown)

    # ------------------------------------------------------------------------------------------ state
    @override
    def state_dict(self) -> dict[str, Any]:
        """Counters, seed and the agents' regrowth streams."""
        return {
            "last_update_step": self.last_update_step,
            "topology_updates": self.topology_updates,
            "seed": self.seed,
            "streams": [stream.state_dict() for stream in self.streams],
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore counters and the agents' regrowth streams."""
        self.last_update_step = state_dict["last_update_step"]
        self.topology_updates = state_dict["topology_updates"]
        self.seed = state_dict["seed"]
        self.streams = [RandomStream.from_state(saved) for saved in state_dict["streams"]]


def dense_gradients(
    pl_module: SparseAlgorithm, networks: list[SparseNetwork], minibatch: Transition | TransitionWindow
) -> dict[MemberLinear, Tensor]:
    """``∂loss/∂(masked weight)`` for every masked layer: dense, inactive positions included (RigL)."""
    grads: dict[MemberLinear, Tensor] = {}
    for family in dict.fromkeys(net.family for net in networks):
        layers = masked_layers([net for net in networks if net.family == family])
        if not layers:
            continue
        with torch.enable_grad(), parametrize.cached():
            weights = [m.weight for m in layers]  # cached: the forward pass uses these very tensors
            loss = pl_module.network_loss(family, pl_module.transition(minibatch))
            grads.update(zip(layers, torch.autograd.grad(loss, weights, allow_unused=True), strict=True))
    return grads


def _drop_schedule(schedule: str | DropSchedule, drop_fraction: float, stop_step: int | None) -> DropSchedule:
    """The schedule object for a built-in name (with ``drop_fraction`` and ``stop_step``), or ``schedule`` itself."""
    if schedule == "constant":
        return ConstantDrop(drop_fraction)
    if schedule == "cosine":
        if stop_step is None:
            raise ValueError("schedule='cosine' decays ζ to 0 at stop_step: set stop_step (e.g. 80% of the updates)")
        return CosineDrop(drop_fraction, stop_step)
    if isinstance(schedule, str):
        raise ValueError(f"schedule={schedule!r} must be 'constant', 'cosine' or a DropSchedule object")
    return _checked(schedule, DropSchedule, "schedule")


def _growth_criterion(growth: str | GrowthCriterion) -> GrowthCriterion:
    """The criterion object for a built-in name, or ``growth`` itself."""
    if growth == "random":
        return RandomGrowth()
    if growth == "gradient":
        return GradientGrowth()
    if isinstance(growth, str):
        raise ValueError(f"growth={growth!r} must be 'random' (SET), 'gradient' (RigL) or a GrowthCriterion object")
    return _checked(growth, GrowthCriterion, "growth")


def _checked(part: Any, contract: type, name: str) -> Any:
    """``part`` if it implements ``contract`` (a runtime-checkable protocol), else an error naming both."""
    if not isinstance(part, contract):
        raise ValueError(f"{name}={type(part).__qualname__} does not implement {contract.__qualname__}")
    return part
