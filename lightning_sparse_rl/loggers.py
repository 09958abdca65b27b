"""Loggers: a CSV logger that continues a resumed run's file, Weights & Biases with the original's modes, videos."""

from __future__ import annotations

import csv
import io
import itertools
import netrc
import os
from pathlib import Path
from typing import Literal

import numpy as np
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from lightning_sparse_rl.lightning_internals import (
    CSVExperimentWriter,
    csv_logger_writer,
    set_csv_logger_writer,
    tensorboard_file_writer,
)
from lightning_sparse_rl.persistence.run_files import atomic_write_bytes


def _step(row: dict[str, str | None]) -> float:
    """A row's step; ``inf`` (dropped) for a row cut short by a crash, with no or a garbled step."""
    try:
        return float(row.get("step") or "inf")
    except ValueError:
        return float("inf")


def _warn_of_missing_rows(file: str, steps: list[float], resumed_at: int) -> None:
    """Warn when a continued ``metrics.csv`` ends long before the step a run resumes from (rows lost to damage).

    Normally its last row is at most one logging interval before ``resumed_at``; the longest gap between its
    rows (from step -1) stands for that interval.
    """
    if resumed_at <= 0:
        return
    points = [-1.0, *steps]
    interval = max(b - a for a, b in itertools.pairwise(points)) if steps else 0.0
    if resumed_at - 1 - points[-1] <= interval:
        return
    holds = f"has no rows after step {int(points[-1])}" if steps else "is missing or has no rows"
    rank_zero_warn(
        f"{file} {holds}, but the run resumes from step {resumed_at}: the rows of steps {int(points[-1]) + 1}-"
        f"{resumed_at - 1} are missing (the file was cut or damaged) and stay missing"
    )


class _ContinuingWriter(CSVExperimentWriter):
    """Lightning's CSV writer, but an existing ``metrics.csv`` is continued instead of deleted.

    The rows with ``step < keep_below`` are kept, later ones dropped (``keep_below=None``: none are kept,
    as in Lightning). ``metrics.csv`` and ``hparams.yaml`` on disk are left as they are until the first
    :meth:`save`, which writes the kept rows and the new ones in one atomic replacement (a resume that fails
    before it logs anything changes neither).
    """

    def __init__(self, log_dir: str, keep_below: int | None) -> None:
        self._keep_below = keep_below
        self._carried: list[dict[str, str]] | None = None
        self._hparams_pending = False
        super().__init__(log_dir)

    @override
    def log_hparams(self, params: dict) -> None:
        """Record hyperparameters; when continuing a file, write ``hparams.yaml`` with the first rows."""
        if self._keep_below is None:
            super().log_hparams(params)
            return
        self.hparams.update(params)
        self._hparams_pending = True

    @override
    def check_log_dir(self) -> None:
        """Read the rows to keep from an existing ``metrics.csv`` (Lightning's writer deletes the file here)."""
        if not os.path.isfile(self.metrics_file_path):
            if self._keep_below:
                _warn_of_missing_rows(self.metrics_file_path, [], self._keep_below)
            return
        with open(self.metrics_file_path, newline="") as handle:
            text = handle.read()
        if not text.endswith("\n"):  # a last row cut short by a crash
            text = text[: text.rfind("\n") + 1]
        reader = csv.DictReader(io.StringIO(text))
        rows = list(reader)
        header = list(reader.fieldnames or [])
        keep_below = self._keep_below
        self._carried = [row for row in rows if keep_below is not None and _step(row) < keep_below]
        self.metrics_keys = sorted(header if self._carried else [])
        if keep_below is not None:
            _warn_of_missing_rows(self.metrics_file_path, sorted({_step(row) for row in self._carried}), keep_below)

    @override
    def save(self) -> None:
        """Write the recorded rows (the first time: the carried rows, the new ones, the whole file at once)."""
        if self._hparams_pending and self.metrics:
            self._hparams_pending = False
            super().log_hparams({})
        if self._carried is None:
            super().save()
            return
        if not self.metrics:
            return
        self.metrics_keys.extend(set().union(*self.metrics) - set(self.metrics_keys))  # new keys, as Lightning's save
        self.metrics_keys.sort()
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.metrics_keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self._carried)
        writer.writerows(self.metrics)
        atomic_write_bytes(Path(self.metrics_file_path), text.getvalue().encode())
        self._carried = None
        self.metrics = []


class CSVLogger(_LightningCSVLogger):
    """Lightning's ``CSVLogger`` that continues a run's ``metrics.csv`` when the run is resumed in its folder.

    Lightning's deletes ``metrics.csv`` of a version folder that is not empty. This one, after
    :meth:`continue_from` (``lsrl fit --ckpt_path`` calls it when a run resumes in its own folder), keeps
    the rows logged before the checkpoint and drops those after it (logged before a crash and about to be
    logged again), so no step appears twice. Rows reach the file at every log call by default, so a crash
    loses none.

    Args:
        save_dir: root folder of the logs.
        name: experiment name (a sub-folder of ``save_dir``).
        version: version folder ``version_N`` (``None``: the next free one).
        prefix: prefix of every metric key.
        flush_logs_every_n_steps: write to disk every N log calls (1: at every call).

    """

    def __init__(
        self,
        save_dir: str | Path,
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 1,
    ) -> None:
        super().__init__(save_dir, name, version, prefix, flush_logs_every_n_steps)
        self._keep_below: int | None = None

    def continue_from(self, step: int) -> None:
        """Continue the folder's ``metrics.csv``: keep its rows with ``step < step``, drop the others."""
        if csv_logger_writer(self) is not None:
            raise RuntimeError("continue_from must be called before the logger writes anything")
        self._keep_below = step

    @override
    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """The CSV writer (created on first use; it continues the folder's file after :meth:`continue_from`)."""
        writer = csv_logger_writer(self)
        if writer is None:
            get_filesystem(self.root_dir).makedirs(self.root_dir, exist_ok=True)
            writer = _ContinuingWriter(self.log_dir, self._keep_below)
            set_csv_logger_writer(self, writer)
        return writer


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
        tensorboard_file_writer(logger.experiment).add_summary(summary, step)
        return True
    return False
