"""Multi-step TD targets (RLx2, Tan et al. 2023): an ``n``-step window of transitions as one transition.

For a window ``(s_t, a_t, r_t, s'_t), …, (s_{t+n−1}, …)`` whose first ``m ≤ n`` steps belong to one stretch of an
episode (:attr:`~lightning_sparse_rl.types.TransitionWindow.alive`), the target of any off-policy algorithm is

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
    """The window as one transition: summed discounted rewards, the last alive step's next observation and end.

    Shapes: ``window.steps`` fields ``(K, B, n, ...)``, ``window.alive`` ``(K, B, n)``; the result ``(K, B, ...)`` with
    :attr:`~lightning_sparse_rl.types.Transition.discount` ``= γ^m`` per sample.
    """
    steps, alive = window.steps, window.alive
    n, dtype = alive.shape[-1], steps.reward.dtype
    reward = (steps.reward * alive) @ _powers(discount, n, dtype, alive.device)  # Σ_j γ^j r_j over alive steps
    length = alive.sum(dim=-1, keepdim=True, dtype=torch.long)  # m, the alive steps, (K, B, 1)
    last = length - 1
    next_obs = steps.next_obs.gather(2, last.unsqueeze(-1).expand(-1, -1, -1, steps.next_obs.shape[-1])).squeeze(2)
    terminated = steps.terminated.gather(2, last).squeeze(2)
    bootstrap = _powers(discount, n + 1, dtype, alive.device).take(length).squeeze(-1)  # γ^m
    return Transition(steps.obs[:, :, 0], steps.action[:, :, 0], reward, next_obs, terminated, bootstrap)


@functools.lru_cache(maxsize=8)
def _powers(discount: float, n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``γ^j`` for ``j < n``, computed in float64 and stored in ``dtype`` (kept: the same at every update)."""
    return (discount ** torch.arange(n, device=device, dtype=torch.float64)).to(dtype)
