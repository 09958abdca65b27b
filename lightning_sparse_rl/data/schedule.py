"""The training loop's position and plan: one owner for the env-step counter and the stop condition.

As Stable-Baselines3's ``learn()`` loop, one object counts the main loop's env steps and says what each step
does: which windows its minibatches sample (one-step transitions, or ``n``-step windows after RLx2's delay),
whether the dynamic buffer is checked after it, and whether it is the run's last. Lightning's own counters are
not used for this: ``global_step`` counts optimizer steps. Knows no Lightning, no env and no buffer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlannedStep:
    """What one main-loop env step does.

    Attributes:
        number: the step's 1-based number (warm-up excluded): the ``train_step`` of its batch.
        windows: transitions per sample of each of its ``updates_per_step`` minibatches (1: one-step).
        check_buffer: check the dynamic buffer's capacity after this env step.
        last: the run's last step: it is still trained on and evaluated, then the fit ends.

    """

    number: int
    windows: tuple[int, ...]
    check_buffer: bool
    last: bool


@dataclass
class TrainingSchedule:
    """The main loop's env-step counter, its epochs and its stop condition.

    Args:
        max_timesteps: main-loop env steps of the run.
        eval_freq: env steps per epoch (an evaluation follows each).
        updates_per_step: gradient updates (minibatches) per env step.
        n_step: transitions per sample once ``n_step_delay`` updates are done (1: always one-step).
        n_step_delay: gradient updates made with one-step transitions first.
        buffer_check_interval: env steps between dynamic-buffer checks; ``None``: no checks.
        train_steps: env steps done so far (a resumed run's position).

    """

    max_timesteps: int
    eval_freq: int
    updates_per_step: int = 1
    n_step: int = 1
    n_step_delay: int = 0
    buffer_check_interval: int | None = None
    train_steps: int = 0

    @property
    def finished(self) -> bool:
        """Whether every main-loop env step is done."""
        return self.train_steps >= self.max_timesteps

    def steps_this_epoch(self) -> int:
        """Env steps of the epoch that starts now: ``eval_freq``, fewer at the end of the run."""
        return min(self.eval_freq, self.max_timesteps - self.train_steps)

    def window_at(self, update: int) -> int:
        """Transitions per sample for gradient update ``update`` (0-based): ``n_step`` once the delay has passed."""
        return self.n_step if update >= self.n_step_delay else 1

    def advance(self) -> PlannedStep:
        """Count one env step (taken just now) and say what follows from it."""
        self.train_steps += 1
        first_update = (self.train_steps - 1) * self.updates_per_step
        interval = self.buffer_check_interval
        return PlannedStep(
            number=self.train_steps,
            windows=tuple(self.window_at(first_update + i) for i in range(self.updates_per_step)),
            check_buffer=interval is not None and self.train_steps % interval == 0,
            last=self.finished,
        )
