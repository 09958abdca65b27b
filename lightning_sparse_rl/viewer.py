"""Watch a trained agent: deterministic episodes in a MuJoCo window, or recorded to a video file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from lightning_sparse_rl.envs import make_env
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
    import mujoco

    unwrapped = env.unwrapped
    model = getattr(unwrapped, "model", None)
    if model is None:
        return
    camera = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "track")
    if camera >= 0:
        unwrapped.mujoco_renderer.camera_id = camera


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

    Args:
        policy: the agent (:func:`~lightning_sparse_rl.policy.load_policy`).
        episodes: number of episodes.
        seed: seed of the env (first reset) and of random actions.
        render_mode: ``None``; ``human`` (a MuJoCo window: press TAB to switch to the camera that tracks
            the agent); ``rgb_array`` (one frame per step is kept, filmed by the tracking camera).
        random_actions: take uniformly random actions instead of the policy's (for comparison).
        width: frame width in pixels (``rgb_array``).
        height: frame height in pixels (``rgb_array``).

    """
    if episodes < 1:
        raise ValueError(f"episodes={episodes} must be >= 1")
    spec = policy.env_spec
    size = {"width": width, "height": height} if render_mode == "rgb_array" else {}
    env = make_env(spec.env_id, spec.env_noise, noise_seed=seed, render_mode=render_mode, **size)
    if render_mode == "rgb_array":
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
                if render_mode == "rgb_array":
                    record.frames.append(env.render())
                done = terminated or truncated
            records.append(record)
            obs, _ = env.reset()
    finally:
        env.close()
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
    """Render without a display (MuJoCo's EGL, unless ``MUJOCO_GL`` says otherwise)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
