"""Normalised scores across environments: ``(return − random) / (reference − random)``.

0 is a random policy, 1 the reference.

The built-in table (:data:`REFERENCE_SCORES`):

* MuJoCo locomotion (HalfCheetah, Hopper, Walker2d, Ant; any version): D4RL's ``REF_MIN_SCORE`` (a uniformly random
  policy) and ``REF_MAX_SCORE`` (an expert SAC policy trained online) of Fu et al. 2020, "D4RL: Datasets for Deep
  Data-Driven Reinforcement Learning", measured on the ``-v2`` envs. ``-v5`` has the same reward terms for
  HalfCheetah, Hopper and Walker2d; Ant-v5 adds a contact cost by default, so Ant's normalised score is approximate.
* ``Pendulum-v1``: random −1207.6 (this project: 100 episodes of uniformly random actions, env seeds 0-99) and
  reference −150 (about what a trained SAC or TD3 agent scores).

Other envs have no normalised score unless ``lsrl report --scores FILE`` gives one (YAML ``ENV_ID: [random,
reference]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from lightning_sparse_rl.validation import UserInputError


@dataclass(frozen=True)
class ReferenceScores:
    """The returns of a random policy and of the reference policy in one env."""

    random: float
    reference: float
    source: str

    def normalize(self, returns: np.ndarray) -> np.ndarray:
        """``(returns − random) / (reference − random)``."""
        return (np.asarray(returns, dtype=float) - self.random) / (self.reference - self.random)


_D4RL = "D4RL (Fu et al. 2020) random / expert, -v2 envs"

#: Built-in reference scores by env name without its version (see the module docs).
REFERENCE_SCORES: dict[str, ReferenceScores] = {
    "HalfCheetah": ReferenceScores(-280.178953, 12135.0, _D4RL),
    "Hopper": ReferenceScores(-20.272305, 3234.3, _D4RL),
    "Walker2d": ReferenceScores(1.629008, 4592.3, _D4RL),
    "Ant": ReferenceScores(-325.6, 3879.7, _D4RL),
    "Pendulum": ReferenceScores(-1207.6, -150.0, "this project (random, 100 episodes); a trained agent's level"),
}


def reference_scores(env_id: str, extra: Mapping[str, ReferenceScores] | None = None) -> ReferenceScores | None:
    """The reference scores of ``env_id`` (``extra`` first, by full id; then the built-in table, by name)."""
    if extra and env_id in extra:
        return extra[env_id]
    return REFERENCE_SCORES.get(env_id.split("/")[-1].rsplit("-v", 1)[0])


def load_reference_scores(path: str | Path) -> dict[str, ReferenceScores]:
    """Reference scores from a YAML file ``ENV_ID: [random, reference]``.

    Raises:
        UserInputError: a missing file, or an entry that is not two different numbers.

    """
    file = Path(path)
    if not file.is_file():
        raise UserInputError(f"--scores {path}: no such file")
    try:
        content = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserInputError(f"--scores {path}: not valid YAML ({' '.join(str(err).split())})") from None
    scores = {}
    for env_id, pair in content.items() if isinstance(content, dict) else []:
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair)):
            raise UserInputError(f"--scores {path}: {env_id}: {pair!r} must be [random, reference], two numbers")
        if pair[0] == pair[1]:
            raise UserInputError(f"--scores {path}: {env_id}: random and reference must differ, both are {pair[0]}")
        scores[str(env_id)] = ReferenceScores(float(pair[0]), float(pair[1]), f"{file.name}")
    if not isinstance(content, dict):
        raise UserInputError(f"--scores {path}: must map env ids to [random, reference]")
    return scores
