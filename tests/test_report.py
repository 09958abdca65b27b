"""``lsrl report``: its numbers are rliable's, on synthetic run folders whose scores the test knows."""

from __future__ import annotations

import argparse
import json
import shutil
import zlib

import numpy as np
import pytest
import yaml

from lightning_sparse_rl.cli import run_lsrl
from lightning_sparse_rl.persistence.run_files import write_csv
from lightning_sparse_rl.report.normalization import REFERENCE_SCORES

STEPS = (1000, 2000, 3000)
#: Bootstrap replications of the comparison with rliable: the report and rliable draw the same ones, so the
#: match is exact at any count; curves and profiles (not compared here) get few.
BOOTSTRAP_REPS = 1000
REPS = ["--reps", str(BOOTSTRAP_REPS), "--curve-reps", "200"]


def _seed_for(name: str, seed: int = 0) -> None:
    """Seed NumPy's global generator as the report does for an entry: (seed + CRC-32 of its name) mod 2**32.

    rliable draws its bootstrap from that generator; one seed per entry keeps an entry's interval the same
    whatever else a report holds.
    """
    np.random.seed((seed + zlib.crc32(name.encode())) % 2**32)


def _run(root, name, env_id, seeds, returns_by_seed):
    """A run folder as lsrl fit writes it: ``evaluations.csv`` (one row per agent and step) and ``config.yaml``."""
    run_dir = root / env_id / name / "version_0"
    run_dir.mkdir(parents=True)
    rows = [[step, seed, returns_by_seed[seed][i], 1000] for i, step in enumerate(STEPS) for seed in seeds]
    write_csv(run_dir / "evaluations.csv", ["step", "seed", "return", "episode_length"], rows)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"data": {"env_id": env_id}}))
    return run_dir


@pytest.fixture
def runs(tmp_path):
    """Two configurations × two envs, 5 seeds each (each configuration a population of 5 in one run folder)."""
    rng = np.random.default_rng(7)
    scores = {}
    dirs = []
    for env_id, scale in (("HalfCheetah-v5", 5000.0), ("Hopper-v5", 2000.0)):
        for name, shift in (("anf", 1.3), ("sac", 1.0)):
            curves = {
                seed: list(scale * shift * np.array([0.3, 0.6, 1.0]) + rng.normal(0, 300, 3)) for seed in range(1, 6)
            }
            scores[(env_id, name)] = np.array([curves[seed] for seed in range(1, 6)])  # (5 seeds, 3 steps)
            dirs.append(_run(tmp_path, name, env_id, list(range(1, 6)), curves))
    return tmp_path, dirs, scores


def test_report_estimates_equal_rliables_on_the_same_scores(runs):
    from rliable import library, metrics

    root, dirs, scores = runs
    run_lsrl(["report", *map(str, dirs), "--out", str(root / "report"), *REPS, "--steps", "2000"])
    content = json.loads((root / "report" / "report.json").read_text())

    def aggregates(x):  # across envs: rliable's median (of the per-env means)
        return np.array([metrics.aggregate_mean(x), metrics.aggregate_median(x), metrics.aggregate_iqm(x)])

    def aggregates_of_one_env(x):  # within an env: the median over runs
        return np.array([metrics.aggregate_mean(x), np.median(x), metrics.aggregate_iqm(x)])

    for env_id in ("HalfCheetah-v5", "Hopper-v5"):
        env = content["environments"][env_id]
        assert env["final_step"] == 3000
        for step, column in (("3000", 2), ("2000", 1)):
            points, intervals = {}, {}
            for name in ("anf", "sac"):
                given = {name: scores[(env_id, name)][:, column : column + 1]}
                _seed_for(name)
                point, interval = library.get_interval_estimates(given, aggregates_of_one_env, reps=BOOTSTRAP_REPS)
                points[name], intervals[name] = point[name], interval[name]
            for name in ("anf", "sac"):
                reported = env["at_steps"][step][name]
                for i, aggregate in enumerate(("mean", "median", "iqm")):
                    assert reported[aggregate]["value"] == pytest.approx(points[name][i], rel=1e-12)
                    assert reported[aggregate]["low"] == pytest.approx(intervals[name][0, i], rel=1e-12)
                    assert reported[aggregate]["high"] == pytest.approx(intervals[name][1, i], rel=1e-12)
    # normalised across both envs: (return - random) / (reference - random), runs × envs
    normalized = {
        name: np.stack(
            [
                REFERENCE_SCORES[env.split("-")[0]].normalize(scores[(env, name)][:, 2])
                for env in ("HalfCheetah-v5", "Hopper-v5")
            ],
            axis=1,
        )
        for name in ("anf", "sac")
    }
    for name in ("anf", "sac"):
        _seed_for(name)
        point, interval = library.get_interval_estimates({name: normalized[name]}, aggregates, reps=BOOTSTRAP_REPS)
        reported = content["normalized"]["aggregates"][name]
        assert reported["runs"] == 10
        for i, aggregate in enumerate(("mean", "median", "iqm")):
            assert reported[aggregate]["value"] == pytest.approx(point[name][i], rel=1e-12)
            assert [reported[aggregate]["low"], reported[aggregate]["high"]] == pytest.approx(interval[name][:, i])


def test_report_hand_computed_iqm_and_probability_of_improvement(tmp_path):
    # IQM of 5 runs drops the lowest and the highest: (2 + 3 + 4) / 3 = 3, whatever the outlier.
    x = _run(
        tmp_path,
        "x",
        "Pendulum-v1",
        [1, 2, 3, 4, 5],
        {s: [0, 0, v] for s, v in zip(range(1, 6), [1, 2, 3, 4, 1000], strict=True)},
    )
    # P(X > Y) for X = {1, 2, 3, 4, 1000}, Y = {0, 0, 5, 5, 5}: pairs won 2+2+2+2+5 = 13 of 25 -> 0.52
    y = _run(
        tmp_path,
        "y",
        "Pendulum-v1",
        [1, 2, 3, 4, 5],
        {s: [0, 0, v] for s, v in zip(range(1, 6), [0, 0, 5, 5, 5], strict=True)},
    )
    run_lsrl(["report", str(x), str(y), "--out", str(tmp_path / "report"), "--reps", "500", "--curve-reps", "200"])
    content = json.loads((tmp_path / "report" / "report.json").read_text())
    env = content["environments"]["Pendulum-v1"]
    assert env["at_steps"]["3000"]["x"]["iqm"]["value"] == pytest.approx(3.0)
    assert env["at_steps"]["3000"]["x"]["median"]["value"] == pytest.approx(3.0)
    assert env["at_steps"]["3000"]["x"]["mean"]["value"] == pytest.approx(202.0)
    assert env["probability_of_improvement"]["x > y"]["value"] == pytest.approx(0.52)
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| x | 5 | 202 [" in report and "| x | y | 0.52 [" in report
    assert "normalised" not in report  # one env: no aggregate across envs


def test_report_rejects_what_is_not_a_run(tmp_path):
    with pytest.raises(ValueError, match=r"has no evaluations\.csv: not a run folder"):
        run_lsrl(["report", str(tmp_path)])
    with pytest.raises(argparse.ArgumentError, match="--steps 10k"):
        run_lsrl(["report", str(tmp_path), "--steps", "10k"])


def test_report_refuses_two_runs_of_one_seed(runs):
    root, dirs, _ = runs
    copy = root / "again" / "anf" / "version_1"
    copy.parent.mkdir(parents=True)
    shutil.copytree(dirs[0], copy)  # the same configuration name (anf), env and seeds
    with pytest.raises(ValueError, match=r"both hold seed 1 of anf on HalfCheetah-v5: one run per seed"):
        run_lsrl(["report", str(dirs[0]), str(copy), "--out", str(root / "r")])


def test_an_entrys_interval_does_not_depend_on_the_other_entries(runs):
    from lightning_sparse_rl.report.statistics import aggregate_estimates

    _, _, scores = runs
    alone = aggregate_estimates({"a": scores[("Hopper-v5", "anf")][:, 2:]}, reps=500)
    together = aggregate_estimates(
        {"b": scores[("Hopper-v5", "sac")][:, 2:], "a": scores[("Hopper-v5", "anf")][:, 2:]}, reps=500
    )
    assert alone["a"] == together["a"]
