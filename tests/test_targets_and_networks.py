import math

import torch

from lightning_sparse_rl.algorithms.sac import sac_td_target
from lightning_sparse_rl.algorithms.td3 import td3_td_target
from lightning_sparse_rl.networks import (
    DeterministicActor,
    MemberMLP,
    SquashedGaussianActor,
    TwinQCritic,
    init_members_,
    polyak_update,
)
from lightning_sparse_rl.seeding import RandomStream
from lightning_sparse_rl.sparse import MemberLinear


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


def _generators(*seeds):
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def test_polyak_update_is_exact_lerp():
    source, target = MemberLinear(2, 3, 2), MemberLinear(2, 3, 2)
    source.reset_parameters("default", _generators(0, 1))
    target.reset_parameters("default", _generators(2, 3))
    before = [p.clone() for p in target.parameters()]
    polyak_update(target, source, tau=0.25)
    for t, b, s in zip(target.parameters(), before, source.parameters(), strict=True):
        assert torch.allclose(t, 0.75 * b + 0.25 * s)


def test_member_linear_is_one_independent_linear_map_per_member():
    layer = MemberLinear(3, 4, 2)
    layer.reset_parameters("default", _generators(0, 1, 2))
    x = torch.randn(3, 5, 4)
    y = layer(x)
    for m in range(3):
        assert torch.allclose(y[m], x[m] @ layer.weight[m] + layer.bias[m], atol=1e-6)
    assert torch.allclose(layer.forward_members(x[1:], slice(1, 3)), y[1:])
    # Each member's initial weights come from its own generator alone.
    alone = MemberLinear(1, 4, 2)
    alone.reset_parameters("default", _generators(1))
    assert torch.equal(alone.weight[0], layer.weight[1]) and torch.equal(alone.bias[0], layer.bias[1])
    bound = 1 / math.sqrt(4)
    assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound


def test_squashed_gaussian_log_prob_matches_change_of_variables():
    torch.manual_seed(0)
    actor = SquashedGaussianActor(2, 5, 3, 2, 16, "relu", (-2.0, -2.0, -1.0), (2.0, 2.0, 3.0))
    init_members_(actor, "xavier", _generators(0, 1))
    obs = torch.randn(2, 64, 5)
    actor.read_through(lambda o: o, [RandomStream(7), RandomStream(8)])  # member m's noise: its own stream
    action, log_prob = actor.sample(obs)
    mean, log_std = actor(obs)
    eps = torch.stack([torch.randn(64, 3, generator=g) for g in _generators(7, 8)])
    u = mean + log_std.exp() * eps
    normal = torch.distributions.Normal(mean, log_std.exp())
    scale = torch.tensor([2.0, 2.0, 2.0])
    expected = (normal.log_prob(u) - torch.log(scale * (1 - torch.tanh(u) ** 2) + 1e-6)).sum(-1)
    assert log_prob.shape == (2, 64) and torch.allclose(log_prob, expected, atol=1e-4)
    low, high = torch.tensor([-2.0, -2.0, -1.0]), torch.tensor([2.0, 2.0, 3.0])
    assert bool(((action >= low) & (action <= high)).all())
    assert torch.allclose(actor.deterministic(obs), torch.tanh(mean) * scale + torch.tensor([0.0, 0.0, 1.0]))


def test_network_shapes_and_xavier_init():
    critic = TwinQCritic(3, 17, 6, hidden_layers=3, hidden_width=64, activation="tanh")
    q1, q2 = critic(torch.zeros(3, 4, 17), torch.zeros(3, 4, 6))
    assert q1.shape == q2.shape == (3, 4)
    assert [tuple(layer.weight.shape) for layer in critic.net.layers] == [
        (6, 23, 64),
        (6, 64, 64),
        (6, 64, 64),
        (6, 64, 1),
    ]
    actor = SquashedGaussianActor(1, 17, 6, 2, 256, "relu", (-1.0,) * 6, (1.0,) * 6)
    init_members_(actor, "xavier", _generators(0))
    bound = math.sqrt(6 / (17 + 256))
    first = actor.trunk.layers[0]
    assert first.weight.abs().max() <= bound and first.bias.abs().sum() == 0


def test_twin_critics_of_an_agent_share_its_generator_in_the_order_of_a_single_agent():
    """Q1 and Q2 of agent k are members k and K+k; their initial weights equal those of agent k alone."""
    population, alone = TwinQCritic(3, 5, 2, 1, 8, "relu"), TwinQCritic(1, 5, 2, 1, 8, "relu")
    init_members_(population, "default", _generators(10, 11, 12))
    init_members_(alone, "default", _generators(12))
    for layer, single in zip(population.net.layers, alone.net.layers, strict=True):
        assert torch.equal(layer.weight[2], single.weight[0]) and torch.equal(layer.weight[5], single.weight[1])
    obs, action = torch.randn(3, 4, 5), torch.randn(3, 4, 2)
    q1, q2 = population(obs, action)
    q1_alone, q2_alone = alone(obs[2:], action[2:])
    assert torch.allclose(q1[2], q1_alone[0]) and torch.allclose(q2[2], q2_alone[0])
    assert torch.allclose(population.q1_value(obs, action), q1)


def test_networks_read_observations_through_the_connected_input_features():
    """Every network applies its input features in each call, and keeps them out of its saved state."""
    calls = []

    def doubled(obs):
        calls.append(obs.shape)
        return 2 * obs

    obs, action = torch.randn(2, 4, 5), torch.randn(2, 4, 3)
    critic = TwinQCritic(2, 5, 3, 1, 8, "relu")
    actor = DeterministicActor(2, 5, 3, 1, 8, "relu", (-1.0,) * 3, (1.0,) * 3)
    init_members_(critic, "xavier", _generators(0, 1))  # initialised: uninitialised memory may hold NaN
    init_members_(actor, "xavier", _generators(2, 3))
    expected_q, expected_action = critic(2 * obs, action), actor(2 * obs)
    keys = (set(critic.state_dict()), set(actor.state_dict()))
    for network in (critic, actor):
        network.read_through(doubled, [RandomStream(0), RandomStream(1)])
    assert torch.equal(critic(obs, action)[0], expected_q[0]) and torch.equal(actor(obs), expected_action)
    assert torch.equal(critic.q1_value(obs, action), expected_q[0])
    assert len(calls) == 3  # one draw of the input features per network call
    assert (set(critic.state_dict()), set(actor.state_dict())) == keys
    assert set(actor.state_dict()) == {
        "action_scale",
        "action_bias",
        *(f"net.layers.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")),
    }


def test_mlp_rejects_unknown_activation():
    try:
        MemberMLP(1, 3, 1, 2, 8, "srelu")
    except ValueError as error:
        assert "srelu" in str(error) and "relu" in str(error)
    else:
        raise AssertionError("expected ValueError")
