"""Random streams derived from one run seed: every consumer has its own named offset, so no two share a stream.

The run seed is ``seed_everything`` (linked to ``data.seed``). A consumer's seed is ``run seed + offset``:

========================  =======  ==========================================================
stream                    offset   consumer
========================  =======  ==========================================================
``buffer``                0        replay-buffer sampling; the train env and its action space
``dst``                   1        dynamic sparse training's random regrowth
``eval_env``              10 000   the evaluation env (its own episodes)
``marginals``             20 000   the random-policy rollout that estimates ``marginals`` noise
``env_noise``             30 000   the train env's noise features (``noise_mode: env``)
``eval_env_noise``        40 000   the evaluation env's noise features (``noise_mode: env``)
``permutation``           50 000   the transfer setting's input permutations
========================  =======  ==========================================================
"""

from __future__ import annotations

#: Offset of each consumer's seed from the run seed (see the module docs).
STREAM_OFFSETS: dict[str, int] = {
    "buffer": 0,
    "dst": 1,
    "eval_env": 10_000,
    "marginals": 20_000,
    "env_noise": 30_000,
    "eval_env_noise": 40_000,
    "permutation": 50_000,
}


def stream_seed(run_seed: int, stream: str) -> int:
    """The seed of ``stream`` (a key of :data:`STREAM_OFFSETS`) in a run seeded with ``run_seed``."""
    return (run_seed + STREAM_OFFSETS[stream]) % 2**63
