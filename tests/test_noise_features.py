"""Noise input features, feature permutation and the real-vs-noise connectivity metric (issue 4)."""

import csv
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from helpers import find_callback, short_fit
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_sparse_rl import SAC, TD3, EnvDataModule
from lightning_sparse_rl.callbacks import (
    FeaturePermutationCallback,
    InputConnectivityCallback,
    RLProgressReporter,
)
from lightning_sparse_rl.data.noise_features import (
    InputFeatures,
    NoiseFeatures,
    NoiseSpec,
    estimate_marginal_quantiles,
    total_input_features,
)
from lightning_sparse_rl.sparse import MemberLinear, connections_per_input, real_noise_connectivity, set_mask
from lightning_sparse_rl.types import Transition

# Pendulum-v1: d = 3 real features, 1 action; fake_features 0.5 → D = 6, 0.75 → D = 12.
PENDULUM_NOISY = {"fake_features": 0.75}


@pytest.mark.parametrize(
    ("d", "f", "total"),
    [
        (17, 0.0, 17),
        (17, 0.5, 34),
        (17, 0.8, 85),  # the original's float arithmetic gives 86
        (17, 0.9, 170),  # ... and 171
        (17, 0.95, 340),
        (17, 0.98, 850),
        (17, 0.99, 1700),
        (11, 0.9, 110),
        (376, 0.8, 1880),
        (3, 0.75, 12),
        (3, 0.1, 4),  # ceil(3.33…): at least the requested fraction is noise
    ],
)
def test_input_size_is_the_decimal_ceiling(d, f, total):
    assert total_input_features(d, f) == total
    assert (total - d) / total >= f


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fake_features": 1.0}, r"fake_features=1.0 must be in \[0.0, 1.0\)"),
        ({"fake_features": -0.1}, r"fake_features=-0.1 must be in \[0.0, 1.0\)"),
        ({"fake_features": 0.5, "noise_std": -1.0}, r"noise_std=-1.0 must be > 0"),
        ({"fake_features": 0.5, "noise_std": 0.0}, r"noise_std=0.0 must be > 0"),
        ({"noise_distribution": "laplace"}, r"noise_distribution='laplace' must be one of"),
        ({"noise_mode": "buffer"}, r"noise_mode='buffer' must be one of \('network', 'env'\)"),
    ],
)
def test_bad_noise_values_are_rejected_before_any_env_is_made(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EnvDataModule("not-an-env", **kwargs)


def test_sizes_of_networks_and_buffer_in_network_mode(tmp_path):
    _, module, dm = short_fit(tmp_path, data=PENDULUM_NOISY | {"max_timesteps": 150})
    assert (dm.env_spec.observation_dim, dm.env_spec.real_dim, dm.env_spec.network_noise.count) == (3, 3, 9)
    assert dm.buffer.obs_dim == 3  # only the real features are stored
    assert module.actor.trunk.layers[0].in_features == 12 and module.critic.net.layers[0].in_features == 13


def test_network_mode_draws_fresh_noise_at_every_forward_pass():
    L.seed_everything(0)
    module = SAC(EnvDataModule("Pendulum-v1", **PENDULUM_NOISY).env_spec, hidden_width=16)
    obs = torch.randn(1, 64, 3)
    first, second = module.observe(obs), module.observe(obs)
    assert first.shape == (1, 64, 12)
    assert torch.equal(first[..., :3], obs) and torch.equal(second[..., :3], obs)
    assert (first[..., 3:] != second[..., 3:]).all()
    # Deterministic evaluation actions still see fresh noise (docs/original_code.md §5.3), so they differ slightly.
    assert not torch.equal(module.act(obs, deterministic=True), module.act(obs, deterministic=True))


@pytest.mark.parametrize("distribution", ["gaussian", "uniform"])
def test_noise_has_the_requested_spread(distribution):
    noise = NoiseFeatures(NoiseSpec(50, distribution, std=2.0), [0])(4000)[0]
    assert noise.shape == (4000, 50)
    assert abs(float(noise.std()) - 2.0) < 0.02 and abs(float(noise.mean())) < 0.02
    if distribution == "uniform":
        assert float(noise.abs().max()) <= 2.0 * math.sqrt(3.0)


def test_same_seed_same_noise_and_the_stream_continues_from_a_state_dict():
    spec = NoiseSpec(5, "gaussian")
    a, b, c = NoiseFeatures(spec, [7]), NoiseFeatures(spec, [7]), NoiseFeatures(spec, [8])
    assert torch.equal(a(10), b(10)) and not torch.equal(a(10), c(10))
    restored = NoiseFeatures(spec, [0])
    restored.load_state_dict(a.state_dict())
    assert torch.equal(restored(10), a(10))
    # Agents of a population draw from their own streams: agent 1 of [8, 7] is the stream of 7 alone.
    pair, alone = NoiseFeatures(spec, [8, 7]), NoiseFeatures(spec, [7])
    assert torch.equal(pair(10)[1], alone(10)[0])
    # Two models built after the same seed_everything draw the same noise.
    spec_env = EnvDataModule("Pendulum-v1", **PENDULUM_NOISY).env_spec
    models = []
    for _ in range(2):
        L.seed_everything(3)
        models.append(SAC(spec_env, hidden_width=16))
    obs = torch.zeros(1, 4, 3)
    assert torch.equal(models[0].observe(obs), models[1].observe(obs))


def test_marginals_follow_the_real_features_of_a_random_policy_rollout():
    dm = EnvDataModule("Pendulum-v1", fake_features=0.75, noise_distribution="marginals", marginal_rollout_steps=3000)
    spec = dm.env_spec.network_noise
    quantiles = np.asarray(spec.quantiles)
    assert quantiles.shape == (3, 101)
    # Pendulum's first two features are cos θ and sin θ, in [-1, 1]; the third is θ' in [-8, 8].
    assert quantiles[:2].min() >= -1.0 and quantiles[:2].max() <= 1.0 and quantiles[2].max() <= 8.0
    noise = NoiseFeatures(spec, [0])(20_000)[0].numpy()
    for column in range(spec.count):
        source = quantiles[column % 3]
        assert source[0] <= noise[:, column].min() and noise[:, column].max() <= source[-1]
        for level in (10, 50, 90):
            assert np.quantile(noise[:, column], level / 100) == pytest.approx(source[level], abs=0.05 * np.ptp(source))
    assert estimate_marginal_quantiles(np.arange(10.0).reshape(5, 2))[0][::50] == (0.0, 4.0, 8.0)


def test_env_mode_stores_the_noise_in_the_buffer(tmp_path):
    _, module, dm = short_fit(tmp_path, data=PENDULUM_NOISY | {"noise_mode": "env", "max_timesteps": 150})
    assert dm.env_spec.observation_dim == 12 and dm.env_spec.real_dim == 3 and dm.env_spec.network_noise is None
    assert module.input_features.noise is None and module.actor.trunk.layers[0].in_features == 12
    stored = dm.buffer.split_rows(dm.buffer.storage[0, : dm.buffer.size])
    noise = stored.obs[:, 3:]
    assert (noise != 0).all() and float(noise.std()) == pytest.approx(1.0, abs=0.05)
    # Within an episode, a step's next observation is the next step's observation, noise included.
    assert torch.equal(stored.next_obs[:-1][:50], stored.obs[1:][:50])
    obs = stored.obs[None, :8]
    assert torch.equal(module.observe(obs), obs)  # the networks add nothing: they read the stored noise


def _input_layers(module):
    """Input layers by network: Q1 and Q2 share one (members 0 and 1), named ``critic``."""
    layers = {}
    for net in module.sparse_networks():
        name = net.family
        layers[name] = net.layers[0]
        if net.target_layers is not None:
            layers[f"{name}_target"] = net.target_layers[0]
    return layers


@pytest.mark.parametrize(
    ("algorithm", "networks"),
    [
        (SAC, {"actor", "critic", "critic_target"}),
        (TD3, {"actor", "actor_target", "critic", "critic_target"}),
    ],
)
def test_one_permutation_reaches_actor_critics_and_targets(algorithm, networks):
    L.seed_everything(0)
    module = algorithm(EnvDataModule("Pendulum-v1", fake_features=0.5).env_spec, hidden_width=16)
    permutation = torch.tensor([5, 0, 4, 1, 3, 2])  # column j reads feature permutation[j]
    module.input_features.set_permutation(0, permutation)
    obs = torch.randn(1, 8, 3)
    batch = Transition(obs, torch.zeros(1, 8, 1), torch.zeros(1, 8), obs, torch.zeros(1, 8))  # next_obs == obs
    seen = []
    hooks = [
        layer.register_forward_pre_hook(lambda m, args, name=name: seen.append((name, args[0])))
        for name, layer in _input_layers(module).items()
    ]
    module.critic_loss(batch)
    module.actor_loss(batch)
    module.act(obs, deterministic=False)
    for hook in hooks:
        hook.remove()
    assert {name for name, _ in seen} == networks
    real_positions = [1, 3, 5]  # where permutation[j] < 3
    for name, x in seen:
        assert x.shape[-1] == (7 if "critic" in name else 6), name  # critics: the action is the last input
        for member in x:  # Q1 and Q2 (or the actor alone)
            assert torch.equal(member[:, real_positions], obs[0]), name
    assert module.input_features.real_columns().tolist() == [[False, True, False, True, False, True]]
    with pytest.raises(ValueError, match="not a permutation of range"):
        module.input_features.set_permutation(0, torch.tensor([0, 0, 1, 2, 3, 4]))


def _permutation_fit(tmp_path, max_timesteps, ckpt_path=None, seed=11):
    permutation = FeaturePermutationCallback(
        period=150, empty_buffer=True, refill_timesteps=50, refill_mode="current", seed=seed
    )
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    callbacks = [RLProgressReporter(False, False), permutation, InputConnectivityCallback(), checkpoint]
    trainer, module, dm = short_fit(
        tmp_path,
        data={"fake_features": 0.5, "max_timesteps": max_timesteps, "eval_freq": 100},
        trainer={"callbacks": callbacks, "enable_checkpointing": True},
        ckpt_path=ckpt_path,
    )
    return trainer, module, dm, permutation


def test_permutations_every_period_refill_the_buffer_and_survive_a_checkpoint(tmp_path):
    # Pendulum episodes last 200 steps: changes at the first episode end after steps 150, 300 → 200, 400.
    _, module, dm, callback = _permutation_fit(tmp_path / "first", 400)
    assert len(callback.permutations[0]) == 2 and callback.next_change == [450]
    identity = list(range(6))
    assert len({tuple(p) for p in [*callback.permutations[0], identity]}) == 3
    assert module.input_features.permutation.tolist() == [callback.permutations[0][-1]]
    assert dm.train_steps == 400 and dm.runner.env_steps == 200 + 400 + 2 * 50  # warm-up + training + 2 refills
    assert dm.buffer.size == 50  # emptied and refilled at step 400

    path = tmp_path / "first" / "ckpt" / "last.ckpt"
    reloaded = SAC.load_from_checkpoint(path)
    assert torch.equal(reloaded.input_features.permutation, module.input_features.permutation)
    assert reloaded.input_features.permuted
    obs = torch.randn(1, 4, 3)
    real, permutation = reloaded.input_features.real_columns()[0], reloaded.input_features.permutation[0]
    assert torch.equal(reloaded.observe(obs)[0][:, real], obs[0][:, permutation[real]])

    # Resume to 600 steps with another seed: the history, next change and generator come from the
    # checkpoint, so the third permutation (at step 600) is the one of an uninterrupted run.
    _, resumed, _, resumed_callback = _permutation_fit(tmp_path / "resume", 600, ckpt_path=str(path), seed=99)
    _, _, _, straight = _permutation_fit(tmp_path / "straight", 600)
    assert resumed_callback.permutations[0][:2] == callback.permutations[0]
    assert len(resumed_callback.permutations[0]) == 3 and resumed_callback.permutations == straight.permutations
    assert resumed.input_features.permutation.tolist() == [straight.permutations[0][-1]]


def test_a_loaded_permutation_buffer_takes_effect():
    features = InputFeatures(3, 3, None, [0, 1])
    features.load_state_dict({"permutation": torch.tensor([[2, 0, 1], [0, 1, 2]])})
    obs = torch.tensor([[[10.0, 11.0, 12.0]], [[10.0, 11.0, 12.0]]])
    assert features.permuted and features(obs).tolist() == [[[12.0, 10.0, 11.0]], [[10.0, 11.0, 12.0]]]


def test_connectivity_of_a_hand_built_mask():
    layer = MemberLinear(2, 4, 3)
    layer.reset_parameters("default", [torch.Generator().manual_seed(s) for s in (0, 1)])
    mask = torch.tensor([[1, 0, 1, 0], [1, 0, 1, 1], [1, 0, 0, 0]], dtype=torch.bool).T  # (in, out)
    set_mask(layer, torch.stack([mask, torch.ones_like(mask)]))
    per_input = connections_per_input(layer)
    assert per_input.tolist() == [[3, 0, 2, 1], [3, 3, 3, 3]]
    real = torch.tensor([True, False, False, True])
    assert real_noise_connectivity(per_input[0], real) == (2.0, 1.0)
    assert math.isnan(real_noise_connectivity(per_input[0], torch.ones(4, dtype=torch.bool))[1])
    dense = MemberLinear(1, 4, 3)
    dense.reset_parameters("default", [torch.Generator().manual_seed(2)])
    assert connections_per_input(dense).tolist() == [[3, 3, 3, 3]]  # dense


class _HandMasks(L.Callback):
    """Input-layer masks where input column j has 2·(j+1) connections, and a fixed permutation."""

    def setup(self, trainer, pl_module, stage):
        pl_module.input_features.set_permutation(0, torch.tensor([5, 0, 4, 1, 3, 2]))
        for net in pl_module.sparse_networks():
            layer = net.layers[0]
            mask = torch.zeros_like(layer.weight, dtype=torch.bool)  # (members, in, out)
            for column in range(layer.in_features):
                mask[:, column, : 2 * (column + 1)] = True
            set_mask(layer, mask)


def test_connectivity_metric_on_hand_built_masks_in_a_real_fit(tmp_path):
    callbacks = [RLProgressReporter(False, False), _HandMasks(), InputConnectivityCallback()]
    trainer, _, _ = short_fit(
        tmp_path, data={"fake_features": 0.5, "max_timesteps": 300}, trainer={"callbacks": callbacks}
    )
    run_dir = Path(trainer.log_dir)
    # Real columns are 1, 3, 5 (2·(j+1) = 4, 8, 12); noise columns 0, 2, 4 (2, 6, 10); the critics' action
    # input (column 6, 14 connections) counts as real.
    expected = [8.0, 6.0, 9.5, 6.0, 9.5, 6.0]
    with open(run_dir / "connectivity.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", *(f"{n}/{g}" for n in ("actor", "critic.q1", "critic.q2") for g in ("real", "noise"))]
    assert [int(r[0]) for r in rows[1:]] == [0, 150, 300]  # before training, then at each evaluation
    assert all([float(v) for v in r[1:]] == expected for r in rows[1:])
    assert np.load(run_dir / "connectivity.npy").tolist() == [expected] * 3
    per_feature = np.load(run_dir / "connectivity_per_feature.npz")
    # In original feature order: feature k sits in the column j with permutation[j] == k.
    assert per_feature["actor"].tolist() == [[4, 8, 12, 10, 6, 2]] * 3
    assert per_feature["critic.q1"][0].tolist() == [4, 8, 12, 10, 6, 2, 14]
    assert per_feature["steps"].tolist() == [0, 150, 300] and int(per_feature["real_features"]) == 3
    assert (run_dir / "connectivity_heatmap.png").stat().st_size > 10_000
    with open(run_dir / "metrics.csv") as f:
        logged = [row for row in csv.DictReader(f) if row.get("connectivity/actor/real")]
    assert [float(r["connectivity/actor/real"]) for r in logged] == [8.0] * 3
    assert [float(r["connectivity/critic.q2/noise"]) for r in logged] == [6.0] * 3


def test_dense_networks_connect_every_input_with_their_width(tmp_path):
    callbacks = [RLProgressReporter(False, False), InputConnectivityCallback(save_results=False)]
    trainer, _, _ = short_fit(
        tmp_path, data={"fake_features": 0.5, "max_timesteps": 150}, trainer={"callbacks": callbacks}
    )
    assert float(trainer.callback_metrics["connectivity/actor/real"]) == 32.0
    assert float(trainer.callback_metrics["connectivity/critic.q1/noise"]) == 32.0
    assert not (Path(trainer.log_dir) / "connectivity.csv").exists()


def test_input_features_without_noise_or_permutation_are_the_identity():
    features = InputFeatures(3, 3, None, [0])
    obs = torch.randn(1, 5, 3)
    assert features(obs) is obs and features.input_dim == 3
    with pytest.raises(ValueError, match=r"real_features=4 must be in \[1, observation_dim=3\]"):
        InputFeatures(3, 4, None, [0])


class _Devices(L.Callback):
    def on_validation_epoch_end(self, trainer, pl_module):
        features = pl_module.input_features
        self.devices = {features.permutation.device.type, features.noise(1).device.type}
        self.noise = features.noise(3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_noise_permutation_and_connectivity_run_on_the_gpu_accelerator(tmp_path):
    devices = _Devices()
    callbacks = [
        RLProgressReporter(False, False),
        FeaturePermutationCallback(period=150, empty_buffer=True, refill_timesteps=50),
        InputConnectivityCallback(),
        devices,
        ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True),
    ]
    trainer, _, dm = short_fit(
        tmp_path,
        data={"fake_features": 0.5, "max_timesteps": 500},
        trainer={"callbacks": callbacks, "accelerator": "gpu", "devices": 1, "enable_checkpointing": True},
    )
    assert devices.devices == {"cuda"} and devices.noise.device.type == "cuda"
    assert (
        len(find_callback(callbacks, FeaturePermutationCallback).permutations[0]) == 2
        and dm.buffer.device.type == "cuda"
    )
    assert float(trainer.callback_metrics["connectivity/actor/real"]) == 32.0
    # The CUDA noise stream continues from a checkpoint loaded onto the GPU.
    first, second = (SAC.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt", map_location="cuda") for _ in range(2))
    assert torch.equal(first.input_features.noise(4), second.input_features.noise(4))
