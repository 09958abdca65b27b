"""Each stored transition's ``n``-step window: what an ``n``-step TD target reads from the replay buffer (RLx2).

The window of a stored transition holds the ``m ≤ n`` transitions written one after another from it that continue
its episode: step 0, and step ``j`` when step ``j − 1`` is in, did not terminate, its next observation is step
``j``'s observation (else its episode was truncated there and a new one began), and step ``j`` has been written.
For every stored row, :class:`WindowTable` keeps the window's rewards (zeros after the ``m``-th), ``m`` and the
storage row of the last step. It is found from the rows once (:meth:`WindowTable.fill`) and kept up to date as
transitions are written (:meth:`WindowTable.extend`), so that a minibatch of windows is a few reads.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from lightning_sparse_rl.types import Transition

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)


def continues(previous_next_obs: ArrayT, previous_terminated: ArrayT, obs: ArrayT) -> ArrayT:
    """Whether a transition continues the one written before it, of the same agent.

    It does when that one did not terminate and its next observation is this one's observation (else the
    episode was truncated there and a new one began).

    Shapes ``(..., obs_dim)``, ``(...)``, ``(..., obs_dim)`` → ``(...)`` bool; NumPy arrays or tensors.
    """
    return (previous_terminated == 0) & (previous_next_obs == obs).all(-1)


class WindowTable:
    """The ``n``-step windows of every row of a replay buffer's storage ``(K, capacity, row)``.

    Kept in host memory; on the CPU :attr:`rewards`, :attr:`lengths` and :attr:`last_rows` share it, on another
    device they are copies to which each change is copied.

    Attributes:
        n: the window size.
        rewards: ``(K, capacity, n)`` float32, the rewards of each window's steps, then zeros.
        lengths: ``(K, capacity)`` int64, ``m``: each window's steps.
        last_rows: ``(K, capacity)`` int64, the storage row of each window's last step, counting the rows of all
            agents together (agent ``k``'s rows are ``k·capacity …``).

    """

    def __init__(self, agents: int, capacity: int, n: int, device: torch.device) -> None:
        self.n = n
        self.capacity = capacity
        self._first_rows = np.arange(agents, dtype=np.int64) * capacity
        self._rewards = np.zeros((agents, capacity, n), dtype=np.float32)
        self._lengths = np.ones((agents, capacity), dtype=np.int64)
        self._last_rows = self._first_rows[:, None] + np.arange(capacity)
        self._on_host = device.type == "cpu"
        self.rewards, self.lengths, self.last_rows = (
            torch.from_numpy(array).to(device) for array in (self._rewards, self._lengths, self._last_rows)
        )  # on the CPU, views of the arrays

    def extend(self, position: int, written: int, reward: np.ndarray, continuing: np.ndarray) -> None:
        """Take in the transition just stored at row ``position`` of every agent.

        Its window is itself; the windows of the ``n − 1`` rows written before it that reached the previous
        transition now reach it too, for the agents where it continues that one (:func:`continues`).

        Args:
            position: the row written.
            written: rows stored before it (at most the capacity).
            reward: its reward, ``(K,)``.
            continuing: ``(K,)`` bool, whether it continues the transition written before it.

        """
        self._rewards[:, position] = 0.0
        self._rewards[:, position, 0] = reward
        self._lengths[:, position] = 1
        self._last_rows[:, position] = self._first_rows + position
        back = np.arange(1, min(self.n, written + 1, self.capacity))  # written j rows ago, not overwritten since
        rows = (position - back) % self.capacity
        agent, i = np.nonzero(continuing[:, None] & (self._lengths[:, rows] == back))  # reached the previous row
        row, step = rows[i], back[i]
        self._rewards[agent, row, step] = reward[agent]
        self._lengths[agent, row] = step + 1
        self._last_rows[agent, row] = self._last_rows[agent, position]
        if not self._on_host:
            self._copy_rows(np.append(rows, position))

    def fill(self, steps: Transition, order: Tensor) -> None:
        """Find every window from the stored transitions ``steps`` ``(K, size, …)``, oldest first, at rows ``order``."""
        size = order.numel()
        follows = continues(steps.next_obs[:, :-1], steps.terminated[:, :-1], steps.obs[:, 1:])  # row i+1 of row i
        rewards = steps.reward.new_zeros(*steps.reward.shape, self.n)
        rewards[..., 0] = steps.reward
        lengths = torch.ones(steps.reward.shape, dtype=torch.int64, device=order.device)
        reaches = torch.ones(steps.reward.shape, dtype=torch.bool, device=order.device)
        for j in range(1, min(self.n, size)):
            reaches = reaches[:, : size - j] & follows[:, j - 1 :]  # the window of row i reaches row i + j
            rewards[:, : size - j, j] = torch.where(reaches, steps.reward[:, j:], 0.0)
            lengths[:, : size - j] += reaches
        last = order[torch.arange(size, device=order.device) + lengths - 1]
        at = order.cpu().numpy()
        self._rewards[:, at] = rewards.cpu().numpy()
        self._lengths[:, at] = lengths.cpu().numpy()
        self._last_rows[:, at] = self._first_rows[:, None] + last.cpu().numpy()
        if not self._on_host:
            self._copy_rows(at)

    def _copy_rows(self, rows: np.ndarray) -> None:
        """Copy the host table's ``rows`` of every agent to the device."""
        index = torch.from_numpy(rows).to(self.lengths.device)
        for tensor, array in (
            (self.rewards, self._rewards),
            (self.lengths, self._lengths),
            (self.last_rows, self._last_rows),
        ):
            tensor[:, index] = torch.from_numpy(array[:, rows]).to(tensor.device)
