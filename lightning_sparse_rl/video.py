"""Video files of rendered episodes, and headless rendering."""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import numpy as np

#: Video formats that :func:`write_video` writes.
VIDEO_SUFFIXES = (".mp4", ".gif")


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
