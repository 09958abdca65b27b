"""Figures of a run, as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

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
