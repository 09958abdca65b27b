"""What changed between a run's recorded config and the config given to resume it, and which changes are safe.

A resumed run continues the checkpoint's networks, masks, buffer and random streams. A change of the
algorithm, env, network shape, sparsity, noise or seed would silently train something other than what the
config says, so such keys are *protected*; changes that only affect how long the run goes, what is logged,
when checkpoints are written or where it runs are *safe*.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

#: Callbacks whose arguments define the trained networks (masks, topology updates, input permutations).
STATE_CALLBACKS = ("SparsityDistributionCallback", "DynamicSparsityCallback", "FeaturePermutationCallback")

#: Keys that are safe to change inside otherwise protected sections.
SAFE_KEYS = frozenset(
    {
        "data.max_timesteps",  # extend (or shorten) a run
        "data.eval_episodes",  # how many episodes an evaluation averages
        "model.init_args.compile",  # speed only
        "model.init_args.compile_mode",
    }
)

#: Sections whose keys are protected unless listed in :data:`SAFE_KEYS`: what is trained and on what, and the
#: trainer settings that change the arithmetic or the loop structure a checkpoint's progress refers to.
PROTECTED_SECTIONS = (
    "seed_everything",
    "seeds",
    "model",
    "data",
    "trainer.precision",
    "trainer.plugins",
    "trainer.strategy",
    "trainer.num_nodes",
    "trainer.limit_train_batches",
    "trainer.limit_val_batches",
    "trainer.val_check_interval",
    "trainer.check_val_every_n_epoch",
)

#: Keys that describe the invocation, not the run.
IGNORED_KEYS = frozenset({"config", "ckpt_path", "force_resume"})
#: The value shown for a key that one of the two configs does not have.
ABSENT = "(absent)"


class ConfigChange(NamedTuple):
    """One key whose value differs: ``saved`` (the run's) → ``given`` (this command's); :data:`ABSENT` when missing."""

    key: str
    saved: object
    given: object
    protected: bool

    def __str__(self) -> str:
        return f"{self.key} {_show(self.saved)} → {_show(self.given)}"


def _show(value: object) -> str:
    return "null" if value is None else str(value)


def _callback_name(entry: Mapping) -> str:
    return str(entry.get("class_path", "?")).rsplit(".", 1)[-1]


def flatten_config(config: Mapping, prefix: str = "") -> dict[str, object]:
    """Dotted keys → values. Lists of ``class_path`` entries are keyed by class name: ``trainer.callbacks[Name]``."""
    flat: dict[str, object] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if path in IGNORED_KEYS:
            continue
        if path == "trainer.callbacks" and isinstance(value, Mapping):
            value = [value]  # one callback may be given without a list
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, f"{path}."))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) and "class_path" in v for v in value):
            seen: dict[str, int] = {}
            for entry in value:
                name = _callback_name(entry)
                seen[name] = seen.get(name, 0) + 1
                label = f"{path}[{name}]" if seen[name] == 1 else f"{path}[{name}#{seen[name]}]"
                flat[label] = "present"
                flat.update(flatten_config(entry.get("init_args") or {}, f"{label}."))
        else:
            flat[path] = value
    return flat


def is_protected(key: str, saved: object = None) -> bool:
    """Whether changing ``key`` (from ``saved``) changes what a checkpoint means (see the module docs).

    A key the saved config does not have (a parameter added in a later version, given its default) is safe,
    except for the arguments of the callbacks that define the networks.
    """
    if any(f"[{name}" in key for name in STATE_CALLBACKS):
        return True
    if key in SAFE_KEYS or saved == ABSENT:
        return False
    return any(key == section or key.startswith(f"{section}.") for section in PROTECTED_SECTIONS)


def config_changes(saved: Mapping, given: Mapping) -> list[ConfigChange]:
    """Every key whose value differs between ``saved`` and ``given`` (nested configs as written to YAML)."""
    before, after = flatten_config(saved), flatten_config(given)
    keys = sorted(set(before) | set(after))
    return [
        ConfigChange(key, before.get(key, ABSENT), after.get(key, ABSENT), is_protected(key, before.get(key, ABSENT)))
        for key in keys
        if before.get(key, ABSENT) != after.get(key, ABSENT)
    ]
