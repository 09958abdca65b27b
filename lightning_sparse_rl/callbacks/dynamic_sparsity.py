"""``DynamicSparsityCallback``: periodic prune-and-regrow of the masks (SET, RigL) during training."""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn
from torch.nn.utils import parametrize

from lightning_sparse_rl.seeding import RandomStream, stream_seed
from lightning_sparse_rl.sparse import (
    MaskAdam,
    SparseNetwork,
    drop_fraction_at,
    is_masked,
    masked_layers,
    prune_and_regrow,
    set_mask,
    trainable_weight,
    weight_mask,
)
from lightning_sparse_rl.types import SparseAlgorithm, TrainBatch, Transition
from lightning_sparse_rl.validation import check_in_range, check_positive

NewWeightInit = Literal["zero", "unif", "xavier"]


class DynamicSparsityCallback(Callback):
    """Every ``update_period`` gradient updates, prune and regrow a fraction of each mask's connections.

    At gradient step ``t = k·update_period`` (the algorithm's own ``gradient_steps``, checked after each
    training batch), for every masked layer of the actor and critics with ``k`` active connections:
    prune the ``floor(ζ_t·k)`` smallest-magnitude active weights (ties: lower row-major index first),
    regrow as many among all inactive positions, the just-pruned included — uniformly at random (SET)
    or where the dense gradient of the network's loss on the current minibatch is largest (RigL) — and
    initialise the new weights. The per-layer connection count never changes. With
    ``optimizer: maskadam`` the Adam moments of pruned and regrown positions are cleared. Targets with
    shared masks get the new mask; the others are kept sparse by the Polyak update.

    Args:
        drop_fraction: ζ, fraction of active connections replaced per update, in ``(0, 1)`` (ANF: 0.05).
        update_period: gradient updates between topology updates (ANF: 1000).
        stop_step: last gradient step at which the topology may change (``None``: never stop).
        schedule: ``constant`` ζ, or ``cosine`` decay of ζ to 0 at ``stop_step`` (Graesser et al. 2022).
        growth: ``random`` (SET) or ``gradient`` (RigL).
        new_weight_init: regrown weights start at ``zero``, or per element ``unif`` ~ U(±1/√fan_in) or
            ``xavier`` ~ U(±√(6/(fan_in+fan_out))).
        seed: seed of the regrowth stream; ``None`` derives it from the run seed (``torch.initial_seed()``,
            stream ``dst`` of :mod:`lightning_sparse_rl.seeding`).

    """

    def __init__(
        self,
        drop_fraction: float = 0.05,
        update_period: int = 1000,
        stop_step: int | None = None,
        schedule: Literal["constant", "cosine"] = "constant",
        growth: Literal["random", "gradient"] = "random",
        new_weight_init: NewWeightInit = "zero",
        seed: int | None = None,
    ) -> None:
        check_in_range("drop_fraction", drop_fraction, 0.0, 1.0, low_inclusive=False)
        check_positive("update_period", update_period)
        if stop_step is not None:
            check_positive("stop_step", stop_step)
        if schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule={schedule!r} must be 'constant' or 'cosine'")
        if schedule == "cosine" and stop_step is None:
            raise ValueError("schedule='cosine' decays ζ to 0 at stop_step: set stop_step (e.g. 80% of the updates)")
        if growth not in ("random", "gradient"):
            raise ValueError(f"growth={growth!r} must be 'random' (SET) or 'gradient' (RigL)")
        if new_weight_init not in ("zero", "unif", "xavier"):
            raise ValueError(f"new_weight_init={new_weight_init!r} must be one of 'zero', 'unif', 'xavier'")
        self.drop_fraction = drop_fraction
        self.update_period = int(update_period)
        self.stop_step = stop_step
        self.schedule = schedule
        self.growth = growth
        self.new_weight_init = new_weight_init
        self.seed = seed
        self.last_update_step = 0
        self.topology_updates = 0
        self.stream: RandomStream | None = None  # created at fit start, or by a checkpoint's state

    # ------------------------------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Create the regrowth stream (unless a checkpoint restored it); warn when nothing is masked."""
        if self.stream is None:
            if self.seed is None:
                self.seed = stream_seed(torch.initial_seed(), "dst")
            self.stream = RandomStream(self.seed)
        if not masked_layers(pl_module.sparse_networks()):
            warnings.warn(
                "DynamicSparsityCallback: no layer is masked (every sparsity level is 0), so there is nothing "
                "to prune or regrow; set global_sparsity or input_layer_sparsity on SparsityDistributionCallback",
                stacklevel=1,
            )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: TrainBatch, batch_idx: int
    ) -> None:
        """Run a topology update when the gradient-step counter reached the next multiple of the period."""
        step = pl_module.gradient_steps
        due = step - step % self.update_period
        if due <= self.last_update_step or (self.stop_step is not None and due > self.stop_step):
            return
        self.last_update_step = due
        zeta = drop_fraction_at(self.drop_fraction, due, self.schedule, self.stop_step)
        changed = self.update_topology(trainer, pl_module, batch.minibatches[-1], zeta)
        self.topology_updates += 1
        metrics = {f"dst/{name}/connections_changed": float(n) for name, n in changed.items()}
        metrics["dst/drop_fraction"] = zeta
        metrics["dst/topology_updates"] = float(self.topology_updates)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=batch.train_step - 1)

    # ------------------------------------------------------------------------------------------ update
    @torch.no_grad()
    def update_topology(
        self, trainer: L.Trainer, pl_module: SparseAlgorithm, minibatch: Transition, zeta: float
    ) -> dict[str, int]:
        """Prune and regrow a ``zeta`` fraction of every masked layer once; returns connections moved per network."""
        assert self.stream is not None, "on_fit_start creates the stream"
        generator = self.stream.generator(pl_module.device)
        networks: list[SparseNetwork] = pl_module.sparse_networks()
        grads = self._dense_gradients(pl_module, networks, minibatch) if self.growth == "gradient" else {}
        mask_adams = [opt for opt in trainer.optimizers if isinstance(opt, MaskAdam)]
        changed: dict[str, int] = {}
        for net in networks:
            moved = torch.zeros((), dtype=torch.long, device=pl_module.device)
            targets = net.target_layers or (None,) * len(net.layers)
            for group, target_group in zip(net.layers, targets, strict=True):
                for i, module in enumerate(group):
                    mask = weight_mask(module)
                    if mask is None:
                        continue
                    new_mask, pruned, grown = prune_and_regrow(
                        module.weight, mask, zeta, self.growth, generator, grads.get(module)
                    )
                    moved += (pruned & ~new_mask).sum()
                    self._rewire(module, new_mask, pruned, grown, mask_adams, generator)
                    if target_group is not None and is_masked(target_group[i]):
                        set_mask(target_group[i], new_mask)
                        trainable_weight(target_group[i])[grown] = trainable_weight(module)[grown]
            changed[net.name] = int(moved)
        return changed

    def _rewire(
        self,
        module: nn.Linear,
        new_mask: Tensor,
        pruned: Tensor,
        grown: Tensor,
        mask_adams: list[MaskAdam],
        generator: torch.Generator,
    ) -> None:
        """Install ``new_mask``: zero pruned weights, initialise grown ones, clear MaskAdam moments."""
        weight = trainable_weight(module)
        set_mask(module, new_mask)  # also zeroes every inactive weight
        if self.new_weight_init == "zero":
            weight.masked_fill_(grown, 0.0)
        else:
            fan_in, fan_out = module.in_features, module.out_features
            bound = 1 / math.sqrt(fan_in) if self.new_weight_init == "unif" else math.sqrt(6 / (fan_in + fan_out))
            draws = torch.rand(int(grown.sum()), generator=generator, device=generator.device)
            weight[grown] = ((2 * draws - 1) * bound).to(weight.device, weight.dtype)
        for optimizer in mask_adams:
            optimizer.reset_state(weight, pruned | grown)

    def _dense_gradients(
        self, pl_module: SparseAlgorithm, networks: list[SparseNetwork], minibatch: Transition
    ) -> dict[nn.Linear, Tensor]:
        """``∂loss/∂(masked weight)`` for every masked layer: dense, inactive positions included (RigL)."""
        grads: dict[nn.Linear, Tensor] = {}
        for family in dict.fromkeys(net.family for net in networks):
            layers = masked_layers([net for net in networks if net.family == family])
            if not layers:
                continue
            with torch.enable_grad(), parametrize.cached():
                weights = [m.weight for m in layers]  # cached: the forward pass uses these very tensors
                loss = pl_module.network_loss(family, minibatch)
                grads.update(zip(layers, torch.autograd.grad(loss, weights, allow_unused=True), strict=True))
        return grads

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Counters, seed and the regrowth stream."""
        return {
            "last_update_step": self.last_update_step,
            "topology_updates": self.topology_updates,
            "seed": self.seed,
            "stream": None if self.stream is None else self.stream.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore counters and the regrowth stream."""
        self.last_update_step = state_dict["last_update_step"]
        self.topology_updates = state_dict["topology_updates"]
        self.seed = state_dict["seed"]
        self.stream = None
        if state_dict["stream"] is not None:
            self.stream = RandomStream(self.seed)
            self.stream.load_state_dict(state_dict["stream"])
