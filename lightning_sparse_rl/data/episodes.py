"""The one episode loop: evaluation, watching and recording an agent, and the random rollout of ``marginals``.

An agent is an ``act`` function from one observation (as the env returns it) to one action, or, for the
envs of a population stepped together, from their observations to their actions.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import load_env_creator

from lightning_sparse_rl.data.envs import EnvSpec, make_env

#: One observation ``(d,)`` → one action ``(action_dim,)`` in env units.
Act = Callable[[np.ndarray], np.ndarray]
#: Observations of ``K`` envs ``(K, d)`` → their actions ``(K, action_dim)`` in env units.
BatchAct = Callable[[np.ndarray], np.ndarray]


@dataclass
class EpisodeRecord:
    """One episode: undiscounted return, length, and (when asked for) its frames and observations.

    Attributes:
        episode_return: sum of the rewards.
        length: env steps.
        frames: one rendered frame per step (``frames=True`` of :func:`run_episode`).
        observations: the observation before each step (``observations=True``).

    """

    episode_return: float
    length: int
    frames: list[np.ndarray] = field(default_factory=list)
    observations: list[np.ndarray] = field(default_factory=list)


def run_episodes(
    envs: Sequence[gym.Env],
    act: BatchAct,
    obs: Sequence[np.ndarray],
    *,
    frames: bool = False,
    observations: bool = False,
) -> list[EpisodeRecord]:
    """Step every env from its ``obs`` (just after a reset) until its episode terminates or is truncated.

    The envs step in lockstep: ``act`` gets the current observations of all envs ``(K, d)`` (an env whose
    episode has ended repeats its last observation, and its action is discarded) and returns ``(K, action_dim)``.
    """
    records = [EpisodeRecord(0.0, 0) for _ in envs]
    current, done = list(obs), [False] * len(envs)
    while not all(done):
        actions = act(np.stack(current))
        for k, env in enumerate(envs):
            if done[k]:
                continue
            if observations:
                records[k].observations.append(current[k])
            current[k], reward, terminated, truncated, _ = env.step(actions[k])
            records[k].episode_return += float(reward)
            records[k].length += 1
            if frames:
                records[k].frames.append(env.render())
            done[k] = terminated or truncated
    return records


def run_episode(
    env: gym.Env, act: Act, obs: np.ndarray, *, frames: bool = False, observations: bool = False
) -> EpisodeRecord:
    """One env's episode from ``obs`` (just after a reset) with ``act`` (:func:`run_episodes` of one env)."""
    return run_episodes([env], lambda batch: act(batch[0])[None], [obs], frames=frames, observations=observations)[0]


def random_policy_observations(env_id: str, steps: int, seed: int) -> np.ndarray:
    """Observations ``(steps, d)`` of ``steps`` env steps with uniformly random actions, seeded."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    rows: list[np.ndarray] = []
    obs, _ = env.reset(seed=seed)
    while len(rows) < steps:
        rows += run_episode(env, lambda _: env.action_space.sample(), obs, observations=True).observations
        obs, _ = env.reset()
    env.close()
    return np.asarray(rows[:steps], dtype=np.float64)


def _track_agent(env: gym.Env) -> None:
    """Film recordings with the model's ``track`` camera when it has one (HalfCheetah, Hopper, ...)."""
    unwrapped = env.unwrapped
    model = getattr(unwrapped, "model", None)
    if model is None or not hasattr(unwrapped, "mujoco_renderer"):
        return  # not a MuJoCo env
    import mujoco

    camera = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "track")
    if camera >= 0:
        unwrapped.mujoco_renderer.camera_id = camera


def accepts_render_size(env_id: str) -> bool:
    """Whether ``env_id``'s constructor takes ``width`` and ``height`` (MuJoCo envs do, classic control's not).

    Reads the signature of the entry point in Gymnasium's registry; one with ``**kwargs`` counts as
    taking them (MuJoCo envs pass them on to ``MujocoEnv``). An id the registry does not know
    (e.g. unversioned) counts as not taking them.
    """
    module, _, name = env_id.rpartition(":")
    if module:
        importlib.import_module(module)  # registers the module's envs, as gym.make does
    try:
        entry_point = gym.spec(name).entry_point
    except gym.error.Error:
        return False
    creator = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    try:
        parameters = inspect.signature(creator).parameters.values()
    except (TypeError, ValueError):  # no signature to read (e.g. a builtin)
        return False
    names = {parameter.name for parameter in parameters}
    return {"width", "height"} <= names or any(parameter.kind is parameter.VAR_KEYWORD for parameter in parameters)


def play_episodes(
    env_spec: EnvSpec,
    act: Act,
    episodes: int = 1,
    seed: int = 0,
    render_mode: str | None = None,
    random_actions: bool = False,
    width: int = 480,
    height: int = 360,
) -> list[EpisodeRecord]:
    """Run ``episodes`` episodes of ``act`` on a new env made from ``env_spec`` (noise settings included).

    Frames are ``width`` × ``height`` for envs that take a size (:func:`accepts_render_size`); other envs
    render at their own size, and a one-line notice says so.

    Args:
        env_spec: the env the agent acts in.
        act: the agent's action for one observation (e.g. :meth:`~lightning_sparse_rl.policy.Policy.act_numpy`).
        episodes: number of episodes.
        seed: seed of the env (first reset) and of random actions.
        render_mode: ``None``; ``human`` (a window; MuJoCo's: press TAB to switch to the camera that tracks
            the agent); ``rgb_array`` (one frame per step is kept, MuJoCo's filmed by the tracking camera).
        random_actions: take uniformly random actions instead of the policy's (for comparison).
        width: frame width in pixels (``rgb_array``).
        height: frame height in pixels (``rgb_array``).

    """
    if episodes < 1:
        raise ValueError(f"episodes={episodes} must be >= 1")
    spec = env_spec
    recording = render_mode == "rgb_array"
    sized = recording and accepts_render_size(spec.env_id)
    size = {"width": width, "height": height} if sized else {}
    env = make_env(spec.env_id, spec.env_noise, noise_seed=seed, render_mode=render_mode, **size)
    if recording:
        _track_agent(env)
    env.action_space.seed(seed)
    records = []
    try:
        chosen = (lambda _: env.action_space.sample()) if random_actions else act
        obs, _ = env.reset(seed=seed)
        for _ in range(episodes):
            records.append(run_episode(env, chosen, obs, frames=recording))
            obs, _ = env.reset()
    finally:
        env.close()
    if recording and not sized:
        rows, columns = records[0].frames[0].shape[:2]
        print(f"{spec.env_id} renders at its own size {columns}x{rows}; --width/--height apply to MuJoCo envs")
    return records
