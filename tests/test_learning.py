"""SAC and TD3 must actually learn: Pendulum-v1 from about −1400 (random) to better than −350.

Measured with this setup (seeds 0-2, 64-wide nets, the named random streams of lightning_sparse_rl.seeding):
SAC evaluates at −101 to −218 after 3-5k steps (last: −140, −209, −193); TD3 at −76 to −122 after 8k steps
(at 7k one of the three seeds dips to −412, so the TD3 test runs 8k). SAC with 50 % sparse networks and DST
(10 topology updates) evaluates at −103 to −222 after 4-5k steps (last: −146, −210, −187)."""

import csv

import pytest
from helpers import find_callback, short_fit

from lightning_sparse_rl.callbacks import DynamicSparsityCallback, RLProgressReporter, SparsityDistributionCallback

DATA = {"start_timesteps": 1000, "eval_freq": 1000, "eval_episodes": 5, "batch_size": 128}


def _eval_returns(trainer):
    with open(f"{trainer.logger.log_dir}/metrics.csv") as f:
        return [float(r["eval/return"]) for r in csv.DictReader(f) if r["eval/return"]]


@pytest.mark.slow
@pytest.mark.parametrize(("algorithm", "steps"), [("sac", 5000), ("td3", 8000)])
def test_learns_pendulum(tmp_path, algorithm, steps):
    trainer, _, _ = short_fit(
        tmp_path, algorithm, seed=0, data={**DATA, "max_timesteps": steps}, model={"hidden_width": 64}
    )
    returns = _eval_returns(trainer)
    assert len(returns) == steps // 1000
    assert returns[0] < -600, returns  # the task is not trivially solved by the initial policy
    assert max(returns) > -250 and returns[-1] > -350, returns


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:layer .* is extremely sparse")
def test_dynamic_sparse_sac_learns_pendulum(tmp_path):
    callbacks = [
        RLProgressReporter(print_episodes=False, print_evaluations=False),
        SparsityDistributionCallback(global_sparsity=0.5),
        DynamicSparsityCallback(update_period=500),
    ]
    trainer, _, _ = short_fit(
        tmp_path,
        "sac",
        seed=0,
        data={**DATA, "max_timesteps": 5000},
        model={"hidden_width": 64, "optimizer": "maskadam"},
        trainer={"callbacks": callbacks},
    )
    returns = _eval_returns(trainer)
    assert find_callback(callbacks, DynamicSparsityCallback).topology_updates == 10
    assert returns[0] < -600 and max(returns) > -250 and returns[-1] > -350, returns
