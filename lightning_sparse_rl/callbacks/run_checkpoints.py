"""``last.ckpt`` after every evaluation and every K env steps, and when the run is asked to stop (SIGINT / SIGTERM)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_sparse_rl.lightning_internals import drop_loop_state, mark_evaluation_begun, model_checkpoint_saved_at
from lightning_sparse_rl.run_position import checkpoint_directory
from lightning_sparse_rl.stop_request import StopRequested, clear_stop_request, request_stop, stop_requested
from lightning_sparse_rl.types import TrainBatch
from lightning_sparse_rl.validation import check_positive

#: The signals that stop a run gracefully.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunCheckpoints(Callback):
    """Writes ``CHECKPOINT_DIR/last.ckpt`` after every evaluation, every K training env steps, and on SIGINT/SIGTERM.

    The checkpoint a resume reads is never older than the last evaluation.

    (Lightning's ``ModelCheckpoint(save_last=True)`` alone updates ``last.ckpt`` only when its monitored value
    improves, so a run resumed from it would repeat every step since its best evaluation.)

    A stop signal (Ctrl-C, ``kill``, a cluster's pre-emption) is honoured at the next safe point of any phase
    (:mod:`lightning_sparse_rl.stop_request`): before the next random step of the warm-up, before the next
    training env step (the previous one, its updates and its logging complete), or before the next episode
    of an evaluation. There the DataModule raises :class:`~lightning_sparse_rl.stop_request.StopRequested`;
    this callback writes ``last.ckpt`` (a stop mid-evaluation saves the state from before that evaluation,
    which the resumed run repeats) and the exception ends the fit (loggers are finalised; ``lsrl`` exits with
    status 0). Resume with ``lsrl fit --config RUN_DIR/config.yaml --ckpt_path last``. A second SIGINT while
    stopping is handled as usual (Python raises ``KeyboardInterrupt``); a repeated SIGTERM is ignored (a sweep's
    trial gets one from its worker and one when the worker dies), so the checkpoint is written.

    Put it after the callbacks that change the training state at the end of a step (dynamic sparsity,
    feature permutations), so that its periodic checkpoints include their work: ``lsrl fit`` does this.

    ``CHECKPOINT_DIR`` is the ``ModelCheckpoint``'s folder when there is one, else ``RUN_DIR/checkpoints``;
    a ``ModelCheckpoint(save_last=True)`` keeps writing the same ``last.ckpt``.

    Args:
        every_n_env_steps: K, an extra checkpoint period in training env steps (``None``: only after
            evaluations and on stop signals).
        on_signal: handle SIGINT/SIGTERM as described (only in the main thread).

    """

    def __init__(self, every_n_env_steps: int | None = None, on_signal: bool = True) -> None:
        if every_n_env_steps is not None:
            check_positive("every_n_env_steps", every_n_env_steps)
        self.every_n_env_steps = every_n_env_steps
        self.on_signal = on_signal
        self._previous: dict[int, Any] = {}
        self._stopped_in: str | None = None  # the phase of a honoured stop request, while its checkpoint is written

    def _handle(self, signum: int, frame: Any) -> None:
        if stop_requested() is not None and signum == signal.SIGTERM:  # senders repeat it: the stop is under way
            rank_zero_info("Received SIGTERM again: still stopping, with a checkpoint.")
            return
        if stop_requested() is not None:  # a second Ctrl-C: what it did before (KeyboardInterrupt)
            previous = self._previous.get(signum, signal.SIG_DFL)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)
            return
        request_stop(signal.Signals(signum))
        rank_zero_info(f"Received {signal.Signals(signum).name}: stopping at the next safe point, with a checkpoint.")

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Install the signal handlers (over Lightning's own, which it installs after ``setup``)."""
        clear_stop_request()
        if self.on_signal and threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)

    def _restore_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Put the previous signal handlers back; forget a stop request that arrived after the last safe point."""
        self._restore_handlers()
        clear_stop_request()

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        """After a honoured stop request, write the resumable checkpoint; then put the signal handlers back."""
        self._restore_handlers()
        if isinstance(exception, StopRequested):
            self._stopped_in = exception.phase
            exception.checkpoint = str(self._save(trainer))
            self._stopped_in = None
            clear_stop_request()

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: TrainBatch, batch_idx: int
    ) -> None:
        """Checkpoint on schedule (at an epoch's last step the end-of-epoch checkpoint, after its evaluation, does)."""
        period = self.every_n_env_steps
        epoch_ends = batch_idx + 1 >= trainer.num_training_batches or trainer.should_stop
        if period and batch.train_step % period == 0 and not epoch_ends:
            self._save(trainer)

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Checkpoint after the epoch's evaluation (unless a ``ModelCheckpoint`` before it just wrote this file)."""
        path = checkpoint_directory(trainer) / "last.ckpt"
        for callback in trainer.checkpoint_callbacks:
            if (
                isinstance(callback, ModelCheckpoint)
                and callback.save_last
                and callback.last_model_path == str(path)
                and model_checkpoint_saved_at(callback) == trainer.global_step
            ):
                return
        self._save(trainer)

    @override
    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Make the loops of a stop's checkpoint resume where the run stopped.

        * Stopped in the warm-up: no training step was taken, so the loops are left out and the resumed fit
          starts them afresh (the DataModule continues the warm-up).
        * Stopped mid-evaluation: the evaluation is marked as begun and not finished, so that a resume repeats
          it. (Lightning resumes a checkpoint written after an epoch's last training step by skipping that
          epoch's evaluation unless its progress shows an evaluation batch started and not processed.)
        """
        if self._stopped_in == "warm-up":
            drop_loop_state(checkpoint)
        if self._stopped_in == "evaluation":
            mark_evaluation_begun(checkpoint)

    def _save(self, trainer: Trainer) -> Path:
        path = checkpoint_directory(trainer) / "last.ckpt"
        trainer.save_checkpoint(path, weights_only=False)
        for callback in trainer.checkpoint_callbacks:
            same_folder = isinstance(callback, ModelCheckpoint) and Path(callback.dirpath or "") == path.parent
            if same_folder and callback.save_last:
                callback.last_model_path = str(path)  # it overwrites this last.ckpt instead of writing last-v1.ckpt
        return path
