"""``EvaluationResults``: the run's evaluation returns and sparsity history as files in the run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

from lightning_sparse_rl.persistence.run_files import write_csv, write_npy
from lightning_sparse_rl.run_position import run_directory, training_steps
from lightning_sparse_rl.seeding import agent_suffix


class EvaluationResults(Callback):
    """After every evaluation, write the results so far to the run directory (``trainer.log_dir``).

    * ``evaluations.csv``: one row per agent and evaluation: ``step`` (training env steps), ``seed`` (the
      agent's), ``return`` (mean undiscounted return of its evaluation episodes) and ``episode_length``;
    * ``evaluations.npy``: the returns alone, ``(evaluations,)`` as the original's ``output/results`` files
      for one agent, ``(evaluations, K)`` for a population;
    * ``sparsity.csv``: ``step`` and every logged ``sparsity/...`` metric (measured per-layer and
      global sparsity of online and target networks), when sparsity callbacks are present.

    Files are rewritten atomically; the history is part of the checkpoint, so a resumed run continues them.

    Args:
        save_results: write the files.

    """

    def __init__(self, save_results: bool = True) -> None:
        self.save_results = save_results
        self.evaluations: list[list[float]] = []
        self.sparsity: list[dict[str, float]] = []

    @override
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Record this evaluation and rewrite the files."""
        metrics = trainer.callback_metrics
        if trainer.sanity_checking or "eval/return" not in metrics:
            return
        step, seeds = training_steps(trainer), pl_module.seeds
        for seed in seeds:
            suffix = agent_suffix(seeds, seed)
            length = metrics.get(f"eval/episode_length{suffix}")
            value = float(metrics[f"eval/return{suffix}"])
            self.evaluations.append(
                [float(step), float(seed), value, float("nan") if length is None else float(length)]
            )
        sparsity = {k: float(v) for k, v in metrics.items() if k.startswith("sparsity/")}
        if sparsity:
            self.sparsity.append({"step": float(step), **sparsity})
        if self.save_results:
            self._write(run_directory(trainer))

    @rank_zero_only
    def _write(self, run_dir: Path) -> None:
        rows = [[int(step), int(seed), value, length] for step, seed, value, length in self.evaluations]
        write_csv(run_dir / "evaluations.csv", ["step", "seed", "return", "episode_length"], rows)
        agents = len({row[1] for row in rows})
        returns = np.asarray([row[2] for row in rows]).reshape(-1, agents)
        write_npy(run_dir / "evaluations.npy", returns[:, 0] if agents == 1 else returns)
        if self.sparsity:
            header = list(self.sparsity[-1])
            write_csv(run_dir / "sparsity.csv", header, [[row.get(k, "") for k in header] for row in self.sparsity])

    @override
    def state_dict(self) -> dict[str, Any]:
        """The results so far."""
        return {"evaluations": self.evaluations, "sparsity": self.sparsity}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.evaluations = [list(row) for row in state_dict["evaluations"]]
        self.sparsity = [dict(row) for row in state_dict["sparsity"]]
