"""Multi-step TD targets (RLx2, Tan et al. 2023): an ``n``-step window of transitions as one transition.

For a window of the ``m ≤ n`` steps ``(s_t, a_t, r_t, s'_t), …, (s_{t+m−1}, …)`` of one stretch of an episode
(:class:`~lightning_sparse_rl.types.TransitionWindow`), the target of any off-policy algorithm is

    y = Σ_{j<m} γ^j r_{t+j} + γ^m (1 − terminated_{t+m−1}) · V̄(s'_{t+m−1})

where ``V̄`` is the algorithm's bootstrap (TD3: clipped double Q at the smoothed target action; SAC: the soft value).
A terminated step ends the sum without a bootstrap; a time-limit truncation ends it with a bootstrap from the true
last observation. The intermediate actions are the stored (behaviour) ones, without correction, as in RLx2.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from lightning_sparse_rl.types import Transition, TransitionWindow


def n_step_transition(window: TransitionWindow, discount: float) -> Transition:
    """The window as one transition: its discounted reward sum, its last step's next observation and end.

    Shapes: ``window.rewards`` ``(K, B, n)``; the result ``(K, B, ...)`` with
    :attr:`~lightning_sparse_rl.types.Transition.discount` ``= γ^m`` per sample.
    """
    n, dtype, device = window.rewards.shape[-1], window.rewards.dtype, window.rewards.device
    reward = window.rewards @ _powers(discount, n, dtype, device)  # Σ_{j<m} γ^j r_j (zeros after the m-th)
    bootstrap = _powers(discount, n + 1, dtype, device).take(window.length)  # γ^m
    return Transition(window.obs, window.action, reward, window.next_obs, window.terminated, bootstrap)


@functools.lru_cache(maxsize=8)
def _powers(discount: float, n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``γ^j`` for ``j < n``, computed in float64 and stored in ``dtype`` (kept: the same at every update)."""
    return (discount ** torch.arange(n, device=device, dtype=torch.float64)).to(dtype)
