"""compute_layer_sparsity against every worked row of docs/original_code.md §3.4, plus its errors and warnings."""

import itertools

import pytest

from lightning_sparse_rl.sparse import active_connections, compute_layer_sparsity

SAC_ACTOR = [17, 256, 256, 12]
CRITIC = [23, 256, 256, 1]
OUT_DENSE = [False, False, True]

# (layer sizes, global sparsity, method, input_layer_sparsity, expected per-layer sparsity, achieved global)
SPEC_ROWS = [
    (SAC_ACTOR, 0.5, "uniform", -1, [0.52198, 0.52198, 0], 0.5),
    (CRITIC, 0.9, "uniform", -1, [0.90323, 0.90323, 0], 0.9),
    (SAC_ACTOR, 0.9, "uniform", -1, [0.93956, 0.93956, 0], 0.9),
    (SAC_ACTOR, 0.8, "ER", -1, [0.07943, 0.88535, 0], 0.8),
    (SAC_ACTOR, 0.9, "ER", -1, [0.66246, 0.95796, 0], 0.9),
    (SAC_ACTOR, 0.5, "ER", -1, [0, 0.55664, 0], 0.5),
    (SAC_ACTOR, 0.9, "new", -1, [0.90050, 0.94215, 0], 0.9),
    (CRITIC, 0.9, "new", -1, [0.85091, 0.90793, 0], 0.9),
    ([17, 256, 256, 6], 0.8, "ER", -1, [0, 0.87187, 0], 0.8),
    ([171, 256, 256, 12], 0.0, "uniform", 0.8, [0.8, 0, 0], 0.31162),
    ([177, 256, 256, 1], 0.0, "ER", 0.8, [0.8, 0, 0], 0.32627),
    ([850, 256, 256, 6], 0.0, "new", 0.8, [0.8, 0, 0], 0.61151),
    ([18817, 256, 256, 1], 0.0, "uniform", 0.8, [0.8, 0, 0], 0.78922),
    ([171, 256, 256, 12], 0.5, "uniform", 0.8, [0.8, 0.32304, 0], 0.5),
    ([171, 256, 256, 12], 0.5, "uniform", 0.0, [0, 0.85742, 0], 0.5),
    ([171, 256, 256, 12], 0.9, "ER", -1, [0.9152, 0.9321, 0], 0.9),
    ([171, 256, 256, 12], 0.9, "new", -1, [0.9217, 0.9277, 0], 0.9),
    ([171, 256, 256, 12], 0.9, "uniform", -1, [0.9253, 0.9253, 0], 0.9),
]


@pytest.mark.parametrize(("sizes", "g", "method", "s_in", "expected", "achieved"), SPEC_ROWS)
def test_reproduces_the_worked_values_of_the_spec(sizes, g, method, s_in, expected, achieved):
    result = compute_layer_sparsity(g, sizes, OUT_DENSE, method, input_layer_sparsity=s_in)
    decimals = len(str(expected[1]).split(".")[-1]) if expected[1] else 5
    assert [round(s, max(decimals, 4)) for s in result.sparsity] == pytest.approx(expected, abs=10 ** -max(decimals, 4))
    assert result.global_sparsity == pytest.approx(achieved, abs=5e-5)
    assert result.fallback == (g == 0.0)
    # Exact connection counts: floor((1 - s) * n_in * n_out) per layer.
    possible = [a * b for a, b in itertools.pairwise(sizes)]
    assert list(result.possible) == possible
    assert list(result.connections) == [
        active_connections(s, c) for s, c in zip(result.sparsity, possible, strict=True)
    ]


def test_hand_computed_counts_of_the_50_percent_uniform_actor():
    # C = 4352 + 65536 + 3072; needed 36480; ε = 33408 / 34944; density 0.478022 → floor counts.
    result = compute_layer_sparsity(0.5, SAC_ACTOR, OUT_DENSE)
    assert result.connections == (2080, 31327, 3072)


def test_fixed_input_layer_count_has_no_floating_point_off_by_one():
    # 0.2 * 217600 is 43519.99999… in floating point; the count must still be 43520.
    result = compute_layer_sparsity(0.0, [850, 256, 256, 6], OUT_DENSE, input_layer_sparsity=0.8)
    assert result.connections[0] == 43520


def test_impossible_configuration_raises_a_clear_error():
    # docs/original_code.md §3.3: g = 0.9 with a pinned 80% input layer on HalfCheetah at 90% noise.
    with pytest.raises(ValueError, match=r"impossible.*layer 2"):
        compute_layer_sparsity(0.9, [171, 256, 256, 12], OUT_DENSE, input_layer_sparsity=0.8)


def test_extremely_sparse_layer_warns():
    with pytest.warns(UserWarning, match="extremely sparse"):
        compute_layer_sparsity(0.95, SAC_ACTOR, OUT_DENSE)


def test_dense_request_gives_all_zero_levels():
    result = compute_layer_sparsity(0.0, SAC_ACTOR, OUT_DENSE)
    assert result.sparsity == (0.0, 0.0, 0.0) and result.global_sparsity == 0.0


def test_caller_keep_dense_list_is_not_mutated():
    keep_dense = [False, False, True]
    compute_layer_sparsity(0.5, SAC_ACTOR, keep_dense, "ER")
    assert keep_dense == [False, False, True]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"global_sparsity": 1.0}, r"global_sparsity=1.0 must be in \[0, 1\)"),
        ({"global_sparsity": -0.1}, r"global_sparsity=-0.1"),
        ({"input_layer_sparsity": 1.2}, r"input_layer_sparsity=1.2 must be -1"),
        ({"input_layer_sparsity": -0.5}, r"input_layer_sparsity=-0.5"),
        ({"method": "erk"}, r"method='erk' must be one of"),
        ({"closeness": 0.0}, r"closeness=0.0 must be > 0"),
    ],
)
def test_bad_arguments_name_the_value_and_the_range(kwargs, message):
    args = {"global_sparsity": 0.5, "layer_sizes": SAC_ACTOR, "keep_dense": OUT_DENSE} | kwargs
    with pytest.raises(ValueError, match=message):
        compute_layer_sparsity(**args)
