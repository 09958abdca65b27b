"""A growth criterion of your own, in one file: grow where ``|gradient| × |Adam's first moment|`` is largest.

RigL grows where the gradient of the current minibatch is largest. A single minibatch is noisy; the optimizer's
first moment averages the gradient over the last few dozen updates. This criterion ranks the inactive positions by
the product of the two, so a position must have both a large gradient now and a consistent one recently.

Use it from YAML (run from a folder where this module can be imported, e.g. ``PYTHONPATH=examples``)::

    - class_path: lightning_sparse_rl.callbacks.DynamicSparsityCallback
      init_args:
        growth:
          class_path: custom_growth.GradientMomentumGrowth

It implements :class:`lightning_sparse_rl.sparse.GrowthCriterion`: a ``needs_gradient`` flag and ``grow``, which
returns exactly ``n`` inactive positions. ``LayerState`` gives one agent's layer: weights and mask ``(in, out)``,
the dense gradient (because ``needs_gradient`` is set) and Adam's ``exp_avg`` (``None`` before the first step).
"""

from __future__ import annotations

from torch import Tensor

from lightning_sparse_rl.sparse import LayerState, largest_scores


class GradientMomentumGrowth:
    """Grow the ``n`` inactive positions with the largest ``|∂loss/∂w| · |exp_avg|``.

    Args:
        momentum_floor: added to ``|exp_avg|`` so that positions without a moment yet (never active, hence never
            updated) can still be grown on their gradient alone.

    """

    needs_gradient = True

    def __init__(self, momentum_floor: float = 1e-8) -> None:
        self.momentum_floor = momentum_floor

    def grow(self, layer: LayerState, n: int) -> Tensor:
        """Boolean positions of the ``n`` best-scored inactive entries of ``layer.mask``."""
        assert layer.dense_grad is not None, "needs_gradient is set, so the callback passes the dense gradient"
        momentum = 0.0 if layer.exp_avg is None else layer.exp_avg.abs()
        scores = layer.dense_grad.abs() * (momentum + self.momentum_floor)
        return largest_scores(scores, ~layer.mask, n)
