"""The env runner: steps a population's train envs with an :class:`Agent` and runs its evaluation episodes.

No Lightning here: the runner is driven by :class:`~lightning_sparse_rl.data.datamodule.EnvDataModule`,
and can be driven by any other loop (a script, a test).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from lightning_sparse_rl.data.env_state import env_state, restore_env_state
from lightning_sparse_rl.data.envs import EnvSpec, make_env
from lightning_sparse_rl.data.episodes import run_episodes
from lightning_sparse_rl.data.replay_buffer import ReplayBuffer
from lightning_sparse_rl.persistence.state_encoding import decode, encode
from lightning_sparse_rl.seeding import stream_seed
from lightning_sparse_rl.stop_request import raise_if_stop_requested
from lightning_sparse_rl.types import Agent, EpisodeStats, EvalEpisode


class EnvRunner:
    """Owns the train and eval envs of ``K`` agents, their current observations and their episode counters.

    The agents step together: one batched ``act`` call gives every agent's action, then each agent's own
    env steps, and the ``K`` transitions go into ``buffer`` at once. Time-limit truncation is stored as not
    terminated, with the true final observation. Agent ``k``'s train env and its action space use stream
    ``train_env`` of ``seeds[k]``, its eval env ``eval_env``, env-side noise features ``env_noise`` /
    ``eval_env_noise`` (:mod:`lightning_sparse_rl.seeding`).

    Args:
        spec: the env and its noise features (``EnvDataModule.env_spec``).
        seeds: the seed of each agent.
        buffer: where transitions are stored (its device is where the agent is asked to act).

    """

    def __init__(self, spec: EnvSpec, seeds: list[int], buffer: ReplayBuffer) -> None:
        self.buffer = buffer
        self.seeds = list(seeds)
        self.train_envs = [make_env(spec.env_id, spec.env_noise, stream_seed(s, "env_noise")) for s in seeds]
        self.eval_envs = [make_env(spec.env_id, spec.env_noise, stream_seed(s, "eval_env_noise")) for s in seeds]
        observations = []
        for seed, env, eval_env in zip(seeds, self.train_envs, self.eval_envs, strict=True):
            env.action_space.seed(stream_seed(seed, "train_env"))
            observations.append(env.reset(seed=stream_seed(seed, "train_env"))[0])
            eval_env.reset(seed=stream_seed(seed, "eval_env"))
        self.obs = np.stack(observations)  # (K, d)
        self.env_steps = 0  # steps of each agent's train env: warm-up, training and refills
        self.episodes = [0] * len(seeds)  # finished training episodes per agent (not warm-up or refill ones)
        self._episode_start = [time.perf_counter()] * len(seeds)
        self._eval_envs_at_start: list[list[dict[str, Any]]] | None = None  # during an evaluation

    def close(self) -> None:
        """Close every env."""
        for env in (*self.train_envs, *self.eval_envs):
            env.close()

    # ----------------------------------------------------------------------------- training envs
    def step(self, agent: Agent | None) -> tuple[EpisodeStats | None, ...]:
        """One step of every agent's train env (``agent=None``: uniform random actions), stored in the buffer.

        Returns, per agent, the finished episode's statistics when this step ended its episode (then that
        env is reset), else ``None``.
        """
        if agent is None:
            actions = np.stack([env.action_space.sample() for env in self.train_envs])
        else:
            obs = torch.as_tensor(self.obs, dtype=torch.float32, device=self.buffer.device)
            actions = agent.act(obs.unsqueeze(1), deterministic=False)[:, 0].cpu().numpy()
        next_obs, rewards, terminated = np.empty_like(self.obs), np.empty(len(actions)), np.empty(len(actions))
        finished: list[EpisodeStats | None] = []
        for k, env in enumerate(self.train_envs):
            next_obs[k], rewards[k], terminated[k], truncated, info = env.step(actions[k])
            finished.append(self._end_episode(k, info) if terminated[k] or truncated else None)
        self.buffer.add(self.obs, actions, rewards, next_obs, terminated)
        self.env_steps += 1
        self.obs = next_obs
        for k, stats in enumerate(finished):
            if stats is not None:
                self.obs[k] = self.train_envs[k].reset()[0]
        return tuple(finished)

    def _end_episode(self, k: int, info: dict[str, Any]) -> EpisodeStats:
        now = time.perf_counter()
        stats = EpisodeStats(
            self.episodes[k], float(info["episode"]["r"]), int(info["episode"]["l"]), now - self._episode_start[k]
        )
        self.episodes[k] += 1
        self._episode_start[k] = now
        return stats

    def warm_up(self, steps: int) -> None:
        """Take ``steps`` uniformly random steps (each may be interrupted by a stop request, phase ``warm-up``).

        Then, as the original, the training loop starts on fresh episodes numbered 0.
        """
        for _ in range(steps):
            raise_if_stop_requested("warm-up")
            self.step(None)
        self._start_episodes()
        self.episodes = [0] * len(self.seeds)

    def refill(self, steps: int, agent: Agent | None) -> None:
        """Empty the buffers and refill them with ``steps`` steps (``agent=None``: random actions) from fresh episodes.

        The steps count in ``env_steps``, not in the episode numbering; training continues on fresh episodes.
        """
        self.buffer.clear()
        self._start_episodes()
        episodes = list(self.episodes)
        for _ in range(steps):
            self.step(agent)
        self.episodes = episodes
        self._start_episodes()

    def _start_episodes(self) -> None:
        self.obs = np.stack([env.reset()[0] for env in self.train_envs])
        self._episode_start = [time.perf_counter()] * len(self.seeds)

    # ----------------------------------------------------------------------------- evaluation envs
    def begin_evaluation(self) -> None:
        """Remember the eval envs, so that a run stopped mid-evaluation saves them as they were before."""
        self._eval_envs_at_start = [env_state(env) for env in self.eval_envs]

    def end_evaluation(self) -> None:
        """The evaluation is complete: the eval envs are saved as they are."""
        self._eval_envs_at_start = None

    def evaluate_episode(self, agent: Agent) -> EvalEpisode:
        """One deterministic episode of every agent on its own eval env (stepped together)."""
        device = self.buffer.device

        def act(obs: np.ndarray) -> np.ndarray:
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device)
            return agent.act(obs_t.unsqueeze(1), deterministic=True)[:, 0].cpu().numpy()

        records = run_episodes(self.eval_envs, act, [env.reset()[0] for env in self.eval_envs])
        return EvalEpisode(tuple(r.episode_return for r in records), tuple(r.length for r in records))

    # ----------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Counters, the current observations and every env mid-episode (eval envs as their evaluation began)."""
        eval_envs = self._eval_envs_at_start or [env_state(env) for env in self.eval_envs]
        return {
            "env_steps": self.env_steps,
            "episodes": list(self.episodes),
            "obs": encode(self.obs),
            "train_envs": [encode(env_state(env)) for env in self.train_envs],
            "eval_envs": [encode(state) for state in eval_envs],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into a runner built with the same spec and number of agents.

        Raises:
            UserInputError: if an env has another number of wrapper layers than its saved state.

        """
        for env, saved in zip(self.train_envs, state["train_envs"], strict=True):
            restore_env_state(env, decode(saved))
        for env, saved in zip(self.eval_envs, state["eval_envs"], strict=True):
            restore_env_state(env, decode(saved))
        self.obs = decode(state["obs"])
        self.env_steps = state["env_steps"]
        self.episodes = list(state["episodes"])
