"""``last.ckpt`` every K env steps and when the run is asked to stop (SIGINT / SIGTERM)."""

from __future__ import annotations

import signal
import threading
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from lightning_sparse_rl.run_position import checkpoint_directory, training_steps
from lightning_sparse_rl.validation import check_positive

#: The signals that stop a run gracefully.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunStopped(Exception):
    """Raised by :class:`RunCheckpoints` once the checkpoint after a stop signal is written.

    It ends ``Trainer.fit`` at once (no further evaluation or checkpoint); ``lsrl`` then exits with status 0.
    """


class RunCheckpoints(Callback):
    """Writes ``CHECKPOINT_DIR/last.ckpt`` every ``every_n_env_steps`` training env steps, and on SIGINT/SIGTERM.

    A stop signal (Ctrl-C, ``kill``, a cluster's pre-emption) is not acted on at once: the current training
    step finishes (and, at the end of an epoch, its evaluation), the checkpoint is written, and
    :class:`RunStopped` ends the fit (loggers are finalised; ``lsrl`` exits with status 0). Resume with
    ``lsrl fit --config RUN_DIR/config.yaml --ckpt_path last``. A second signal while stopping is handled
    as usual (Python raises ``KeyboardInterrupt`` for SIGINT).

    Put it after the callbacks that change the training state at the end of a step (dynamic sparsity,
    feature permutations), so that its checkpoints include their work: ``lsrl fit`` does this for you.

    ``CHECKPOINT_DIR`` is the ``ModelCheckpoint``'s folder when there is one, else ``RUN_DIR/checkpoints``.

    Args:
        every_n_env_steps: checkpoint period in training env steps (``None``: only at evaluations, by
            ``ModelCheckpoint``, and on stop signals).
        on_signal: handle SIGINT/SIGTERM as described (only in the main thread).

    """

    def __init__(self, every_n_env_steps: int | None = None, on_signal: bool = True) -> None:
        if every_n_env_steps is not None:
            check_positive("every_n_env_steps", every_n_env_steps)
        self.every_n_env_steps = every_n_env_steps
        self.on_signal = on_signal
        self.received: signal.Signals | None = None
        self._previous: dict[int, Any] = {}
        self._save_at_epoch_end = False
        self._stopping = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # a second signal: the previous behaviour
            previous = self._previous.get(signum)
            if callable(previous):
                previous(signum, frame)
            elif signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.received = signal.Signals(signum)
        rank_zero_info(f"Received {self.received.name}: stopping after this training step, with a checkpoint.")

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Install the signal handlers."""
        if self.on_signal and threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _restore_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Put the previous signal handlers back."""
        self._restore_handlers()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """Put the previous signal handlers back."""
        self._restore_handlers()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Checkpoint on schedule or after a stop signal; at an epoch's last step, after its evaluation."""
        period = self.every_n_env_steps
        if self.received is None and not (period and batch.train_step % period == 0):
            return
        if batch_idx + 1 >= trainer.num_training_batches or trainer.should_stop:
            self._save_at_epoch_end = True  # the evaluation that ends this epoch belongs in the checkpoint
            return
        self._save(trainer, batch.train_step)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Write a checkpoint deferred to the end of the epoch."""
        if self._save_at_epoch_end:
            self._save_at_epoch_end = False
            self._save(trainer, training_steps(trainer))

    def _save(self, trainer: Trainer, step: int) -> None:
        path = checkpoint_directory(trainer) / "last.ckpt"
        trainer.save_checkpoint(path)
        if self.received is not None and not self._stopping:
            self._stopping = True
            raise RunStopped(
                f"Stopped by {self.received.name} after {step} training steps; wrote {path}. "
                "Resume with: lsrl fit --config RUN_DIR/config.yaml --ckpt_path last"
            )
