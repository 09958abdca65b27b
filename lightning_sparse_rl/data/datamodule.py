"""The environment-interaction DataModule: owns the train env, the eval env and the replay buffer.

Lightning mapping (see README, "How training maps onto Lightning"):

* one training batch = one env step with the current policy + ``updates_per_step`` minibatches
  sampled on device from the replay buffer;
* one epoch = ``eval_freq`` env steps; the validation loop = ``eval_episodes`` deterministic episodes
  on a separate eval env, one validation batch per episode;
* training stops after ``max_timesteps`` env steps of the main loop, counted here (Lightning's
  ``global_step`` counts optimizer steps under manual optimisation, so it is not used for this).

The policy is taken from ``trainer.lightning_module`` at run time: any module with an
:meth:`Agent.act` method works; this module imports no algorithm.

The train iterable has a length (``eval_freq``), so Lightning does not prefetch: the env step of a
batch is taken right before its update, with the policy updated by every earlier batch, as in the
original loop.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info

from lightning_sparse_rl.data.env_state import env_state, restore_env_state
from lightning_sparse_rl.data.envs import EnvSpec, env_spec_of, make_env, resolve_env_id
from lightning_sparse_rl.data.episodes import random_policy_observations, run_episode
from lightning_sparse_rl.data.noise_features import (
    NoiseDistribution,
    NoiseMode,
    NoiseSpec,
    check_noise_arguments,
    estimate_marginal_quantiles,
    total_input_features,
)
from lightning_sparse_rl.data.replay_buffer import ReplayBuffer
from lightning_sparse_rl.persistence.rng_state import global_rng_state, restore_global_rng_state
from lightning_sparse_rl.persistence.state_encoding import decode, encode
from lightning_sparse_rl.seeding import stream_seed
from lightning_sparse_rl.stop_request import raise_if_stop_requested
from lightning_sparse_rl.types import Agent, EpisodeStats, EvalEpisode, TrainBatch
from lightning_sparse_rl.validation import check_at_least, check_in_range, check_positive

#: Seeds numpy accepts (the envs' and spaces' generators): ``[0, 2**32)``.
MAX_SEED = 2**32


class EnvDataModule(LightningDataModule):
    """Steps the environments and fills the replay buffer for an off-policy LightningModule.

    Args:
        env_id: Gymnasium id of a continuous-action env; mujoco-py ids (``HalfCheetah-v3``) are
            mapped to ``-v5`` with a notice.
        seed: seeds the train env, its action space (warm-up actions), the eval env (``seed +
            10000``) and the buffer's sampling generator. The CLI links it to ``seed_everything``.
        buffer_size: replay capacity in transitions.
        batch_size: minibatch size per gradient update.
        start_timesteps: uniformly random env steps that fill the buffer before training; not
            counted in ``max_timesteps`` (as the original).
        max_timesteps: main-loop env steps, each followed by ``updates_per_step`` updates.
        eval_freq: env steps per epoch; evaluation runs at the end of every epoch.
        eval_episodes: deterministic episodes per evaluation.
        updates_per_step: gradient updates (minibatches) per env step.
        fake_features: fraction ``f`` in ``[0, 1)`` of the networks' inputs that are pure noise
            (docs/original_code.md §5.1): ``D = ceil(d / (1 − f))`` inputs for ``d`` real features, ``f`` read as a
            decimal (17 real at 0.9 → 170 inputs; the original's float rounding gave 171).
        noise_std: σ > 0 of the ``gaussian`` and ``uniform`` noise.
        noise_distribution: ``gaussian`` N(0, σ²); ``uniform`` on ``[−σ√3, σ√3]``; ``marginals``: noise
            feature ``i`` follows real feature ``i mod d``'s distribution, estimated from
            ``marginal_rollout_steps`` random-policy steps of the same env.
        noise_mode: ``network`` (ANF): noise is drawn fresh inside every forward pass of every network,
            the buffer stores only the ``d`` real features; ``env``: an observation wrapper appends the
            noise, the buffer stores all ``D`` features and replays the same noise.
        marginal_rollout_steps: random-policy steps for ``noise_distribution: marginals``.

    """

    def __init__(
        self,
        env_id: str = "HalfCheetah-v5",
        seed: int = 0,
        buffer_size: int = 1_000_000,
        batch_size: int = 100,
        start_timesteps: int = 25_000,
        max_timesteps: int = 1_000_000,
        eval_freq: int = 5_000,
        eval_episodes: int = 5,
        updates_per_step: int = 1,
        fake_features: float = 0.0,
        noise_std: float = 1.0,
        noise_distribution: NoiseDistribution = "gaussian",
        noise_mode: NoiseMode = "network",
        marginal_rollout_steps: int = 10_000,
    ) -> None:
        super().__init__()
        check_in_range("seed", seed, 0, MAX_SEED)
        check_positive("buffer_size", buffer_size)
        check_positive("batch_size", batch_size)
        check_positive("max_timesteps", max_timesteps)
        check_positive("eval_freq", eval_freq)
        check_positive("eval_episodes", eval_episodes)
        check_positive("updates_per_step", updates_per_step)
        check_at_least("start_timesteps", start_timesteps, 0)
        if batch_size > buffer_size:
            raise ValueError(f"batch_size={batch_size} is larger than buffer_size={buffer_size}")
        check_noise_arguments(fake_features, noise_std, noise_distribution, noise_mode)
        check_positive("marginal_rollout_steps", marginal_rollout_steps)
        self.save_hyperparameters()
        self.env_id, notice = resolve_env_id(env_id)
        if notice:
            rank_zero_info(notice)
        probe = make_env(self.env_id)
        real_spec = env_spec_of(probe, self.env_id)
        probe.close()
        self.seed = seed
        self.noise = self._noise_spec(real_spec.observation_dim, fake_features, noise_std, noise_distribution)
        self.noise_mode = noise_mode
        self.env_spec: EnvSpec = real_spec
        if self.noise is not None:
            in_env = noise_mode == "env"
            self.env_spec = dataclasses.replace(
                real_spec,
                observation_dim=real_spec.observation_dim + (self.noise.count if in_env else 0),
                real_features=real_spec.observation_dim,
                network_noise=None if in_env else self.noise,
                env_noise=self.noise if in_env else None,
            )
        self.buffer_size = buffer_size
        self.batch_size = batch_size
        self.start_timesteps = start_timesteps
        self.max_timesteps = max_timesteps
        self.eval_freq = eval_freq
        self.eval_episodes = eval_episodes
        self.updates_per_step = updates_per_step
        self.env_steps = 0  # all env steps, warm-up included
        self.train_steps = 0  # main-loop env steps (warm-up excluded), the "Total Steps" of the logs
        self.episodes = 0  # finished main-loop episodes
        self.train_env: gym.Env | None = None
        self.eval_env: gym.Env | None = None
        self.buffer: ReplayBuffer | None = None
        self._obs: np.ndarray | None = None
        self._episode_start = 0.0
        self._saved_interaction: dict[str, Any] | None = None  # from a checkpoint, applied after setup
        self._saved_rng: dict[str, Any] | None = None  # from a checkpoint, applied before the next env step
        self._eval_env_at_start: dict[str, Any] | None = None  # during an evaluation: the eval env before it

    def _noise_spec(
        self, real_dim: int, fake_features: float, std: float, distribution: NoiseDistribution
    ) -> NoiseSpec | None:
        """The noise features for ``fake_features`` (``None`` when there are none)."""
        count = total_input_features(real_dim, fake_features) - real_dim
        if count == 0:
            return None
        quantiles = None
        if distribution == "marginals":
            steps = self.hparams.marginal_rollout_steps
            rank_zero_info(f"Estimating the real features' distributions from {steps} random-policy steps...")
            rollout = random_policy_observations(self.env_id, steps, stream_seed(self.seed, "marginals"))
            quantiles = estimate_marginal_quantiles(rollout)
        return NoiseSpec(count, distribution, std, quantiles)

    # ----------------------------------------------------------------------------- Lightning hooks
    def setup(self, stage: str) -> None:
        """Create the envs (seeded) and the replay buffer on the trainer's device."""
        if self.train_env is not None:
            return
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        env_noise = self.env_spec.env_noise
        self.train_env = make_env(self.env_id, env_noise, noise_seed=stream_seed(self.seed, "env_noise"))
        self.train_env.action_space.seed(self.seed)
        self._obs, _ = self.train_env.reset(seed=self.seed)
        self.eval_env = make_env(self.env_id, env_noise, noise_seed=stream_seed(self.seed, "eval_env_noise"))
        self.eval_env.reset(seed=stream_seed(self.seed, "eval_env"))
        spec = self.env_spec
        self.buffer = ReplayBuffer(self.buffer_size, spec.observation_dim, spec.action_dim, device, seed=self.seed)
        self._episode_start = time.perf_counter()
        self._restore_interaction()

    def teardown(self, stage: str) -> None:
        """Close the envs."""
        for env in (self.train_env, self.eval_env):
            if env is not None:
                env.close()
        self.train_env = self.eval_env = None

    def train_dataloader(self) -> _TrainSteps:
        """An iterable of :class:`TrainBatch`, one per env step of the current epoch."""
        return _TrainSteps(self)

    def val_dataloader(self) -> _EvalEpisodes:
        """An iterable of :class:`EvalEpisode`, one per deterministic evaluation episode."""
        return _EvalEpisodes(self)

    def transfer_batch_to_device(self, batch: object, device: torch.device, dataloader_idx: int) -> object:
        """Batches are produced on the buffer's device already: nothing to move."""
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly.

        Counters, the current observation, both envs mid-episode (see :mod:`lightning_sparse_rl.data.env_state`),
        the replay buffer and the global random number generators. ``lsrl fit`` writes the buffer to a side
        file next to the checkpoint. During an evaluation (a run stopped by a signal mid-evaluation) the eval
        env is saved as it was when the evaluation began, so the resumed run repeats that evaluation.
        """
        counters = {"env_steps": self.env_steps, "train_steps": self.train_steps, "episodes": self.episodes}
        if self.train_env is None or self.eval_env is None or self.buffer is None:
            return counters  # before setup or after teardown: nothing is running
        return {
            **counters,
            "obs": encode(self._obs),
            "train_env": encode(env_state(self.train_env)),
            "eval_env": encode(self._eval_env_at_start or env_state(self.eval_env)),
            "replay_buffer": self.buffer.state_dict(),
            "rng": encode(global_rng_state()),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; envs and buffer once they exist, the generators before the next env step."""
        self.env_steps = state_dict["env_steps"]
        self.train_steps = state_dict["train_steps"]
        self.episodes = state_dict["episodes"]
        self._saved_interaction = state_dict
        self._saved_rng = decode(state_dict["rng"]) if "rng" in state_dict else None
        if self.train_env is not None:
            self._restore_interaction()

    def _restore_interaction(self) -> None:
        saved = self._saved_interaction
        if saved is None or "train_env" not in saved:
            return
        assert self.train_env is not None and self.eval_env is not None and self.buffer is not None
        restore_env_state(self.train_env, decode(saved["train_env"]))
        restore_env_state(self.eval_env, decode(saved["eval_env"]))
        self.buffer.load_state_dict(saved["replay_buffer"])
        self._obs = decode(saved["obs"])
        self._saved_interaction = None

    def continue_saved_random_streams(self) -> None:
        """In a resumed run, put the global generators where the checkpointed run stood (once, before its next step)."""
        if self._saved_rng is not None:
            restore_global_rng_state(self._saved_rng)
            self._saved_rng = None

    # ----------------------------------------------------------------------------- interaction
    @property
    def agent(self) -> Agent:
        """The policy being trained, taken from the trainer at run time."""
        return self.trainer.lightning_module  # type: ignore[return-value]

    def env_step(self, agent: Agent | None) -> EpisodeStats | None:
        """Take one train-env step (``agent=None``: uniform random action) and store it.

        Returns the finished episode's statistics when this step ended an episode (then the env
        is reset), else ``None``. Time-limit truncation is stored as not terminated.
        """
        assert self.train_env is not None and self.buffer is not None and self._obs is not None
        if agent is None:
            action = self.train_env.action_space.sample()
        else:
            obs = torch.as_tensor(self._obs, dtype=torch.float32, device=self.buffer.device)
            action = agent.act(obs.unsqueeze(0), deterministic=False)[0].cpu().numpy()
        next_obs, reward, terminated, truncated, info = self.train_env.step(action)
        self.buffer.add(self._obs, action, float(reward), next_obs, bool(terminated))
        self.env_steps += 1
        if not (terminated or truncated):
            self._obs = next_obs
            return None
        now = time.perf_counter()
        stats = EpisodeStats(
            self.episodes, float(info["episode"]["r"]), int(info["episode"]["l"]), now - self._episode_start
        )
        self.episodes += 1
        self._episode_start = now
        self._obs, _ = self.train_env.reset()
        return stats

    def warm_up(self) -> None:
        """Fill the buffer with ``start_timesteps`` uniformly random steps (once per run)."""
        remaining = self.start_timesteps - self.env_steps
        if remaining <= 0:
            return
        rank_zero_info(f"Filling the replay buffer with {remaining} random steps...")
        start = time.perf_counter()
        for _ in range(remaining):
            raise_if_stop_requested("warm-up")
            self.env_step(None)
        # As the original, the main loop starts on a fresh episode and numbers episodes from 0.
        assert self.train_env is not None
        self._obs, _ = self.train_env.reset()
        self.episodes = 0
        self._episode_start = time.perf_counter()
        rank_zero_info(f"Replay buffer filled in {time.perf_counter() - start:.1f} s; training starts.")

    def refill(self, steps: int, agent: Agent | None) -> None:
        """Empty the replay buffer and refill it with ``steps`` env steps, then start a fresh episode.

        ``agent=None`` takes uniformly random actions, else the agent's stochastic policy. The steps
        count in ``env_steps`` but not in ``train_steps`` or the episode numbering.
        """
        assert self.train_env is not None and self.buffer is not None
        rank_zero_info(f"Refilling the replay buffer with {steps} steps...")
        self.buffer.clear()
        self._obs, _ = self.train_env.reset()
        episodes = self.episodes
        for _ in range(steps):
            self.env_step(agent)
        self.episodes = episodes
        self._obs, _ = self.train_env.reset()
        self._episode_start = time.perf_counter()

    def evaluate_episode(self, agent: Agent) -> EvalEpisode:
        """Run one deterministic episode on the eval env."""
        assert self.eval_env is not None and self.buffer is not None
        device = self.buffer.device

        def act(obs: np.ndarray) -> np.ndarray:
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device)
            return agent.act(obs_t.unsqueeze(0), deterministic=True)[0].cpu().numpy()

        obs, _ = self.eval_env.reset()
        record = run_episode(self.eval_env, act, obs)
        return EvalEpisode(record.episode_return, record.length)


class _TrainSteps:
    """One epoch of training batches: ``min(eval_freq, steps left)`` env steps."""

    def __init__(self, datamodule: EnvDataModule) -> None:
        self.dm = datamodule

    def __len__(self) -> int:
        return self.dm.eval_freq

    def __iter__(self) -> Iterator[TrainBatch]:
        dm = self.dm
        assert dm.buffer is not None
        if dm.train_steps >= dm.max_timesteps:  # nothing left (e.g. a finished run resumed): end the fit
            dm.trainer.should_stop = True
            return
        dm.continue_saved_random_streams()
        dm.warm_up()
        agent = dm.agent
        steps = min(dm.eval_freq, dm.max_timesteps - dm.train_steps)
        for _ in range(steps):
            raise_if_stop_requested("training")
            episode = dm.env_step(agent)
            dm.train_steps += 1
            if dm.train_steps >= dm.max_timesteps:
                # This batch is still trained on and evaluated; then the fit loop ends.
                dm.trainer.should_stop = True
            minibatches = tuple(dm.buffer.sample(dm.batch_size) for _ in range(dm.updates_per_step))
            yield TrainBatch(minibatches, dm.train_steps, episode)


class _EvalEpisodes:
    """The validation "dataset": ``eval_episodes`` deterministic episodes, run lazily."""

    def __init__(self, datamodule: EnvDataModule) -> None:
        self.dm = datamodule

    def __len__(self) -> int:
        return self.dm.eval_episodes

    def __iter__(self) -> Iterator[EvalEpisode]:
        dm = self.dm
        assert dm.eval_env is not None
        agent = dm.agent
        dm._eval_env_at_start = env_state(dm.eval_env)
        for index in range(dm.eval_episodes):
            raise_if_stop_requested("evaluation")
            episode = dm.evaluate_episode(agent)
            if index + 1 == dm.eval_episodes:  # Lightning may not ask for more after the last episode
                dm._eval_env_at_start = None
            yield episode
