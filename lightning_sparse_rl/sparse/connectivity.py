"""Input connectivity (the ANF metric, docs/original_code.md §7): active connections per input feature."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lightning_sparse_rl.sparse.masked_linear import weight_mask
from lightning_sparse_rl.sparse.member_linear import MemberLinear


@torch.no_grad()
def connections_per_input(layer: MemberLinear) -> Tensor:
    """Active connections of each input row of every member of ``layer``, shape ``(M, in_features)``, int64.

    A masked layer counts its mask; an unmasked one its non-zero weights (a dense layer: ``out_features``).
    """
    mask = weight_mask(layer)
    active = mask if mask is not None else layer.weight != 0
    return active.sum(dim=2)


def real_noise_connectivity(per_input: Tensor, real: Tensor) -> tuple[float, float]:
    """Mean of ``per_input`` ``(n,)`` over the ``real`` (bool ``(n,)``) columns and over the others.

    Returns ``(real_mean, noise_mean)``; a group without columns gives ``nan``.
    """
    values = per_input.double()
    n_real, n_noise = int(real.sum()), int((~real).sum())
    real_mean = float(values[real].sum()) / n_real if n_real else math.nan
    noise_mean = float(values[~real].sum()) / n_noise if n_noise else math.nan
    return real_mean, noise_mean
