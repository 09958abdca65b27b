"""Gradual magnitude pruning: the cubic schedule by hand, exact counts per layer and agent in real fits, resume."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers import short_fit
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_sparse_rl.callbacks import GradualPruningCallback, RLProgressReporter
from lightning_sparse_rl.persistence.checkpoint_io import RunCheckpointIO
from lightning_sparse_rl.sparse import (
    CubicSparsity,
    active_connections,
    compute_layer_sparsity,
    trainable_weight,
    weight_mask,
)

# 0.8 sparsity of 32-unit test networks leaves fewer input connections than neurons: expected here.
pytestmark = pytest.mark.filterwarnings("ignore:layer .* is extremely sparse")

#: A 32×32 layer pruned to 90 % between steps 100 and 200, every 25: s_t = 0.9·(1 − (1 − p)³), p = (t − 100)/100.
#: step → (s_t, connections = floor((1 − s_t)·1024)), worked by hand.
HAND_TABLE = {
    100: (0.0, 1024),  # p = 0: (1 − 0)³ = 1
    125: (0.5203125, 491),  # p = 0.25: 0.75³ = 0.421875, s = 0.9·0.578125; 0.4796875·1024 = 491.2
    150: (0.7875, 217),  # p = 0.5: 0.125, s = 0.9·0.875; 0.2125·1024 = 217.6
    175: (0.8859375, 116),  # p = 0.75: 0.015625, s = 0.9·0.984375; 0.1140625·1024 = 116.8
    200: (0.9, 102),  # p = 1; 0.1·1024 = 102.4
}


def test_cubic_schedule_matches_the_hand_computed_table():
    schedule = CubicSparsity(start_step=100, end_step=200, period=25)
    for step, (sparsity, connections) in HAND_TABLE.items():
        assert schedule.sparsity(0.9, step) == pytest.approx(sparsity, abs=1e-12)
        assert active_connections(schedule.sparsity(0.9, step), 1024) == connections
    assert schedule.sparsity(0.9, 0) == 0.0 and schedule.sparsity(0.9, 99) == 0.0  # dense before t_0
    assert schedule.sparsity(0.9, 10_000) == pytest.approx(0.9)  # final level after t_1
    updates = [t for t in range(0, 400) if schedule.is_update_step(t)]
    assert updates == [100, 125, 150, 175, 200]
    # An end step off the period's grid is still a pruning step, and a positive start level is kept until t_0.
    odd = CubicSparsity(start_step=10, end_step=45, period=20, initial_sparsity=0.5)
    assert [t for t in range(100) if odd.is_update_step(t)] == [10, 30, 45]
    assert odd.sparsity(0.9, 5) == 0.5 and odd.sparsity(0.3, 5) == 0.3  # a layer never exceeds its final level


def test_schedule_arguments_are_checked():
    with pytest.raises(ValueError, match="start_step=5 and end_step=5"):
        CubicSparsity(5, 5)
    with pytest.raises(ValueError, match="period=0"):
        CubicSparsity(0, 10, period=0)
    with pytest.raises(ValueError, match=r"initial_sparsity=1.0 must be in \[0, 1\)"):
        CubicSparsity(0, 10, initial_sparsity=1.0)


class _Record(L.Callback):
    """Per gradient step: each masked layer's mask and weights (placed before or after the pruning callback)."""

    def __init__(self) -> None:
        self.steps: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        layers = dict.fromkeys(layer for net in pl_module.sparse_networks() for layer in net.layers)
        self.steps[pl_module.gradient_steps] = [
            (weight_mask(layer).clone(), layer.weight.detach().clone())
            for layer in layers
            if weight_mask(layer) is not None
        ]


def _gmp(**kwargs) -> GradualPruningCallback:
    args = {"global_sparsity": 0.8, "start_step": 50, "end_step": 250, "update_period": 50} | kwargs
    return GradualPruningCallback(**args)


def _fit(tmp_path, algorithm="sac", gmp=None, before=(), after=(), **kwargs):
    callbacks = [RLProgressReporter(print_episodes=False, print_evaluations=False), *before, gmp or _gmp(), *after]
    trainer = {"callbacks": callbacks} | kwargs.pop("trainer", {})
    return short_fit(tmp_path, algorithm, trainer=trainer, **kwargs)


@pytest.mark.parametrize("algorithm", ["sac", "td3"])
def test_counts_follow_the_schedule_exactly_per_layer_and_agent(tmp_path, algorithm):
    before, after = _Record(), _Record()
    gmp = _gmp()
    _fit(tmp_path, algorithm, gmp, [before], [after], data={"seeds": [1, 2]})
    actor_sizes = [3, 32, 32, 2 if algorithm == "sac" else 1]
    finals = {
        "actor": compute_layer_sparsity(0.8, actor_sizes, [False, False, True]).sparsity,
        "critic": compute_layer_sparsity(0.8, [4, 32, 32, 1], [False, False, True]).sparsity,
    }
    # Masked layers in order: actor input, actor hidden, critic input, critic hidden (Q1 and Q2 are members).
    layer_finals = [(f, 3 * 32 if i == 0 else 1024) for i, f in enumerate(finals["actor"][:2])]
    layer_finals += [(f, 4 * 32 if i == 0 else 1024) for i, f in enumerate(finals["critic"][:2])]
    assert len(after.steps[1]) == 4
    for step in range(1, 301):
        for (mask, _), (final, possible) in zip(after.steps[step], layer_finals, strict=True):
            expected = active_connections(gmp.schedule.sparsity(final, step if step <= 250 else 250), possible)
            if step < 50:
                expected = possible  # dense until t_0
            elif step % 50:
                expected = active_connections(gmp.schedule.sparsity(final, step - step % 50), possible)
            assert mask.sum(dim=(1, 2)).tolist() == [expected] * mask.shape[0], (step, final)
    # What was pruned at step 150 had the smallest magnitudes of what was active just before.
    for (mask_before, weight), (mask_after, _) in zip(before.steps[150], after.steps[150], strict=True):
        for member in range(mask_before.shape[0]):
            pruned = mask_before[member] & ~mask_after[member]
            assert pruned.any()
            magnitude = weight[member].abs()
            assert magnitude[pruned].max() <= magnitude[mask_after[member]].min()
            assert not weight[member][~mask_before[member]].any()
    # Agents (and Q1/Q2) prune their own weights: same counts, different masks.
    mask = after.steps[300][1][0]
    assert not torch.equal(mask[0], mask[1])


def test_pruning_steps_are_logged_with_per_agent_counts(tmp_path):
    trainer, module, _ = _fit(tmp_path, data={"seeds": [1, 2]})
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row.get("prune/actor/connections")]
    assert [int(float(row["step"])) for row in rows] == [49, 99, 149, 199, 249]  # logged at train_step - 1
    finals = compute_layer_sparsity(0.8, [3, 32, 32, 2], [False, False, True])
    schedule = CubicSparsity(50, 250, 50)
    expected = [
        sum(
            active_connections(schedule.sparsity(final, step), possible) if final > 0 else possible
            for final, possible in zip(finals.sparsity, finals.possible, strict=True)
        )
        for step in (50, 100, 150, 200, 250)
    ]
    assert [float(row["prune/actor/connections/seed_1"]) for row in rows] == expected
    assert [float(row["prune/actor/connections/seed_2"]) for row in rows] == expected
    assert float(rows[-1]["prune/steps"]) == 5
    critic = compute_layer_sparsity(0.8, [4, 32, 32, 1], [False, False, True])
    final_global = (finals.global_sparsity + critic.global_sparsity) / 2
    assert float(rows[-1]["prune/sparsity"]) == pytest.approx(final_global)
    assert module.gradient_steps == 300


def test_maskadam_moments_and_shared_targets_follow_the_pruning(tmp_path):
    gmp = _gmp(target_sparsity="shared")
    trainer, module, _ = _fit(tmp_path, "td3", gmp, model={"optimizer": "maskadam"})
    for net in module.sparse_networks():
        for layer, target in zip(net.layers, net.target_layers, strict=True):
            mask = weight_mask(layer)
            if mask is None:
                continue
            assert torch.equal(weight_mask(target), mask)
            state = next(s for opt in trainer.optimizers if (s := opt.state.get(trainable_weight(layer))))
            assert not state["exp_avg"][~mask].any() and not state["exp_avg_sq"][~mask].any()


def test_bf16_mixed_prunes_to_the_same_counts(tmp_path):
    after = _Record()
    _fit(tmp_path, "sac", after=[after], trainer={"precision": "bf16-mixed"})
    finals = compute_layer_sparsity(0.8, [3, 32, 32, 2], [False, False, True]).sparsity
    mask = after.steps[300][1][0]  # actor hidden layer
    assert int(mask[0].sum()) == active_connections(finals[1], 1024)


def _checkpointed(tmp_path: Path, max_timesteps: int, ckpt_path: str | None = None):
    callbacks = [ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)]
    trainer = {"enable_checkpointing": True, "plugins": [RunCheckpointIO()]}
    return _fit(
        tmp_path,
        "sac",
        after=callbacks,
        data={"max_timesteps": max_timesteps, "seeds": [1, 2]},
        model={"optimizer": "maskadam"},
        trainer=trainer,
        ckpt_path=ckpt_path,
    )


def test_resume_mid_schedule_equals_an_uninterrupted_run(tmp_path):
    """300 steps straight == 125 (between pruning steps 100 and 150) + a resumed fit to 300: bit for bit."""
    _, straight, _ = _checkpointed(tmp_path / "straight", 300)
    _checkpointed(tmp_path / "first", 125)
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    trainer, resumed, _ = _checkpointed(tmp_path / "second", 300, ckpt_path=str(last))
    gmp = next(cb for cb in trainer.callbacks if isinstance(cb, GradualPruningCallback))
    assert gmp.pruning_steps == 5 and gmp.checked_step == 300
    for key, value in straight.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, resumed.state_dict()[key]), key
