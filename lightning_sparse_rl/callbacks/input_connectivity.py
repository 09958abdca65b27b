"""``InputConnectivityCallback``: active connections per input feature, real vs noise (docs/original_code.md §7)."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

from lightning_sparse_rl.persistence.run_files import write_csv, write_npy, write_npz
from lightning_sparse_rl.plots import plot_connectivity_heatmap
from lightning_sparse_rl.run_position import run_directory, training_steps
from lightning_sparse_rl.sparse import connections_per_input, real_noise_connectivity
from lightning_sparse_rl.types import SparseAlgorithm


class InputConnectivityCallback(Callback):
    """After every evaluation, measure how the input layers connect to real and to noise features.

    Measured once before training (step 0, the untrained networks, as the original) and after every
    evaluation. For the input layer of each of the algorithm's ``sparse_networks()`` (actor, Q1, Q2) it counts the
    active connections of every input column and averages them over the real columns and over the
    noise columns. Real columns follow the current input permutation; the critics' action inputs
    count as real (as the original since 2024-02). A dense network gives its width for both.

    Logged to every logger as ``connectivity/<network>/real`` and ``.../noise`` (means over the agents of a
    population, each agent's as ``connectivity/<network>/seed_S/...``) and written to the run directory
    (``trainer.log_dir``) after each evaluation, unless ``save_results`` is off:

    * ``connectivity.csv``: training step (0, then one row per evaluation) and the two means per network;
    * ``connectivity.npy``: one row per measurement, ``[actor_real, actor_noise, q1_real, q1_noise,
      q2_real, q2_noise]`` as the original's ``output/connectivity`` files;
    * ``connectivity_per_feature.npz``: ``steps`` and, per network (and agent: ``<network>.seed_S``),
      connections per input ``(evaluations, n_in)`` in original feature order (real, noise, action inputs);
    * at the end of training, ``connectivity_heatmap.png`` (features × evaluations; the first agent's).

    The history is part of the checkpoint, so a resumed run continues its files.

    Args:
        save_results: write the files and the heat-map.

    """

    def __init__(self, save_results: bool = True) -> None:
        self.save_results = save_results
        self.steps: list[int] = []
        self.means: list[list[float]] = []
        self.per_feature: dict[str, list[torch.Tensor]] = {}

    @override
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Measure the untrained networks (step 0), as the original; not again when resuming after training began."""
        if training_steps(trainer) == 0:  # a new run, or one resumed from its warm-up: step 0 (again)
            self.steps, self.means, self.per_feature = [], [], {}
            metrics = self._measure(trainer, pl_module)
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=0)

    @override
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Measure, log and write the connectivity of the current input layers."""
        if not trainer.sanity_checking:
            pl_module.log_dict(self._measure(trainer, pl_module), on_epoch=True)

    def _measure(self, trainer: L.Trainer, pl_module: SparseAlgorithm) -> dict[str, float]:
        """Record one measurement (and write the files); return the metrics to log."""
        features, seeds = pl_module.input_features, pl_module.seeds
        real_state = features.real_columns()  # (K, input_dim)
        metrics: dict[str, float] = {}
        means: list[float] = []
        for net in pl_module.sparse_networks():
            counts = connections_per_input(net.layers[0])  # (members, n_in)
            agent_means = []
            for agent, member in enumerate(net.members):
                per_input = counts[member]
                extra = per_input.numel() - features.input_dim  # the critics' action inputs
                real = torch.cat([real_state[agent], real_state.new_ones(extra)])
                agent_means.append(real_noise_connectivity(per_input, real))
                by_feature = per_input.clone()
                by_feature[features.permutation[agent]] = per_input[: features.input_dim]
                key = net.name if len(seeds) == 1 else f"{net.name}.seed_{seeds[agent]}"
                self.per_feature.setdefault(key, []).append(by_feature.to("cpu", torch.int32))
                if len(seeds) > 1:
                    prefix = f"connectivity/{net.name}/seed_{seeds[agent]}"
                    metrics[f"{prefix}/real"], metrics[f"{prefix}/noise"] = agent_means[-1]
            real_mean = sum(m[0] for m in agent_means) / len(agent_means)
            noise_mean = sum(m[1] for m in agent_means) / len(agent_means)
            metrics[f"connectivity/{net.name}/real"] = real_mean
            if not math.isnan(noise_mean):
                metrics[f"connectivity/{net.name}/noise"] = noise_mean
            means += [real_mean, noise_mean]
        metrics = {key: value for key, value in metrics.items() if not math.isnan(value)}
        self.steps.append(training_steps(trainer))
        self.means.append(means)
        if self.save_results:
            self._write(trainer, pl_module)
        return metrics

    @rank_zero_only
    def _write(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        run_dir = run_directory(trainer)
        nets = [net.name for net in pl_module.sparse_networks()]
        header = ["step"] + [f"{name}/{group}" for name in nets for group in ("real", "noise")]
        write_csv(run_dir / "connectivity.csv", header, [[s, *m] for s, m in zip(self.steps, self.means, strict=True)])
        write_npy(run_dir / "connectivity.npy", np.asarray(self.means, dtype=np.float64))
        arrays = {name: rows.numpy() for name, rows in self._per_feature_arrays().items()}
        write_npz(
            run_dir / "connectivity_per_feature.npz",
            steps=np.asarray(self.steps),
            real_features=np.asarray(pl_module.input_features.real_features),
            **arrays,
        )

    @override
    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save the heat-map of connections per input feature over the evaluations."""
        if not (self.save_results and self.steps):
            return
        arrays = {name: rows.numpy() for name, rows in self._per_feature_arrays().items()}
        if len(pl_module.seeds) > 1:  # the first agent's networks
            first = f".seed_{pl_module.seeds[0]}"
            arrays = {name.removesuffix(first): rows for name, rows in arrays.items() if name.endswith(first)}
        features = pl_module.input_features
        path = run_directory(trainer) / "connectivity_heatmap.png"
        plot_connectivity_heatmap(self.steps, arrays, features.real_features, features.input_dim, path)

    def _per_feature_arrays(self) -> dict[str, torch.Tensor]:
        """Per network, connections per input over the measurements, ``(measurements, n_in)`` int32."""
        return {name: torch.stack(rows) for name, rows in self.per_feature.items()}

    @override
    def state_dict(self) -> dict[str, Any]:
        """The measurements so far (per-feature counts as int32 tensors ``(evaluations, n_in)``)."""
        return {"steps": self.steps, "means": self.means, "per_feature": self._per_feature_arrays()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.steps = list(state_dict["steps"])
        self.means = [list(row) for row in state_dict["means"]]
        self.per_feature = {name: list(rows.unbind()) for name, rows in state_dict["per_feature"].items()}
