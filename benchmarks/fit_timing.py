"""Shared by the benchmarks: the steady-state throughput of a real ``Trainer.fit``, alone or taking turns."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import lightning as L

from lightning_sparse_rl import EnvDataModule
from lightning_sparse_rl.algorithms import OffPolicyAlgorithm

#: A configured fit: model, data and callbacks.
Fit = tuple[OffPolicyAlgorithm, EnvDataModule, list[L.Callback]]


def fit_steps_per_s(
    model: OffPolicyAlgorithm, data: EnvDataModule, skip: int, steps: int, callbacks: list[L.Callback] = ()
) -> float:
    """Training env steps per second of ``Trainer.fit(model, data)`` over ``steps`` steps after the first ``skip``.

    ``data.max_timesteps`` must be ``skip + steps``; no evaluation, logging or checkpointing.
    """
    marks: dict[str, float] = {}

    class Clock(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch.train_step == skip:
                marks["start"] = time.perf_counter()
            if batch.train_step == skip + steps:
                marks["end"] = time.perf_counter()

    _trainer([*callbacks, Clock()]).fit(model, data)
    return steps / (marks["end"] - marks["start"])


def _trainer(callbacks: list[L.Callback]) -> L.Trainer:
    """A Trainer that only trains: no evaluation, logging, checkpoints or progress bar."""
    return L.Trainer(
        max_epochs=-1,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        callbacks=callbacks,
    )


class _Turns:
    """A turn passed round fits that run in threads (fits that ended are skipped)."""

    def __init__(self, fits: int) -> None:
        self._condition = threading.Condition()
        self._turn = 0
        self._running = list(range(fits))

    def wait(self, fit: int) -> None:
        """Block until it is ``fit``'s turn."""
        with self._condition:
            self._condition.wait_for(lambda: self._turn == fit)

    def pass_on(self, fit: int) -> None:
        """Give the turn to the next running fit after ``fit`` (back to ``fit`` if it is the only one)."""
        with self._condition:
            self._turn = next((f for f in self._running if f > fit), self._running[0])
            self._condition.notify_all()

    def end(self, fit: int) -> None:
        """``fit`` has ended: leave the round, passing the turn on if it holds it."""
        with self._condition:
            self._running.remove(fit)
            if self._turn == fit and self._running:
                self._turn = next((f for f in self._running if f > fit), self._running[0])
            self._condition.notify_all()


class _TakeTurns(L.Callback):
    """Time one fit's training steps while it holds the turn, which it passes on every ``block`` steps."""

    def __init__(self, fit: int, turns: _Turns, skip: int, steps: int, block: int) -> None:
        self.fit, self.turns, self.skip, self.steps, self.block = fit, turns, skip, steps, block
        self.seconds = 0.0
        self._began: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._began is None:  # the first step: join the round
            self.turns.wait(self.fit)
            self._began = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.skip < batch.train_step <= self.skip + self.steps:
            self.seconds += time.perf_counter() - self._began  # this step: its env step and its update
        if batch.train_step % self.block == 0:
            self.turns.pass_on(self.fit)
            self.turns.wait(self.fit)
        self._began = time.perf_counter()


def lockstep_seconds_per_step(fits: Sequence[Fit], skip: int, steps: int, block: int = 10) -> list[float]:
    """Seconds per training step of each ``(model, data, callbacks)`` fit, the fits taking turns.

    Each fit runs ``Trainer.fit`` in a thread of its own; one fit at a time runs ``block`` training steps (env
    steps and updates, timed), then passes the turn to the next. A change of the machine's speed over more than
    a turn (a tenth of a second at K = 1) therefore reaches every fit alike. Each turn starts with the caches
    full of the other fit's data: turns of one step are fairest to drift but charge every step of both fits
    that refill, which pulls their ratio towards 1, so ``block`` spreads it over several steps. Timed: the
    ``steps`` steps after the first ``skip``; each ``data.max_timesteps`` must be ``skip + steps``.
    """
    turns = _Turns(len(fits))
    clocks = [_TakeTurns(i, turns, skip, steps, block) for i in range(len(fits))]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        model, data, callbacks = fits[i]
        try:
            _trainer([*callbacks, clocks[i]]).fit(model, data)
        except BaseException as error:  # re-raised in the calling thread
            errors.append(error)
        finally:
            turns.end(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fits))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [clock.seconds / steps for clock in clocks]
