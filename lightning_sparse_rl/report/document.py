"""The document a report builds: Markdown lines, tables, the figures it writes, and their JSON content."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lightning_sparse_rl.report.figures import plot_bands, plot_probabilities
from lightning_sparse_rl.report.normalization import ReferenceScores
from lightning_sparse_rl.report.statistics import (
    AGGREGATES,
    Estimate,
    aggregate_estimates,
    iqm_curves,
    performance_profiles,
    probabilities_of_improvement,
)

#: Thresholds of a performance profile.
PROFILE_POINTS = 101


@dataclass
class ReportSettings:
    """What a report computes.

    Attributes:
        steps: training steps to report besides the final one (those every run of an environment reached).
        reps: bootstrap replications of the tables' intervals (rliable's default 50 000).
        curve_reps: bootstrap replications of curves and profiles (per step; rliable's examples use 2 000).
        seed: the bootstrap's seed.
        references: reference scores beyond the built-in table (:mod:`~lightning_sparse_rl.report.normalization`).
        header: lines printed under the title (command, commit, machine).
        unfinished: sweep trials below their ``max_timesteps`` (named in the report).
        last_evaluations: how many of each run's last evaluations to average for the seed papers' metric.

    """

    steps: list[int] = field(default_factory=list)
    reps: int = 50_000
    curve_reps: int = 2_000
    seed: int = 0
    references: dict[str, ReferenceScores] = field(default_factory=dict)
    header: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    last_evaluations: int = 10


def estimates_json(estimates: Mapping[str, Estimate]) -> dict[str, dict[str, float]]:
    """Estimates as JSON: name → value, low, high."""
    return {name: asdict(estimate) for name, estimate in estimates.items()}


def curve_json(x: np.ndarray, value: np.ndarray, interval: np.ndarray) -> dict[str, list[float]]:
    """A curve with its interval as JSON."""
    return {"steps": x.tolist(), "value": value.tolist(), "low": interval[0].tolist(), "high": interval[1].tolist()}


class ReportDocument:
    """The Markdown lines and figures of one report; each section method also returns its JSON content."""

    def __init__(self, out_dir: Path, settings: ReportSettings) -> None:
        self.out = out_dir
        self.settings = settings
        self.lines: list[str] = []
        self.figures: list[Path] = []

    def figure(self, name: str) -> Path:
        """The path of a figure ``name`` in the output folder (recorded in :attr:`figures`)."""
        path = self.out / name
        self.figures.append(path)
        return path

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """Append a Markdown table."""
        self.lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        self.lines += ["| " + " | ".join(row) + " |" for row in rows]
        self.lines.append("")

    def aggregate_table(
        self, scores: Mapping[str, np.ndarray], digits: int, what: str, estimates: Mapping | None = None
    ) -> dict[str, Any]:
        """A table of mean, median and IQM with intervals per entry (``estimates`` when already computed)."""
        estimates = estimates or aggregate_estimates(scores, self.settings.reps, self.settings.seed)
        size = {name: str(s.shape[0]) if what == "runs" else "×".join(map(str, s.shape)) for name, s in scores.items()}
        rows = [[name, size[name], *(estimates[name][a].as_text(digits) for a in AGGREGATES)] for name in scores]
        self.table(["configuration", what, "mean", "median", "IQM"], rows)
        return {name: {"runs": int(scores[name].size), **estimates_json(estimates[name])} for name in scores}

    def improvement(self, scores: Mapping[str, np.ndarray], figure: str, title: str) -> dict[str, dict[str, float]]:
        """A table and a figure of P(X > Y) for every pair of entries (in their order)."""
        pairs = {f"{x} > {y}": (scores[x], scores[y]) for x, y in itertools.combinations(scores, 2)}
        if not pairs:
            return {}
        estimates = probabilities_of_improvement(pairs, self.settings.curve_reps, self.settings.seed)
        named = [(x, y, estimates[f"{x} > {y}"]) for x, y in itertools.combinations(scores, 2)]
        self.table(["X", "Y", "P(X > Y)"], [[x, y, estimate.as_text(2)] for x, y, estimate in named])
        plot_probabilities(named, self.figure(figure), title)
        return {key: asdict(estimate) for key, estimate in estimates.items()}

    def profile(self, scores: Mapping[str, np.ndarray], figure: str, xlabel: str, title: str) -> dict[str, Any]:
        """A figure of the entries' performance profiles over the range of their scores."""
        values = np.concatenate([s.ravel() for s in scores.values()])
        thresholds = np.linspace(values.min(), values.max(), PROFILE_POINTS)
        profiles = performance_profiles(scores, thresholds, self.settings.curve_reps, self.settings.seed)
        bands = {name: (thresholds, value, interval) for name, (value, interval) in profiles.items()}
        plot_bands(bands, self.figure(figure), xlabel=xlabel, ylabel="fraction of runs > τ", title=title, steps=False)
        return {name: curve_json(*band) for name, band in bands.items()}

    def curves(
        self, curves: Mapping[str, tuple[np.ndarray, np.ndarray]], figure: str, ylabel: str, title: str
    ) -> dict[str, Any]:
        """A figure of IQM curves with intervals: entry → ``(steps, scores (runs, tasks, steps))``."""
        iqm = iqm_curves({name: c for name, (_, c) in curves.items()}, self.settings.curve_reps, self.settings.seed)
        bands = {name: (curves[name][0], *iqm[name]) for name in curves}
        plot_bands(bands, self.figure(figure), xlabel="training steps", ylabel=ylabel, title=title)
        return {name: curve_json(*band) for name, band in bands.items()}
