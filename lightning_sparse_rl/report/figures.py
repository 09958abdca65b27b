"""The report's figures (matplotlib's object API: no display, no global state)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from lightning_sparse_rl.report.statistics import Estimate

#: A curve with its interval: x ``(T,)``, value ``(T,)``, interval ``(2, T)``.
Band = tuple[np.ndarray, np.ndarray, np.ndarray]


def _steps_axis(ax) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(6))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value / 1000:g}k" if value else "0"))


def plot_bands(
    bands: Mapping[str, Band], path: str | Path, *, xlabel: str, ylabel: str, title: str, steps: bool = True
) -> None:
    """One line per entry with its shaded interval; ``NAME, noise`` is dashed, in the colour of ``NAME, real``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    colors: dict[str, str] = {}
    for label, (x, value, interval) in bands.items():
        group, _, kind = label.rpartition(", ") if label.endswith((", real", ", noise")) else (label, "", "")
        style = {"linestyle": "--"} if kind == "noise" else {}
        if group in colors:
            style["color"] = colors[group]
        (line,) = ax.plot(x, value, label=label, **style)
        colors.setdefault(group, line.get_color())
        ax.fill_between(x, interval[0], interval[1], color=line.get_color(), alpha=0.2, linewidth=0)
    if steps:
        _steps_axis(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_intervals(
    estimates: Mapping[str, Mapping[str, Estimate]], path: str | Path, *, xlabel: str, title: str
) -> None:
    """rliable-style interval plot: one panel per aggregate, one horizontal bar (the interval) per configuration."""
    from matplotlib.figure import Figure

    names = list(next(iter(estimates.values())))
    configurations = list(estimates)
    fig = Figure(figsize=(3.2 * len(names), 0.5 * len(configurations) + 1.4))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    colors = [f"C{i}" for i in range(len(configurations))]
    for ax, name in zip(axes, names, strict=True):
        for row, configuration in enumerate(configurations):
            estimate = estimates[configuration][name]
            ax.barh(row, estimate.high - estimate.low, left=estimate.low, height=0.6, color=colors[row], alpha=0.75)
            ax.vlines(estimate.value, row - 0.3, row + 0.3, color="black", linewidth=1.5)
        ax.set_yticks(range(len(configurations)), configurations if ax is axes[0] else [""] * len(configurations))
        ax.set_title(name.upper() if name == "iqm" else name.capitalize())
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_probabilities(pairs: Sequence[tuple[str, str, Estimate]], path: str | Path, title: str) -> None:
    """rliable-style probability of improvement: P(X > Y) with its interval, one row per pair."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 0.5 * len(pairs) + 1.4))
    ax = fig.subplots()
    for row, (_, _, estimate) in enumerate(pairs):
        ax.barh(row, estimate.high - estimate.low, left=estimate.low, height=0.6, color="C0", alpha=0.75)
        ax.vlines(estimate.value, row - 0.3, row + 0.3, color="black", linewidth=1.5)
    ax.set_yticks(range(len(pairs)), [f"P({x} > {y})" for x, y, _ in pairs])
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability of improvement")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
