"""Target networks kept as sparse as their online networks ("maintain sparsity", docs/original_code.md §4.4).

After a Polyak step, an unmasked target layer whose online (source) layer is masked has its smallest-magnitude
non-zeros beyond the source's connection count zeroed, so it stays exactly as sparse as the source while its
pattern follows the source's with a lag.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from lightning_sparse_rl.floating_point import below_sign_bits, integer_bits
from lightning_sparse_rl.sparse.masked_linear import active_count, is_masked, mask_changes, mask_version, weight_mask
from lightning_sparse_rl.sparse.member_linear import MemberLinear
from lightning_sparse_rl.sparse.topology import zero_smallest_beyond_

#: (target layer, source layer)
LayerPair = tuple[MemberLinear, MemberLinear]

#: How many sets of layers keep their answer of layers_to_check and their plan (one per target network is enough).
_REMEMBERED = 4


@dataclass(frozen=True)
class _Support:
    """Where a target layer can be non-zero while its source's mask is unchanged (CPU only).

    Polyak steps move the target towards the source, which is zero outside its mask, and the budget rule
    only zeroes entries: the target's non-zeros stay within the mask plus the entries that were non-zero
    outside it when the mask last changed. Elsewhere the target and the source are zero, and stay so.
    """

    mask_version: tuple[int, int]
    positions: np.ndarray  # (P,) int32 flat indices into the target weight (M·in·out,), increasing (by member)
    member: np.ndarray  # (P,) int32: the member of each position
    inside: np.ndarray  # (P,) bool: the position is one of the source's connections
    allowed: np.ndarray  # (M,) the source's connections per member
    outside_count: int  # positions outside the mask


@dataclass(eq=False)
class _Plan:
    """The supports of the layers checked together, concatenated (one segment per layer and member).

    ``entered`` are the positions where a Polyak step may add a non-zero (zero at a connection), as the last
    step left them; ``written`` is each target weight's version after that step. After a write by
    anyone else they are read from the targets again.
    """

    supports: tuple[_Support, ...]
    positions: np.ndarray  # (ΣP,) the layers' positions, one after the other
    segment: np.ndarray  # (ΣP,) int32: the segment of each position (increasing)
    inside: np.ndarray  # (ΣP,) bool
    outside: np.ndarray  # (ΣP,) bool
    starts: np.ndarray  # (S + 1,) where each segment's positions start, and their number
    spare: np.ndarray  # (S,) positions per segment beyond its connections: zeros a segment within budget has
    outside_count: np.ndarray  # (S,) positions outside the mask per segment
    first: list[int]  # the first segment of each layer, and the number of segments
    entered: np.ndarray | None  # (E,) indices of the positions zero at a connection after the last step
    written: list[int]  # each target weight's version after the last step
    # where the plan was last found: for the checked pairs, with mask_changes() and the targets' storage
    found_for: tuple[Sequence[LayerPair], int, list[int]] | None = None
    views: tuple[np.ndarray, ...] = ()  # (M·in·out,) each target weight's bits as integers (NumPy views)
    below_sign: int = 0  # the bits below the sign bit (:func:`below_sign_bits`) of the targets' dtype
    magnitude: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))  # (ΣP,) :func:`_read_magnitudes`


@dataclass(frozen=True)
class _Step:
    """What the budget rule found after one Polyak step (:func:`_beyond_budget`)."""

    dropped: np.ndarray | None  # indices of the positions to zero, segment after segment (None: nothing to zero)
    excess: list[int]  # non-zeros beyond the budget, per segment
    outside_nonzero: list[int]  # non-zeros outside the mask, per segment (before the drops)
    zero: np.ndarray  # indices of the positions that are zero (before the drops)


class TargetBudget:
    """Polyak steps of target layers that stay within their source layers' connection counts.

    Once a target layer's non-zeros all lie inside its source's mask, Polyak steps can only add non-zeros inside
    the mask, so the count cannot exceed the budget: the layer is not checked again until the mask changes
    (its version). Until then, on the CPU, the rule reads only the entries that can be non-zero (the mask and
    the target's non-zeros outside it when the mask changed: a tenth of the layer at 90 % sparsity, less as
    those outside are zeroed), and handles all checked layers and members with one sequence of operations, on
    NumPy views of the weights (a few thousand entries per step at K = 1, where the cost is per operation:
    NumPy's is a fraction of PyTorch's). Magnitudes are compared as the bits of ``|w|`` (as integers, they
    order as the magnitudes do, NaN last). Ties among equal magnitudes are broken by position (the lower
    row-major index is zeroed first). The memory is this object's (an algorithm owns one); a fresh one checks
    every layer. Masks are expected to change through :func:`~lightning_sparse_rl.sparse.set_mask` or
    ``load_state_dict`` (:func:`~lightning_sparse_rl.sparse.mask_changes`).

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
        # the latest few answers of layers_to_check: (pairs, mask_changes(), layers marked in sync, answer)
        self._checked: list[tuple[Sequence[LayerPair], int, int, list[LayerPair]]] = []
        self._marked = 0  # layers marked in sync so far

    def layers_to_check(self, pairs: Sequence[LayerPair]) -> list[LayerPair]:
        """The pairs whose target is unmasked, whose source is masked, and that are not known to be in sync.

        For the same ``pairs`` object the same list is returned until a mask changes or a layer is found in sync.
        """
        changes = mask_changes()
        for known, known_changes, marked, answer in self._checked:
            if known is pairs and known_changes == changes and marked == self._marked:
                return answer
        answer = [
            (target, source)
            for target, source in pairs
            if is_masked(source) and not is_masked(target) and self._in_sync.get(target) != mask_version(source)
        ]
        self._checked = [(pairs, changes, self._marked, answer), *self._checked[: _REMEMBERED - 1]]
        return answer

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
        plan = self._plan_for(checked, targets)
        if plan.entered is None:
            plan.entered = _at_connections(plan, np.flatnonzero(_read_magnitudes(plan) == 0))
        torch._foreach_lerp_(targets, [source.weight for _, source in checked], tau)
        step = _beyond_budget(plan, _read_magnitudes(plan))
        zeroed = step.zero
        if step.dropped is not None:
            dropped_at = plan.positions[step.dropped]
            zeroed = np.concatenate([zeroed, step.dropped])
            done = 0
            for layer, view in enumerate(plan.views):
                n_dropped = sum(max(e, 0) for e in step.excess[plan.first[layer] : plan.first[layer + 1]])
                view[dropped_at[done : done + n_dropped]] = 0  # +0.0 (the lerp moved the weight's version)
                done += n_dropped
        for layer, ((target, source), support) in enumerate(zip(checked, plan.supports, strict=True)):
            self._written[target] = target.weight._version
            segments = slice(plan.first[layer], plan.first[layer + 1])
            outside_nonzero = sum(step.outside_nonzero[segments])
            if outside_nonzero == 0 and all(e <= 0 for e in step.excess[segments]):
                self._in_sync[target] = mask_version(source)  # every non-zero inside the mask
                self._marked += 1
            elif 2 * outside_nonzero < support.outside_count:
                del self._support[target]  # most positions outside the mask are zero for good: find it anew
                plan.found_for = None
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
            positions=positions.to(torch.int32).numpy(),  # half the bytes to read at every step
            member=(positions // target.weight[0].numel()).to(torch.int32).numpy(),
            inside=inside.numpy(),
            allowed=active_count(source).to(torch.int64).numpy(),
            outside_count=len(positions) - int(inside.sum()),
        )
        self._support[target] = support
        self._written[target] = target.weight._version
        return support

    def _plan_for(self, checked: Sequence[LayerPair], targets: Sequence[Tensor]) -> _Plan:
        """The checked layers' concatenated supports (:class:`_Plan`), remembered while they are checked together.

        Found again without reading the layers while nothing changed since the last step: the same ``checked``
        object, no mask changed, the targets written by this budget only and their storage unmoved.
        """
        versions = [weight._version for weight in targets]
        found_for = (checked, mask_changes(), [weight.data_ptr() for weight in targets])
        for plan in self._plans:
            if plan.found_for == found_for and plan.written == versions:
                return plan
        supports = [self._support_of(target, source) for target, source in checked]
        plan = next(
            (
                plan
                for plan in self._plans
                if len(plan.supports) == len(supports) and all(map(operator.is_, plan.supports, supports))
            ),
            None,
        ) or _new_plan(supports)
        if plan.written != versions:
            plan.entered = None  # written by someone else: read anew
        plan.found_for = found_for
        plan.views = tuple(integer_bits(weight.detach().view(-1)).numpy() for weight in targets)
        plan.below_sign = below_sign_bits(targets[0].dtype)
        plan.magnitude = np.empty(len(plan.positions), plan.views[0].dtype)  # one float width in a network
        self._plans = [plan, *[known for known in self._plans if known is not plan][: _REMEMBERED - 1]]
        return plan


def _new_plan(supports: Sequence[_Support]) -> _Plan:
    """The supports of layers checked together, concatenated (:class:`_Plan`)."""
    first = [0]
    for support in supports:
        first.append(first[-1] + len(support.allowed))
    segment = np.concatenate([s.member + f for s, f in zip(supports, first, strict=False)])
    inside = np.concatenate([s.inside for s in supports])
    sizes = np.bincount(segment, minlength=first[-1])
    positions = np.concatenate([s.positions for s in supports])
    return _Plan(
        supports=tuple(supports),
        positions=positions,
        segment=segment,
        inside=inside,
        outside=~inside,
        starts=np.concatenate([[0], np.cumsum(sizes)]),
        spare=sizes - np.concatenate([s.allowed for s in supports]),
        outside_count=np.bincount(segment[~inside], minlength=first[-1]),
        first=first,
        entered=None,
        written=[],
    )


def _read_magnitudes(plan: _Plan) -> np.ndarray:
    """The bits of ``|w|`` at the plan's positions, one layer after the other, as signed integers (in place).

    They order as the magnitudes do (NaN after infinity), and are 0 exactly where ``w`` is ±0.
    """
    magnitude = plan.magnitude
    done = 0
    for view, support in zip(plan.views, plan.supports, strict=True):
        np.take(view, support.positions, out=magnitude[done : done + len(support.positions)])
        done += len(support.positions)
    return np.bitwise_and(magnitude, plan.below_sign, out=magnitude)


def _at_connections(plan: _Plan, indices: np.ndarray) -> np.ndarray:
    """Those of ``indices`` (into the plan's positions) that are connections of the source (inside its mask)."""
    return indices[plan.inside[indices]]


def _beyond_budget(plan: _Plan, magnitude: np.ndarray) -> _Step:
    """Which positions to zero so that each segment keeps at most its budget of non-zeros (:class:`_Step`).

    Per segment over its budget by ``e``, the first ``e`` by magnitude, then position: chosen among the
    candidates (its non-zeros no larger than its largest at the ``plan.entered`` indices), or among all its
    non-zeros where the candidates are too few. One pass over ``magnitude`` (:func:`_read_magnitudes`) finds the
    zeros and the candidates; everything else reads those few positions only, and the candidates of all
    segments over budget are ranked by one sort.
    """
    n_segments = len(plan.spare)
    bound = np.zeros(n_segments, magnitude.dtype)
    np.maximum.at(bound, plan.segment[plan.entered], magnitude[plan.entered])
    low = np.flatnonzero(magnitude <= bound.max())  # the zeros and the candidates; increasing, so grouped by segment
    low_magnitude, low_segment = magnitude[low], plan.segment[low]
    is_zero = low_magnitude == 0
    zero, zero_segment = low[is_zero], low_segment[is_zero]
    excess = plan.spare - np.bincount(zero_segment, minlength=n_segments)
    outside_zero = np.bincount(zero_segment[plan.outside[zero]], minlength=n_segments)
    outside_nonzero = (plan.outside_count - outside_zero).tolist()  # at every step: supports shrink as they empty
    if excess.max() <= 0:
        return _Step(None, excess.tolist(), outside_nonzero, zero)
    is_candidate = ~is_zero & (low_magnitude <= bound[low_segment])
    short = np.flatnonzero(excess > np.bincount(low_segment[is_candidate], minlength=n_segments))  # rare
    over = excess > 0
    over[short] = False  # too few candidates: those segments rank all their non-zeros
    pool = low[is_candidate & over[low_segment]]
    if short.size:
        starts = plan.starts
        everything = (np.flatnonzero(magnitude[starts[s] : starts[s + 1]]) + starts[s] for s in short)
        pool = np.concatenate([pool, *everything])
    pool_segment = plan.segment[pool]
    dropped = _first_per_segment(pool, magnitude[pool], pool_segment, excess)
    return _Step(dropped, excess.tolist(), outside_nonzero, zero)


def _first_per_segment(pool: np.ndarray, magnitude: np.ndarray, segment: np.ndarray, excess: np.ndarray) -> np.ndarray:
    """Of ``pool`` (indices, increasing within each segment), each segment's first ``excess`` by rank.

    Rank: by magnitude (``magnitude``, those of ``pool``), then index. The result is grouped by segment
    (``segment``, those of ``pool``), in rank order within each.
    """
    if magnitude.itemsize > 4:
        order = np.lexsort((magnitude, segment))  # stable
    else:
        order = np.argsort(segment.astype(np.int64) << 32 | magnitude, kind="stable")  # non-negative: one key
    ranked, ranked_segment = pool[order], segment[order]
    first = np.searchsorted(ranked_segment, np.arange(len(excess)))  # where each segment's ranks begin
    return ranked[np.arange(len(ranked)) < (first + excess)[ranked_segment]]  # excess ≤ 0: none
