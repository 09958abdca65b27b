"""Watch a trained agent: deterministic episodes in a window, or recorded to a video file."""

from __future__ import annotations

import importlib
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.registration import load_env_creator

from lightning_sparse_rl.data.envs import make_env
from lightning_sparse_rl.policy import Policy

#: Video formats that :func:`write_video` writes.
VIDEO_SUFFIXES = (".mp4", ".gif")


@dataclass
class EpisodeRecord:
    """One watched episode: undiscounted return, length, and its frames (one per step, when recorded)."""

    episode_return: float
    length: int
    frames: list[np.ndarray] = field(default_factory=list)


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
    policy: Policy,
    episodes: int = 1,
    seed: int = 0,
    render_mode: str | None = None,
    random_actions: bool = False,
    width: int = 480,
    height: int = 360,
) -> list[EpisodeRecord]:
    """Run ``episodes`` deterministic episodes of ``policy`` on its own env (noise settings included).

    Frames are ``width`` × ``height`` for envs that take a size (:func:`accepts_render_size`); other envs
    render at their own size, and a one-line notice says so.

    Args:
        policy: the agent (:func:`~lightning_sparse_rl.policy.load_policy`).
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
    spec = policy.env_spec
    recording = render_mode == "rgb_array"
    sized = recording and accepts_render_size(spec.env_id)
    size = {"width": width, "height": height} if sized else {}
    env = make_env(spec.env_id, spec.env_noise, noise_seed=seed, render_mode=render_mode, **size)
    if recording:
        _track_agent(env)
    env.action_space.seed(seed)
    records = []
    try:
        obs, _ = env.reset(seed=seed)
        for _ in range(episodes):
            record, done = EpisodeRecord(0.0, 0), False
            while not done:
                if random_actions:
                    action = env.action_space.sample()
                else:
                    action = policy.act(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))[0].numpy()
                obs, reward, terminated, truncated, _ = env.step(action)
                record.episode_return += float(reward)
                record.length += 1
                if recording:
                    record.frames.append(env.render())
                done = terminated or truncated
            records.append(record)
            obs, _ = env.reset()
    finally:
        env.close()
    if recording and not sized:
        rows, columns = records[0].frames[0].shape[:2]
        print(f"{spec.env_id} renders at its own size {columns}x{rows}; --width/--height apply to MuJoCo envs")
    return records


def frames_per_second(env_id: str) -> int:
    """The env's real-time frame rate (``metadata["render_fps"]``, else 30)."""
    env = gym.make(env_id)
    fps = int(env.metadata.get("render_fps") or 30)
    env.close()
    return fps


def write_video(frames: list[np.ndarray], path: str | Path, fps: int) -> None:
    """Write ``frames`` (H × W × 3, uint8) to an ``.mp4`` (H.264) or an ``.gif`` file."""
    import imageio.v2 as imageio

    path = Path(path)
    if path.suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"{path}: the video file must end in one of {VIDEO_SUFFIXES}")
    if not frames:
        raise ValueError("no frames to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gif":
        imageio.mimwrite(path, frames, duration=1000 / fps, loop=0)
    else:
        imageio.mimwrite(path, frames, fps=fps, macro_block_size=8)


def use_headless_rendering() -> None:
    """Render without a display (MuJoCo's EGL, unless ``MUJOCO_GL`` says otherwise; pygame's dummy video driver)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # classic-control envs draw with pygame
