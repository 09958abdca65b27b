"""Masks on :class:`MemberLinear` weights as ``torch.nn.utils.parametrize`` parametrizations.

A masked layer's ``weight`` is ``original ⊙ mask``: the mask is a 0/1 buffer ``(M, in, out)`` of the
parametrization (stored in the weight's dtype: multiplying by it is several times faster than by a boolean
tensor), so it is in every ``state_dict``/checkpoint and moves with ``.to(device)``. Gradients reach only
active positions. The trainable tensor is ``layer.parametrizations.weight.original``.

The product is not formed at every use. ``original`` is kept exactly zero at the inactive positions: at the
first use after anything wrote to it (an optimizer step, a checkpoint load, a topology update) they are set to
zero in place, so ``weight`` is ``original`` itself, and its accumulated gradient is masked. The original code
does the same by masking the weights after every optimizer step (docs/original_code.md §4.3). A masked
product in every pass costs about as much as the layer's matrix product at small batch sizes; this costs one
in-place product per write. Writes are seen through the tensor's version counter: writes through ``.data``
and fused optimizer steps do not advance it, so after a fused step mark the parameters written
(``torch.autograd.graph.increment_version``), as ``OffPolicyAlgorithm.optimizer_step`` does. A Polyak step of a
target carrying its source's mask keeps the target's zeros (:func:`lerp_weights_`): it is not zeroed again.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from typing_extensions import override

from lightning_sparse_rl.sparse.member_linear import MemberLinear

_MASK_SUFFIX = ".parametrizations.weight.0.mask"


class WeightMask(nn.Module):
    """Parametrization ``W ↦ W ⊙ mask`` with a 0/1 ``mask`` buffer shaped like ``W``, in ``W``'s dtype."""

    #: Masks made, changed or loaded in this process so far (:func:`mask_changes`).
    changes: ClassVar[int] = 0
    #: Outside ``torch.compile`` the forward returns the stored weight itself: :class:`MemberLinear` calls it directly.
    returns_stored_weight: ClassVar[bool] = True

    def __init__(self, mask: Tensor, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(dtype))
        #: Incremented whenever the mask may have changed (:func:`set_mask`, ``load_state_dict``).
        self.version = 0
        WeightMask.changes += 1
        # (weight version, mask version) when the inactive weights were last set to zero
        self._zeroed_at = (-1, -1)
        self._hooked: weakref.ref[Tensor] | None = None  # the weight whose gradient this masks
        # (other parametrization, its version, this version, whether the masks are equal) when last compared
        self._compared: tuple[weakref.ref[WeightMask], int, int, bool] | None = None

    @override
    def _load_from_state_dict(self, *args: object, **kwargs: object) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.changed()

    @override
    def forward(self, weight: Tensor) -> Tensor:
        """The masked weight: ``weight`` (the original) itself, its inactive entries zeroed in place if written since.

        Its gradient is masked where it accumulates (``.grad``): a gradient taken with ``torch.autograd.grad``
        stays dense (RigL's growth criterion reads it). Under ``torch.compile`` the product (which the
        compiler fuses).
        """
        if torch.compiler.is_compiling():
            return weight * self.mask
        if (weight._version, self.version) != self._zeroed_at:
            with torch.no_grad():
                weight.mul_(self.mask)
            self._zeroed_at = (weight._version, self.version)
        if weight.requires_grad and (self._hooked is None or self._hooked() is not weight):  # first use, or a copy
            weight.register_post_accumulate_grad_hook(self._mask_gradient)
            self._hooked = weakref.ref(weight)
        return weight

    def is_zeroed(self, weight: Tensor) -> bool:
        """Whether ``weight`` (the original) is zero at the inactive positions, as last zeroed or kept so."""
        return (weight._version, self.version) == self._zeroed_at

    def kept_zeroed(self, weight: Tensor) -> None:
        """Note that the last write to ``weight`` kept it zero at the inactive positions: not zeroed at its next use."""
        self._zeroed_at = (weight._version, self.version)

    def equals(self, other: WeightMask) -> bool:
        """Whether ``other``'s mask is this one's (compared once per pair of mask versions)."""
        known = self._compared
        if known is None or known[0]() is not other or known[1:3] != (other.version, self.version):
            known = (weakref.ref(other), other.version, self.version, torch.equal(self.mask, other.mask))
            self._compared = known
        return known[3]

    def changed(self) -> None:
        """Note that the mask may have changed: its :attr:`version` and :func:`mask_changes` move on."""
        self.version += 1
        WeightMask.changes += 1

    def _mask_gradient(self, weight: Tensor) -> None:
        """Zero the accumulated gradient of ``weight`` at the inactive positions (in place)."""
        weight.grad.mul_(self.mask)


def _weight_mask(layer: MemberLinear) -> WeightMask | None:
    if not parametrize.is_parametrized(layer, "weight"):
        return None
    for parametrization in layer.parametrizations.weight:
        if isinstance(parametrization, WeightMask):
            return parametrization
    return None


def _mask_buffer(layer: MemberLinear) -> Tensor | None:
    parametrization = _weight_mask(layer)
    return None if parametrization is None else parametrization.mask


def weight_mask(layer: MemberLinear) -> Tensor | None:
    """The layer's mask as a new boolean tensor ``(M, in, out)``, or ``None`` if the layer is dense.

    Change a mask with :func:`set_mask`.
    """
    mask = _mask_buffer(layer)
    return None if mask is None else mask.bool()


def mask_version(layer: MemberLinear) -> tuple[int, int]:
    """Identity and version of a masked layer's mask: equal values mean the mask has not changed."""
    parametrization = layer.parametrizations.weight[0]
    return id(parametrization), parametrization.version


def mask_changes() -> int:
    """How many masks were made, changed or loaded in this process: while it is unchanged, no mask changed.

    Masks change through :func:`set_mask` and ``load_state_dict``; removing a parametrization is not counted.
    """
    return WeightMask.changes


def is_masked(layer: MemberLinear) -> bool:
    """Whether ``layer`` carries a mask."""
    return _mask_buffer(layer) is not None


def active_count(layer: MemberLinear) -> Tensor:
    """Active connections of each member of a masked layer, ``(M,)`` (no device sync)."""
    mask = _mask_buffer(layer)
    if mask is None:
        raise ValueError("active_count needs a masked layer")
    return mask.sum(dim=(1, 2))


def trainable_weight(layer: MemberLinear) -> nn.Parameter:
    """The parameter the optimizer updates: ``original`` for a masked layer, ``weight`` otherwise."""
    if parametrize.is_parametrized(layer, "weight"):
        return layer.parametrizations.weight.original
    return layer.weight


@torch.no_grad()
def lerp_weights_(pairs: Sequence[tuple[MemberLinear, MemberLinear]], tau: float) -> None:
    """``W_target ← (1 − τ)·W_target + τ·W_source`` for each ``(target, source)`` pair, in one foreach lerp.

    ``W_source`` is the source's (masked) weight, ``W_target`` the target's trainable one. A masked target whose mask
    is its source's (shared target masks) and whose inactive weights are zero keeps them zero, as the source is zero
    there too: it is not zeroed again at its next use. Other masked targets are zeroed then, as after any write.
    """
    if not pairs:
        return
    sources = [source.effective_weight() for _, source in pairs]  # a masked source: zero outside its mask once read
    targets = [trainable_weight(target) for target, _ in pairs]
    kept = []
    for (target, source), weight in zip(pairs, targets, strict=True):
        target_mask = _weight_mask(target)
        if target_mask is not None and target_mask.is_zeroed(weight):
            source_mask = _weight_mask(source)
            if source_mask is not None and target_mask.equals(source_mask):
                kept.append((target_mask, weight))
    torch._foreach_lerp_(targets, sources, tau)
    for target_mask, weight in kept:
        target_mask.kept_zeroed(weight)


@torch.no_grad()
def set_mask(layer: MemberLinear, mask: Tensor) -> None:
    """Mask ``layer`` with ``mask`` (registering the parametrization on first use) and zero inactive weights."""
    existing = _mask_buffer(layer)
    if existing is None:
        weight = layer.weight
        parametrize.register_parametrization(layer, "weight", WeightMask(mask.to(weight.device), weight.dtype))
        existing = _mask_buffer(layer)
    else:
        existing.copy_(mask)
        layer.parametrizations.weight[0].changed()
    trainable_weight(layer).mul_(existing)


def restore_masks(module: nn.Module, state_dict: Mapping[str, Tensor]) -> None:
    """Register the masks found in ``state_dict`` on the matching layers of ``module`` that lack one.

    Call before ``module.load_state_dict(state_dict)`` so that a checkpoint of a sparse model loads
    into a freshly built (dense) instance.
    """
    for key, mask in state_dict.items():
        if key.endswith(_MASK_SUFFIX):
            layer = module.get_submodule(key[: -len(_MASK_SUFFIX)])
            if isinstance(layer, MemberLinear) and not is_masked(layer):
                set_mask(layer, mask)
