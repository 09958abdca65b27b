"""The contracts of a sparse-training method, and the field's methods written against them.

A topology update of one layer of one agent is made of parts that a method chooses:

* a :class:`PruneCriterion` picks the active connections to remove;
* a :class:`GrowthCriterion` picks as many inactive positions to add (dynamic sparse training only);
* a :class:`DropSchedule` says which fraction ζ of the active connections is replaced at a gradient step
  (dynamic sparse training: SET, RigL, RLx2);
* a :class:`SparsitySchedule` says how sparse a layer must be at a gradient step, given its final level
  (gradual pruning: the connection count falls over time).

Each part sees one agent's layer as a :class:`LayerState`: weights ``(in, out)``, the boolean mask, and what
a criterion may need (the dense gradient, Adam's first moment, the agent's random stream). Pure torch, no
Lightning: a user's own part is a small class in any module, named in YAML by ``class_path``, e.g.
``examples/custom_growth.py``.

Ties are broken by position in the built-in criteria (stable sorts, lower row-major index first), so the
results are exact and reproducible.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor

from lightning_sparse_rl.sparse.topology import largest_scores, random_inactive, smallest_active


class LayerState(NamedTuple):
    """One agent's view of one masked layer at a topology update.

    Attributes:
        weight: the weights, shape ``(in, out)`` (inactive positions hold 0).
        mask: ``True`` where a connection is active, shape ``(in, out)``; for a growth criterion, the mask after
            pruning.
        step: the gradient step of the update (the algorithm's own counter).
        generator: the agent's random stream for topology updates (``dst``), on the layer's device.
        dense_grad: ``∂loss/∂w`` at every position, inactive ones included, shape ``(in, out)``; ``None`` unless a
            criterion of the method sets ``needs_gradient``.
        exp_avg: the optimizer's first moment of the weights (Adam's ``exp_avg``), shape ``(in, out)``; ``None``
            before the first optimizer step or with an optimizer that keeps none.

    """

    weight: Tensor
    mask: Tensor
    step: int
    generator: torch.Generator
    dense_grad: Tensor | None = None
    exp_avg: Tensor | None = None


@runtime_checkable
class PruneCriterion(Protocol):
    """Chooses which active connections of a layer to remove."""

    #: whether :attr:`LayerState.dense_grad` must be computed for :meth:`prune`
    needs_gradient: bool

    def prune(self, layer: LayerState, n: int) -> Tensor:
        """Boolean positions (shape of ``layer.mask``) of exactly ``n`` active connections to remove."""
        ...


@runtime_checkable
class GrowthCriterion(Protocol):
    """Chooses where a layer grows new connections."""

    #: whether :attr:`LayerState.dense_grad` must be computed for :meth:`grow`
    needs_gradient: bool

    def grow(self, layer: LayerState, n: int) -> Tensor:
        """Boolean positions of exactly ``n`` inactive entries of ``layer.mask`` (the mask after pruning)."""
        ...


@runtime_checkable
class DropSchedule(Protocol):
    """The fraction ζ of each layer's active connections replaced by a topology update."""

    def drop_fraction(self, step: int) -> float:
        """ζ in ``[0, 1)`` at gradient step ``step``."""
        ...


@runtime_checkable
class SparsitySchedule(Protocol):
    """How sparse a layer must be during training, given the final level it reaches."""

    def sparsity(self, final: float, step: int) -> float:
        """The layer's sparsity at gradient step ``step``; ``final`` is its level at the end of the schedule."""
        ...

    def is_update_step(self, step: int) -> bool:
        """Whether the layers are pruned to :meth:`sparsity` at gradient step ``step``."""
        ...


# ------------------------------------------------------------------------------------------------ pruning
class MagnitudePrune:
    """Remove the active connections with the smallest ``|w|`` (SET, RigL, GMP, RLx2)."""

    needs_gradient = False

    def prune(self, layer: LayerState, n: int) -> Tensor:
        """The ``n`` active weights closest to zero."""
        return smallest_active(layer.weight, layer.mask, n)


# ------------------------------------------------------------------------------------------------ growth
class RandomGrowth:
    """Grow uniformly at random among the inactive positions, without replacement (SET)."""

    needs_gradient = False

    def grow(self, layer: LayerState, n: int) -> Tensor:
        """``n`` inactive positions drawn from the agent's stream."""
        return random_inactive(layer.mask, n, layer.generator)


class GradientGrowth:
    """Grow where the dense gradient of the network's loss is largest in magnitude (RigL, RLx2)."""

    needs_gradient = True

    def grow(self, layer: LayerState, n: int) -> Tensor:
        """The ``n`` inactive positions with the largest ``|∂loss/∂w|``."""
        if layer.dense_grad is None:
            raise ValueError("gradient growth needs the dense gradient of the layer's weight")
        return largest_scores(layer.dense_grad.abs(), ~layer.mask, n)


# ------------------------------------------------------------------------------------------------ schedules
class ConstantDrop:
    """The same ζ at every topology update (SET and RigL as in ANF and DS-TD3).

    Args:
        fraction: ζ, in ``(0, 1)``.

    """

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def drop_fraction(self, step: int) -> float:
        """ζ."""
        return self.fraction


class CosineDrop:
    """ζ decayed to 0 by half a cosine period: ``ζ_t = ζ·(1 + cos(π·min(t, T)/T))/2`` (RigL; Graesser et al.).

    Args:
        fraction: ζ at step 0, in ``(0, 1)``.
        end_step: ``T``, the gradient step at which ζ reaches 0.

    """

    def __init__(self, fraction: float, end_step: int) -> None:
        if end_step <= 0:
            raise ValueError(f"the cosine drop-fraction schedule needs a positive end step, got {end_step!r}")
        self.fraction = fraction
        self.end_step = end_step

    def drop_fraction(self, step: int) -> float:
        """ζ_t."""
        return self.fraction * 0.5 * (1.0 + math.cos(math.pi * min(step, self.end_step) / self.end_step))


class CubicSparsity:
    """Gradual magnitude pruning's schedule (Zhu & Gupta, 2017).

    ``s_t = s_f + (s_i − s_f)(1 − (t − t_0)/(t_1 − t_0))³`` between ``t_0`` and ``t_1``.
    Pruning happens at ``t_0``, ``t_0 + Δt``, ``t_0 + 2Δt``, … up to ``t_1``, and at ``t_1`` itself; before ``t_0`` a
    layer is at ``s_i``, from ``t_1`` on at its final level ``s_f``.

    Args:
        start_step: ``t_0``, the first pruning step (Graesser et al.: 20 % of the updates).
        end_step: ``t_1``, the last pruning step, where the final level is reached (Graesser et al.: 80 %).
        period: ``Δt``, gradient updates between pruning steps.
        initial_sparsity: ``s_i``, in ``[0, 1)``; 0 starts dense.

    """

    def __init__(self, start_step: int, end_step: int, period: int = 1000, initial_sparsity: float = 0.0) -> None:
        if not 0 <= start_step < end_step:
            raise ValueError(f"start_step={start_step} and end_step={end_step} must satisfy 0 <= start_step < end_step")
        if period <= 0:
            raise ValueError(f"period={period} must be a positive number of gradient updates")
        if not 0.0 <= initial_sparsity < 1.0:
            raise ValueError(f"initial_sparsity={initial_sparsity} must be in [0, 1)")
        self.start_step = start_step
        self.end_step = end_step
        self.period = period
        self.initial_sparsity = initial_sparsity

    def sparsity(self, final: float, step: int) -> float:
        """``s_t`` of a layer whose final level is ``final``."""
        if final <= self.initial_sparsity:
            return final
        progress = min(max(step - self.start_step, 0) / (self.end_step - self.start_step), 1.0)
        return final + (self.initial_sparsity - final) * (1.0 - progress) ** 3

    def is_update_step(self, step: int) -> bool:
        """``t_0 + kΔt ≤ t_1``, or ``t_1``."""
        return step == self.end_step or (
            self.start_step <= step < self.end_step and (step - self.start_step) % self.period == 0
        )


# ------------------------------------------------------------------------------------------------ updates
def prune_and_regrow(
    layer: LayerState, drop_fraction: float, prune: PruneCriterion, growth: GrowthCriterion
) -> tuple[Tensor, Tensor, Tensor]:
    """One dynamic-sparse-training update of one layer of one agent; the connection count is unchanged.

    ``prune`` removes ``floor(drop_fraction·k)`` of the ``k`` active connections, then ``growth`` adds as many
    among all inactive positions, the just-pruned ones included.

    Returns:
        ``(new_mask, pruned, grown)``, boolean tensors shaped like ``layer.mask``; ``pruned`` and ``grown`` may
        overlap where a pruned connection was chosen again.

    """
    n_change = math.floor(drop_fraction * int(layer.mask.sum()))
    pruned = checked_choice(prune.prune(layer, n_change), layer.mask, n_change, prune, "active")
    kept = layer.mask & ~pruned
    grown = checked_choice(growth.grow(layer._replace(mask=kept), n_change), ~kept, n_change, growth, "inactive")
    return kept | grown, pruned, grown


def prune_to(layer: LayerState, n_active: int, prune: PruneCriterion) -> Tensor:
    """Positions ``prune`` removes so that ``n_active`` connections remain (none if there are already no more)."""
    n_prune = max(int(layer.mask.sum()) - n_active, 0)
    return checked_choice(prune.prune(layer, n_prune), layer.mask, n_prune, prune, "active")


def checked_choice(chosen: Tensor, allowed: Tensor, n: int, criterion: object, kind: str) -> Tensor:
    """``chosen`` if it is a boolean tensor like ``allowed`` with exactly ``n`` entries, all allowed; else an error.

    A user's criterion that picks the wrong number or the wrong kind of positions would silently change the
    layer's connection count; this names the criterion instead.
    """
    name = type(criterion).__qualname__
    if chosen.dtype != torch.bool or chosen.shape != allowed.shape:
        raise ValueError(f"{name} must return a boolean tensor of shape {tuple(allowed.shape)}")
    if int(chosen.sum()) != n or bool((chosen & ~allowed).any()):
        raise ValueError(f"{name} must choose exactly {n} {kind} positions, got {int(chosen.sum())} (or others)")
    return chosen
