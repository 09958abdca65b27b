"""A preallocated replay buffer of torch tensors that samples on its own device."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_sparse_rl.data.n_step_windows import WindowTable, continues
from lightning_sparse_rl.seeding import RandomStream
from lightning_sparse_rl.types import Transition, TransitionWindow
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


def check_buffer_fits(agents: int, capacity: int, row_bytes: int, device: torch.device) -> None:
    """Refuse replay buffers that cannot be allocated, before allocating them (one line naming the sizes)."""
    needed, available = agents * capacity * row_bytes, available_memory(device)
    if available is not None and needed > available:
        population = f"a population of K={agents} agents with " if agents > 1 else ""
        raise UserInputError(
            f"{population}buffer_size={capacity:,} needs {needed:,} bytes ({needed / 2**30:.1f} GiB) for the replay "
            f"buffer{'s' if agents > 1 else ''} on {device}, but only {available:,} bytes "
            f"({available / 2**30:.1f} GiB) are available: lower --data.buffer_size"
            + (" or the number of seeds" if agents > 1 else "")
        )


class ReplayBuffer:
    """Circular buffers of transitions, one per agent, stored as one float32 tensor ``(K, capacity, row)``.

    One row holds ``[obs, action, reward, next_obs, terminated]``. The agents of a population step together,
    so one write position serves all; storing a step of all agents is a single host-to-device copy, and
    sampling a minibatch for every agent is a single gather, whatever the device. Agent ``k`` samples its
    own indices from its own stream. Sampling is uniform **with** replacement (as SB3 and CleanRL; the
    original sampled without replacement within a minibatch, which makes no measurable difference at 1e6
    capacity).

    For multi-step targets, each stored transition's window (:mod:`~lightning_sparse_rl.data.n_step_windows`) is
    found from the rows at the first minibatch of windows and kept up to date by :meth:`add` from then on.

    An agent's oldest transitions can be dropped (:meth:`drop_oldest`, RLx2's dynamic capacity): they stay in
    the storage but are no longer sampled, and the agent's buffer grows back as new steps overwrite them.

    Args:
        capacity: maximum number of transitions per agent; the oldest are overwritten first.
        obs_dim: observation size.
        action_dim: action size.
        device: where the storage lives and minibatches are produced.
        seeds: one sampling-stream seed per agent (:class:`~lightning_sparse_rl.seeding.RandomStream`).

    """

    def __init__(
        self, capacity: int, obs_dim: int, action_dim: int, device: torch.device | str, seeds: list[int]
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.agents = len(seeds)
        self.capacity = capacity
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.device = torch.device(device)
        self.row_size = 2 * obs_dim + action_dim + 2  # obs, action, reward, next obs, terminated
        check_buffer_fits(self.agents, capacity, 4 * self.row_size, self.device)
        self.storage = torch.zeros(self.agents, capacity, self.row_size, dtype=torch.float32, device=self.device)
        self.streams = [RandomStream(seed) for seed in seeds]
        self._agent_index = torch.arange(self.agents, device=self.device).unsqueeze(1)
        self._first_rows = self._agent_index * capacity  # (K, 1): each agent's first row of all
        self.position = 0
        self.size = 0  # rows written, at most capacity (the physical rows [0, size) hold data)
        self.dropped = [0] * self.agents  # per agent: oldest written rows no longer sampled
        self._rows = np.empty((self.agents, self.row_size), dtype=np.float32)
        self._previous_rows = np.empty_like(self._rows)  # the rows of the last add
        self._windows: WindowTable | None = None  # None until a minibatch of windows is taken

    def __len__(self) -> int:
        return self.size

    def add(
        self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, next_obs: np.ndarray, terminated: np.ndarray
    ) -> None:
        """Store one step of every agent (numpy, leading dimension ``K``), overwriting the oldest when full."""
        d, a = self.obs_dim, self.action_dim
        self._rows, self._previous_rows = self._previous_rows, self._rows
        rows = self._rows
        rows[:, :d] = obs
        rows[:, d : d + a] = action
        rows[:, d + a] = reward
        rows[:, d + a + 1 : 2 * d + a + 1] = next_obs
        rows[:, -1] = terminated
        self.storage[:, self.position].copy_(torch.from_numpy(rows), non_blocking=False)
        if self._windows is not None:
            previous = self._previous_rows
            stored_obs = rows[:, :d]  # as stored (float32), as the rows are compared when the windows are found
            continuing = (self.size > 0) & continues(
                previous[:, d + a + 1 : 2 * d + a + 1], previous[:, -1], stored_obs
            )
            self._windows.extend(self.position, self.size, rows[:, d + a], continuing)
        if self.size == self.capacity:  # the oldest row was overwritten: one fewer dropped row
            self.dropped = [max(dropped - 1, 0) for dropped in self.dropped]
        self.position = (self.position + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def agent_sizes(self) -> list[int]:
        """Transitions each agent samples from: the rows written minus the agent's dropped ones."""
        return [self.size - dropped for dropped in self.dropped]

    def drop_oldest(self, agent: int, count: int) -> None:
        """Stop sampling agent ``agent``'s ``count`` oldest transitions (at least one stays)."""
        self.dropped[agent] += min(max(count, 0), self.agent_sizes()[agent] - 1)

    def oldest(self, agent: int, count: int) -> Transition:
        """Agent ``agent``'s ``min(count, size)`` oldest sampled transitions, oldest first (shapes ``(n, ...)``)."""
        size = self.agent_sizes()[agent]
        index = (self.position - size + torch.arange(min(count, size), device=self.device)) % self.capacity
        return self.split_rows(self.storage[agent, index])

    def state_dict(self) -> dict[str, Any]:
        """The stored rows ``(K, size, row)`` (a CPU copy), the write position and the sampling streams."""
        return {
            "rows": self.storage[:, : self.size].to("cpu", copy=True),
            "position": self.position,
            "size": self.size,
            "dropped": list(self.dropped),
            "streams": [stream.state_dict() for stream in self.streams],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into buffers of the same population, capacity and row layout.

        Raises:
            ValueError: if the saved rows do not fit these buffers.

        """
        rows = state["rows"]
        if (
            rows.ndim != 3
            or rows.shape[0] != self.agents
            or rows.shape[2] != self.row_size
            or rows.shape[1] > self.capacity
        ):
            raise ValueError(
                f"the saved replay buffer holds {tuple(rows.shape)} rows; this buffer takes at most "
                f"({self.agents}, {self.capacity}, {self.row_size}) (same seeds, env, noise features and buffer_size "
                "as the saved run)"
            )
        self.storage[:, : rows.shape[1]].copy_(rows)
        self.position = state["position"]
        self.size = state["size"]
        self.dropped = list(state.get("dropped", [0] * self.agents))  # absent in checkpoints before RLx2
        for stream, saved in zip(self.streams, state["streams"], strict=True):
            stream.load_state_dict(saved)
        self._windows = None  # found again from the rows at the next minibatch of windows

    def clear(self) -> None:
        """Forget every stored transition."""
        self.position = 0
        self.size = 0
        self.dropped = [0] * self.agents
        self._windows = None

    def sample(self, batch_size: int, window: int = 1) -> Transition | TransitionWindow:
        """Sample ``batch_size`` transitions per agent uniformly with replacement: a ``(K, batch_size, …)`` batch.

        With ``window > 1``, each sample is the ``window`` consecutive transitions from a uniformly drawn one
        (:class:`~lightning_sparse_rl.types.TransitionWindow`, ``(K, batch_size, window, …)``), for multi-step
        targets; ``alive`` marks the steps that continue the first one's episode.
        """
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        sizes = self.agent_sizes()
        start = torch.stack(
            [
                self._physical(
                    torch.randint(size, (batch_size,), device=self.device, generator=stream.generator(self.device)),
                    agent,
                )
                for agent, (size, stream) in enumerate(zip(sizes, self.streams, strict=True))
            ]
        )
        if window == 1:
            return self.split_rows(self.storage[self._agent_index, start])
        return self.windows(start, window)

    def windows(self, start: Tensor, window: int) -> TransitionWindow:
        """The ``window``-step windows of the transitions stored at rows ``start`` ``(K, B)``.

        A window holds the transitions written one after another from its first that continue its episode, at
        most ``window`` (:mod:`~lightning_sparse_rl.data.n_step_windows`; never past the newest row).
        """
        table = self._window_table(window)
        rows = start + self._first_rows  # (K, B) into the K·capacity rows
        index = rows.view(-1)
        stored = self.storage.view(-1, self.row_size)
        first = self.split_rows(stored.index_select(0, index).view(*rows.shape, -1))
        last = self.split_rows(stored.index_select(0, table.last_rows.take(rows).view(-1)).view(*rows.shape, -1))
        rewards = table.rewards.view(-1, window).index_select(0, index).view(*rows.shape, window)
        return TransitionWindow(
            first.obs, first.action, rewards, last.next_obs, last.terminated, table.lengths.take(rows)
        )

    def _window_table(self, window: int) -> WindowTable:
        """The stored transitions' ``window``-step windows, found from the rows if not kept yet."""
        if self._windows is None or self._windows.n != window:
            self._windows = WindowTable(self.agents, self.capacity, window, self.device)
            if self.size:
                order = (self.position - self.size + torch.arange(self.size, device=self.device)) % self.capacity
                self._windows.fill(self.split_rows(self.storage[:, order]), order)
                # the newest row, as the next add reads it (the rows of the last add)
                self._rows[:] = self.storage[:, (self.position - 1) % self.capacity].cpu().numpy()
        return self._windows

    def _physical(self, logical: Tensor, agent: int) -> Tensor:
        """Storage rows of logical indices ``0 … size−1`` (oldest first) of an agent's sampled transitions.

        Without dropped rows the physical rows ``[0, size)`` are sampled directly, as they always were.
        """
        if self.dropped[agent] == 0:
            return logical
        size = self.size - self.dropped[agent]
        return (self.position - size + logical) % self.capacity

    def split_rows(self, rows: Tensor) -> Transition:
        """View stored rows ``(..., row)`` as a :class:`Transition` (no copy)."""
        d, a = self.obs_dim, self.action_dim
        return Transition(
            obs=rows[..., :d],
            action=rows[..., d : d + a],
            reward=rows[..., d + a],
            next_obs=rows[..., d + a + 1 : 2 * d + a + 1],
            terminated=rows[..., -1],
        )
