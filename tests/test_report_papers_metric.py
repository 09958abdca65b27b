"""``lsrl report``'s seed papers' metric: each run's last N evaluations averaged, mean ± sd over runs."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from lightning_sparse_rl.cli import run_lsrl
from lightning_sparse_rl.persistence.run_files import write_csv

#: Twelve evaluations, every 1 000 steps.
STEPS = [1000 * (i + 1) for i in range(12)]


def _population_run(root, name, returns_of_seed):
    """A run folder of one population on Hopper-v5: seed → its return at each of :data:`STEPS`."""
    run_dir = root / name / "version_0"
    run_dir.mkdir(parents=True)
    rows = [[step, seed, returns[i], 1000] for i, step in enumerate(STEPS) for seed, returns in returns_of_seed.items()]
    write_csv(run_dir / "evaluations.csv", ["step", "seed", "return", "episode_length"], rows)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"data": {"env_id": "Hopper-v5"}}))
    return run_dir


@pytest.fixture
def two_runs(tmp_path):
    """x: seed s returns 100 s + i at the i-th evaluation; y: 50 everywhere, except 1e6 at the first two."""
    x = _population_run(tmp_path, "x", {s: [100 * s + i for i in range(12)] for s in (1, 2, 3)})
    y = _population_run(tmp_path, "y", {s: [1e6, 1e6] + [50] * 10 for s in (1, 2, 3)})
    return tmp_path, x, y


def test_the_last_ten_evaluations_are_averaged_per_run_then_mean_and_sd_over_runs(two_runs):
    root, x, y = two_runs
    run_lsrl(["report", str(x), str(y), "--out", str(root / "r"), "--reps", "200", "--curve-reps", "100"])
    last = json.loads((root / "r" / "report.json").read_text())["environments"]["Hopper-v5"]["last_evaluations"]
    # The last 10 of 12 evaluations are i = 2..11, whose mean is 6.5: runs of x average 106.5, 206.5, 306.5,
    # so mean 206.5 and sample sd 100; y's two early 1e6 are outside the window: 50 ± 0.
    assert last["steps"] == STEPS[2:]
    assert last["per_run"]["x"] == {"1": 106.5, "2": 206.5, "3": 306.5}
    assert last["mean"] == {"x": 206.5, "y": 50.0}
    assert last["sd"]["x"] == pytest.approx(100.0) and last["sd"]["y"] == 0.0
    assert last["aggregates"]["x"]["iqm"]["value"] == pytest.approx(206.5)  # 3 runs: IQM weighs all of the middle
    assert last["probability_of_improvement"]["x > y"]["value"] == 1.0
    report = (root / "r" / "report.md").read_text()
    assert "### Average of the last 10 evaluations, 3,000 to 12,000 steps" in report
    assert "| x | 3 | 206 ± 100 | 1: 106, 2: 206, 3: 306 |" in report  # 106.5 rounds to even


def test_asking_for_more_evaluations_than_the_runs_have_averages_all_and_says_so(two_runs):
    root, x, _ = two_runs
    run_lsrl(["report", str(x), "--out", str(root / "r"), "--reps", "100", "--curve-reps", "50", "--last", "20"])
    last = json.loads((root / "r" / "report.json").read_text())["environments"]["Hopper-v5"]["last_evaluations"]
    assert last["steps"] == STEPS and last["mean"] == {"x": 205.5}  # 100 s + 5.5 over all 12
    report = (root / "r" / "report.md").read_text()
    assert "last 12 evaluations (of the 20 asked for: no more are common to every run)" in report


def test_last_must_be_at_least_one(two_runs):
    _, x, _ = two_runs
    with pytest.raises(argparse.ArgumentError, match="--last 0: give the number of evaluations to average, >= 1"):
        run_lsrl(["report", str(x), "--last", "0"])
