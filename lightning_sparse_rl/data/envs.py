"""Gymnasium environment construction: legacy id mapping, validation and seeding.

Gymnasium >= 1.2 no longer runs the mujoco-py based ``-v2``/``-v3`` MuJoCo environments that the
original ANF and DS-TD3 code used. :func:`resolve_env_id` maps those ids to ``-v5`` and explains what
changes, so a tutorial command such as ``--env HalfCheetah-v3`` keeps working.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from typing_extensions import override

from lightning_sparse_rl.data.noise_features import NoiseFeatures, NoiseMode, NoiseSpec

#: What moving from a mujoco-py ``-v2``/``-v3`` id to ``-v5`` means, per MuJoCo task.
#: Sources: Gymnasium's MuJoCo v5 changelog (summarised in docs/original_code.md §9).
V5_DIFFERENCES: dict[str, str] = {
    "HalfCheetah": "same dynamics, reward and 17-d observation",
    "Hopper": "same 11-d observation; v5 fixes the healthy reward being paid after an unhealthy step",
    "Walker2d": "same 17-d observation; v5 gives both feet the same friction (v3: left foot 1.9)",
    "Ant": "v5 changes contact costs and observes contact forces by default (105-d, v3: 111-d)",
    "Humanoid": "v5 fixes the contact-force observation and contact cost (348-d, v3: 376-d)",
    "Swimmer": "same dynamics and 8-d observation",
    "Reacher": "v5 fixes the reward timing",
    "Pusher": "v5 fixes the reward timing",
    "InvertedPendulum": "same dynamics, v5 fixes the healthy reward",
    "InvertedDoublePendulum": "same dynamics, v5 fixes the healthy reward",
}

_LEGACY_ID = re.compile(r"^(?P<name>[A-Za-z0-9]+)-v(?P<version>[23])$")


@dataclass(frozen=True)
class EnvSpec:
    """What an agent needs to know about an environment to build its networks.

    Attributes:
        env_id: the Gymnasium id actually made (after legacy mapping).
        observation_dim: size of the flat observation vector.
        action_dim: size of the continuous action vector.
        action_low: lower action bound per dimension.
        action_high: upper action bound per dimension.
        real_features: how many leading observation features are real (the rest are noise added by
            the env, ``noise_mode: env``); ``None``: all of them.
        network_noise: noise features the networks append to every input (``noise_mode: network``).
        env_noise: noise features the env appends to its observations (``noise_mode: env``), so
            that a viewer can rebuild the same env.

    """

    env_id: str
    observation_dim: int
    action_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    real_features: int | None = None
    network_noise: NoiseSpec | None = None
    env_noise: NoiseSpec | None = None

    @property
    def real_dim(self) -> int:
        """Number of real (task) observation features, ``d``."""
        return self.observation_dim if self.real_features is None else self.real_features

    def with_noise(self, noise: NoiseSpec | None, mode: NoiseMode) -> EnvSpec:
        """The spec with ``noise`` features: drawn inside the networks (``network``), or appended by the env."""
        if noise is None:
            return self
        in_env = mode == "env"
        return dataclasses.replace(
            self,
            observation_dim=self.observation_dim + (noise.count if in_env else 0),
            real_features=self.observation_dim,
            network_noise=None if in_env else noise,
            env_noise=noise if in_env else None,
        )


# Plain data: checkpoints that hold it (in the model's hyperparameters) load with weights_only=True.
# Files written before the ``data/`` sub-package existed name it at its old path.
torch.serialization.add_safe_globals([EnvSpec, (EnvSpec, "lightning_sparse_rl.envs.EnvSpec")])


def resolve_env_id(env_id: str) -> tuple[str, str | None]:
    """Map a legacy mujoco-py MuJoCo id (``-v2``/``-v3``) to its ``-v5`` successor.

    Returns:
        ``(id_to_make, notice)``; ``notice`` is ``None`` when the id is used unchanged, else a
        one-line explanation of the mapping to print for the user.

    Raises:
        ValueError: for another mujoco-py id (``-v2``/``-v3``) that has a ``-v5`` successor whose
            differences we have not checked.

    """
    match = _LEGACY_ID.match(env_id)
    if match is None:
        return env_id, None
    new_id = f"{match['name']}-v5"
    if match["name"] not in V5_DIFFERENCES:
        spec = gym.registry.get(env_id)
        if spec is not None and "mujoco" in str(spec.entry_point) and new_id in gym.registry:
            raise ValueError(
                f"env_id={env_id!r} needs mujoco-py, which Gymnasium >= 1.2 no longer runs: use {new_id} "
                "(check how its observations and rewards differ before comparing with old results)"
            )
        return env_id, None
    notice = (
        f"{env_id} needs mujoco-py, which Gymnasium >= 1.2 no longer runs: using {new_id} instead "
        f"({V5_DIFFERENCES[match['name']]}). Pass --data.env_id {new_id} to silence this notice."
    )
    return new_id, notice


class NoisyObservation(gym.ObservationWrapper):
    """Appends noise features to every observation (``noise_mode: env``): ``(d,)`` → ``(d + count,)``.

    The noise is part of the observation, so the replay buffer stores it and a replayed transition
    shows the same noise again (unlike ANF's in-network noise). Drawn from its own generator, seeded
    by ``seed``; noise features are float32, the observation keeps the env's dtype.
    """

    def __init__(self, env: gym.Env, noise: NoiseSpec, seed: int) -> None:
        super().__init__(env)
        self.noise = NoiseFeatures(noise, [seed])
        size = env.observation_space.shape[0] + noise.count
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), env.observation_space.dtype)

    @override
    def observation(self, observation: np.ndarray) -> np.ndarray:
        """``[observation, fresh noise]``."""
        return np.concatenate([observation, self.noise(1)[0, 0].numpy().astype(observation.dtype)])


def make_env(env_id: str, noise: NoiseSpec | None = None, noise_seed: int = 0, **make_kwargs: object) -> gym.Env:
    """Make a single Gymnasium env that records episode statistics (``info["episode"]``).

    With ``noise``, the env appends noise features to its observations (:class:`NoisyObservation`,
    generator seeded with ``noise_seed``). ``make_kwargs`` go to ``gym.make`` (e.g. ``render_mode``).

    Raises:
        ValueError: for an action space that is not a continuous ``Box``, a non-flat observation, or a module that
            the id names (``MODULE:ENV``) or the env needs and that cannot be found.

    """
    try:
        made = gym.make(env_id, **make_kwargs)
    except ModuleNotFoundError as err:  # an id MODULE:ENV imports MODULE first, or the env needs a missing package
        missing = err.name or next(iter(re.findall(r"module named '([^']+)'", str(err))), str(err))
        raise ValueError(f"env_id={env_id!r}: no module named {missing!r} to make it from") from None
    env = gym.wrappers.RecordEpisodeStatistics(made)
    if not isinstance(env.action_space, gym.spaces.Box):
        env.close()
        raise ValueError(
            f"env_id={env_id!r} has a {type(env.action_space).__name__} action space; SAC and TD3 need a "
            "continuous Box action space (e.g. HalfCheetah-v5, Hopper-v5, Pendulum-v1)."
        )
    shape = env.observation_space.shape
    if not isinstance(env.observation_space, gym.spaces.Box) or shape is None or len(shape) != 1:
        env.close()
        raise ValueError(f"env_id={env_id!r} must have a flat Box observation space, got {env.observation_space}")
    return NoisyObservation(env, noise, noise_seed) if noise is not None else env


def env_spec_of(env: gym.Env, env_id: str) -> EnvSpec:
    """Describe ``env``'s (flat Box) spaces as an :class:`EnvSpec` (all features real, no noise)."""
    action_space = env.action_space
    assert isinstance(action_space, gym.spaces.Box)
    return EnvSpec(
        env_id=env_id,
        observation_dim=int(np.prod(env.observation_space.shape)),
        action_dim=int(np.prod(action_space.shape)),
        action_low=tuple(float(x) for x in action_space.low),
        action_high=tuple(float(x) for x in action_space.high),
    )
