"""Weights & Biases logger with the original's ``online`` / ``offline`` / ``disabled`` modes; video logging."""

from __future__ import annotations

import io
import netrc
import os
from pathlib import Path
from typing import Literal

import numpy as np
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger

WandbMode = Literal["online", "offline", "disabled"]


def wandb_credentials_available() -> bool:
    """Whether an API key is configured (``WANDB_API_KEY`` or a ``~/.netrc`` entry from ``wandb login``)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc(Path.home() / ".netrc").authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` with an explicit ``mode``.

    ``disabled`` needs no account and no network (every call is a no-op); ``offline`` writes the
    run under ``save_dir/wandb`` for a later ``wandb sync``; ``online`` needs ``wandb login`` or
    ``WANDB_API_KEY`` and fails early, with instructions, without them.

    Args:
        mode: ``online``, ``offline`` or ``disabled``.
        project: wandb project.
        entity: wandb entity (user or team); ``None`` uses your default entity.
        name: run name shown in wandb.
        tags: run tags.
        save_dir: where wandb writes its local files.
        log_model: upload checkpoints as artifacts (see Lightning's ``WandbLogger``).

    """

    def __init__(
        self,
        mode: WandbMode = "online",
        project: str = "lightning-sparse-rl",
        entity: str | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
        save_dir: str = "runs",
        log_model: bool | Literal["all"] = False,
    ) -> None:
        if mode not in ("online", "offline", "disabled"):
            raise ValueError(f"wandb mode={mode!r} must be one of 'online', 'offline', 'disabled'")
        if mode == "online" and not wandb_credentials_available():
            raise ValueError(
                "wandb mode='online' needs credentials: run `wandb login` or set WANDB_API_KEY; "
                "or use mode 'offline' (sync later) or 'disabled' (tutorial: --wandb_mode disabled)."
            )
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        self.mode = mode
        super().__init__(
            name=name,
            save_dir=save_dir,
            project=project,
            entity=entity,
            tags=tags,
            offline=mode == "offline",
            log_model=log_model,
            mode=mode,
        )


def log_video(logger: Logger, key: str, video: Path, frames: list[np.ndarray], fps: int, step: int) -> bool:
    """Log a video to a wandb or TensorBoard logger; returns ``False`` for loggers without videos.

    wandb gets the video file; TensorBoard an animated GIF image summary (what ``add_video`` writes,
    encoded here without moviepy).
    """
    if isinstance(logger, _LightningWandbLogger):
        logger.log_video(key, [str(video)], step=step, fps=[fps])
        return True
    if isinstance(logger, TensorBoardLogger):
        import imageio.v2 as imageio
        from tensorboard.compat.proto.summary_pb2 import Summary

        encoded = io.BytesIO()
        imageio.mimwrite(encoded, frames, format="GIF", duration=1000 / fps, loop=0)
        height, width, channels = frames[0].shape
        image = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=encoded.getvalue())
        summary = Summary(value=[Summary.Value(tag=key, image=image)])
        logger.experiment._get_file_writer().add_summary(summary, step)
        return True
    return False
