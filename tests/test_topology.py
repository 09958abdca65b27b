"""Pure mask maths: masked layers, exact counts, magnitude pruning with ties, SET/RigL regrowth, ζ schedules."""

import math
from copy import deepcopy

import pytest
import torch
from torch.nn.utils import parametrize

from lightning_sparse_rl.networks import polyak_update
from lightning_sparse_rl.sparse import (
    ConstantDrop,
    CosineDrop,
    GradientGrowth,
    LayerState,
    MagnitudePrune,
    MemberLinear,
    RandomGrowth,
    TargetBudget,
    mask_changes,
    random_mask,
    set_mask,
    trainable_weight,
    weight_mask,
    zero_smallest_beyond_,
)


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def prune_and_regrow(weight, mask, zeta, growth, generator, dense_grad=None):
    """SET (``random``) or RigL (``gradient``) through the criteria contracts, as the callback runs them."""
    from lightning_sparse_rl.sparse import prune_and_regrow as update

    criterion = RandomGrowth() if growth == "random" else GradientGrowth()
    return update(LayerState(weight, mask, 0, generator, dense_grad), zeta, MagnitudePrune(), criterion)


def _masked_layer():
    layer = MemberLinear(2, 5, 4)
    layer.reset_parameters("xavier", [_generator(1), _generator(2)])
    mask = torch.rand(2, 5, 4, generator=_generator(3)) < 0.5
    set_mask(layer, mask)
    return layer, mask


def test_mask_changes_counts_masks_made_set_and_loaded_but_not_uses():
    """What the target budget's memory is keyed on: any mask made, changed or loaded moves it on, a pass does not."""
    before = mask_changes()
    layer, mask = _masked_layer()  # made
    assert mask_changes() == before + 1
    layer(torch.randn(2, 3, 5, generator=_generator(4)))
    assert mask_changes() == before + 1
    set_mask(layer, ~mask)
    layer.load_state_dict(layer.state_dict())
    assert mask_changes() == before + 3


def test_a_masked_layer_uses_its_stored_weight_set_to_zero_at_inactive_positions_after_any_write():
    """No product per pass: the stored weight is the effective one, zeroed in place at the first use after a
    write (an optimizer step that moved inactive weights, an older checkpoint, a copy)."""
    layer, mask = _masked_layer()
    x = torch.randn(2, 3, 5, generator=_generator(4))
    stored = trainable_weight(layer)
    with torch.no_grad():
        stored.add_(1.0)  # every entry moves, the inactive ones too
    expected = torch.baddbmm(layer.bias.unsqueeze(1), x, (stored * mask).detach())
    assert torch.equal(layer(x), expected)
    assert layer.weight is stored and not stored[~mask].any() and bool(stored[mask].all())
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    state["parametrizations.weight.original"] += 1.0  # a checkpoint whose stored weights are non-zero outside
    fresh, _ = _masked_layer()
    fresh.load_state_dict(state)
    with torch.inference_mode():
        assert torch.equal(
            fresh(x), torch.baddbmm(layer.bias.unsqueeze(1), x, state["parametrizations.weight.original"] * mask)
        )
    assert not trainable_weight(fresh)[~mask].any()


class _Doubled(torch.nn.Module):
    def forward(self, weight):
        return 2 * weight


def test_a_layer_reads_a_mask_straight_from_its_stored_weight_and_any_other_chain_through_parametrize():
    """The shortcut past ``parametrize``'s property gives the tensor the property gives; a chain with another
    parametrization (after the mask, or alone) is read through the property."""
    layer, mask = _masked_layer()
    x = torch.randn(2, 3, 5, generator=_generator(4))
    assert layer.effective_weight() is layer.weight is trainable_weight(layer)
    with parametrize.cached():
        assert layer.effective_weight() is layer.weight
    parametrize.register_parametrization(layer, "weight", _Doubled())  # mask, then doubled
    with torch.no_grad():
        trainable_weight(layer).add_(1.0)
    expected = torch.baddbmm(layer.bias.unsqueeze(1), x, 2 * (trainable_weight(layer) * mask).detach())
    assert torch.equal(layer(x), expected)
    alone = _member_layer(2, 5, 4, 7)
    parametrize.register_parametrization(alone, "weight", _Doubled())
    stored = alone.parametrizations.weight.original.detach()
    assert torch.equal(alone(x), torch.baddbmm(alone.bias.unsqueeze(1), x, 2 * stored))
    bias_only = _member_layer(2, 5, 4, 8)  # parametrizations, none of them on the weight
    parametrize.register_parametrization(bias_only, "bias", _Doubled())
    doubled_bias = 2 * bias_only.parametrizations.bias.original.detach()
    assert torch.equal(bias_only(x), torch.baddbmm(doubled_bias.unsqueeze(1), x, bias_only.weight))


def test_a_masked_layer_accumulates_masked_gradients_and_gives_dense_ones_on_request():
    """``.grad`` is zero at inactive positions (also in a deep copy); ``torch.autograd.grad`` of the weight is
    the dense gradient (RigL's growth criterion)."""
    layer, mask = _masked_layer()
    x = torch.randn(2, 3, 5, generator=_generator(4))
    layer(x).pow(2).sum().backward()
    grad = trainable_weight(layer).grad
    assert not grad[~mask].any() and bool(grad[mask].all())
    copied = deepcopy(layer)
    copied(x).pow(2).sum().backward()
    assert torch.equal(trainable_weight(copied).grad, grad)
    with parametrize.cached():
        (dense,) = torch.autograd.grad(layer(x).pow(2).sum(), [layer.weight])
    assert bool(dense[~mask].all()) and torch.equal(dense[mask], grad[mask])


def test_random_mask_has_exactly_the_requested_count_and_differs_by_seed():
    a = random_mask((64, 23), 300, _generator(0))
    b = random_mask((64, 23), 300, _generator(1))
    assert a.dtype == torch.bool and a.shape == (64, 23)
    assert int(a.sum()) == int(b.sum()) == 300 and not torch.equal(a, b)


def test_random_mask_rejects_impossible_counts():
    with pytest.raises(ValueError, match=r"n_active=10 must be in \[0, 6\]"):
        random_mask((2, 3), 10, _generator())


def test_prune_removes_the_smallest_magnitudes_and_regrows_the_same_number():
    weight = torch.tensor([[0.5, -0.1, 0.0, 2.0], [-0.3, 0.0, 0.05, 1.0]])
    mask = torch.tensor([[True, True, False, True], [True, False, True, True]])
    new_mask, pruned, grown = prune_and_regrow(weight, mask, 0.4, "random", _generator())
    # k = 6 active, floor(0.4 * 6) = 2 pruned: |0.05| and |-0.1|, the two smallest active magnitudes.
    assert pruned.nonzero().tolist() == [[0, 1], [1, 2]]
    assert int(grown.sum()) == 2 and int(new_mask.sum()) == 6
    assert not (grown & mask & ~pruned).any()  # growth only among positions inactive after pruning


def test_magnitude_ties_are_broken_by_position():
    weight = torch.ones(3, 3)
    mask = torch.ones(3, 3, dtype=torch.bool)
    _, pruned, _ = prune_and_regrow(weight, mask, 0.34, "random", _generator())  # floor(0.34 * 9) = 3
    assert pruned.flatten().nonzero().flatten().tolist() == [0, 1, 2]


def test_fifty_cycles_keep_the_exact_count_and_change_the_topology():
    gen = _generator(3)
    mask = random_mask((256, 17), 1000, gen)
    start = mask.clone()
    for _ in range(50):
        weight = torch.randn(256, 17, generator=gen) * mask
        mask, pruned, grown = prune_and_regrow(weight, mask, 0.05, "random", gen)
        assert int(mask.sum()) == 1000 and int(pruned.sum()) == int(grown.sum()) == 50
    assert int((mask & ~start).sum()) > 500  # most of the topology has been explored


def test_rigl_grows_where_the_dense_gradient_is_largest():
    weight = torch.tensor([[1.0, 2.0, 0.0, 0.0], [3.0, 0.0, 0.0, 4.0]])
    mask = weight != 0
    grad = torch.tensor([[9.0, 9.0, 0.1, -5.0], [9.0, 0.2, 0.3, 9.0]])
    _, pruned, grown = prune_and_regrow(weight, mask, 0.5, "gradient", _generator(), dense_grad=grad)
    # Prune the 2 smallest (|1|, |2|). Inactive candidates and |grad|: (0,0) 9 and (0,1) 9 (just pruned),
    # (0,2) 0.1, (0,3) 5, (1,1) 0.2, (1,2) 0.3.
    assert pruned.nonzero().tolist() == [[0, 0], [0, 1]]
    assert grown.nonzero().tolist() == [[0, 0], [0, 1]]
    grad[0, :2] = 0.0
    _, _, grown = prune_and_regrow(weight, mask, 0.5, "gradient", _generator(), dense_grad=grad)
    assert grown.nonzero().tolist() == [[0, 3], [1, 2]]


def test_gradient_growth_needs_a_gradient():
    mask = torch.ones(2, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="dense gradient"):
        prune_and_regrow(torch.ones(2, 2), mask, 0.5, "gradient", _generator())


def test_cosine_drop_fraction_values():
    cosine = CosineDrop(0.1, 1000)
    assert cosine.drop_fraction(0) == pytest.approx(0.1)
    assert cosine.drop_fraction(250) == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))
    assert cosine.drop_fraction(500) == pytest.approx(0.05)
    assert cosine.drop_fraction(1000) == pytest.approx(0.0)
    assert cosine.drop_fraction(5000) == pytest.approx(0.0)
    assert ConstantDrop(0.1).drop_fraction(5000) == 0.1
    with pytest.raises(ValueError, match="end step"):
        CosineDrop(0.1, 0)


def _zero_layer(members: int, in_features: int, out_features: int) -> MemberLinear:
    """A layer with zero weights: a new MemberLinear's are uninitialised memory, which can hold NaN (and a Polyak
    step at τ = 0 from a NaN source is NaN: 0·NaN)."""
    layer = MemberLinear(members, in_features, out_features)
    with torch.no_grad():
        layer.weight.zero_()
    return layer


def _member_layer(members: int, in_features: int, out_features: int, seed: int) -> MemberLinear:
    layer = MemberLinear(members, in_features, out_features)
    layer.reset_parameters("default", [_generator(seed + m) for m in range(members)])
    return layer


def test_polyak_update_keeps_an_unmasked_target_as_sparse_as_its_masked_source():
    gen = _generator(11)
    source, target = _member_layer(2, 16, 8, 1), _member_layer(2, 16, 8, 5)
    set_mask(source, torch.stack([random_mask((16, 8), 40, gen), random_mask((16, 8), 40, gen)]))
    with torch.no_grad():
        target.weight.copy_(source.weight)
    for _ in range(3):
        polyak_update(target, source, 0.1)
        assert torch.equal(target.weight != 0, weight_mask(source))  # same pattern, no pruning needed
    mask = weight_mask(source)
    new_mask, _, grown = prune_and_regrow(source.weight[1], mask[1], 0.25, "random", gen)
    mask[1] = new_mask
    set_mask(source, mask)  # a topology update of member 1: its target must be re-sparsified from now on
    with torch.no_grad():
        trainable_weight(source)[1][grown] = 1.0  # regrown connections with large weights
    polyak_update(target, source, 0.1)
    assert torch.count_nonzero(target.weight, dim=(1, 2)).tolist() == [40, 40]
    for _ in range(200):
        polyak_update(target, source, 0.1)
    assert torch.equal(target.weight != 0, weight_mask(source))  # the pattern caught up with the source


def test_a_target_with_its_sources_mask_keeps_its_zeros_through_polyak_steps_and_other_masks_are_zeroed_again():
    """Shared target masks (RLx2): the lerp of two weights zero outside one mask is zero there, so the target is
    not written again at its next use. A target with another mask, or written since it was last zeroed, is."""
    gen = _generator(12)
    mask = torch.stack([random_mask((16, 8), 40, gen), random_mask((16, 8), 40, gen)])
    fewer = mask.clone()
    fewer[0, mask[0].nonzero()[0].tolist()[0]] = False  # one of the source's connections fewer
    source, shared, other = _member_layer(2, 16, 8, 1), _member_layer(2, 16, 8, 5), _member_layer(2, 16, 8, 9)
    set_mask(source, mask)
    set_mask(shared, mask.clone())
    set_mask(other, fewer)
    for layer in (source, shared, other):
        with torch.no_grad():
            trainable_weight(layer).add_(1.0)  # a write moving the inactive weights too (as Adam's old moments do)
    for step in range(3):
        # the stored weights, not read through the masks (which would zero them first)
        stored = {
            name: trainable_weight(layer).detach() for name, layer in [("s", source), ("t", shared), ("o", other)]
        }
        expected_shared = torch.lerp(stored["t"] * mask, stored["s"] * mask, 0.1)
        expected_other = torch.lerp(stored["o"] * fewer, stored["s"] * mask, 0.1) * fewer
        polyak_update(shared, source, 0.1)
        polyak_update(other, source, 0.1)
        version = trainable_weight(shared)._version
        assert torch.equal(shared.weight, expected_shared) and not shared.weight[~mask].any()
        # step 0: written since last zeroed (the add above), zeroed again; then kept zero: nothing written at its use
        assert trainable_weight(shared)._version == version + (step == 0)
        version = trainable_weight(other)._version
        assert torch.equal(other.weight, expected_other) and not other.weight[~fewer].any()
        assert trainable_weight(other)._version == version + 1  # zeroed again: the source has a connection more
        with torch.no_grad():
            trainable_weight(source).add_(1.0)  # the source's next optimizer step
    set_mask(source, fewer)  # a topology update: the masks are compared again, and differ
    polyak_update(shared, source, 0.1)
    version = trainable_weight(shared)._version
    assert not shared.weight[~mask].any() and trainable_weight(shared)._version == version + 1


def _zero_smallest_by_position_(weight, count):
    """The rule's definition: zero the ``count`` smallest non-zeros, the lower row-major index first among ties."""
    flat = weight.view(-1)
    magnitude = flat.abs().masked_fill(flat == 0, math.inf)
    flat[torch.sort(magnitude, stable=True).indices[: max(count, 0)]] = 0


def _masked_pair(shapes, counts, dtype, gen, seed):
    """A masked online network of member layers and an unmasked target copy of its trainable weights."""
    source = torch.nn.Sequential(*(_member_layer(3, i, o, seed + k) for k, (i, o) in enumerate(shapes))).to(dtype)
    target = torch.nn.Sequential(*(_member_layer(3, i, o, seed) for i, o in shapes)).to(dtype)
    for layer, (i, o), n in zip(source, shapes, counts, strict=True):
        set_mask(layer, torch.stack([random_mask((i, o), c, gen) for c in n]))
    for online, copy in zip(source, target, strict=True):
        with torch.no_grad():
            copy.weight.copy_(trainable_weight(online))
    return source, target, [layer.weight.detach().clone() for layer in target]


@pytest.mark.parametrize(
    ("dtype", "tau"), [(torch.float32, 0.2), (torch.bfloat16, 0.2), (torch.float64, 0.2), (torch.float32, 0.01)]
)
def test_target_budget_equals_the_full_search_at_every_step_through_topology_updates_and_outside_writes(dtype, tau):
    """The rule reads only the masks and the leftovers outside them, for all layers of a network at once; a
    search of every entry must agree at every step. Two networks share one budget, the second updated every
    other step (as TD3's actor); bf16 has many equal magnitudes, so ties are exercised too (float64 is ranked by
    two sorts, the others by one on segment and bits); a small τ gives
    the slow catch-up of a real run (target copies of old weights shrink slowly, new ones enter small). Writes
    from outside and a move of a target's storage must be seen."""
    gen = _generator(21)
    counts = [[(30, 60, 90), (10, 20, 5)], [(40, 25, 70)]]
    networks = [
        _masked_pair([(20, 12), (12, 7)], counts[0], dtype, gen, 2),
        _masked_pair([(9, 16)], counts[1], dtype, gen, 40),
    ]
    budget = TargetBudget()
    for step in range(120):
        for index, (source, target, references) in enumerate(networks):
            if index == 1 and step % 2:
                continue
            if step % 25 == 10:  # a topology update of every member; regrown weights from tiny to large
                for layer in source:
                    mask = weight_mask(layer)
                    for m in range(3):
                        mask[m], _, grown = prune_and_regrow(layer.weight[m].float(), mask[m], 0.3, "random", gen)
                        regrown = torch.randn(int(grown.sum()), generator=gen) * 0.1
                        with torch.no_grad():
                            trainable_weight(layer)[m][grown] = regrown.to(dtype)
                    set_mask(layer, mask)
            if step == 70 and index == 0:  # a write from outside the rule (a checkpoint load): non-zeros outside
                outside = ~weight_mask(source[0]) & (torch.rand(3, 20, 12, generator=gen) < 0.2)
                written = torch.where(outside, torch.rand(3, 20, 12, generator=gen).to(dtype), references[0])
                with torch.no_grad():
                    target[0].weight.copy_(written)
                references[0].copy_(written)
            if step == 95 and index == 0:  # the target's weight moved to new storage (as by a copying .to())
                target[1].weight.data = target[1].weight.data.clone()
            with torch.no_grad():
                for layer in source:
                    trainable_weight(layer).add_((torch.randn(layer.weight.shape, generator=gen) * 0.02).to(dtype))
            polyak_update(target, source, tau, budget)
            for layer, reference in zip(source, references, strict=True):
                reference.lerp_(layer.weight.detach(), tau)
                for m, allowed in enumerate(weight_mask(layer).sum(dim=(1, 2)).tolist()):
                    _zero_smallest_by_position_(reference[m], int(torch.count_nonzero(reference[m])) - allowed)
            for layer, reference in zip(target, references, strict=True):
                assert torch.equal(layer.weight, reference), (index, step)
    for (_, target, _), network_counts in zip(networks, counts, strict=True):
        assert [torch.count_nonzero(layer.weight, dim=(1, 2)).tolist() for layer in target] == [
            list(c) for c in network_counts
        ]


def test_target_budget_breaks_ties_by_position():
    """Equal magnitudes beyond the budget: the lower row-major index is zeroed first."""
    source, target = _zero_layer(1, 2, 3), _zero_layer(1, 2, 3)
    with torch.no_grad():
        target.weight.copy_(torch.tensor([[[0.5, -0.25, 0.25], [0.25, 0.75, -0.25]]]))
    set_mask(source, torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]]))  # 3 connections: 3 of 6 go
    budget = TargetBudget()
    checked = budget.layers_to_check([(target, source)])
    budget.lerp_(checked, 0.0)  # no move: the rule alone
    assert target.weight.tolist() == [[[0.5, 0.0, 0.0], [0.0, 0.75, -0.25]]]
    on_device_rule = torch.tensor([[[0.5, -0.25, 0.25], [0.25, 0.75, -0.25]]])  # the rule used off the CPU
    zero_smallest_beyond_(on_device_rule, torch.tensor([3]))
    assert torch.equal(on_device_rule, target.weight.detach())


def test_target_budget_counts_an_entry_that_a_polyak_step_takes_exactly_to_zero():
    """τ = 0.5 takes 1.0 towards -1.0 to exactly 0: that frees a place, so the entry that enters keeps its own."""
    source, target = MemberLinear(1, 2, 2), MemberLinear(1, 2, 2)
    with torch.no_grad():
        target.weight.copy_(torch.tensor([[[1.0, 0.5], [0.25, 0.0]]]))  # 0.25: outside the mask; 0.0: a connection
    set_mask(source, torch.tensor([[[1.0, 1.0], [0.0, 1.0]]]))
    with torch.no_grad():
        trainable_weight(source).copy_(torch.tensor([[[-1.0, 0.5], [0.0, 0.375]]]))
    budget = TargetBudget()
    budget.lerp_(budget.layers_to_check([(target, source)]), 0.0)  # 3 non-zeros, 3 connections: nothing to zero
    assert target.weight.tolist() == [[[1.0, 0.5], [0.25, 0.0]]]
    budget.lerp_(budget.layers_to_check([(target, source)]), 0.5)
    assert target.weight.tolist() == [[[0.0, 0.5], [0.125, 0.1875]]]  # still 3: the entered 0.1875 stays
    budget.lerp_(budget.layers_to_check([(target, source)]), 0.5)  # 0.0 enters at -0.5: 0.0625 (outside) goes
    assert target.weight.tolist() == [[[-0.5, 0.5], [0.0, 0.28125]]]


def test_target_budget_zeroes_the_smallest_entries_beyond_the_connection_count_and_remembers_synced_layers():
    """Hand-made 3x2 members: sources with 2 and 3 connections, dense targets; the smallest entries go."""
    source, target = _zero_layer(2, 3, 2), _zero_layer(2, 3, 2)
    values = torch.tensor([[0.5, -0.2], [-0.1, 0.05], [0.3, 0.9]])  # (in, out)
    with torch.no_grad():
        target.weight.copy_(torch.stack([values, values]))
    masks = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]])
    set_mask(source, masks)
    budget = TargetBudget()
    pairs = [(target, source)]  # one object, as polyak_update passes: the answers are remembered for it
    checked = budget.layers_to_check(pairs)
    assert checked == [(target, source)]
    budget.lerp_(checked, 0.0)  # no move: the rule alone
    kept = torch.tensor([[[0.5, 0.0], [0.0, 0.0], [0.0, 0.9]], [[0.5, 0.0], [0.0, 0.0], [0.3, 0.9]]])
    assert torch.equal(target.weight, kept)  # member 0 keeps |0.5|, |0.9|; member 1 also |0.3|
    within = budget.layers_to_check(pairs)
    budget.lerp_(within, 0.0)  # within the budget and inside the masks: remembered
    assert torch.equal(target.weight, kept)
    assert budget.layers_to_check(pairs) == []  # not checked again
    masks[0] = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 1.0]])
    set_mask(source, masks)  # a topology update: check again
    assert budget.layers_to_check(pairs) == [(target, source)]
    assert TargetBudget().layers_to_check([(source, target)]) == []  # a masked target needs no budget


def test_zero_smallest_beyond_keeps_each_members_largest_entries_without_host_counts():
    weight = torch.tensor([[[0.0, -3.0, 0.2], [0.01, 0.0, -0.5]], [[1.0, 2.0, 3.0], [0.0, 0.0, -4.0]]])
    zero_smallest_beyond_(weight, torch.tensor([2, 3]))
    assert weight.tolist() == [[[0.0, -3.0, 0.0], [0.0, 0.0, -0.5]], [[0.0, 2.0, 3.0], [0.0, 0.0, -4.0]]]
    gen = _generator(3)
    for _ in range(20):  # the same as the host-count search, member by member
        target = torch.randn(3, 32, 16, generator=gen) * (torch.rand(3, 32, 16, generator=gen) < 0.4)
        allowed = torch.randint(50, 150, (3,), generator=gen)
        expected = target.clone()
        for m in range(3):
            _zero_smallest_by_position_(expected[m], int(torch.count_nonzero(expected[m])) - int(allowed[m]))
        zero_smallest_beyond_(target, allowed)
        assert torch.equal(target, expected)
