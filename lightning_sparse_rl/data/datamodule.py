"""The environment-interaction DataModule: a thin Lightning adapter around the replay buffer and the env runner.

Lightning mapping (see README, "How training maps onto Lightning"):

* one training batch = one env step with the current policy + ``updates_per_step`` minibatches
  sampled on device from the replay buffer;
* one epoch = ``eval_freq`` env steps; the validation loop = ``eval_episodes`` deterministic episodes
  on a separate eval env, one validation batch per episode;
* training stops after ``max_timesteps`` env steps of the main loop, counted by the
  :class:`~lightning_sparse_rl.data.schedule.TrainingSchedule` (Lightning's ``global_step`` counts optimizer
  steps under manual optimisation, so it is not used for this).

The DataModule composes three parts that know no Lightning: the
:class:`~lightning_sparse_rl.data.runner.EnvRunner` (envs, current observations, episode counters), the
:class:`~lightning_sparse_rl.data.replay_buffer.ReplayBuffer` and the schedule (the loop's counter and stop
condition). The policy is taken from
``trainer.lightning_module`` at run time: any module with an :meth:`Agent.act` method works; this module
imports no algorithm.

The train iterable has a length (``eval_freq``), so Lightning does not prefetch: the env step of a
batch is taken right before its update, with the policy updated by every earlier batch, as in the
original loop.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_sparse_rl.data.dynamic_buffer import DynamicCapacity, adjust_capacity
from lightning_sparse_rl.data.envs import EnvSpec, env_spec_of, make_env, resolve_env_id
from lightning_sparse_rl.data.episodes import random_policy_observations
from lightning_sparse_rl.data.noise_features import (
    NoiseDistribution,
    NoiseMode,
    NoiseSpec,
    check_noise_arguments,
    noise_spec,
)
from lightning_sparse_rl.data.replay_buffer import ReplayBuffer
from lightning_sparse_rl.data.runner import EnvRunner
from lightning_sparse_rl.data.schedule import TrainingSchedule
from lightning_sparse_rl.persistence.rng_state import global_rng_state, restore_global_rng_state
from lightning_sparse_rl.persistence.state_encoding import decode, encode
from lightning_sparse_rl.seeding import agent_suffix, stream_seed
from lightning_sparse_rl.stop_request import raise_if_stop_requested
from lightning_sparse_rl.types import Agent, EvalEpisode, RefillMode, TrainBatch
from lightning_sparse_rl.validation import MAX_SEED, check_at_least, check_in_range, check_positive, check_seeds


class EnvDataModule(LightningDataModule):
    """Steps the environments and fills the replay buffer for an off-policy LightningModule.

    Args:
        env_id: Gymnasium id of a continuous-action env; mujoco-py ids (``HalfCheetah-v3``) are
            mapped to ``-v5`` with a notice.
        seed: the run seed, from which the envs, the buffer's sampling and the noise draw their own
            streams (:mod:`lightning_sparse_rl.seeding`). The CLI links it to ``seed_everything``.
        seeds: train a population: one agent per seed, each with its own envs, replay buffer and random
            streams (``lsrl fit --seeds 1-8``). ``None``: one agent with ``seed``.
        buffer_size: replay capacity in transitions, per agent.
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
        n_step: minibatches of windows of ``n`` consecutive transitions for ``n``-step TD targets (RLx2); 1:
            one-step transitions.
        n_step_delay: gradient updates made with one-step transitions before the windows start (RLx2's delay,
            e.g. 300 000).
        dynamic_buffer: RLx2's dynamic capacity (:class:`~lightning_sparse_rl.data.dynamic_buffer.DynamicCapacity`):
            drop each agent's oldest data once its policy has moved away from them; ``None``: off.

    """

    def __init__(
        self,
        env_id: str = "HalfCheetah-v5",
        seed: int = 0,
        seeds: list[int] | None = None,
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
        n_step: int = 1,
        n_step_delay: int = 0,
        dynamic_buffer: DynamicCapacity | dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        check_in_range("seed", seed, 0, MAX_SEED)
        if seeds is not None:
            check_seeds(seeds)
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
        check_positive("n_step", n_step)
        check_at_least("n_step_delay", n_step_delay, 0)
        if isinstance(dynamic_buffer, dict):  # as checkpoints store it
            dynamic_buffer = DynamicCapacity(**dynamic_buffer)
        self.save_hyperparameters(ignore=["dynamic_buffer"])
        # Plain values in checkpoints (which load with weights_only), not the settings object.
        self.hparams["dynamic_buffer"] = None if dynamic_buffer is None else dataclasses.asdict(dynamic_buffer)
        self.env_id, notice = resolve_env_id(env_id)
        if notice:
            rank_zero_info(notice)
        probe = make_env(self.env_id)  # fails here for an unknown or unsuitable env
        self.real_spec = env_spec_of(probe, self.env_id)  # the env's own spaces, without noise features
        probe.close()
        self.seed = seed
        self.seeds: list[int] = list(seeds) if seeds is not None else [seed]
        self.noise_mode = noise_mode
        self.buffer_size = buffer_size
        self.batch_size = batch_size
        self.start_timesteps = start_timesteps
        self.eval_episodes = eval_episodes
        self.dynamic_buffer = dynamic_buffer
        self.schedule = TrainingSchedule(
            max_timesteps,
            eval_freq,
            updates_per_step,
            n_step,
            n_step_delay,
            None if dynamic_buffer is None else dynamic_buffer.check_interval,
        )
        self.buffer: ReplayBuffer | None = None
        self.runner: EnvRunner | None = None
        self.pending_refill: tuple[int, RefillMode] | None = None  # (steps, mode), carried out before the next step
        self._saved: dict[str, Any] | None = None  # a checkpoint's buffer and runner, applied once they exist
        self._saved_rng: dict[str, Any] | None = None  # a checkpoint's generators, applied before the next env step

    @property
    def train_steps(self) -> int:
        """Main-loop env steps done (warm-up excluded): the "Total Steps" of the logs."""
        return self.schedule.train_steps

    @property
    def max_timesteps(self) -> int:
        """Main-loop env steps of the run."""
        return self.schedule.max_timesteps

    @property
    def eval_freq(self) -> int:
        """Env steps per epoch (an evaluation follows each)."""
        return self.schedule.eval_freq

    @functools.cached_property
    def env_spec(self) -> EnvSpec:
        """What the networks see: :attr:`real_spec` plus the noise features (computed on first use).

        For ``noise_distribution: marginals`` the first use runs the random-policy rollout that estimates
        the real features' distributions.
        """
        hp = self.hparams
        noise = noise_spec(
            self.real_spec.observation_dim,
            hp.fake_features,
            hp.noise_distribution,
            hp.noise_std,
            marginal_observations=self._random_policy_observations,
        )
        return self.real_spec.with_noise(noise, self.noise_mode)

    @property
    def noise(self) -> NoiseSpec | None:
        """The noise features (``None`` when there are none)."""
        return self.env_spec.network_noise or self.env_spec.env_noise

    def _random_policy_observations(self) -> np.ndarray:
        steps = self.hparams.marginal_rollout_steps
        rank_zero_info(f"Estimating the real features' distributions from {steps} random-policy steps...")
        return random_policy_observations(self.env_id, steps, stream_seed(self.seed, "marginals"))

    # ----------------------------------------------------------------------------- Lightning hooks
    @override
    def setup(self, stage: str) -> None:
        """Create the replay buffer on the trainer's device and the env runner (seeded)."""
        if self.runner is not None:
            return
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        spec = self.env_spec
        seeds = [stream_seed(seed, "buffer") for seed in self.seeds]
        self.buffer = ReplayBuffer(self.buffer_size, spec.observation_dim, spec.action_dim, device, seeds)
        if len(self.seeds) > 1:
            size = self.buffer.storage.numel() * self.buffer.storage.element_size()
            rank_zero_info(
                f"Population of {len(self.seeds)} agents (seeds {', '.join(map(str, self.seeds))}): replay buffers "
                f"{len(self.seeds)} × {self.buffer_size:,} × {self.buffer.row_size} floats = {size / 2**20:,.1f} MiB "
                f"on {device}."
            )
        self.runner = EnvRunner(spec, self.seeds, self.buffer)
        self._restore_saved()

    @override
    def teardown(self, stage: str) -> None:
        """Close the envs (the buffer and the counters stay readable)."""
        if self.runner is not None:
            self.runner.close()

    @override
    def train_dataloader(self) -> _TrainSteps:
        """An iterable of :class:`TrainBatch`, one per env step of the current epoch."""
        return _TrainSteps(self)

    @override
    def val_dataloader(self) -> _EvalEpisodes:
        """An iterable of :class:`EvalEpisode`, one per deterministic evaluation episode."""
        return _EvalEpisodes(self)

    @override
    def transfer_batch_to_device(self, batch: object, device: torch.device, dataloader_idx: int) -> object:
        """Batches are produced on the buffer's device already: nothing to move."""
        return batch

    @override
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue exactly.

        The training-step counter, a pending refill, the runner (envs mid-episode, see
        :mod:`lightning_sparse_rl.data.env_state`), the replay buffer and the global random number
        generators. ``lsrl fit`` writes the buffer to a side file next to the checkpoint.
        """
        state: dict[str, Any] = {"train_steps": self.schedule.train_steps, "pending_refill": self.pending_refill}
        if self.runner is None or self.buffer is None:
            return state  # before setup: nothing is running
        return {
            **state,
            "runner": self.runner.state_dict(),
            "replay_buffer": self.buffer.state_dict(),
            "rng": encode(global_rng_state()),
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: buffer and runner once they exist, the generators before the next env step."""
        self.schedule.train_steps = state_dict["train_steps"]
        self.pending_refill = state_dict["pending_refill"]
        self._saved = state_dict if "runner" in state_dict else None
        self._saved_rng = decode(state_dict["rng"]) if "rng" in state_dict else None
        if self.runner is not None:
            self._restore_saved()

    def _restore_saved(self) -> None:
        if self._saved is None:
            return
        assert self.runner is not None and self.buffer is not None
        self.runner.load_state_dict(self._saved["runner"])
        self.buffer.load_state_dict(self._saved["replay_buffer"])
        self._saved = None

    # ----------------------------------------------------------------------------- interaction
    @property
    def agent(self) -> Agent:
        """The policy being trained, taken from the trainer at run time."""
        return self.trainer.lightning_module  # type: ignore[return-value]

    def continue_saved_random_streams(self) -> None:
        """In a resumed run, put the global generators where the checkpointed run stood (once, before its next step)."""
        if self._saved_rng is not None:
            restore_global_rng_state(self._saved_rng)
            self._saved_rng = None

    def warm_up(self) -> None:
        """Fill the buffer with ``start_timesteps`` uniformly random steps (once per run)."""
        assert self.runner is not None
        remaining = self.start_timesteps - self.runner.env_steps
        if remaining <= 0:
            return
        rank_zero_info(f"Filling the replay buffer with {remaining} random steps...")
        start = time.perf_counter()
        self.runner.warm_up(remaining)
        rank_zero_info(f"Replay buffer filled in {time.perf_counter() - start:.1f} s; training starts.")

    def adjust_buffer_capacity(self) -> None:
        """One dynamic-capacity check of every agent's buffer; logs ``buffer/policy_distance`` and ``buffer/size``."""
        assert self.buffer is not None and self.dynamic_buffer is not None
        spec = self.env_spec
        low, high = (torch.as_tensor(bound, dtype=torch.float32) for bound in (spec.action_low, spec.action_high))
        distances, sizes = adjust_capacity(self.buffer, self.agent, self.dynamic_buffer, low, high)
        metrics = {"buffer/policy_distance": sum(distances) / len(distances), "buffer/size": sum(sizes) / len(sizes)}
        if len(self.seeds) > 1:
            for seed, distance, size in zip(self.seeds, distances, sizes, strict=True):
                metrics[f"buffer/policy_distance{agent_suffix(self.seeds, seed)}"] = distance
                metrics[f"buffer/size{agent_suffix(self.seeds, seed)}"] = float(size)
        for logger in self.trainer.loggers:
            logger.log_metrics(metrics, step=self.train_steps - 1)

    def end_fit(self) -> None:
        """Tell Lightning's fit loop to end after the current batch (the run's budget of env steps is spent)."""
        self.trainer.should_stop = True

    def request_refill(self, steps: int, mode: RefillMode) -> None:
        """Empty the buffer and refill it with ``steps`` env steps before the next env step (training or evaluation).

        ``mode`` ``random`` takes uniformly random actions, ``current`` the policy's stochastic actions. The
        steps count in the runner's ``env_steps``, not in ``train_steps`` or the episode numbering. A request
        pending at a checkpoint is part of it.
        """
        check_positive("steps", steps)
        self.pending_refill = (int(steps), mode)

    def carry_out_refill(self) -> None:
        """Carry out a pending :meth:`request_refill` (the iterables call this before their next env step)."""
        if self.pending_refill is None:
            return
        assert self.runner is not None
        steps, mode = self.pending_refill
        rank_zero_info(f"Refilling the replay buffer with {steps} steps...")
        self.runner.refill(steps, self.agent if mode == "current" else None)
        self.pending_refill = None


class _TrainSteps:
    """One epoch of training batches: ``min(eval_freq, steps left)`` env steps.

    Resumable mid-epoch: its position is the DataModule's schedule, which the DataModule's own state
    restores with the envs and random streams. The (empty) ``state_dict`` pair only tells Lightning so.
    """

    def __init__(self, datamodule: EnvDataModule) -> None:
        self.dm = datamodule

    def __len__(self) -> int:
        return self.dm.eval_freq

    def state_dict(self) -> dict[str, Any]:
        """Nothing of its own: the position is in :meth:`EnvDataModule.state_dict`."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Nothing to restore (see :meth:`state_dict`)."""

    def __iter__(self) -> Iterator[TrainBatch]:
        dm, schedule, runner, buffer = self.dm, self.dm.schedule, self.dm.runner, self.dm.buffer
        assert runner is not None and buffer is not None
        if schedule.finished:  # nothing left (e.g. a finished run resumed)
            dm.end_fit()
            return
        dm.continue_saved_random_streams()
        dm.warm_up()
        agent = dm.agent
        for _ in range(schedule.steps_this_epoch()):
            raise_if_stop_requested("training")
            dm.carry_out_refill()
            episodes = runner.step(agent)
            step = schedule.advance()
            if step.last:  # this batch is still trained on and evaluated; then the fit loop ends
                dm.end_fit()
            if step.check_buffer:
                dm.adjust_buffer_capacity()
            minibatches = tuple(buffer.sample(dm.batch_size, window) for window in step.windows)
            yield TrainBatch(minibatches, step.number, episodes)


class _EvalEpisodes:
    """The validation "dataset": ``eval_episodes`` deterministic episodes, run lazily."""

    def __init__(self, datamodule: EnvDataModule) -> None:
        self.dm = datamodule

    def __len__(self) -> int:
        return self.dm.eval_episodes

    def __iter__(self) -> Iterator[EvalEpisode]:
        dm, runner = self.dm, self.dm.runner
        assert runner is not None
        dm.carry_out_refill()
        agent = dm.agent
        runner.begin_evaluation()
        for index in range(dm.eval_episodes):
            raise_if_stop_requested("evaluation")
            episode = runner.evaluate_episode(agent)
            if index + 1 == dm.eval_episodes:  # Lightning may not ask for more after the last episode
                runner.end_evaluation()
            yield episode
