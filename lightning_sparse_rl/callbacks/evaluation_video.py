"""``EvaluationVideo``: a video of one deterministic episode every N evaluations, to the run and the loggers."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

from lightning_sparse_rl.data.episodes import play_episodes
from lightning_sparse_rl.loggers import log_video
from lightning_sparse_rl.policy import Policy
from lightning_sparse_rl.run_position import run_directory, training_steps
from lightning_sparse_rl.validation import check_positive
from lightning_sparse_rl.video import frames_per_second, use_headless_rendering, write_video


class EvaluationVideo(Callback):
    """Every ``every_n_evaluations`` evaluations, film one deterministic episode of the current policy.

    In a population, the first agent's (``seeds[0]``).

    The episode runs on a separate rendering env (headless MuJoCo, the tracking camera) with a copy
    of the policy, so training and its random streams are untouched. The video goes to
    ``<run dir>/videos/eval_step<N>.mp4`` and, as ``eval/video``, to wandb (the file) and TensorBoard
    (an animated GIF). Rendering is slow on CPU (about 0.03 s per 320×240 frame with Mesa; a 1000-step
    episode takes half a minute), hence the period.

    Args:
        every_n_evaluations: evaluations between videos (the first video is at the N-th evaluation).
        width: frame width in pixels.
        height: frame height in pixels.
        seed: env seed of the filmed episode.

    """

    def __init__(self, every_n_evaluations: int = 10, width: int = 320, height: int = 240, seed: int = 0) -> None:
        check_positive("every_n_evaluations", every_n_evaluations)
        check_positive("width", width)
        check_positive("height", height)
        self.every_n_evaluations = every_n_evaluations
        self.width = width
        self.height = height
        self.seed = seed
        self.evaluations = 0

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Count evaluations; film and log an episode every ``every_n_evaluations``."""
        if trainer.sanity_checking:
            return
        self.evaluations += 1
        if self.evaluations % self.every_n_evaluations == 0:
            self._film(trainer, pl_module)

    @rank_zero_only
    def _film(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        use_headless_rendering()
        policy = Policy.from_algorithm(pl_module)
        (record,) = play_episodes(
            policy.env_spec, policy.act_numpy, 1, self.seed, "rgb_array", width=self.width, height=self.height
        )
        step = training_steps(trainer)
        path = run_directory(trainer) / "videos" / f"eval_step{step}.mp4"
        fps = frames_per_second(policy.env_spec.env_id)
        write_video(record.frames, path, fps)
        for logger in trainer.loggers:
            log_video(logger, "eval/video", path, record.frames, fps, step)

    @override
    def state_dict(self) -> dict[str, Any]:
        """The evaluation counter."""
        return {"evaluations": self.evaluations}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.evaluations = state_dict["evaluations"]
