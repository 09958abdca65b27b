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


def zero_smallest_nonzero_(weight: Tensor, count: int, entered: Tensor | None = None) -> None:
    """Zero the ``count`` smallest-magnitude non-zero entries of ``weight`` in place.

    Used to keep a Polyak-averaged target network as sparse as its online network (docs/original_code.md §4.4
    "maintain sparsity"); ties among equal magnitudes are broken arbitrarily. ``entered`` (optional,
    boolean like ``weight``) marks the entries that just became non-zero; when at least ``count`` of
    them are non-zero, the ``count`` smallest all lie at or below the largest of them, so only entries
    up to that magnitude are searched (much faster than a search over the whole matrix).
    """
    if count <= 0:
        return
    flat = weight.data.view(-1)
    magnitude = flat.abs()
    if entered is not None:
        bound = torch.where(entered.view(-1), magnitude, 0.0).max()
        candidates = ((magnitude > 0) & (magnitude <= bound)).nonzero().squeeze(1)
        if candidates.numel() >= count:
            drop = candidates[torch.topk(magnitude[candidates], count, largest=False).indices]
            flat.index_fill_(0, drop, 0.0)
            return
    magnitude.masked_fill_(magnitude == 0, math.inf)
    flat.index_fill_(0, torch.topk(magnitude, count, largest=False).indices, 0.0)


def zero_smallest_beyond_(weight: Tensor, allowed: Tensor) -> None:
    """Keep at most ``allowed[m]`` non-zeros in member ``m`` of ``weight`` ``(M, ...)``: zero its smallest beyond.

    The counts stay on the device (no host read): every member's non-zero magnitudes are ranked with one
    sort, and those ranked at or beyond ``allowed[m]`` from the largest are zeroed. Ties are broken by the
    sort. Equals :func:`zero_smallest_nonzero_` per member with ``count = non-zeros − allowed`` (up to ties).
    """
    flat = weight.data.view(weight.shape[0], -1)
    magnitude = flat.abs()
    order = torch.sort(magnitude, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    flat.masked_fill_(rank >= allowed.unsqueeze(1), 0.0)


def _positions(flat_indices: Tensor, like: Tensor) -> Tensor:
    """A boolean tensor shaped like ``like`` that is ``True`` at ``flat_indices``."""
    out = torch.zeros(like.numel(), dtype=torch.bool, device=like.device)
    out[flat_indices] = True
    return out.view(like.shape)
