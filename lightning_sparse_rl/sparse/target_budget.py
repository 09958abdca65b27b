"""Target networks kept as sparse as their online networks ("maintain sparsity", docs/original_code.md §4.4).

After a Polyak step, an unmasked target layer whose online (source) layer is masked has its smallest-magnitude
non-zeros beyond the source's connection count zeroed, so it stays exactly as sparse as the source while its
pattern follows the source's with a lag.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor

from lightning_sparse_rl.sparse.masked_linear import active_count, is_masked, mask_version, weight_mask
from lightning_sparse_rl.sparse.member_linear import MemberLinear
from lightning_sparse_rl.sparse.topology import zero_smallest_beyond_

#: (target layer, source layer)
LayerPair = tuple[MemberLinear, MemberLinear]

#: How many sets of checked layers keep their concatenated supports (one per target network is enough).
_REMEMBERED_PLANS = 4


@dataclass(frozen=True)
class _Support:
    """Where a target layer can be non-zero while its source's mask is unchanged (CPU only).

    Polyak steps move the target towards the source, which is zero outside its mask, and the budget rule
    only zeroes entries: the target's non-zeros stay within the mask plus the entries that were non-zero
    outside it when the mask last changed. Elsewhere the target and the source are zero, and stay so.
    """

    mask_version: tuple[int, int]
    positions: Tensor  # (P,) flat indices into the target weight (M·in·out,), increasing (grouped by member)
    member: Tensor  # (P,) the member of each position
    inside: Tensor  # (P,) bool: the position is one of the source's connections
    allowed: Tensor  # (M,) the source's connections per member
    outside_count: int  # positions outside the mask


@dataclass(eq=False)
class _Plan:
    """The supports of the layers checked together, concatenated (one segment per layer and member).

    ``entered`` are the positions where a Polyak step may add a non-zero (zero at a connection), as the last
    step left them; ``written`` is each target weight's version after that step. After a write by
    anyone else they are read from the targets again.
    """

    supports: tuple[_Support, ...]
    positions: Tensor  # (ΣP,) the layers' positions, one after the other
    segment: Tensor  # (ΣP,) the segment of each position (increasing)
    inside: Tensor  # (ΣP,) bool
    outside: Tensor  # (ΣP,) bool
    bounds: Tensor  # (S + 1,) where each segment's positions start, and their number
    starts: list[int]  # the same, on the host
    sizes: list[int]  # positions per segment
    allowed: list[int]  # connections per segment
    outside_count: list[int]  # positions outside the mask per segment
    first: list[int]  # the first segment of each layer, and the number of segments
    entered: Tensor | None  # (E,) indices of the positions zero at a connection after the last step
    written: list[int]  # each target weight's version after the last step


@dataclass(frozen=True)
class _Step:
    """What the budget rule found after one Polyak step (:func:`_beyond_budget`)."""

    dropped: Tensor | None  # indices of the positions to zero, segment after segment (None: nothing to zero)
    excess: list[int]  # non-zeros beyond the budget, per segment
    outside_nonzero: list[int]  # non-zeros outside the mask, per segment (before the drops)
    zero: Tensor  # indices of the positions that are zero (before the drops)


class TargetBudget:
    """Polyak steps of target layers that stay within their source layers' connection counts.

    Once a target layer's non-zeros all lie inside its source's mask, Polyak steps can only add non-zeros inside
    the mask, so the count cannot exceed the budget: the layer is not checked again until the mask changes
    (its version). Until then, on the CPU, the rule reads only the entries that can be non-zero (the mask and
    the target's non-zeros outside it when the mask changed: a tenth of the layer at 90 % sparsity, less as
    those outside are zeroed), and handles all checked layers and members with one sequence of operations.
    Ties among equal magnitudes are broken by position (the lower row-major index is zeroed first). The memory
    is this object's (an algorithm owns one); a fresh one checks every layer.

    Off the CPU the budget is enforced without reading anything on the host (:func:`zero_smallest_beyond_`,
    a sort per checked layer): checked layers are then checked at every Polyak step, as host reads would
    stall the device.
    """

    def __init__(self) -> None:
        self._in_sync: weakref.WeakKeyDictionary[MemberLinear, tuple[int, int]] = weakref.WeakKeyDictionary()
        self._support: weakref.WeakKeyDictionary[MemberLinear, _Support] = weakref.WeakKeyDictionary()
        # the target weight's version after the budget last wrote it: a write by anyone else is seen
        self._written: weakref.WeakKeyDictionary[MemberLinear, int] = weakref.WeakKeyDictionary()
        self._plans: list[_Plan] = []  # the latest few (TD3 alternates between its critic's and actor's)

    def layers_to_check(self, pairs: Sequence[LayerPair]) -> list[LayerPair]:
        """The pairs whose target is unmasked, whose source is masked, and that are not known to be in sync."""
        return [
            (target, source)
            for target, source in pairs
            if is_masked(source) and not is_masked(target) and self._in_sync.get(target) != mask_version(source)
        ]

    @torch.no_grad()
    def lerp_(self, checked: Sequence[LayerPair], tau: float) -> None:
        """``θ_target ← (1 − τ)·θ_target + τ·θ_source`` for the checked pairs' weights, then the budget rule.

        The rule zeroes each target member's smallest non-zeros beyond its source's connection count. On the
        CPU the smallest are searched among the non-zeros no larger than the largest entry that just became
        non-zero (at least as many as are to go, if the entered ones are), or among all of a member's
        non-zeros where those are too few; among equal magnitudes the lower row-major index goes first.

        Args:
            checked: the pairs :meth:`layers_to_check` returned.
            tau: the Polyak rate τ.

        """
        if not checked:
            return
        targets = [target.weight for target, _ in checked]
        if targets[0].device.type != "cpu":
            torch._foreach_lerp_(targets, [source.weight for _, source in checked], tau)
            for target, source in checked:
                zero_smallest_beyond_(target.weight, active_count(source))
            return
        plan = self._plan_for(checked)
        if plan.entered is None or plan.written != [weight._version for weight in targets]:
            plan.entered = _at_connections(plan, (_gathered(targets, plan.supports) == 0).nonzero().squeeze(1))
        torch._foreach_lerp_(targets, [source.weight for _, source in checked], tau)
        magnitude = _gathered(targets, plan.supports).abs()
        step = _beyond_budget(plan, magnitude)
        zeroed = step.zero
        if step.dropped is not None:
            dropped_at = plan.positions.index_select(0, step.dropped)
            zeroed = torch.cat([zeroed, step.dropped])
        done = 0
        for layer, ((target, source), support) in enumerate(zip(checked, plan.supports, strict=True)):
            segments = range(plan.first[layer], plan.first[layer + 1])
            n_dropped = sum(max(step.excess[s], 0) for s in segments)
            if n_dropped:
                target.weight.detach().view(-1).index_fill_(0, dropped_at[done : done + n_dropped], 0.0)
                done += n_dropped
            self._written[target] = target.weight._version
            outside_nonzero = sum(step.outside_nonzero[s] for s in segments)
            if outside_nonzero == 0 and all(step.excess[s] <= 0 for s in segments):
                self._in_sync[target] = mask_version(source)  # every non-zero inside the mask
            elif 2 * outside_nonzero < support.outside_count:
                del self._support[target]  # most positions outside the mask are zero for good: find it anew
        plan.entered = _at_connections(plan, zeroed)
        plan.written = [weight._version for weight in targets]

    def _support_of(self, target: MemberLinear, source: MemberLinear) -> _Support:
        """The target's support (:class:`_Support`), found anew when the mask or the target changed."""
        support = self._support.get(target)
        if (
            support is not None
            and support.mask_version == mask_version(source)
            and self._written.get(target) == target.weight._version
        ):
            return support
        mask = weight_mask(source).view(-1)
        positions = (mask | target.weight.detach().view(-1).bool()).nonzero().squeeze(1)
        inside = mask[positions]
        support = _Support(
            mask_version=mask_version(source),
            positions=positions,
            member=positions // target.weight[0].numel(),
            inside=inside,
            allowed=active_count(source).to(torch.int32),
            outside_count=len(positions) - int(inside.sum()),
        )
        self._support[target] = support
        self._written[target] = target.weight._version
        return support

    def _plan_for(self, checked: Sequence[LayerPair]) -> _Plan:
        """The checked layers' concatenated supports (:class:`_Plan`), remembered while they are checked together."""
        supports = [self._support_of(target, source) for target, source in checked]
        for plan in self._plans:
            if len(plan.supports) == len(supports) and all(map(operator.is_, plan.supports, supports)):
                return plan
        first = [0]
        for support in supports:
            first.append(first[-1] + len(support.allowed))
        segment = torch.cat([s.member + f for s, f in zip(supports, first, strict=False)])
        inside = torch.cat([s.inside for s in supports])
        counts = torch.stack(
            [torch.bincount(segment, minlength=first[-1]), torch.bincount(segment[~inside], minlength=first[-1])]
        )
        starts = [0, *counts[0].cumsum(dim=0).tolist()]
        plan = _Plan(
            supports=tuple(supports),
            segment=segment,
            inside=inside,
            outside=~inside,
            bounds=torch.tensor(starts),
            starts=starts,
            sizes=counts[0].tolist(),
            allowed=torch.cat([s.allowed for s in supports]).tolist(),
            outside_count=counts[1].tolist(),
            first=first,
            positions=torch.cat([s.positions for s in supports]),
            entered=None,
            written=[],
        )
        self._plans = [plan, *self._plans[: _REMEMBERED_PLANS - 1]]
        return plan


def _gathered(weights: Sequence[Tensor], supports: Sequence[_Support]) -> Tensor:
    """The weights at their supports' positions, one layer after the other."""
    return torch.cat(
        [
            torch.index_select(weight.detach().view(-1), 0, support.positions)
            for weight, support in zip(weights, supports, strict=True)
        ]
    )


def _at_connections(plan: _Plan, indices: Tensor) -> Tensor:
    """Those of ``indices`` (into the plan's positions) that are connections of the source (inside its mask)."""
    return indices.masked_select(plan.inside.index_select(0, indices))


def _beyond_budget(plan: _Plan, magnitude: Tensor) -> _Step:
    """Which positions to zero so that each segment keeps at most its budget of non-zeros (:class:`_Step`).

    Per segment over its budget by ``e``, the first ``e`` by magnitude, then position: chosen among the
    candidates (non-zeros no larger than the largest at the ``plan.entered`` indices), or among all its non-zeros
    where the candidates are too few. One pass over ``magnitude`` finds the zeros and the candidates (those
    no larger than the largest bound of any segment); everything else reads those few positions only.
    """
    entered = plan.entered
    bound = torch.zeros(len(plan.allowed), dtype=magnitude.dtype).scatter_reduce_(
        0, plan.segment.index_select(0, entered), magnitude.index_select(0, entered), "amax"
    )
    ceiling = bound.max().nan_to_num(nan=0.0)  # (a NaN entered: its segment ranks all its non-zeros)
    low = (magnitude <= ceiling).nonzero().squeeze(1)  # the zeros and the candidates; increasing, so grouped by segment
    low_magnitude = magnitude.index_select(0, low)
    is_zero = low_magnitude == 0
    zero = low.masked_select(is_zero)
    candidate = low.masked_select(
        ~is_zero & (low_magnitude <= bound.index_select(0, plan.segment.index_select(0, low)))
    )
    outside_zero = zero.masked_select(plan.outside.index_select(0, zero))
    found = torch.stack([torch.searchsorted(found, plan.bounds) for found in (zero, candidate, outside_zero)])
    n_zero, n_candidates, n_outside_zero = ([b - a for a, b in pairwise(row)] for row in found.tolist())
    excess = [n - z - allowed for n, z, allowed in zip(plan.sizes, n_zero, plan.allowed, strict=True)]
    outside_nonzero = [n - z for n, z in zip(plan.outside_count, n_outside_zero, strict=True)]
    if all(e <= 0 for e in excess):
        return _Step(None, excess, outside_nonzero, zero)
    chosen = candidate
    if any(0 < e < n for e, n in zip(excess, n_candidates, strict=True)):
        chosen = _ranked(chosen, magnitude, plan.segment)
    dropped, start = [], 0
    for s, (e, n) in enumerate(zip(excess, n_candidates, strict=True)):
        if 0 < e <= n:
            dropped.append(chosen[start : start + e])
        elif e > n:
            begin, end = plan.starts[s], plan.starts[s + 1]
            nonzero = magnitude[begin:end].nonzero().squeeze(1) + begin
            dropped.append(_ranked(nonzero, magnitude, plan.segment)[:e])
        start += n
    return _Step(torch.cat(dropped), excess, outside_nonzero, zero)


def _ranked(chosen: Tensor, magnitude: Tensor, segment: Tensor) -> Tensor:
    """``chosen`` (increasing indices) ordered by segment, then magnitude, then index (two stable sorts)."""
    by_magnitude = chosen.index_select(0, torch.sort(magnitude.index_select(0, chosen), stable=True).indices)
    return by_magnitude.index_select(0, torch.sort(segment.index_select(0, by_magnitude), stable=True).indices)
