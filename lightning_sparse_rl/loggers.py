"""Weights & Biases logger with the original's ``online`` / ``offline`` / ``disabled`` modes."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Literal

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
