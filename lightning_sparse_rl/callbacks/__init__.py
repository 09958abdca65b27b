"""Lightning callbacks of lightning-sparse-rl."""

from lightning_sparse_rl.callbacks.dynamic_sparsity import DynamicSparsityCallback
from lightning_sparse_rl.callbacks.evaluation_video import EvaluationVideo
from lightning_sparse_rl.callbacks.feature_permutation import FeaturePermutationCallback
from lightning_sparse_rl.callbacks.gradual_pruning import GradualPruningCallback
from lightning_sparse_rl.callbacks.input_connectivity import InputConnectivityCallback
from lightning_sparse_rl.callbacks.progress import RLProgressReporter
from lightning_sparse_rl.callbacks.progress_bar import RLProgressBar
from lightning_sparse_rl.callbacks.run_checkpoints import RunCheckpoints
from lightning_sparse_rl.callbacks.run_results import EvaluationResults
from lightning_sparse_rl.callbacks.sparsity_distribution import SparsityDistributionCallback

__all__ = [
    "DynamicSparsityCallback",
    "EvaluationResults",
    "EvaluationVideo",
    "FeaturePermutationCallback",
    "GradualPruningCallback",
    "InputConnectivityCallback",
    "RLProgressBar",
    "RLProgressReporter",
    "RunCheckpoints",
    "SparsityDistributionCallback",
]
