"""The env runner: steps a train env with an :class:`Agent` into the replay buffer and runs evaluation episodes.

No Lightning here: the runner is driven by :class:`~lightning_sparse_rl.data.datamodule.EnvDataModule`,
and can be driven by any other loop (a script, a test, a population of runners).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from lightning_sparse_rl.data.env_state import env_state, restore_env_state
from lightning_sparse_rl.data.envs import EnvSpec, make_env
from lightning_sparse_rl.data.episodes import run_episode
from lightning_sparse_rl.data.replay_buffer import ReplayBuffer
from lightning_sparse_rl.persistence.state_encoding import decode, encode
from lightning_sparse_rl.seeding import stream_seed
from lightning_sparse_rl.stop_request import raise_if_stop_requested
from lightning_sparse_rl.types import Agent, EpisodeStats, EvalEpisode


class EnvRunner:
    """Owns the train and eval envs of one agent, its current observation and its episode counters.

    Transitions go into ``buffer``; time-limit truncation is stored as not terminated, with the true final
    observation. Seeds: the train env and its action space use stream ``train_env`` of ``seed``, the eval
    env ``eval_env``, env-side noise features ``env_noise`` / ``eval_env_noise``
    (:mod:`lightning_sparse_rl.seeding`).

    Args:
        spec: the env and its noise features (``EnvDataModule.env_spec``).
        seed: the run seed.
        buffer: where transitions are stored (its device is where the agent is asked to act).

    """

    def __init__(self, spec: EnvSpec, seed: int, buffer: ReplayBuffer) -> None:
        self.buffer = buffer
        self.train_env = make_env(spec.env_id, spec.env_noise, noise_seed=stream_seed(seed, "env_noise"))
        self.train_env.action_space.seed(stream_seed(seed, "train_env"))
        self.obs, _ = self.train_env.reset(seed=stream_seed(seed, "train_env"))
        self.eval_env = make_env(spec.env_id, spec.env_noise, noise_seed=stream_seed(seed, "eval_env_noise"))
        self.eval_env.reset(seed=stream_seed(seed, "eval_env"))
        self.env_steps = 0  # every train-env step: warm-up, training and refills
        self.episodes = 0  # finished training episodes (warm-up and refill episodes are not counted)
        self._episode_start = time.perf_counter()
        self._eval_env_at_start: list[dict[str, Any]] | None = None  # during an evaluation

    def close(self) -> None:
        """Close both envs."""
        self.train_env.close()
        self.eval_env.close()

    # ----------------------------------------------------------------------------- training env
    def step(self, agent: Agent | None) -> EpisodeStats | None:
        """Take one train-env step (``agent=None``: uniform random action) and store it in the buffer.

        Returns the finished episode's statistics when this step ended an episode (then the env is
        reset), else ``None``.
        """
        if agent is None:
            action = self.train_env.action_space.sample()
        else:
            obs = torch.as_tensor(self.obs, dtype=torch.float32, device=self.buffer.device)
            action = agent.act(obs.unsqueeze(0), deterministic=False)[0].cpu().numpy()
        next_obs, reward, terminated, truncated, info = self.train_env.step(action)
        self.buffer.add(self.obs, action, float(reward), next_obs, bool(terminated))
        self.env_steps += 1
        if not (terminated or truncated):
            self.obs = next_obs
            return None
        now = time.perf_counter()
        stats = EpisodeStats(
            self.episodes, float(info["episode"]["r"]), int(info["episode"]["l"]), now - self._episode_start
        )
        self.episodes += 1
        self._episode_start = now
        self.obs, _ = self.train_env.reset()
        return stats

    def warm_up(self, steps: int) -> None:
        """Take ``steps`` uniformly random steps (each may be interrupted by a stop request, phase ``warm-up``).

        Then, as the original, the training loop starts on a fresh episode numbered 0.
        """
        for _ in range(steps):
            raise_if_stop_requested("warm-up")
            self.step(None)
        self._start_episode()
        self.episodes = 0

    def refill(self, steps: int, agent: Agent | None) -> None:
        """Empty the buffer and refill it with ``steps`` steps (``agent=None``: random actions) from a fresh episode.

        The steps count in ``env_steps``, not in the episode numbering; training continues on a fresh episode.
        """
        self.buffer.clear()
        self._start_episode()
        episodes = self.episodes
        for _ in range(steps):
            self.step(agent)
        self.episodes = episodes
        self._start_episode()

    def _start_episode(self) -> None:
        self.obs, _ = self.train_env.reset()
        self._episode_start = time.perf_counter()

    # ----------------------------------------------------------------------------- evaluation env
    def begin_evaluation(self) -> None:
        """Remember the eval env, so that a run stopped mid-evaluation saves it as it was before."""
        self._eval_env_at_start = env_state(self.eval_env)

    def end_evaluation(self) -> None:
        """The evaluation is complete: the eval env is saved as it is."""
        self._eval_env_at_start = None

    def evaluate_episode(self, agent: Agent) -> EvalEpisode:
        """Run one deterministic episode on the eval env."""
        device = self.buffer.device

        def act(obs: np.ndarray) -> np.ndarray:
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device)
            return agent.act(obs_t.unsqueeze(0), deterministic=True)[0].cpu().numpy()

        obs, _ = self.eval_env.reset()
        record = run_episode(self.eval_env, act, obs)
        return EvalEpisode(record.episode_return, record.length)

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Counters, the current observation and both envs mid-episode (the eval env as its evaluation began)."""
        return {
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "obs": encode(self.obs),
            "train_env": encode(env_state(self.train_env)),
            "eval_env": encode(self._eval_env_at_start or env_state(self.eval_env)),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into a runner built with the same spec.

        Raises:
            UserInputError: if an env's wrapper stack differs from the saved one.

        """
        restore_env_state(self.train_env, decode(state["train_env"]))
        restore_env_state(self.eval_env, decode(state["eval_env"]))
        self.obs = decode(state["obs"])
        self.env_steps = state["env_steps"]
        self.episodes = state["episodes"]
