"""Callbacks that tests add to ``lsrl fit`` in a subprocess: a real SIGTERM at a chosen moment, a bug."""

from __future__ import annotations

import os
import signal
import threading

import lightning as L


class SignalDuringEvaluation(L.Callback):
    """SIGTERM after episode ``episode`` (0-based) of evaluation number ``evaluation`` (1-based; 0: never)."""

    def __init__(self, evaluation: int = 1, episode: int = 0) -> None:
        self.evaluation, self.episode, self.seen = evaluation, episode, 0

    def on_validation_start(self, trainer, pl_module):
        self.seen += 1

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if self.seen == self.evaluation and batch_idx == self.episode:
            os.kill(os.getpid(), signal.SIGTERM)


class SignalAfterSeconds(L.Callback):
    """SIGTERM ``seconds`` after training starts (during a long warm-up); ``seconds <= 0``: never."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds

    def on_train_start(self, trainer, pl_module):
        if self.seconds > 0:
            timer = threading.Timer(self.seconds, os.kill, (os.getpid(), signal.SIGTERM))
            timer.daemon = True
            timer.start()


class BugDuringTraining(L.Callback):
    """Raises a ``ValueError`` (as a bug in user code would) at training step 10."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch.train_step == 10:
            first, second = (1, 2, 3)  # noqa: F841 (the bug)
