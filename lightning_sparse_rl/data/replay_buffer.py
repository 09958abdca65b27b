"""A preallocated replay buffer of torch tensors that samples on its own device."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_sparse_rl.seeding import RandomStream
from lightning_sparse_rl.types import Transition
from lightning_sparse_rl.validation import UserInputError


def available_memory(device: torch.device) -> int | None:
    """Bytes that can still be allocated on ``device`` (``None`` when unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_buffer_fits(capacity: int, row_bytes: int, device: torch.device) -> None:
    """Refuse a replay buffer that cannot be allocated, before allocating it (one line naming the sizes)."""
    needed, available = capacity * row_bytes, available_memory(device)
    if available is not None and needed > available:
        raise UserInputError(
            f"buffer_size={capacity:,} needs {needed:,} bytes ({needed / 2**30:.1f} GiB) for the replay buffer "
            f"on {device}, but only {available:,} bytes ({available / 2**30:.1f} GiB) are available: "
            "lower --data.buffer_size"
        )


class ReplayBuffer:
    """Circular buffer of transitions stored as one float32 tensor ``(capacity, row)``.

    One row holds ``[obs, action, reward, next_obs, terminated]``; storing a transition is a single
    host-to-device copy and sampling a minibatch is a single gather, whatever the device.
    Sampling is uniform **with** replacement (as SB3 and CleanRL; the original sampled without
    replacement within a minibatch, which makes no measurable difference at 1e6 capacity).

    Args:
        capacity: maximum number of transitions; the oldest are overwritten first.
        obs_dim: observation size.
        action_dim: action size.
        device: where the storage lives and minibatches are produced.
        seed: seed of the buffer's own sampling stream (:class:`~lightning_sparse_rl.seeding.RandomStream`).

    """

    def __init__(self, capacity: int, obs_dim: int, action_dim: int, device: torch.device | str, seed: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.device = torch.device(device)
        self.row_size = 2 * obs_dim + action_dim + 2  # obs, action, reward, next obs, terminated
        check_buffer_fits(capacity, 4 * self.row_size, self.device)
        self.storage = torch.zeros(capacity, self.row_size, dtype=torch.float32, device=self.device)
        self.stream = RandomStream(seed)
        self.position = 0
        self.size = 0
        self._row = np.empty(self.row_size, dtype=np.float32)

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminated: bool) -> None:
        """Store one transition (numpy inputs from the env), overwriting the oldest when full."""
        d, a = self.obs_dim, self.action_dim
        row = self._row
        row[:d] = obs
        row[d : d + a] = action
        row[d + a] = reward
        row[d + a + 1 : 2 * d + a + 1] = next_obs
        row[-1] = float(terminated)
        self.storage[self.position].copy_(torch.from_numpy(row), non_blocking=False)
        self.position = (self.position + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def state_dict(self) -> dict[str, Any]:
        """The stored rows ``(size, row)`` (a CPU copy), the write position and the sampling stream."""
        return {
            "rows": self.storage[: self.size].to("cpu", copy=True),
            "position": self.position,
            "size": self.size,
            "stream": self.stream.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into a buffer of the same capacity and row layout.

        Raises:
            ValueError: if the saved rows do not fit this buffer.

        """
        rows = state["rows"]
        if rows.ndim != 2 or rows.shape[1] != self.row_size or rows.shape[0] > self.capacity:
            raise ValueError(
                f"the saved replay buffer holds {tuple(rows.shape)} rows; this buffer takes at most "
                f"({self.capacity}, {self.row_size}) (same env, noise features and buffer_size as the saved run)"
            )
        self.storage[: rows.shape[0]].copy_(rows)
        self.position = state["position"]
        self.size = state["size"]
        self.stream.load_state_dict(state["stream"])

    def clear(self) -> None:
        """Forget every stored transition."""
        self.position = 0
        self.size = 0

    def sample(self, batch_size: int) -> Transition:
        """Sample ``batch_size`` transitions uniformly with replacement, on the buffer's device."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        generator = self.stream.generator(self.device)
        index = torch.randint(self.size, (batch_size,), device=self.device, generator=generator)
        return self.split_rows(self.storage[index])

    def split_rows(self, rows: Tensor) -> Transition:
        """View stored rows ``(B, row)`` as a :class:`Transition` (no copy)."""
        d, a = self.obs_dim, self.action_dim
        return Transition(
            obs=rows[:, :d],
            action=rows[:, d : d + a],
            reward=rows[:, d + a],
            next_obs=rows[:, d + a + 1 : 2 * d + a + 1],
            terminated=rows[:, -1],
        )
