"""Mask maths of sparse training: random masks, the smallest / random / best-scored positions of a mask.

Pure tensor functions on one member's weight matrix ``(in, out)`` (``layer.weight[m]``) and its boolean mask
of the same shape; they run on whatever device the tensors are on. Ties are broken by position: among equal scores the
lower row-major index is chosen first (stable sorts), so results are exact and reproducible.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def random_mask(shape: tuple[int, int], n_active: int, generator: torch.Generator) -> Tensor:
    """A boolean mask with exactly ``n_active`` ``True`` entries placed uniformly at random."""
    numel = shape[0] * shape[1]
    if not 0 <= n_active <= numel:
        raise ValueError(f"n_active={n_active} must be in [0, {numel}] for a {shape[0]}×{shape[1]} layer")
    chosen = torch.randperm(numel, generator=generator, device=generator.device)[:n_active]
    mask = torch.zeros(numel, dtype=torch.bool, device=generator.device)
    mask[chosen] = True
    return mask.view(shape)


def smallest_active(weight: Tensor, mask: Tensor, n_prune: int) -> Tensor:
    """Boolean positions of the ``n_prune`` active weights with the smallest ``|w|`` (to prune)."""
    scores = weight.detach().abs().masked_fill(~mask, math.inf).flatten()
    chosen = torch.sort(scores, stable=True).indices[:n_prune]
    return _positions(chosen, mask)


def random_inactive(mask: Tensor, n_grow: int, generator: torch.Generator) -> Tensor:
    """Boolean positions of ``n_grow`` inactive entries of ``mask``, uniformly without replacement (SET)."""
    candidates = (~mask).flatten().nonzero().squeeze(1)
    if n_grow > candidates.numel():
        raise ValueError(f"cannot grow {n_grow} connections: only {candidates.numel()} inactive positions")
    order = torch.randperm(candidates.numel(), generator=generator, device=generator.device).to(mask.device)
    return _positions(candidates[order[:n_grow]], mask)


def largest_scores(scores: Tensor, candidates: Tensor, n: int) -> Tensor:
    """Boolean positions of the ``n`` ``candidates`` with the largest ``scores`` (RigL: ``|gradient|``)."""
    ranked = scores.detach().masked_fill(~candidates, -math.inf).flatten()
    chosen = torch.sort(ranked, descending=True, stable=True).indices[:n]
    return _positions(chosen, candidates)


def zero_smallest_beyond_(weight: Tensor, allowed: Tensor) -> None:
    """Keep at most ``allowed[m]`` non-zeros in member ``m`` of ``weight`` ``(M, ...)``: zero its smallest beyond.

    The counts stay on the device (no host read): every member's magnitudes are ranked with one stable sort,
    and the first ``non-zeros − allowed[m]`` non-zeros in that order are zeroed (among equal magnitudes the
    lower index first, as :class:`~lightning_sparse_rl.sparse.TargetBudget` does on the CPU).
    """
    flat = weight.data.view(weight.shape[0], -1)
    magnitude = flat.abs()
    order = torch.sort(magnitude, dim=1, stable=True).indices  # zeros first, then by magnitude and index
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    zeros = (magnitude == 0).sum(dim=1, keepdim=True)
    excess = (flat.shape[1] - zeros - allowed.unsqueeze(1)).clamp_min(0)
    flat.masked_fill_((rank >= zeros) & (rank < zeros + excess), 0.0)


def _positions(flat_indices: Tensor, like: Tensor) -> Tensor:
    """A boolean tensor shaped like ``like`` that is ``True`` at ``flat_indices``."""
    out = torch.zeros(like.numel(), dtype=torch.bool, device=like.device)
    out[flat_indices] = True
    return out.view(like.shape)
