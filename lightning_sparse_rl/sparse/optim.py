"""MaskAdam: Adam whose moment estimates are cleared where connections are pruned or regrown."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class MaskAdam(torch.optim.Adam):
    """``torch.optim.Adam`` plus :meth:`reset_state`, called by the dynamic-sparsity callback.

    With masks as parametrizations, inactive positions receive exactly zero gradient, and their
    weights are zero, so weight decay adds nothing either. Clearing ``exp_avg``/``exp_avg_sq`` at
    every pruned and regrown position therefore keeps both moments exactly 0 on all inactive
    positions, and a regrown connection starts with fresh moments, as the original MaskAdam does
    (docs/original_code.md §4.3). Plain Adam keeps the old moments ("ghost" updates of regrown weights).
    """

    @torch.no_grad()
    def reset_state(self, param: Tensor, positions: Tensor) -> None:
        """Zero the moment estimates of ``param`` at the boolean ``positions`` (same shape as ``param``)."""
        state = self.state.get(param)
        if not state:
            return
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            if key in state:
                state[key].masked_fill_(positions, 0.0)


def optimizer_moment(optimizers: Sequence[torch.optim.Optimizer], param: Tensor) -> Tensor | None:
    """The first moment (Adam's ``exp_avg``, shaped like ``param``) kept for ``param`` by any of ``optimizers``."""
    for optimizer in optimizers:
        moment = optimizer.state.get(param, {}).get("exp_avg")
        if moment is not None:
            return moment
    return None
