import csv

import torch
from helpers import short_fit

from lightning_sparse_rl.data.schedule import PlannedStep, TrainingSchedule
from lightning_sparse_rl.loggers import WandbLogger


def _rows(trainer):
    with open(f"{trainer.logger.log_dir}/metrics.csv") as f:
        return list(csv.DictReader(f))


def test_env_step_budget_epochs_and_counters(tmp_path):
    trainer, module, dm = short_fit(tmp_path, data={"max_timesteps": 320, "eval_freq": 150, "updates_per_step": 2})
    assert dm.train_steps == 320 and dm.runner.env_steps == 200 + 320
    assert module.gradient_steps == 640
    # SAC steps 2 optimizers per update: Lightning's global_step is not an env-step counter.
    assert trainer.global_step == 2 * 640
    evals = [r for r in _rows(trainer) if r["eval/return"]]
    assert [int(r["step"]) for r in evals] == [149, 299, 319]  # after 150, 300 and the last 20 steps


def test_the_schedule_plans_each_step_by_hand():
    """5 steps in epochs of 2, 2 updates per step, 3-step windows from update 3 on, buffer checks every 2 steps."""
    schedule = TrainingSchedule(5, 2, updates_per_step=2, n_step=3, n_step_delay=3, buffer_check_interval=2)
    epochs = []
    while not schedule.finished:
        epochs.append([schedule.advance() for _ in range(schedule.steps_this_epoch())])
    assert epochs == [
        [PlannedStep(1, (1, 1), False, False), PlannedStep(2, (1, 3), True, False)],  # updates 0-1, 2-3
        [PlannedStep(3, (3, 3), False, False), PlannedStep(4, (3, 3), True, False)],
        [PlannedStep(5, (3, 3), False, True)],  # the short last epoch; its step ends the fit
    ]
    assert schedule.train_steps == 5 and schedule.steps_this_epoch() == 0


def test_td3_delays_actor_updates(tmp_path):
    trainer, module, _ = short_fit(tmp_path, "td3", model={"policy_freq": 2})
    assert module.gradient_steps == 300
    assert trainer.global_step == 300 + 150  # 300 critic steps, 150 actor steps


def test_losses_and_episodes_are_logged_once(tmp_path):
    trainer, _, dm = short_fit(tmp_path, data={"max_timesteps": 450, "eval_freq": 450})
    rows = _rows(trainer)
    episodes = [r for r in rows if r.get("train/episode_return")]
    assert [len(episodes)] == dm.runner.episodes == [2]  # Pendulum: 200-step episodes
    losses = [r for r in rows if r.get("train/critic_loss")]
    assert [int(r["step"]) for r in losses] == list(range(49, 450, 50))
    assert all(float(r["perf/env_steps_per_s"]) > 0 for r in losses[1:])


def test_target_critic_follows_tau(tmp_path):
    _, copied, _ = short_fit(tmp_path, model={"tau": 1.0})
    for t, s in zip(copied.critic_target.parameters(), copied.critic.parameters(), strict=True):
        assert torch.equal(t, s)
    _, frozen, _ = short_fit(tmp_path, model={"tau": 0.0})
    assert not all(
        torch.equal(t, s) for t, s in zip(frozen.critic_target.parameters(), frozen.critic.parameters(), strict=True)
    )


def test_target_update_interval(tmp_path):
    _, module, _ = short_fit(tmp_path, model={"tau": 1.0, "target_update_interval": 7})
    # 300 updates; the last target copy happened at update index 294 (a multiple of 7), six updates ago.
    assert not torch.equal(module.critic_target.net.layers[0].weight, module.critic.net.layers[0].weight)


def test_automatic_entropy_tuning_moves_alpha(tmp_path):
    _, module, _ = short_fit(tmp_path, model={"automatic_entropy_tuning": True})
    assert module.log_alpha is not None
    # log α starts at 0; the initial policy's entropy is above the target −|A|, so α falls.
    assert float(module.alpha) < 0.9


def test_fixed_alpha_has_no_alpha_optimizer(tmp_path):
    trainer, module, _ = short_fit(tmp_path, model={"temperature": 0.1})
    assert module.alpha == 0.1 and len(trainer.optimizers) == 2


def test_same_seed_same_losses_and_parameters(tmp_path):
    runs = [short_fit(tmp_path / str(i), seed=seed) for i, seed in enumerate([5, 5, 6])]
    losses = [[r["train/critic_loss"] for r in _rows(t) if r.get("train/critic_loss")] for t, _, _ in runs]
    assert losses[0] == losses[1] and losses[0] != losses[2]
    params = [torch.cat([p.flatten() for p in m.parameters()]) for _, m, _ in runs]
    assert torch.equal(params[0], params[1]) and not torch.equal(params[0], params[2])


def test_wandb_disabled_needs_no_account(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    logger = WandbLogger(mode="disabled", save_dir=str(tmp_path / "wandb"))
    trainer, _, dm = short_fit(tmp_path, trainer={"logger": logger})
    assert dm.train_steps == 300 and trainer.state.finished


def test_wandb_online_without_credentials_fails_early(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    try:
        WandbLogger(mode="online", save_dir=str(tmp_path))
    except ValueError as error:
        assert "wandb login" in str(error) and "disabled" in str(error)
    else:
        raise AssertionError("expected ValueError")
