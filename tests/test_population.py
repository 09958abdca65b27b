"""Populations: K agents trained together in one process, each the agent its seed would give alone."""

from __future__ import annotations

import csv
import io
import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from helpers import REPO, find_callback, one_line_error, short_fit, short_run_args

from lightning_sparse_rl.callbacks import DynamicSparsityCallback, RLProgressReporter, SparsityDistributionCallback
from lightning_sparse_rl.cli import SparseRLCLI, build_cli, main, run_lsrl
from lightning_sparse_rl.data.replay_buffer import ReplayBuffer
from lightning_sparse_rl.policy_files import load_policy
from lightning_sparse_rl.sparse import compute_layer_sparsity, linear_layers, weight_mask
from lightning_sparse_rl.validation import UserInputError, parse_seeds

#: Agent ``i`` of a population and the same seed alone differ only by float rounding: the batched products of
#: K agents and of one sum in other orders. Measured after 60 updates with DST: at most 3e-8.
TOLERANCE = 1e-6

pytestmark = pytest.mark.filterwarnings("ignore:layer .* is extremely sparse")


def _sparse_fit(tmp_path: Path, algorithm: str, seeds: list[int], steps: int = 60):
    callbacks = [
        RLProgressReporter(False, False),
        SparsityDistributionCallback(global_sparsity=0.5),
        DynamicSparsityCallback(update_period=20),
    ]
    data = {"fake_features": 0.5, "max_timesteps": steps, "eval_freq": steps, "seeds": seeds, "start_timesteps": 100}
    return short_fit(tmp_path, algorithm, seed=seeds[0], data=data, trainer={"callbacks": callbacks})


@pytest.mark.parametrize("algorithm", ["sac", "td3"])
def test_an_agent_of_a_population_is_the_agent_of_its_seed_alone(tmp_path, algorithm):
    """60 updates with network noise, 50 % masks and 3 DST topology updates: agent 1 of [1, 2, 3] = seed 2 alone."""
    trainer, population, dm = _sparse_fit(tmp_path / "population", algorithm, [1, 2, 3])
    _, alone, _ = _sparse_fit(tmp_path / "alone", algorithm, [2])
    assert find_callback(trainer.callbacks, DynamicSparsityCallback).topology_updates == 3
    assert population.gradient_steps == alone.gradient_steps == 60
    for network, agents in (("actor", 3), ("critic", 3)):
        layers = getattr(population, network).modules()
        single = dict(getattr(alone, network).named_modules())
        for name, layer in zip(dict(getattr(population, network).named_modules()), layers, strict=True):
            if not hasattr(layer, "members"):
                continue
            copies = layer.members // agents  # the critic: Q1 of every agent, then Q2
            for copy in range(copies):
                mine, theirs = copy * agents + 1, copy
                other = copy * agents  # agent 0
                torch.testing.assert_close(
                    layer.weight[mine], single[name].weight[theirs], rtol=0, atol=TOLERANCE, msg=f"{network}.{name}"
                )
                torch.testing.assert_close(layer.bias[mine], single[name].bias[theirs], rtol=0, atol=TOLERANCE)
                assert (layer.weight[mine] - layer.weight[other]).abs().max() > 0.05  # other seeds, other agents
                mask = weight_mask(layer)
                if mask is not None:  # masks and their DST updates: the same, exactly
                    assert torch.equal(mask[mine], weight_mask(single[name])[theirs])
                    assert not torch.equal(mask[mine], mask[other])
    # Each agent its own noise stream, envs and buffer rows.
    assert not torch.equal(dm.buffer.storage[0], dm.buffer.storage[1])
    noise = population.input_features.noise(4)
    assert not torch.equal(noise[0], noise[1])


def test_each_agent_keeps_exact_connection_counts_through_dynamic_sparse_training(tmp_path):
    _, module, _ = _sparse_fit(tmp_path, "td3", [7, 8, 9], steps=100)
    levels = compute_layer_sparsity(0.5, [7, 32, 32, 1], [False, False, True])
    for net in module.sparse_networks():
        if net.family != "critic":
            continue
        for layer, count in zip(net.layers, levels.connections, strict=True):
            mask = weight_mask(layer)
            if mask is not None:
                assert mask[list(net.members)].sum(dim=(1, 2)).tolist() == [count] * 3
                for member in net.members:  # targets as sparse as their online network, agent by agent
                    target = net.target_layers[net.layers.index(layer)]
                    assert int(torch.count_nonzero(target.weight[member])) == count


@pytest.mark.slow
def test_a_population_of_three_learns_pendulum(tmp_path):
    """Every agent clears the single-run test's bar (tests/test_learning.py), trained together in one process."""
    data = {"start_timesteps": 1000, "eval_freq": 1000, "eval_episodes": 5, "batch_size": 128}
    data |= {"max_timesteps": 5000, "seeds": [0, 1, 2]}
    trainer, _, _ = short_fit(tmp_path, "sac", data=data, model={"hidden_width": 64})
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for seed in (0, 1, 2):
        returns = [float(r[f"eval/return/seed_{seed}"]) for r in rows if r.get(f"eval/return/seed_{seed}")]
        assert len(returns) == 5 and returns[0] < -600, (seed, returns)
        assert max(returns) > -250 and returns[-1] > -350, (seed, returns)
    means = [float(r["eval/return"]) for r in rows if r.get("eval/return")]
    assert means[-1] > -350


def _population_args(tmp_path: Path, *extra: str) -> list[str]:
    """``lsrl fit`` of DS-SAC on Pendulum-v1: 200 training steps, 2-episode evaluations at steps 100 and 200."""
    logger = [{"class_path": "lightning_sparse_rl.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path)}}]
    return [
        "fit", "--config", str(REPO / "configs/ds_sac.yaml"),
        *short_run_args(max_timesteps=200, eval_freq=100, eval_episodes=2),
        "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", json.dumps(logger),
        "--trainer.enable_model_summary", "false", "--trainer.enable_progress_bar", "false", *extra,
    ]  # fmt: skip


@dataclass(frozen=True)
class PopulationRun:
    """A finished ``lsrl fit --seeds 4-6`` (:func:`_population_args`) and what the tests below read of it."""

    #: the folder the run was started in (its logger's ``save_dir`` and ``default_root_dir``)
    folder: Path
    cli: SparseRLCLI
    run_dir: Path
    #: the rows of ``evaluations.csv``
    evaluations: list[dict[str, str]]
    #: each seed's return at the last evaluation (step 200)
    final: dict[int, float]
    #: what Lightning's logger printed during the fit
    log: str

    @property
    def last(self) -> Path:
        return self.run_dir / "checkpoints" / "last.ckpt"

    @property
    def best_seed(self) -> int:
        """The seed of the agent with the best return at the last evaluation."""
        return max(self.final, key=self.final.get)


@pytest.fixture(scope="module")
def population_run(tmp_path_factory) -> PopulationRun:
    """One population of three agents (seeds 4, 5, 6) trained by ``lsrl fit``, shared by the tests below."""
    folder = tmp_path_factory.mktemp("population")
    lightning_logger = logging.getLogger("lightning.pytorch")
    handler, level = logging.StreamHandler(io.StringIO()), lightning_logger.level
    lightning_logger.addHandler(handler)
    lightning_logger.setLevel(logging.INFO)
    try:
        cli = build_cli(_population_args(folder, "--seeds", "4-6"))
    finally:
        lightning_logger.removeHandler(handler)
        lightning_logger.setLevel(level)
    run_dir = Path(cli.trainer.log_dir)
    with open(run_dir / "evaluations.csv") as f:
        rows = list(csv.DictReader(f))
    final = {int(r["seed"]): float(r["return"]) for r in rows if r["step"] == "200"}
    return PopulationRun(folder, cli, run_dir, rows, final, handler.stream.getvalue())


def test_lsrl_fit_seeds_trains_a_population_and_writes_each_agents_results(population_run):
    cli, run_dir, final = population_run.cli, population_run.run_dir, population_run.final
    assert cli.datamodule.seeds == [4, 5, 6] and cli.model.seeds == (4, 5, 6)
    rows = population_run.evaluations
    assert [(int(r["step"]), int(r["seed"])) for r in rows] == [(s, k) for s in (100, 200) for k in (4, 5, 6)]
    mean = float(cli.trainer.callback_metrics["eval/return"])
    assert mean == pytest.approx(sum(final.values()) / 3, abs=1e-3)  # what ModelCheckpoint monitors
    assert (run_dir / "sparsity.csv").exists()
    with open(run_dir / "sparsity.csv") as f:
        header = next(csv.reader(f))
    assert "sparsity/actor/global/seed_6" in header
    assert yaml_seeds(run_dir) == "4-6"


def test_a_population_run_logs_its_size_each_agents_episodes_and_evaluation_tables(population_run):
    log = population_run.log
    assert "Population of 3 agents (seeds 4, 5, 6): replay buffers 3 × 1,000,000" in log
    assert "Evaluation over 2 episode(s) of 3 agents at step 200" in log and "95 % interval" in log
    assert "Seed 5  Total Steps:" in log  # the tutorial's episode lines, one per agent


def test_lsrl_export_writes_the_best_agent_by_default_and_any_agent_by_its_seed(population_run, tmp_path, capsys):
    last = population_run.last
    capsys.readouterr()
    run_lsrl(["export", str(last), str(tmp_path / "best.pt")])
    assert f"(the agent of seed {population_run.best_seed})" in capsys.readouterr().out
    run_lsrl(["export", str(last), str(tmp_path / "five.pt"), "--seed", "5"])
    five = load_policy(tmp_path / "five.pt")
    assert five.seed == 5 and load_policy(last, 5).actor.state_dict().keys() == five.actor.state_dict().keys()
    obs = torch.randn(4, 3)
    assert torch.equal(five.act(obs), load_policy(last, 5).act(obs))
    assert not torch.equal(five.act(obs), load_policy(last, 4).act(obs))
    error = one_line_error(capsys, main, ["export", str(last), str(tmp_path / "x.pt"), "--seed", "9"])
    assert error == "error: seed=9 is not an agent of this run: its seeds are [4, 5, 6]"


@pytest.fixture(scope="module")
def packaged_agent(population_run) -> tuple[Path, str]:
    """``scripts/package_agent.py`` on the population run presented as a sweep trial: the agent's folder, its output.

    The trial and the agent's folder are next to the run, in ``population_run.folder``.
    """
    folder = population_run.folder
    trial = folder / "trial"
    trial.mkdir()
    (trial / "version_0").symlink_to(population_run.run_dir)
    (trial / "fit.log").write_text("the trial's log\n")
    agent = folder / "agents" / "pendulum-v1_ds-sac"
    packaged = subprocess.run(
        [sys.executable, str(REPO / "scripts/package_agent.py"), str(trial), str(agent)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return agent, packaged.stdout


def test_package_agent_packages_the_best_agent_with_the_config_retargeted_to_runs_and_the_log(
    population_run, packaged_agent
):
    agent, stdout = packaged_agent
    final, best = population_run.final, population_run.best_seed
    by_seed = ", ".join(f"seed {seed} {final[seed]:.0f}" for seed in (4, 5, 6))
    assert f"returns at step 200: {by_seed}" in stdout and f"(the agent of seed {best})" in stdout
    assert load_policy(agent / "policy.pt").seed == best
    assert str(population_run.folder) not in (agent / "config.yaml").read_text()
    config = yaml.safe_load((agent / "config.yaml").read_text())
    assert "ckpt_path" not in config and config["trainer"]["default_root_dir"] == "runs"
    logger_args = config["trainer"]["logger"][0]["init_args"]
    assert (logger_args["save_dir"], logger_args["name"]) == ("runs", "pendulum_v1_ds_sac")
    assert (agent / "train.log").read_text() == "the trial's log\n"


def test_package_agent_refuses_a_config_with_a_path_it_cannot_move_before_writing_anything(packaged_agent, tmp_path):
    agent, _ = packaged_agent
    config = yaml.safe_load((agent / "config.yaml").read_text())
    odd = tmp_path / "odd_trial"
    (odd / "version_0").mkdir(parents=True)
    config["data"]["env_id"] = str(tmp_path / "my_env.py")
    (odd / "version_0" / "config.yaml").write_text(yaml.safe_dump(config))
    refused = subprocess.run(
        [sys.executable, str(REPO / "scripts/package_agent.py"), str(odd), str(tmp_path / "agents" / "odd")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert refused.returncode == 1 and f"absolute paths that this script does not move: ['{tmp_path}/my_env.py']" in (
        refused.stderr
    )
    assert not (tmp_path / "agents" / "odd").exists()


def test_lsrl_plot_draws_a_populations_agents_as_the_seeds_of_one_group(population_run, tmp_path):
    run_lsrl(["plot", str(population_run.run_dir), "--out", str(tmp_path / "plots")])
    assert (tmp_path / "plots" / "learning_curves.png").stat().st_size > 10_000


def test_lsrl_view_records_one_agent_of_a_population(population_run, tmp_path, capsys):
    run_lsrl(["view", str(population_run.last), "--agent", "6", "--record", str(tmp_path / "six.gif")])
    assert "SAC (agent of seed 6) on Pendulum-v1" in capsys.readouterr().out
    assert (tmp_path / "six.gif").stat().st_size > 10_000


def yaml_seeds(run_dir: Path) -> object:
    """The ``seeds`` recorded in the run's config.yaml."""
    return yaml.safe_load((run_dir / "config.yaml").read_text())["seeds"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("3-1", "seeds='3-1' must be a range (1-8), a comma-separated list (1,3,5) or a YAML list ([1, 2, 3])"),
        ("1,1", "seeds=[1, 1] must be distinct: two agents with one seed would be the same agent"),
        ("a-b", "seeds='a-b' must be a range"),
    ],
)
def test_bad_seeds_are_one_line_errors(tmp_path, capsys, value, message):
    error = one_line_error(capsys, main, _population_args(tmp_path, "--seeds", value))
    assert error.startswith(f"error: {message}"), error


def test_seed_lists_ranges_and_yaml_lists():
    assert parse_seeds("1-8") == list(range(1, 9))
    assert parse_seeds("1,3,5") == [1, 3, 5] and parse_seeds("[2, 4]") == [2, 4]
    assert parse_seeds([7, 9]) == [7, 9] and parse_seeds(3) == [3]
    with pytest.raises(UserInputError, match=r"seed=4294967296 must be in \[0, 4294967296\)"):
        parse_seeds([2**32])


def test_a_population_that_does_not_fit_is_refused_with_its_size(monkeypatch):
    """8 agents × 1e6 rows × (2·17 + 6 + 2) float32 = 1,344,000,000 bytes, with 1 GiB free."""
    monkeypatch.setattr("lightning_sparse_rl.data.replay_buffer.available_memory", lambda device: 2**30)
    with pytest.raises(UserInputError) as refused:
        ReplayBuffer(1_000_000, 17, 6, "cpu", seeds=list(range(8)))
    assert str(refused.value) == (
        "a population of K=8 agents with buffer_size=1,000,000 needs 1,344,000,000 bytes (1.3 GiB) for the replay "
        "buffers on cpu, but only 1,073,741,824 bytes (1.0 GiB) are available: lower --data.buffer_size or the "
        "number of seeds"
    )


class _Dtypes(L.Callback):
    """The dtypes seen inside the updates: layer outputs, losses, parameters and optimizer moments."""

    def __init__(self):
        self.outputs, self.losses = set(), set()

    def on_train_start(self, trainer, pl_module):
        for layer in linear_layers(pl_module):
            layer.register_forward_hook(lambda module, args, out: self.outputs.add(out.dtype))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses |= {loss.dtype for loss in pl_module._last_losses.values()}  # computed under autocast


def test_bf16_mixed_runs_the_products_in_bf16_and_keeps_weights_moments_targets_and_losses_in_fp32(tmp_path):
    dtypes = _Dtypes()
    callbacks = [RLProgressReporter(False, False), dtypes]
    trainer, module, _ = short_fit(
        tmp_path, data={"seeds": [1, 2]}, trainer={"callbacks": callbacks, "precision": "bf16-mixed"}
    )
    assert torch.bfloat16 in dtypes.outputs  # the updates' matrix products (acting stays fp32)
    assert dtypes.losses == {torch.float32}
    assert {p.dtype for p in module.parameters()} == {torch.float32}
    assert {p.dtype for p in module.critic_target.parameters()} == {torch.float32}
    moments = [v for opt in trainer.optimizers for state in opt.state.values() for v in state.values()]
    assert moments and {v.dtype for v in moments if v.dim() > 0} == {torch.float32}
    assert module.gradient_steps == 300 and torch.isfinite(trainer.callback_metrics["eval/return"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_population_trains_on_the_gpu_with_everything_on_the_device(tmp_path):
    callbacks = [
        RLProgressReporter(False, False),
        SparsityDistributionCallback(global_sparsity=0.5),
        DynamicSparsityCallback(update_period=20),
    ]
    data = {"fake_features": 0.5, "max_timesteps": 100, "eval_freq": 100, "seeds": [1, 2, 3]}
    trainer, module, dm = short_fit(
        tmp_path, "sac", seed=1, data=data, trainer={"callbacks": callbacks, "accelerator": "gpu", "devices": 1}
    )
    assert dm.buffer.storage.device.type == "cuda" and module.input_features.noise(1).device.type == "cuda"
    masks = [weight_mask(layer) for layer in linear_layers(module)]
    assert all(mask.device.type == "cuda" for mask in masks if mask is not None)
    assert find_callback(trainer.callbacks, DynamicSparsityCallback).topology_updates == 5
    assert torch.isfinite(trainer.callback_metrics["eval/return"])


def test_a_model_built_for_another_number_of_agents_is_refused(tmp_path):
    with pytest.raises(
        UserInputError, match=r"the DataModule steps 3 agents \(seeds \[1, 2, 3\]\) but the model has 1"
    ):
        short_fit(tmp_path, data={"seeds": [1, 2, 3]}, model={"agent_seeds": [1]})
