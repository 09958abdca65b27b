"""Sparse SAC/TD3 in real short Lightning fits: masks, zeros under Adam, DST schedule, targets, checkpoints."""

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import find_callback, short_fit
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_sparse_rl import SAC
from lightning_sparse_rl.callbacks import DynamicSparsityCallback, RLProgressReporter, SparsityDistributionCallback
from lightning_sparse_rl.sparse import compute_layer_sparsity, trainable_weight, weight_mask

# 0.8 sparsity of 32-unit test networks leaves fewer input connections than neurons: expected here.
pytestmark = pytest.mark.filterwarnings("ignore:layer .* is extremely sparse")


def _fit(tmp_path, algorithm="sac", sparsity=None, dynamic=None, extra=(), **kwargs):
    callbacks = [RLProgressReporter(print_episodes=False, print_evaluations=False)]
    callbacks.append(SparsityDistributionCallback(**({"global_sparsity": 0.8} | (sparsity or {}))))
    if dynamic is not None:
        callbacks.append(DynamicSparsityCallback(**dynamic))
    trainer = {"callbacks": callbacks + list(extra)} | kwargs.pop("trainer", {})
    return short_fit(tmp_path, algorithm, trainer=trainer, **kwargs)


def _masked(module):
    """(network, layer) for every masked layer, each layer once (Q1 and Q2 share the critic's layers)."""
    pairs = {layer: net for net in module.sparse_networks() for layer in net.layers if weight_mask(layer) is not None}
    return [(net, layer) for layer, net in pairs.items()]


def _masks(module):
    return [weight_mask(m).clone() for _, m in _masked(module)]


def _metric_rows(trainer, key):
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as f:
        return [row for row in csv.DictReader(f) if row.get(key)]


@pytest.mark.parametrize("algorithm", ["sac", "td3"])
def test_masks_have_exact_counts_and_independent_twin_critics(tmp_path, algorithm):
    _, module, _ = _fit(tmp_path, algorithm, data={"max_timesteps": 1})
    actor_sizes = [3, 32, 32, 2 if algorithm == "sac" else 1]  # SAC's output is the mean and log-std heads
    expected = {
        "actor": compute_layer_sparsity(0.8, actor_sizes, [False, False, True]),
        "critic": compute_layer_sparsity(0.8, [4, 32, 32, 1], [False, False, True]),
    }
    for net in module.sparse_networks():
        levels = expected[net.family]
        for layer, sparsity, count in zip(net.layers, levels.sparsity, levels.connections, strict=True):
            for member in net.members:
                assert torch.count_nonzero(layer.bias[member]) > 0  # biases are never masked
                if sparsity == 0:
                    assert weight_mask(layer) is None  # the dense output layer has no mask
                else:
                    assert int(weight_mask(layer)[member].sum()) == count
                    assert int(torch.count_nonzero(layer.weight[member])) <= count
        # Hand check of one level: 4·32 + 32·32 + 32·1 = 1184 weights, 20 % of them = 237 kept (round);
        # minus the dense output leaves 205 spread ∝ (1 − g) over 128 + 1024 → counts 22 and 181.
        if net.family == "critic":
            assert levels.connections == (22, 181, 32)
    first = weight_mask(module.critic.net.layers[0])  # Q1 is member 0, Q2 member 1
    assert not torch.equal(first[0], first[1])


def test_targets_start_as_copies_of_the_masked_online_networks(tmp_path):
    _, module, _ = _fit(tmp_path, "td3", data={"max_timesteps": 1})
    for net in module.sparse_networks():
        for layer, target in zip(net.layers, net.target_layers, strict=True):
            # One update happened, so the targets moved by τ towards the online weights: same support.
            assert torch.equal(target.weight != 0, layer.weight != 0) or weight_mask(layer) is None


class _RecordMasks(L.Callback):
    """After every training batch: masks, and the check that inactive weights are exactly zero."""

    def __init__(self):
        self.history = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        masks = _masks(pl_module)
        for (_, layer), mask in zip(_masked(pl_module), masks, strict=True):
            # The effective weight, after fused optimizer steps too (under plain Adam with DST, pruned positions
            # keep moving with their old moments until the next use sets them back to zero) ...
            assert not layer.weight[~mask].any()
            # ... is the stored parameter itself, zero at the inactive positions.
            assert layer.weight is trainable_weight(layer) and not trainable_weight(layer)[~mask].any()
        self.history.append((pl_module.gradient_steps, masks))


@pytest.mark.parametrize("algorithm", ["sac", "td3"])
def test_inactive_weights_stay_zero_under_adam_with_weight_decay_and_static_masks_never_change(tmp_path, algorithm):
    record = _RecordMasks()
    _, module, _ = _fit(tmp_path, algorithm, model={"weight_decay": 1e-2}, extra=[record])
    assert module.gradient_steps == 300 and len(record.history) == 300
    first = record.history[0][1]
    assert all(torch.equal(a, b) for _, masks in record.history for a, b in zip(first, masks, strict=True))


@pytest.mark.parametrize("optimizer", ["adam", "maskadam"])
def test_topology_updates_happen_exactly_at_the_configured_gradient_steps(tmp_path, optimizer):
    record = _RecordMasks()
    trainer, _, _ = _fit(
        tmp_path, "sac", dynamic={"update_period": 40, "stop_step": 250}, extra=[record], model={"optimizer": optimizer}
    )
    changed_at = [
        step
        for (step, masks), (_, previous) in zip(record.history[1:], record.history, strict=False)
        if any(not torch.equal(a, b) for a, b in zip(masks, previous, strict=True))
    ]
    assert changed_at == [40, 80, 120, 160, 200, 240]  # none after stop_step=250
    rows = _metric_rows(trainer, "dst/topology_updates")
    assert [int(r["step"]) for r in rows] == [39, 79, 119, 159, 199, 239]  # logger step = train steps before
    assert all(int(float(r["dst/critic.q1/connections_changed"])) > 0 for r in rows)
    assert find_callback(trainer.callbacks, DynamicSparsityCallback).topology_updates == 6


def test_fifty_prune_regrow_cycles_keep_exact_counts_in_online_and_target_networks(tmp_path):
    _, module, _ = _fit(tmp_path, "td3", data={"max_timesteps": 250}, dynamic={"update_period": 5})
    levels = compute_layer_sparsity(0.8, [4, 32, 32, 1], [False, False, True])
    for net, layer in _masked(module):
        if net.family == "critic":
            assert weight_mask(layer).sum(dim=(1, 2)).tolist() in ([22, 22], [181, 181])
    assert levels.connections[:2] == (22, 181)
    for net in module.sparse_networks():  # target networks: as sparse as their online network, member by member
        for layer, target in zip(net.layers, net.target_layers, strict=True):
            if weight_mask(layer) is not None:
                for member in net.members:
                    assert int(torch.count_nonzero(target.weight[member])) == int(weight_mask(layer)[member].sum())
                assert weight_mask(target) is None


def test_maskadam_keeps_moments_zero_on_inactive_positions_and_adam_does_not(tmp_path):
    moments = {}
    for optimizer in ("adam", "maskadam"):
        trainer, module, _ = _fit(
            tmp_path / optimizer, "sac", dynamic={"update_period": 20}, model={"optimizer": optimizer}
        )
        inactive = 0.0
        for _, layer in _masked(module):
            param = trainable_weight(layer)
            state = next(opt.state[param] for opt in trainer.optimizers if param in opt.state)
            mask = weight_mask(layer)
            inactive += float(state["exp_avg"][~mask].abs().sum() + state["exp_avg_sq"][~mask].abs().sum())
        moments[optimizer] = inactive
    assert moments["maskadam"] == 0.0  # regrown connections start with fresh moments
    assert moments["adam"] > 0.0  # plain Adam keeps "ghost" moments of pruned connections


def test_shared_target_masks_follow_the_online_masks(tmp_path):
    _, module, _ = _fit(
        tmp_path, "td3", sparsity={"target_sparsity": "shared"}, dynamic={"update_period": 30, "growth": "gradient"}
    )
    for net in module.sparse_networks():
        for layer, target in zip(net.layers, net.target_layers, strict=True):
            if weight_mask(layer) is not None:
                assert torch.equal(weight_mask(layer), weight_mask(target))
                assert not target.weight[~weight_mask(layer)].any()


def test_new_weight_init_options_give_nonzero_regrown_weights(tmp_path):
    seen = {}

    class AfterUpdate(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if pl_module.gradient_steps == 50:
                seen["weights"] = [layer.weight.detach().clone() for _, layer in _masked(pl_module)]

    before = _RecordMasks()
    _fit(tmp_path, "sac", dynamic={"update_period": 50, "new_weight_init": "xavier"}, extra=[AfterUpdate(), before])
    masks_49, masks_50 = before.history[48][1], before.history[49][1]
    grown_values = torch.cat([w[m50 & ~m49] for w, m49, m50 in zip(seen["weights"], masks_49, masks_50, strict=True)])
    assert grown_values.numel() > 0 and bool((grown_values != 0).all())
    assert float(grown_values.abs().max()) <= (6 / (32 + 32)) ** 0.5 + 1e-6


def test_masks_and_callback_state_round_trip_through_a_checkpoint(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    dynamic = {"update_period": 50, "schedule": "cosine", "stop_step": 1000}
    on = {"enable_checkpointing": True}
    _, module, _ = _fit(tmp_path, "sac", dynamic=dynamic, extra=[checkpoint], trainer=on)
    path = tmp_path / "ckpt" / "last.ckpt"
    reloaded = SAC.load_from_checkpoint(path)  # a fresh dense SAC: the masks are registered from the checkpoint
    for a, b in zip(_masks(reloaded), _masks(module), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(reloaded.state_dict().values(), module.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # tensors, and extra state (plain data)
    state = torch.load(path, weights_only=True)["callbacks"]
    dst_state = next(v for k, v in state.items() if k.startswith("DynamicSparsityCallback"))
    assert dst_state["topology_updates"] == 6 and dst_state["last_update_step"] == 300

    # Resume for another 100 steps: masks come from the checkpoint, counters continue.
    saved_masks = _masks(module)
    L.seed_everything(5)
    callbacks = [
        RLProgressReporter(False, False),
        SparsityDistributionCallback(global_sparsity=0.8, seed=12345),  # different seed: ignored on resume
        DynamicSparsityCallback(**dynamic),
    ]

    class FirstBatch(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if not hasattr(self, "masks"):
                self.masks = _masks(pl_module)

    first = FirstBatch()
    _, resumed_module, _ = short_fit(
        tmp_path / "resume",
        "sac",
        data={"max_timesteps": 400},
        trainer={"callbacks": [*callbacks, first]},
        ckpt_path=str(path),
    )
    assert all(torch.equal(a, b) for a, b in zip(first.masks, saved_masks, strict=True))
    assert (
        resumed_module.gradient_steps == 400 and find_callback(callbacks, DynamicSparsityCallback).topology_updates == 8
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_dynamic_sparsity_runs_on_the_gpu_accelerator(tmp_path):
    trainer, module, _ = _fit(
        tmp_path,
        "sac",
        dynamic={"update_period": 50, "growth": "gradient"},
        trainer={"accelerator": "gpu", "devices": 1},
    )
    assert find_callback(trainer.callbacks, DynamicSparsityCallback).topology_updates == 6
    for net, layer in _masked(module):
        assert weight_mask(layer).device.type == "cuda"
        if net.family == "critic":
            assert weight_mask(layer).sum(dim=(1, 2)).tolist() in ([22, 22], [181, 181])  # exact, as on the CPU
