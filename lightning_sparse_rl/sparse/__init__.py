"""Sparse-network maths, free of Lightning.

Member-batched layers, masks, distributions, the contracts of a sparse-training method with the field's
methods written against them (prune, growth, schedules), MaskAdam.
"""

from lightning_sparse_rl.sparse.connectivity import connections_per_input, real_noise_connectivity
from lightning_sparse_rl.sparse.criteria import (
    ConstantDrop,
    CosineDrop,
    CubicSparsity,
    DropSchedule,
    GradientGrowth,
    GrowthCriterion,
    LayerState,
    MagnitudePrune,
    PruneCriterion,
    RandomGrowth,
    SparsitySchedule,
    prune_and_regrow,
    prune_to,
)
from lightning_sparse_rl.sparse.distribution import (
    DISTRIBUTION_METHODS,
    LayerSparsity,
    active_connections,
    check_sparsity_arguments,
    compute_layer_sparsity,
)
from lightning_sparse_rl.sparse.masked_linear import (
    WeightMask,
    active_count,
    is_masked,
    lerp_weights_,
    mask_changes,
    mask_version,
    restore_masks,
    set_mask,
    trainable_weight,
    weight_mask,
)
from lightning_sparse_rl.sparse.member_linear import MemberLinear
from lightning_sparse_rl.sparse.network_view import SparseNetwork, linear_layers, masked_layers
from lightning_sparse_rl.sparse.optim import MaskAdam, optimizer_moment
from lightning_sparse_rl.sparse.report import LayerCount, format_schedule_table, format_sparsity_table, global_sparsity
from lightning_sparse_rl.sparse.target_budget import TargetBudget
from lightning_sparse_rl.sparse.topology import (
    largest_scores,
    random_mask,
    zero_smallest_beyond_,
)

__all__ = [
    "DISTRIBUTION_METHODS",
    "ConstantDrop",
    "CosineDrop",
    "CubicSparsity",
    "DropSchedule",
    "GradientGrowth",
    "GrowthCriterion",
    "LayerCount",
    "LayerSparsity",
    "LayerState",
    "MagnitudePrune",
    "MaskAdam",
    "MemberLinear",
    "PruneCriterion",
    "RandomGrowth",
    "SparseNetwork",
    "SparsitySchedule",
    "TargetBudget",
    "WeightMask",
    "active_connections",
    "active_count",
    "check_sparsity_arguments",
    "compute_layer_sparsity",
    "connections_per_input",
    "format_schedule_table",
    "format_sparsity_table",
    "global_sparsity",
    "is_masked",
    "largest_scores",
    "lerp_weights_",
    "linear_layers",
    "mask_changes",
    "mask_version",
    "masked_layers",
    "optimizer_moment",
    "prune_and_regrow",
    "prune_to",
    "random_mask",
    "real_noise_connectivity",
    "restore_masks",
    "set_mask",
    "trainable_weight",
    "weight_mask",
    "zero_smallest_beyond_",
]
