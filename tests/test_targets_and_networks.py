import math

import torch
from torch import nn

from lightning_sparse_rl.algorithms.sac import sac_td_target
from lightning_sparse_rl.algorithms.td3 import td3_td_target
from lightning_sparse_rl.networks import SquashedGaussianActor, TwinQCritic, mlp, polyak_update


def test_sac_target_bootstraps_on_truncation_not_on_termination():
    reward = torch.tensor([1.0, 1.0])
    terminated = torch.tensor([0.0, 1.0])  # first: time-limit truncation (stored as not terminated)
    q1, q2 = torch.tensor([10.0, 10.0]), torch.tensor([8.0, 8.0])
    log_prob = torch.tensor([-2.0, -2.0])
    y = sac_td_target(reward, terminated, q1, q2, log_prob, alpha=0.5, discount=0.9)
    # 1 + 0.9 * (min(10, 8) - 0.5 * (-2)) = 1 + 0.9 * 9 = 9.1 ; terminal: r only.
    assert torch.allclose(y, torch.tensor([9.1, 1.0]))


def test_td3_target_uses_min_and_stops_at_termination():
    y = td3_td_target(
        torch.tensor([0.5, 0.5]),
        torch.tensor([0.0, 1.0]),
        torch.tensor([3.0, 3.0]),
        torch.tensor([4.0, 4.0]),
        discount=0.99,
    )
    assert torch.allclose(y, torch.tensor([0.5 + 0.99 * 3.0, 0.5]))


def test_polyak_update_is_exact_lerp():
    source, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.clone() for p in target.parameters()]
    polyak_update(target, source, tau=0.25)
    for t, b, s in zip(target.parameters(), before, source.parameters(), strict=True):
        assert torch.allclose(t, 0.75 * b + 0.25 * s)


def test_squashed_gaussian_log_prob_matches_change_of_variables():
    torch.manual_seed(0)
    actor = SquashedGaussianActor(5, 3, 2, 16, "relu", (-2.0, -2.0, -1.0), (2.0, 2.0, 3.0))
    obs = torch.randn(64, 5)
    torch.manual_seed(1)
    action, log_prob = actor.sample(obs)
    torch.manual_seed(1)
    mean, log_std = actor(obs)
    u = mean + log_std.exp() * torch.randn_like(mean)
    normal = torch.distributions.Normal(mean, log_std.exp())
    scale = torch.tensor([2.0, 2.0, 2.0])
    expected = (normal.log_prob(u) - torch.log(scale * (1 - torch.tanh(u) ** 2) + 1e-6)).sum(-1)
    assert torch.allclose(log_prob, expected, atol=1e-4)
    low, high = torch.tensor([-2.0, -2.0, -1.0]), torch.tensor([2.0, 2.0, 3.0])
    assert bool(((action >= low) & (action <= high)).all())
    assert torch.allclose(actor.deterministic(obs), torch.tanh(mean) * scale + torch.tensor([0.0, 0.0, 1.0]))


def test_network_shapes_and_xavier_init():
    critic = TwinQCritic(17, 6, hidden_layers=3, hidden_width=64, activation="tanh")
    q1, q2 = critic(torch.zeros(4, 17), torch.zeros(4, 6))
    assert q1.shape == q2.shape == (4,)
    shapes = [tuple(m.weight.shape) for m in critic.q1 if isinstance(m, nn.Linear)]
    assert shapes == [(64, 23), (64, 64), (64, 64), (1, 64)]
    actor = SquashedGaussianActor(17, 6, 2, 256, "relu", (-1.0,) * 6, (1.0,) * 6)
    bound = math.sqrt(6 / (17 + 256))
    first = actor.trunk[0]
    assert first.weight.abs().max() <= bound and first.bias.abs().sum() == 0


def test_mlp_rejects_unknown_activation():
    try:
        mlp(3, 1, 2, 8, "srelu")
    except ValueError as error:
        assert "srelu" in str(error) and "relu" in str(error)
    else:
        raise AssertionError("expected ValueError")
