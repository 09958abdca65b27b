"""Figures of a run, as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def plot_connectivity_heatmap(
    steps: Sequence[int],
    per_feature: Mapping[str, np.ndarray],
    real_features: int,
    state_features: int,
    path: str | Path,
) -> None:
    """Heat-map of active connections per input feature over training, one panel per network.

    Args:
        steps: training env steps of the evaluations, length ``E``.
        per_feature: network name → connections per input ``(E, n_in)``, columns in original
            feature order: ``real_features`` real ones, then noise, then (critics) the action inputs.
        real_features: number of real observation features ``d`` (a line separates them from noise).
        state_features: number of observation inputs ``D`` (a dashed line separates the critics'
            action inputs).
        path: PNG file to write.

    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no display
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    names = list(per_feature)
    fig = Figure(figsize=(4.5 * len(names), 5))
    axes = fig.subplots(1, len(names), squeeze=False)
    centres = np.asarray(steps, dtype=float)
    half = np.diff(centres) / 2 if len(centres) > 1 else np.array([max(centres[0], 1.0) / 2])
    x = np.concatenate([[centres[0] - half[0]], centres[:-1] + half[: len(centres) - 1], [centres[-1] + half[-1]]])
    for ax, name in zip(axes[0], names, strict=True):
        counts = np.asarray(per_feature[name], dtype=float)
        mesh = ax.pcolormesh(x, np.arange(counts.shape[1] + 1), counts.T, shading="flat", cmap="viridis")
        ax.axhline(real_features, color="white", linewidth=1.0)
        if counts.shape[1] > state_features:
            ax.axhline(state_features, color="white", linewidth=1.0, linestyle="--")
        ax.set_title(f"{name}: connections per input")
        ax.set_xlabel("training steps at evaluation")
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value / 1000:g}k" if value else "0"))
        ax.set_ylabel(f"input feature (0-{real_features - 1} real, then noise, then actions)")
        ax.invert_yaxis()
        fig.colorbar(mesh, ax=ax, label="active connections")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


#: A run's curve: training steps ``(T,)`` and values ``(T,)``.
Curve = tuple[np.ndarray, np.ndarray]


def _band(ax, label: str, curves: Sequence[Curve], **style) -> None:
    """Draw the mean of ``curves`` at the steps they all have, with its 95 % bootstrap interval (rliable)."""
    from lightning_sparse_rl.report.runs import common_steps, values_at
    from lightning_sparse_rl.report.statistics import mean_curves

    steps = common_steps(run_steps for run_steps, _ in curves)
    values = values_at(curves, steps)
    mean, interval = mean_curves({label: values[:, None, :]})[label]
    (line,) = ax.plot(steps, mean, label=f"{label} (n={len(curves)})", **style)
    ax.fill_between(steps, interval[0], interval[1], color=line.get_color(), alpha=0.2)


def _bands_figure(
    bands: Sequence[tuple[str, Sequence[Curve], dict]], ylabel: str, title: str, path: str | Path
) -> None:
    """One axes of means over runs with 95 % bootstrap intervals over training steps, saved as ``path``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for label, curves, style in bands:
        _band(ax, label, curves, **style)
    ax.set_xlabel("training steps")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_learning_curves(groups: Mapping[str, Sequence[Curve]], path: str | Path) -> None:
    """Evaluation return over training steps: per group (policy) the mean over seeds and its 95 % bootstrap interval."""
    bands = [(label, curves, {}) for label, curves in groups.items()]
    _bands_figure(bands, "evaluation return", "Learning curves (mean over seeds, 95% bootstrap interval)", path)


def plot_connectivity(groups: Mapping[str, tuple[Sequence[Curve], Sequence[Curve]]], path: str | Path) -> None:
    """Actor connections per real and per noise input over training, per group: mean and 95 % bootstrap interval."""
    bands = []
    for label, (real, noise) in groups.items():
        bands += [(f"{label}, real features", real, {}), (f"{label}, noise features", noise, {"linestyle": "--"})]
    _bands_figure(bands, "actor connections per input feature", "Input connectivity: real vs noise features", path)


def plot_sparsity_distribution(
    layer_sizes: Sequence[int], global_sparsity: float, path: str | Path, input_layer_sparsity: float = -1.0
) -> None:
    """Per-layer sparsity of ``uniform``, ``ER`` and ``new`` for one network (dense output layer)."""
    from matplotlib.figure import Figure

    from lightning_sparse_rl.sparse import DISTRIBUTION_METHODS, compute_layer_sparsity

    keep_dense = [False] * (len(layer_sizes) - 2) + [True]
    layers = np.arange(1, len(layer_sizes))
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    width = 0.8 / len(DISTRIBUTION_METHODS)
    for i, method in enumerate(DISTRIBUTION_METHODS):
        levels = compute_layer_sparsity(
            global_sparsity, list(layer_sizes), keep_dense, method, input_layer_sparsity=input_layer_sparsity
        )
        bars = ax.bar(
            layers + (i - 1) * width, levels.sparsity, width, label=f"{method} ({levels.global_sparsity:.3f})"
        )
        ax.bar_label(bars, labels=[f"{s:.2f}" for s in levels.sparsity], fontsize=7)
    ax.set_xticks(layers, [f"{a}x{b}" for a, b in itertools.pairwise(layer_sizes)])
    ax.set_xlabel("layer (inputs x outputs)")
    ax.set_ylabel("sparsity")
    ax.set_ylim(0, 1.08)
    ax.set_title(f"Per-layer sparsity at global sparsity {global_sparsity:g}")
    ax.legend(title="distribution (achieved global)", loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
