"""The statistics of a report, computed by rliable (Agarwal et al., NeurIPS 2021).

Point estimates with stratified bootstrap confidence intervals, probability of improvement and performance profiles.

Scores are arrays ``(runs, tasks)`` (final scores) or ``(runs, tasks, steps)`` (curves). rliable draws its
bootstrap indices from NumPy's global generator, so every function here seeds it (and restores it afterwards):
the same scores, ``reps`` and ``seed`` give the same intervals.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

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


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


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
    from rliable import library

    with _seeded(seed):
        one_task = all(entry.shape[1] == 1 for entry in scores.values())
        aggregates = _aggregates_of_one_task if one_task else _aggregates
        points, intervals = library.get_interval_estimates(dict(scores), aggregates, reps=reps)
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
    from rliable import library, metrics

    def iqm_per_step(scores: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(scores[..., step]) for step in range(scores.shape[-1])])

    with _seeded(seed):
        points, intervals = library.get_interval_estimates(dict(curves), iqm_per_step, reps=reps)
    return {key: (np.asarray(points[key]), np.asarray(intervals[key])) for key in curves}


def mean_curves(
    curves: Mapping[str, np.ndarray], reps: int = 2_000, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """As :func:`iqm_curves`, for the mean over runs (``lsrl plot``'s bands)."""
    from rliable import library

    def mean_per_step(scores: np.ndarray) -> np.ndarray:
        return scores.reshape(-1, scores.shape[-1]).mean(axis=0)

    with _seeded(seed):
        points, intervals = library.get_interval_estimates(dict(curves), mean_per_step, reps=reps)
    return {key: (np.asarray(points[key]), np.asarray(intervals[key])) for key in curves}


def probabilities_of_improvement(
    pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], reps: int = 2_000, seed: int = 0
) -> dict[str, Estimate]:
    """P(X > Y) for each pair of ``(runs, tasks)`` score arrays ``(X, Y)``, with 95 % bootstrap intervals.

    The probability that a run of X scores higher than a run of Y on a task (ties count half), averaged over
    tasks; the runs of X and of Y are resampled independently.
    """
    from rliable import library, metrics

    with _seeded(seed):
        points, intervals = library.get_interval_estimates(
            {key: list(pair) for key, pair in pairs.items()}, metrics.probability_of_improvement, reps=reps
        )
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

    with _seeded(seed):
        profiles, intervals = library.create_performance_profile(dict(scores), thresholds, reps=reps)
    return {key: (np.asarray(profiles[key]), np.asarray(intervals[key])) for key in scores}
