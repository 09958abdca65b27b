"""Target networks kept as sparse as their online networks ("maintain sparsity", docs/original_code.md §4.4).

After a Polyak step, an unmasked target layer whose online (source) layer is masked has its smallest-magnitude
non-zeros beyond the source's connection count zeroed, so it stays exactly as sparse as the source while its
pattern follows the source's with a lag.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_sparse_rl.sparse.masked_linear import active_count, is_masked, mask_version, weight_mask
from lightning_sparse_rl.sparse.member_linear import MemberLinear
from lightning_sparse_rl.sparse.topology import zero_smallest_beyond_, zero_smallest_nonzero_

#: (target layer, source layer)
LayerPair = tuple[MemberLinear, MemberLinear]


class TargetBudget:
    """Keeps target layers within their source layers' connection counts, and skips the layers known to be within.

    Once a target layer's non-zeros all lie inside its source's mask, Polyak steps can only add non-zeros inside
    the mask, so the count cannot exceed the budget: the layer is not checked again until the mask changes
    (its version). The memory is this object's (an algorithm owns one); a fresh one checks every layer.

    Off the CPU the budget is enforced without reading anything on the host (:func:`zero_smallest_beyond_`,
    a sort per checked layer): checked layers are then checked at every Polyak step, as host reads would
    stall the device.
    """

    def __init__(self) -> None:
        self._in_sync: weakref.WeakKeyDictionary[MemberLinear, tuple[int, int]] = weakref.WeakKeyDictionary()

    def layers_to_check(self, pairs: Sequence[LayerPair]) -> list[LayerPair]:
        """The pairs whose target is unmasked, whose source is masked, and that are not known to be in sync."""
        return [
            (target, source)
            for target, source in pairs
            if is_masked(source) and not is_masked(target) and self._in_sync.get(target) != mask_version(source)
        ]

    @torch.no_grad()
    def enforce_(self, checked: Sequence[LayerPair], was_zero: Sequence[Tensor]) -> None:
        """After the Polyak step: zero each checked target's smallest non-zeros beyond its source's count.

        Args:
            checked: the pairs :meth:`layers_to_check` returned before the step.
            was_zero: for each, where the target weight was zero before the step (the entries that became
                non-zero bound the search for the smallest ones).

        """
        if not checked:
            return
        if checked[0][0].weight.device.type != "cpu":
            for target, source in checked:
                zero_smallest_beyond_(target.weight, active_count(source))
            return
        nonzero = [target.weight != 0 for target, _ in checked]
        # One device sync for all layers: per member, non-zeros of each target and connections of its source.
        counts = torch.stack(
            [
                torch.stack([nz.sum(dim=(1, 2)), active_count(source)], dim=1)
                for nz, (_, source) in zip(nonzero, checked, strict=True)
            ]
        ).tolist()
        for (target, source), zero_before, is_nonzero, member_counts in zip(
            checked, was_zero, nonzero, counts, strict=True
        ):
            over = [(m, count - allowed) for m, (count, allowed) in enumerate(member_counts) if count > allowed]
            for m, excess in over:
                zero_smallest_nonzero_(target.weight[m], int(excess), entered=zero_before[m] & is_nonzero[m])
            if not over and not is_nonzero.logical_and_(~weight_mask(source)).any():
                self._in_sync[target] = mask_version(source)
