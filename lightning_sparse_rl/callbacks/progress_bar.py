"""The progress bar: Lightning's TQDM bar in a terminal, plain progress lines in a file (nohup, CI, sweep logs).

A TQDM bar redraws itself with carriage returns; written to a file, every redraw becomes text (a 1M-step run's
log would hold megabytes of them). When stdout is not a terminal, :class:`RLProgressBar` keeps the bar off and
prints one line every ``line_every`` training steps instead::

    progress: step 5,000 of 30,000 (16.7 %)  sps 88.7  ups 17.7  return 183.66  ETA 0:04:12
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from typing_extensions import override

from lightning_sparse_rl.run_position import training_budget, training_steps
from lightning_sparse_rl.types import TrainBatch


class RLProgressBar(TQDMProgressBar):
    """Lightning's ``TQDMProgressBar`` on a terminal; a plain line every ``line_every`` training steps otherwise.

    The plain line gives the training step (of each agent, warm-up excluded) and the run's total, agent-steps/s
    and updates/s (``sps``, ``ups``: :class:`~lightning_sparse_rl.callbacks.RLProgressReporter`'s figures), the
    last episode return shown on the bar (``ret``), and the time left at the rate since the previous line
    (evaluations included).

    Args:
        refresh_rate: terminal bar: redraw every this many training steps (as ``TQDMProgressBar``).
        line_every: file: print a progress line every this many training steps.
        plain: ``True``/``False`` force plain lines / the bar; ``None`` (default): plain lines when stdout is not a
            terminal.

    """

    def __init__(self, refresh_rate: int = 50, line_every: int = 1000, plain: bool | None = None) -> None:
        super().__init__(refresh_rate=refresh_rate)
        if line_every < 1:
            raise ValueError(f"line_every={line_every} must be a positive number of training steps")
        self.line_every = line_every
        self.plain = (not sys.stdout.isatty()) if plain is None else plain
        self._last_line: tuple[float, int] | None = None  # (time.perf_counter() s, training step) of the last line

    @property
    @override
    def is_disabled(self) -> bool:
        """The TQDM bars are drawn only on a terminal (and when the bar is enabled)."""
        return self.plain or not self.is_enabled

    @override
    def on_train_epoch_start(self, trainer: Trainer, *_: Any) -> None:
        """Start the bar (terminal); at the fit's first epoch, the clock of the first plain line (file)."""
        super().on_train_epoch_start(trainer)
        if self._last_line is None:
            self._last_line = (time.perf_counter(), training_steps(trainer))

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: TrainBatch, batch_idx: int
    ) -> None:
        """Update the bar (terminal), or print a plain line every ``line_every`` training steps (file)."""
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if not self.plain or not self.is_enabled or batch.train_step % self.line_every:
            return
        rank_zero_info(self.progress_line(trainer, batch.train_step))

    def progress_line(self, trainer: Trainer, train_step: int) -> str:
        """The plain line at training step ``train_step``."""
        now = time.perf_counter()
        started, steps_before = self._last_line or (now, train_step)
        self._last_line = (now, train_step)
        budget = training_budget(trainer)
        parts = [
            f"progress: step {train_step:,}" + (f" of {budget:,} ({100 * train_step / budget:.1f} %)" if budget else "")
        ]
        shown = self.get_metrics(trainer, trainer.lightning_module)
        parts += [f"{name} {float(shown[key]):.2f}" for key, name in _SHOWN.items() if key in shown]
        rate = (train_step - steps_before) / max(now - started, 1e-9)
        if budget and rate > 0:
            parts.append(f"ETA {timedelta(seconds=round(max(budget - train_step, 0) / rate))}")
        return "  ".join(parts)


#: Progress-bar metrics in the plain line: key → shown name.
_SHOWN = {"sps": "sps", "ups": "ups", "ret": "return"}
