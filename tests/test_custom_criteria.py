"""A user's own sparse-training part: the example growth criterion, the contract checks, and `lsrl fit` from YAML."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from helpers import REPO, lsrl_command, short_run_args

from lightning_sparse_rl.callbacks import DynamicSparsityCallback
from lightning_sparse_rl.sparse import LayerState, MagnitudePrune, RandomGrowth, prune_and_regrow

sys.path.insert(0, str(REPO / "examples"))
from custom_growth import GradientMomentumGrowth


def test_example_grows_where_gradient_times_momentum_is_largest():
    mask = torch.tensor([[True, False, False], [False, False, True]])
    grad = torch.tensor([[9.0, 4.0, 1.0], [3.0, 0.5, 9.0]])
    momentum = torch.tensor([[9.0, 0.1, 2.0], [-1.0, 8.0, 9.0]])
    # Inactive scores |g|·|m|: (0,1) 0.4, (0,2) 2.0, (1,0) 3.0, (1,1) 4.0 → the best two are (1,1) and (1,0).
    layer = LayerState(torch.zeros(2, 3), mask, 0, torch.Generator(), grad, momentum)
    grown = GradientMomentumGrowth(momentum_floor=0.0).grow(layer, 2)
    assert grown.nonzero().tolist() == [[1, 0], [1, 1]]
    # Before the optimizer's first step there is no moment: the gradient alone decides (times the floor).
    grown = GradientMomentumGrowth().grow(layer._replace(exp_avg=None), 1)
    assert grown.nonzero().tolist() == [[0, 1]]


class _WrongCount:
    """Breaks the contract: grows one connection too many."""

    needs_gradient = False

    def grow(self, layer: LayerState, n: int) -> torch.Tensor:
        return RandomGrowth().grow(layer, n + 1)


def test_a_criterion_that_breaks_the_contract_is_named():
    weight = torch.randn(8, 8)
    mask = weight.abs() > 0.5
    layer = LayerState(weight * mask, mask, 0, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"_WrongCount must choose exactly 3 inactive positions, got 4"):
        prune_and_regrow(layer, 3.5 / int(mask.sum()), MagnitudePrune(), _WrongCount())
    with pytest.raises(ValueError, match="growth=object does not implement GrowthCriterion"):
        DynamicSparsityCallback(growth=object())
    with pytest.raises(ValueError, match="prune=RandomGrowth does not implement PruneCriterion"):
        DynamicSparsityCallback(prune=RandomGrowth())


def test_lsrl_fit_trains_with_a_criterion_named_in_yaml(tmp_path):
    config = {
        "trainer": {
            "callbacks": [
                {
                    "class_path": "lightning_sparse_rl.callbacks.SparsityDistributionCallback",
                    "init_args": {"global_sparsity": 0.8},
                },
                {
                    "class_path": "lightning_sparse_rl.callbacks.DynamicSparsityCallback",
                    "init_args": {
                        "update_period": 50,
                        "drop_fraction": 0.2,
                        "growth": {"class_path": "custom_growth.GradientMomentumGrowth"},
                    },
                },
            ]
        }
    }
    (tmp_path / "custom.yaml").write_text(yaml.safe_dump(config))
    logger = [{"class_path": "lightning_sparse_rl.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path)}}]
    args = [
        "fit", "--config", str(REPO / "configs/sac.yaml"), "--config", str(tmp_path / "custom.yaml"),
        *short_run_args(start_timesteps=200, max_timesteps=300, hidden_width=32),
        "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", json.dumps(logger),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO / "examples"))
    done = subprocess.run(lsrl_command(*args), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = yaml.safe_load(next(tmp_path.glob("**/config.yaml")).read_text())
    growth = next(c for c in saved["trainer"]["callbacks"] if "Dynamic" in c["class_path"])["init_args"]["growth"]
    assert growth["class_path"] == "custom_growth.GradientMomentumGrowth"  # the run's config names it
    with open(next(tmp_path.glob("**/metrics.csv"))) as f:
        rows = [row for row in csv.DictReader(f) if row.get("dst/topology_updates")]
    assert [float(row["dst/topology_updates"]) for row in rows] == [1, 2, 3, 4, 5, 6]  # every 50 of 300 updates
    assert all(float(row["dst/actor/connections_changed"]) > 0 for row in rows)
