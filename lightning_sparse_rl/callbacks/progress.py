"""Console reporting in the original's format, and env-steps/s and updates/s on the progress bar."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_sparse_rl.run_position import training_steps
from lightning_sparse_rl.types import TrainBatch


def mean_confidence_band(values: np.ndarray) -> tuple[float, float]:
    """The mean of ``values`` ``(n,)`` and the half-width of its 95 % Student-t interval (0 for one value)."""
    from scipy import stats

    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, 0.0
    return mean, float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))


def _elapsed(seconds: float) -> str:
    return str(dt.timedelta(seconds=seconds))


class RLProgressReporter(Callback):
    """Prints the tutorial's episode and evaluation lines and logs training throughput.

    Episode line (docs/original_code.md §6.1): ``Total Steps: {t}  Episode Num: {n}  Epi. Steps: {len}  Reward:
    {r}  Epi. Time: {h:mm:ss}  Total Train Time: {h:mm:ss}``; evaluation: ``Evaluation over {n}
    episode(s): {mean:.3f}`` between lines of dashes. A population's episode lines start with ``Seed {s}``
    and its evaluation is a table (agent, seed, return) with the mean and its 95 % Student-t interval over
    the agents. Every ``trainer.log_every_n_steps`` env steps it logs ``perf/env_steps_per_s`` (steps of each
    agent), ``perf/agent_steps_per_s`` (of all agents) and ``perf/updates_per_s``, measured over that
    window (evaluation and warm-up excluded), and shows agent-steps/s and updates/s on the progress bar
    as ``sps`` and ``ups``.

    The run's clock (``Total Train Time``, ``Total running time``) counts wall-clock time from the start
    of each fit (``on_fit_start``). The best evaluation and the time so far are saved in checkpoints
    (:meth:`state_dict`), so that a resumed run reports both over the whole run, not only since the resume.

    Args:
        print_episodes: print a line per finished training episode.
        print_evaluations: print a line per evaluation.

    """

    def __init__(self, print_episodes: bool = True, print_evaluations: bool = True) -> None:
        self.print_episodes = print_episodes
        self.print_evaluations = print_evaluations
        self._earlier_s = 0.0  # seconds of the run before this fit (restored from a checkpoint)
        self._fit_start: float | None = None  # time.perf_counter() (seconds) at this fit's start; None: stopped
        self._window: tuple[float, int, int] | None = None
        self._best: tuple[float, int] | None = None  # (mean evaluation return, training steps)

    def running_seconds(self) -> float:
        """Wall-clock seconds of the run so far: earlier fits (from the checkpoint) plus the current one."""
        current = 0.0 if self._fit_start is None else time.perf_counter() - self._fit_start
        return self._earlier_s + current

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Start this fit's clock."""
        self._fit_start = time.perf_counter()

    @override
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Open a new throughput window at the first batch of the epoch (after warm-up)."""
        self._window = None

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: TrainBatch, batch_idx: int
    ) -> None:
        """Print finished episodes (a population's prefixed with the agent's seed); log throughput per window."""
        seeds = pl_module.seeds
        for seed, episode in zip(seeds, batch.episodes, strict=True):
            if episode is None or not self.print_episodes:
                continue
            rank_zero_info(
                (f"Seed {seed}  " if len(seeds) > 1 else "")
                + f"Total Steps: {batch.train_step}  Episode Num: {episode.index}  Epi. Steps: {episode.length}  "
                f"Reward: {round(episode.episode_return, 2)}  Epi. Time: {_elapsed(episode.duration_s)}  "
                f"Total Train Time: {_elapsed(self.running_seconds())}"
            )
        now, updates = time.perf_counter(), pl_module.gradient_steps
        if self._window is None:
            self._window = (now, batch.train_step, updates)
            return
        if batch.train_step % trainer.log_every_n_steps == 0:
            start, start_step, start_updates = self._window
            seconds = max(now - start, 1e-9)
            env_rate, update_rate = (batch.train_step - start_step) / seconds, (updates - start_updates) / seconds
            pl_module.log("perf/env_steps_per_s", env_rate)
            pl_module.log("perf/agent_steps_per_s", env_rate * len(seeds))
            pl_module.log("perf/updates_per_s", update_rate)
            pl_module.log("sps", env_rate * len(seeds), prog_bar=True, logger=False)
            pl_module.log("ups", update_rate, prog_bar=True, logger=False)
            self._window = (now, batch.train_step, updates)

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Print the evaluation line and remember the best evaluation."""
        if trainer.sanity_checking or "eval/return" not in trainer.callback_metrics:
            return
        mean_return = float(trainer.callback_metrics["eval/return"])
        step = training_steps(trainer)
        if self._best is None or mean_return > self._best[0]:
            self._best = (mean_return, step)
        if self.print_evaluations:
            episodes = int(trainer.num_val_batches[0]) if trainer.num_val_batches else 0
            dashes = "-" * 39
            seeds = pl_module.seeds
            if len(seeds) == 1:
                rank_zero_info(f"{dashes}\nEvaluation over {episodes} episode(s): {mean_return:.3f}\n{dashes}")
                return
            returns = np.asarray([float(trainer.callback_metrics[f"eval/return/seed_{s}"]) for s in seeds])
            mean, half_width = mean_confidence_band(returns)
            rows = "\n".join(
                f"  {k:>5}  {s:>10}  {r:>10.3f}" for k, (s, r) in enumerate(zip(seeds, returns, strict=True))
            )
            rank_zero_info(
                f"{dashes}\nEvaluation over {episodes} episode(s) of {len(seeds)} agents at step {step}\n"
                f"  agent        seed      return\n{rows}\n"
                f"  mean {mean:.3f}, 95 % interval [{mean - half_width:.3f}, {mean + half_width:.3f}]"
                f" (Student t over agents)\n{dashes}"
            )

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Print the best evaluation and the total running time."""
        if self._best is not None:
            rank_zero_info(f"Best evaluation return: {self._best[0]:.3f} (after {self._best[1]} training steps)")
        rank_zero_info(f"Total running time {_elapsed(self.running_seconds())}")

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Stop the clock at the end of a fit (a checkpoint saved afterwards counts no idle time)."""
        if stage == "fit":
            self._earlier_s, self._fit_start = self.running_seconds(), None

    @override
    def state_dict(self) -> dict[str, Any]:
        """The best evaluation and the run's time so far, flat.

        ``best_return``: the best mean evaluation return (``None`` before the first evaluation);
        ``best_step``: training steps at that evaluation (or ``None``); ``running_s``: wall-clock seconds
        of the run so far.
        """
        best_return, best_step = self._best if self._best is not None else (None, None)
        return {"best_return": best_return, "best_step": best_step, "running_s": self.running_seconds()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: this fit's clock continues from ``running_s``."""
        self._earlier_s = float(state_dict["running_s"])
        best_return, best_step = state_dict["best_return"], state_dict["best_step"]
        self._best = None if best_return is None else (float(best_return), int(best_step))
