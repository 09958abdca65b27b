"""The statistics of a report, computed by rliable (Agarwal et al., NeurIPS 2021).

Point estimates with stratified bootstrap confidence intervals, probability of improvement and performance profiles.

Scores are arrays ``(runs, tasks)`` (final scores) or ``(runs, tasks, steps)`` (curves). rliable draws its
bootstrap indices from NumPy's global generator, so every function here seeds it for each entry (and restores it
afterwards) with :func:`entry_seed`: the same scores, ``reps`` and ``seed`` give the same intervals, whatever
other entries a report has.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The aggregates of a report, in table order.
AGGREGATES = ("mean", "median", "iqm")


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its 95 % stratified bootstrap confidence interval."""

    value: float
    low: float
    high: float

    def as_text(self, digits: int = 0) -> str:
        """``value [low, high]``, rounded."""
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def entry_seed(seed: int, key: str) -> int:
    """The bootstrap seed of entry ``key``: ``(seed + CRC-32 of the key's UTF-8 bytes) mod 2**32``."""
    return (seed + zlib.crc32(key.encode())) % 2**32


def _per_entry(
    entries: Mapping[str, Any], seed: int, estimate: Callable[[dict], tuple[dict, dict]]
) -> tuple[dict, dict]:
    """Run an rliable estimate (``entries → (points, intervals)``) one entry at a time, seeded per entry."""
    points, intervals = {}, {}
    state = np.random.get_state()
    try:
        for key, scores in entries.items():
            np.random.seed(entry_seed(seed, key))
            point, interval = estimate({key: scores})
            points[key], intervals[key] = point[key], interval[key]
    finally:
        np.random.set_state(state)
    return points, intervals


def _interval_estimates(entries: Mapping[str, Any], func: Callable, reps: int, seed: int) -> tuple[dict, dict]:
    """The ``get_interval_estimates`` of rliable, seeded per entry."""
    from rliable import library

    return _per_entry(entries, seed, lambda entry: library.get_interval_estimates(entry, func, reps=reps))


def _aggregates(scores: np.ndarray) -> np.ndarray:
    from rliable import metrics

    return np.array([metrics.aggregate_mean(scores), metrics.aggregate_median(scores), metrics.aggregate_iqm(scores)])


def _aggregates_of_one_task(scores: np.ndarray) -> np.ndarray:
    from rliable import metrics

    return np.array([metrics.aggregate_mean(scores), np.median(scores), metrics.aggregate_iqm(scores)])


def aggregate_estimates(
    scores: Mapping[str, np.ndarray], reps: int = 50_000, seed: int = 0
) -> dict[str, dict[str, Estimate]]:
    """Mean, median and IQM of each entry's ``(runs, tasks)`` scores, with 95 % stratified bootstrap intervals.

    Over several tasks the median is rliable's: the median over tasks of each task's mean over runs (the
    "median normalised score"); for one task it is the median over runs.

    Returns:
        entry → aggregate name (:data:`AGGREGATES`) → :class:`Estimate`.

    """
    one_task = all(entry.shape[1] == 1 for entry in scores.values())
    aggregates = _aggregates_of_one_task if one_task else _aggregates
    points, intervals = _interval_estimates(scores, aggregates, reps, seed)
    return {
        key: {
            name: Estimate(float(points[key][i]), float(intervals[key][0, i]), float(intervals[key][1, i]))
            for i, name in enumerate(AGGREGATES)
        }
        for key in scores
    }


def iqm_curves(
    curves: Mapping[str, np.ndarray], reps: int = 2_000, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Sample-efficiency curves: the IQM at every step of ``(runs, tasks, steps)`` scores, with 95 % intervals.

    Returns:
        entry → ``(iqm (steps,), interval (2, steps))``, the interval's rows the lower and upper bounds.

    """
    from rliable import metrics

    def iqm_per_step(scores: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(scores[..., step]) for step in range(scores.shape[-1])])

    points, intervals = _interval_estimates(curves, iqm_per_step, reps, seed)
    return {key: (np.asarray(points[key]), np.asarray(intervals[key])) for key in curves}


def mean_curves(
    curves: Mapping[str, np.ndarray], reps: int = 2_000, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """As :func:`iqm_curves`, for the mean over runs (``lsrl plot``'s bands)."""

    def mean_per_step(scores: np.ndarray) -> np.ndarray:
        return scores.reshape(-1, scores.shape[-1]).mean(axis=0)

    points, intervals = _interval_estimates(curves, mean_per_step, reps, seed)
    return {key: (np.asarray(points[key]), np.asarray(intervals[key])) for key in curves}


def probabilities_of_improvement(
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], reps: int = 2_000, seed: int = 0
) -> dict[str, Estimate]:
    """P(X > Y) for each pair of ``(runs, tasks)`` score arrays ``(X, Y)``, with 95 % bootstrap intervals.

    The probability that a run of X scores higher than a run of Y on a task (ties count half), averaged over
    tasks; the runs of X and of Y are resampled independently.
    """
    from rliable import metrics

    entries = {key: list(pair) for key, pair in pairs.items()}
    points, intervals = _interval_estimates(entries, metrics.probability_of_improvement, reps, seed)
    return {
        key: Estimate(float(points[key]), float(np.ravel(intervals[key])[0]), float(np.ravel(intervals[key])[1]))
        for key in pairs
    }


def performance_profiles(
    scores: Mapping[str, np.ndarray], thresholds: np.ndarray, reps: int = 2_000, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Performance profiles: the fraction of runs (over all tasks) that score above each threshold τ.

    Returns:
        entry → ``(fraction (taus,), interval (2, taus))``.

    """
    from rliable import library

    profiles, intervals = _per_entry(
        scores, seed, lambda entry: library.create_performance_profile(entry, thresholds, reps=reps)
    )
    return {key: (np.asarray(profiles[key]), np.asarray(intervals[key])) for key in scores}
