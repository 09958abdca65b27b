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
    outside it when the mask last changed.
    """

    mask_version: tuple[int, int]
    positions: Tensor  # (P,) flat indices into the target weight (M·in·out,), increasing (grouped by member)
    member: Tensor  # (P,) the member of each position
    outside: Tensor  # (P,) bool: the position lies outside the source's mask
    inside: Tensor  # (C,) flat indices of the source's connections, increasing
    inside_at: Tensor  # (C,) where they are in ``positions``
    allowed: Tensor  # (M,) the source's connections per member


@dataclass(frozen=True)
class _Plan:
    """The supports of the layers checked together, concatenated: one segment per (layer, member)."""

    supports: tuple[_Support, ...]
    positions: Tensor  # (ΣP,) the layers' positions, one after the other
    segment: Tensor  # (ΣP,) the segment of each position (increasing)
    outside: Tensor  # (ΣP,) bool
    last: Tensor  # (S,) each segment's last position
    starts: list[int]  # where each segment's positions start, and their number
    offset: list[int]  # where each layer's positions start
    allowed: list[int]  # connections per segment
    first: list[int]  # the first segment of each layer, and the number of segments


class TargetBudget:
    """Keeps target layers within their source layers' connection counts, and skips the layers known to be within.

    Once a target layer's non-zeros all lie inside its source's mask, Polyak steps can only add non-zeros inside
    the mask, so the count cannot exceed the budget: the layer is not checked again until the mask changes
    (its version). Until then, on the CPU, the rule reads only the entries that can be non-zero (the mask and
    the target's non-zeros outside it when the mask changed), a tenth of the layer at 90 % sparsity, and all
    checked layers and members are handled by one sequence of operations. Ties among equal magnitudes are
    broken by position (the lower row-major index is zeroed first). The memory is this object's (an algorithm
    owns one); a fresh one checks every layer.

    Off the CPU the budget is enforced without reading anything on the host (:func:`zero_smallest_beyond_`,
    a sort per checked layer): checked layers are then checked at every Polyak step, as host reads would
    stall the device.
    """

    def __init__(self) -> None:
        self._in_sync: weakref.WeakKeyDictionary[MemberLinear, tuple[int, int]] = weakref.WeakKeyDictionary()
        self._support: weakref.WeakKeyDictionary[MemberLinear, _Support] = weakref.WeakKeyDictionary()
        # the target weight's version after the rule last wrote it: a write by anyone else is seen
        self._written: weakref.WeakKeyDictionary[MemberLinear, int] = weakref.WeakKeyDictionary()
        self._plans: list[_Plan] = []  # the latest few (TD3 alternates between its critic's and actor's)

    def layers_to_check(self, pairs: Sequence[LayerPair]) -> list[LayerPair]:
        """The pairs whose target is unmasked, whose source is masked, and that are not known to be in sync."""
        return [
            (target, source)
            for target, source in pairs
            if is_masked(source) and not is_masked(target) and self._in_sync.get(target) != mask_version(source)
        ]

    def zeros_inside(self, checked: Sequence[LayerPair]) -> list[Tensor]:
        """Before the Polyak step: per checked pair, the target's zeros at the source's connections.

        These are the only entries a Polyak step can make non-zero. Indices into the layer's support
        (:class:`_Support`); empty off the CPU, where they are not used.
        """
        if not checked or checked[0][0].weight.device.type != "cpu":
            return [torch.empty(0, dtype=torch.long) for _ in checked]
        zeros = []
        for target, source in checked:
            support = self._support_of(target, source)
            values = torch.index_select(target.weight.detach().view(-1), 0, support.inside)
            zeros.append(support.inside_at.masked_select(values.bool().logical_not_()))
        return zeros

    @torch.no_grad()
    def enforce_(self, checked: Sequence[LayerPair], zeros_inside: Sequence[Tensor]) -> None:
        """After the Polyak step: zero each checked target's smallest non-zeros beyond its source's count.

        On the CPU the smallest are searched among the non-zeros no larger than the largest entry that just
        became non-zero (at least as many as are to go, if the entered ones are), or among all of a member's
        non-zeros where those are too few; among equal magnitudes the lower row-major index goes first.

        Args:
            checked: the pairs :meth:`layers_to_check` returned before the step.
            zeros_inside: what :meth:`zeros_inside` returned for them before the step.

        """
        if not checked:
            return
        if checked[0][0].weight.device.type != "cpu":
            for target, source in checked:
                zero_smallest_beyond_(target.weight, active_count(source))
            return
        plan = self._plan_for([self._support[target] for target, _ in checked])
        flats = [target.weight.data.view(-1) for target, _ in checked]
        magnitude = torch.cat(
            [torch.index_select(flat, 0, s.positions) for flat, s in zip(flats, plan.supports, strict=True)]
        ).abs_()
        zeros = torch.cat([z + offset for z, offset in zip(zeros_inside, plan.offset, strict=True)])
        # Per segment, the bound: the largest entry that entered (zero before the step; 0 if none did).
        bound = torch.zeros(len(plan.allowed), dtype=magnitude.dtype).scatter_reduce_(
            0, plan.segment.index_select(0, zeros), magnitude.index_select(0, zeros), "amax"
        )
        nonzero = magnitude.bool()
        candidate = nonzero & (magnitude <= bound.index_select(0, plan.segment))
        per_position = torch.stack([nonzero, candidate, nonzero & plan.outside], dim=1)
        running = per_position.cumsum(dim=0, dtype=torch.int32).index_select(0, plan.last).tolist()
        counts = [[b - a for a, b in zip(before, now, strict=True)] for before, now in pairwise([[0, 0, 0], *running])]
        excess = [n_nonzero - allowed for (n_nonzero, _, _), allowed in zip(counts, plan.allowed, strict=True)]
        # Per segment over its budget, the first `excess` by magnitude, then position, go: chosen among its
        # candidates, or among all its non-zeros where the candidates are too few.
        ranked = _ranked(candidate.nonzero().squeeze(1), magnitude, plan.segment)
        dropped, start = [], 0
        for s, (e, (_, n_candidates, _)) in enumerate(zip(excess, counts, strict=True)):
            if 0 < e <= n_candidates:
                dropped.append(ranked[start : start + e])
            elif e > n_candidates:
                begin, end = plan.starts[s], plan.starts[s + 1]
                dropped.append(_ranked(nonzero[begin:end].nonzero().squeeze(1) + begin, magnitude, plan.segment)[:e])
            start += n_candidates
        dropped_at = plan.positions.index_select(0, torch.cat(dropped)) if dropped else None
        done = 0
        for layer, ((target, source), flat) in enumerate(zip(checked, flats, strict=True)):
            segments = range(plan.first[layer], plan.first[layer + 1])
            n_dropped = sum(max(excess[s], 0) for s in segments)
            if n_dropped:
                flat.index_fill_(0, dropped_at[done : done + n_dropped], 0.0)
                done += n_dropped
            if all(excess[s] <= 0 and counts[s][2] == 0 for s in segments):
                self._in_sync[target] = mask_version(source)  # every non-zero inside the mask
            self._written[target] = target.weight._version

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
        inside_here = mask[positions]
        support = _Support(
            mask_version=mask_version(source),
            positions=positions,
            member=positions // target.weight[0].numel(),
            outside=~inside_here,
            inside=mask.nonzero().squeeze(1),
            inside_at=inside_here.nonzero().squeeze(1),
            allowed=active_count(source).to(torch.int32),
        )
        self._support[target] = support
        return support

    def _plan_for(self, supports: list[_Support]) -> _Plan:
        """The concatenated supports (:class:`_Plan`), remembered while the same supports are checked."""
        for plan in self._plans:
            if len(plan.supports) == len(supports) and all(map(operator.is_, plan.supports, supports)):
                return plan
        first, offset = [0], [0]
        for support in supports:
            first.append(first[-1] + len(support.allowed))
            offset.append(offset[-1] + len(support.positions))
        segment = torch.cat([s.member + f for s, f in zip(supports, first, strict=False)])
        ends = torch.bincount(segment, minlength=first[-1]).cumsum(dim=0)
        plan = _Plan(
            supports=tuple(supports),
            positions=torch.cat([s.positions for s in supports]),
            segment=segment,
            outside=torch.cat([s.outside for s in supports]),
            last=ends - 1,
            starts=[0, *ends.tolist()],
            offset=offset[:-1],
            allowed=torch.cat([s.allowed for s in supports]).tolist(),
            first=first,
        )
        self._plans = [plan, *self._plans[: _REMEMBERED_PLANS - 1]]
        return plan


def _ranked(chosen: Tensor, magnitude: Tensor, segment: Tensor) -> Tensor:
    """``chosen`` (increasing indices) ordered by segment, then magnitude, then index (two stable sorts)."""
    by_magnitude = chosen.index_select(0, torch.sort(magnitude.index_select(0, chosen), stable=True).indices)
    return by_magnitude.index_select(0, torch.sort(segment.index_select(0, by_magnitude), stable=True).indices)
