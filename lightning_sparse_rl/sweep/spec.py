"""Sweep files: a base ``lsrl fit`` config, a grid of settings, seeds and environments, expanded into trials.

A sweep file is YAML::

    config: ../sac_noise90.yaml          # the base lsrl fit config (relative to this file)
    seeds: 1-5                           # every trial trains these seeds as one population
    environments: [HalfCheetah-v5]       # data.env_id; one trial per environment and grid point
    grid:                                # every combination of these values is a grid point
      config: [../anf_sac_noise90.yaml, ../sac_noise90.yaml]
      model.lr: [0.001, 0.0003]
    set:                                 # settings of every trial
      data.max_timesteps: 300000
    resources: {cpus_per_trial: 1, gpus_per_trial: 0}
    max_failures: 3

``grid`` may also be a list of such mappings: the union of their grids (as scikit-learn's parameter grids),
for comparisons whose points have different keys (dense SAC vs DST at several sparsity levels).

Keys are those of ``lsrl fit`` (``data.fake_features``, ``model.lr``, ``model`` for the algorithm class,
``trainer.precision``), plus two of the sweep's own:

* ``config``: the base config file of the grid point;
* ``trainer.callbacks.CLASS.ARG``: argument ``ARG`` of the callback of class ``CLASS`` in the base config's
  ``trainer.callbacks`` (e.g. ``trainer.callbacks.SparsityDistributionCallback.global_sparsity``).

A setting's value that reads as a path leading out of the trial folder (absolute, ``..``, ``~``) is refused: every
trial writes only in its own folder.

This module only reads and expands; whether each trial's settings are valid is decided by ``lsrl fit``'s own
parser before any trial starts (``lsrl sweep``).
"""

from __future__ import annotations

import collections
import copy
import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import Field, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from lightning_sparse_rl import shipped_configs
from lightning_sparse_rl.sweep.layout import RUN_FOLDER, file_name_part
from lightning_sparse_rl.validation import UserInputError, leads_out_of_folder, parse_seeds, read_yaml_file, shown

#: The largest sweep file read (a sweep file is a few hundred bytes to a few kB).
MAX_SWEEP_FILE_BYTES = 1_000_000
#: The most trials of one sweep (each is an ``lsrl fit``; every trial's settings are checked before Ray starts).
MAX_TRIALS = 1000
#: The grid key that chooses the base config.
CONFIG_KEY = "config"
#: The prefix of grid keys that set a callback's argument by the callback's class name.
CALLBACK_PREFIX = "trainer.callbacks."
#: Keys a sweep sets itself: every trial logs to, and checkpoints in, its own folder (``sweep.layout``).
RESERVED_KEYS = ("trainer.logger", "trainer.default_root_dir", "seeds", "data.seeds", "seed_everything", "ckpt_path")


@dataclass(frozen=True)
class Resources:
    """What one trial reserves on a Ray node (fractional GPUs let trials share one).

    Each field's metadata bounds it: ``> minimum``, or ``>= minimum`` when ``inclusive`` (some CPU, any GPUs).
    """

    cpus_per_trial: float = field(default=1.0, metadata={"minimum": 0.0, "inclusive": False})
    gpus_per_trial: float = field(default=0.0, metadata={"minimum": 0.0, "inclusive": True})

    def as_ray(self) -> dict[str, float]:
        """The resource request for ``tune.with_resources``."""
        return {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial}

    @staticmethod
    def bound(name: str) -> str:
        """The bound of resource ``name`` as a message says it: ``> 0``, ``>= 0``."""
        metadata = _RESOURCE_FIELDS[name].metadata
        return f"{'>=' if metadata['inclusive'] else '>'} {metadata['minimum']:g}"

    @staticmethod
    def allows(name: str, value: float) -> bool:
        """Whether ``value`` is within the bound of resource ``name`` (only a value below it is refused)."""
        metadata = _RESOURCE_FIELDS[name].metadata
        return not (value < metadata["minimum"] if metadata["inclusive"] else value <= metadata["minimum"])

    def within_bounds(self) -> bool:
        """Whether every resource is within its bound."""
        return all(self.allows(name, getattr(self, name)) for name in _RESOURCE_FIELDS)


#: The fields of :class:`Resources` by name (a sweep file's ``resources`` keys).
_RESOURCE_FIELDS: dict[str, Field[Any]] = {resource.name: resource for resource in fields(Resources)}


@dataclass
class Trial:
    """One grid point in one environment: one ``lsrl fit`` of a population of the sweep's seeds.

    Attributes:
        name: the trial's folder name in ``SWEEP_DIR/trials`` (environment and settings, file-name safe).
        env_id: the Gymnasium id (``data.env_id``).
        configuration: the grid point without the environment, e.g. ``config=anf_sac_noise90`` (what a report
            compares); ``default`` when the grid is empty.
        settings: the grid point's keys and values (``config`` as the file's path).
        config_file: the base config file (absolute path).
        seeds: the population's seeds.
        fit_args: ``lsrl fit`` arguments after ``--config TRIAL_CONFIG`` (seeds, env, settings).
        callback_settings: the ``trainer.callbacks.CLASS.ARG`` settings, applied in the trial's config file.
        max_timesteps: ``data.max_timesteps`` of the trial, as ``lsrl fit`` resolves it (filled in by the check
            of the settings; ``0`` before).

    """

    name: str
    env_id: str
    configuration: str
    settings: dict[str, Any]
    config_file: str
    seeds: list[int]
    fit_args: list[str]
    callback_settings: dict[str, Any]
    max_timesteps: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The trial as plain data (JSON, Ray's trial config)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trial:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


def _fail(path: Path, message: str) -> UserInputError:
    return UserInputError(f"sweep file {path}: {message}")


def _as_list(path: Path, key: str, value: Any) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise _fail(path, f"{key}: [] gives no value to sweep over")
    return values


def _read_config(sweep_file: Path, value: Any) -> str:
    return str(_config_path(sweep_file, str(value)))


def _read_seeds(sweep_file: Path, value: Any) -> list[int]:
    try:
        return parse_seeds(value)
    except UserInputError as err:
        raise _fail(sweep_file, str(err)) from None


def _read_environments(sweep_file: Path, value: Any) -> list[str]:
    return [str(env) for env in _as_list(sweep_file, "environments", value or [])]


def _read_grids(sweep_file: Path, value: Any) -> list[dict[str, list[Any]]]:
    """One grid or a list of them: each a mapping of keys to lists of values (``config``: resolved files)."""
    given = value or {}
    grids = []
    for grid in given if isinstance(given, list) else [given]:
        if not isinstance(grid, dict):
            raise _fail(sweep_file, f"grid must map keys to lists of values, not {shown(grid)}")
        grids.append({str(key): _as_list(sweep_file, f"grid.{key}", values) for key, values in grid.items()})
    for grid in grids:
        if CONFIG_KEY in grid:
            grid[CONFIG_KEY] = [_read_config(sweep_file, file) for file in grid[CONFIG_KEY]]
    return grids or [{}]


def _read_settings(sweep_file: Path, value: Any) -> dict[str, Any]:
    settings = value or {}
    if not isinstance(settings, dict):
        raise _fail(sweep_file, f"set must map keys to values, not {shown(settings)}")
    return dict(settings)


def _read_resources(sweep_file: Path, value: Any) -> Resources:
    given = value or {}
    if not isinstance(given, dict) or not set(given) <= set(_RESOURCE_FIELDS):
        raise _fail(sweep_file, f"resources: {shown(given)}; allowed keys: {', '.join(_RESOURCE_FIELDS)}")
    for key, number in given.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not Resources.allows(key, number):
            raise _fail(sweep_file, f"resources.{key}={shown(number)} must be a number {Resources.bound(key)}")
    return Resources(**{key: float(number) for key, number in given.items()})


def _read_max_failures(sweep_file: Path, value: Any) -> int:
    if not isinstance(value, int) or value < 0:
        raise _fail(sweep_file, f"max_failures={shown(value)} must be an integer >= 0")
    return value


def _sweep_key(key: str, read: Callable[[Path, Any], Any], missing: str = "") -> dict[str, Any]:
    """The metadata of a :class:`SweepSpec` field read from the sweep file's ``key`` by ``read(sweep_file, value)``.

    ``missing``: the error when the file lacks the key, for a field without a default (a required key).
    """
    return {"key": key, "read": read, "missing": missing}


@dataclass(kw_only=True)
class SweepSpec:
    """A parsed sweep file (see the module docs); ``config`` is the base config of grids without a ``config`` key.

    The fields describe the sweep file: each but ``path`` is read from one top-level key (``key`` in its metadata,
    in this order), by its ``read`` function, which refuses a value of the wrong kind; a key the file lacks gives
    the field's default, or the ``missing`` error for a field without one (:func:`load_sweep_file`).
    """

    path: Path
    config: str | None = field(default=None, metadata=_sweep_key("config", _read_config))
    seeds: list[int] = field(
        metadata=_sweep_key("seeds", _read_seeds, missing="give the seeds of every trial's population, e.g. seeds: 1-5")
    )
    environments: list[str] = field(default_factory=list, metadata=_sweep_key("environments", _read_environments))
    grids: list[dict[str, list[Any]]] = field(default_factory=lambda: [{}], metadata=_sweep_key("grid", _read_grids))
    settings: dict[str, Any] = field(default_factory=dict, metadata=_sweep_key("set", _read_settings))
    resources: Resources = field(default_factory=Resources, metadata=_sweep_key("resources", _read_resources))
    max_failures: int = field(default=3, metadata=_sweep_key("max_failures", _read_max_failures))


#: The fields of :class:`SweepSpec` that a sweep file's keys give, in order.
_SWEEP_FIELDS = [spec_field for spec_field in fields(SweepSpec) if "key" in spec_field.metadata]
#: The keys a sweep file may have.
SWEEP_KEYS = tuple(spec_field.metadata["key"] for spec_field in _SWEEP_FIELDS)


def load_sweep_file(path: str | Path) -> SweepSpec:
    """Read and check a sweep file's structure (not yet whether ``lsrl fit`` accepts its settings).

    Raises:
        UserInputError: a missing file, invalid YAML, an unknown top-level key, a grid that is not a mapping of
            lists, seeds that :func:`~lightning_sparse_rl.validation.parse_seeds` refuses, a missing config file.

    """
    path = Path(path)
    content = _read_sweep_yaml(path)
    given = {}
    for spec_field in _SWEEP_FIELDS:
        key, read, missing = (spec_field.metadata[name] for name in ("key", "read", "missing"))
        if key in content:
            given[spec_field.name] = read(path, content[key])
        elif missing:
            raise _fail(path, missing)
    spec = SweepSpec(path=path, **given)
    _check_settings(spec)
    return spec


def _read_sweep_yaml(path: Path) -> dict[str, Any]:
    """The sweep file's content: a mapping of known keys, not too large."""
    if not path.is_file():
        raise UserInputError(f"sweep file {path} does not exist")
    if path.stat().st_size > MAX_SWEEP_FILE_BYTES:
        raise _fail(path, f"{path.stat().st_size:,} bytes; a sweep file has at most {MAX_SWEEP_FILE_BYTES:,}")
    content = read_yaml_file(path, f"sweep file {path}", reason_chars=200)
    if not isinstance(content, dict):
        raise _fail(path, f"must hold keys ({', '.join(SWEEP_KEYS)}), not a {type(content).__name__}")
    unknown = sorted(set(content) - set(SWEEP_KEYS))
    if unknown:
        raise _fail(path, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(SWEEP_KEYS)}")
    return content


def _check_settings(spec: SweepSpec) -> None:
    """Refuse grids without a base config, keys a sweep sets itself, and values leading out of the trial folder."""
    path = spec.path
    if any(CONFIG_KEY not in grid for grid in spec.grids) and spec.config is None:
        raise _fail(path, "no base config: give config: FILE (or config: [...] in the grid)")
    for key in [*spec.settings, *(key for grid in spec.grids for key in grid)]:
        if any(key == reserved or key.startswith(f"{reserved}.") for reserved in RESERVED_KEYS):
            raise _fail(path, f"{key}: a sweep sets this itself (seeds: top-level seeds; logs: each trial's folder)")
    named = [*spec.settings.items(), *((f"grid.{key}", values) for grid in spec.grids for key, values in grid.items())]
    for label, value in named:
        if label != f"grid.{CONFIG_KEY}":
            _check_inside_trial(path, label, value)


def _check_inside_trial(sweep_file: Path, key: str, value: Any) -> None:
    """Refuse a setting whose value, read as a path from the trial folder, leads out of it (``..``, ``/``, ``~``).

    A value that is not a path (a number, a class path) never does; lists and mappings are checked item by item.
    """
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            _check_inside_trial(sweep_file, key, item)
        return
    if isinstance(value, str) and leads_out_of_folder(value):
        raise _fail(
            sweep_file,
            f"{key}: {shown(value, 200)} leads out of the trial folder; a sweep's settings may name files and folders "
            "only inside it (no absolute path, no '..', no '~')",
        )


def _config_path(sweep_file: Path, config: str) -> Path:
    """A base config named in a sweep file: a path from the sweep file's folder, or a shipped config's name.

    An absolute path is taken as it is; a name such as ``td3`` that is not a file there is a shipped config
    (``lsrl configs`` lists them).
    """
    file = Path(config) if Path(config).is_absolute() else sweep_file.parent / config
    if not file.is_file():
        file = shipped_configs.find(config, "config") or file
    if not file.is_file():
        raise _fail(
            sweep_file,
            f"config file {config} does not exist (paths are relative to the sweep file) and is not a shipped "
            "config (lsrl configs lists them)",
        )
    return file.resolve()


def _short_value(key: str, value: Any) -> str:
    if key == CONFIG_KEY:
        return Path(str(value)).stem
    if isinstance(value, str) and re.fullmatch(r"[\w.]+\.[A-Z]\w*", value):  # a class path: its class name
        return value.rsplit(".", 1)[1]
    return str(value)


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each key's last dotted part, unless two keys share it (then the whole key)."""
    last = [key.rsplit(".", 1)[-1] for key in keys]
    return {key: (short if last.count(short) == 1 else key) for key, short in zip(keys, last, strict=True)}


def cli_value(value: Any) -> str:
    """A value as ``lsrl fit`` reads it on the command line (YAML: ``0.9``, ``true``, ``[1, 2]``, ``null``)."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=10**9).strip().removesuffix("...").strip()


def _check_trial_count(spec: SweepSpec) -> None:
    """Refuse a sweep of more than :data:`MAX_TRIALS` trials, before any is made."""
    count = sum(math.prod(len(values) for values in grid.values()) for grid in spec.grids)
    count *= max(1, len(spec.environments))
    if count > MAX_TRIALS:
        raise _fail(spec.path, f"{count:,} trials; a sweep has at most {MAX_TRIALS:,}: split it into several sweeps")


def expand_trials(spec: SweepSpec) -> list[Trial]:
    """The sweep's trials: for every grid point of every grid, one per environment (in file order).

    A trial's configuration is named by its grid's keys and values (``config=ds_sac,global_sparsity=0.9``).

    Raises:
        UserInputError: more than :data:`MAX_TRIALS` trials, or two grid points that are the same trial.

    """
    _check_trial_count(spec)
    seeds_arg = ",".join(map(str, spec.seeds))
    trials: list[Trial] = []
    for given in spec.grids:
        labelled = list(given)  # the grid's own keys name its points (not the sweep's default config)
        grid = {CONFIG_KEY: [spec.config], **given}
        keys = list(grid)
        for values in itertools.product(*(grid[key] for key in keys)):
            point = dict(zip(keys, values, strict=True))
            both = sorted(set(point) & set(spec.settings))
            if both:
                raise _fail(spec.path, f"{', '.join(both)}: in both grid and set; give each key in one of them")
            # the grid's values first: a class given there (model: ...) is known when set's arguments are read
            settings = {**{k: v for k, v in point.items() if k != CONFIG_KEY}, **spec.settings}
            short = _short_keys(labelled)
            configuration = ",".join(f"{short[key]}={_short_value(key, point[key])}" for key in short) or "default"
            for env_id in spec.environments or [_base_env(point[CONFIG_KEY])]:
                args = [f"--seeds={seeds_arg}"]
                if spec.environments:
                    args.append(f"--data.env_id={env_id}")
                callbacks = {k: v for k, v in settings.items() if k.startswith(CALLBACK_PREFIX)}
                args += [f"--{key}={cli_value(value)}" for key, value in settings.items() if key not in callbacks]
                trials.append(
                    Trial(
                        name=file_name_part(f"{env_id}__{configuration}"),
                        env_id=env_id,
                        configuration=configuration,
                        settings=point,
                        config_file=str(point[CONFIG_KEY]),
                        seeds=list(spec.seeds),
                        fit_args=args,
                        callback_settings=callbacks,
                    )
                )
    repeated = sorted(name for name, count in collections.Counter(trial.name for trial in trials).items() if count > 1)
    if repeated:
        raise _fail(spec.path, f"grid points repeat a trial: {', '.join(repeated)}")
    return trials


def _read_base_config(config_file: str) -> dict[str, Any]:
    content = read_yaml_file(config_file, f"config file {config_file}") or {}
    if not isinstance(content, dict):
        raise UserInputError(f"config file {config_file} must hold keys (model:, data:, trainer:, ...)")
    return content


def _base_env(config_file: str) -> str:
    content = _read_base_config(config_file)
    env_id = (content.get("data") or {}).get("env_id")
    if not env_id:
        raise UserInputError(f"{config_file} names no data.env_id: give the sweep file environments: [...]")
    return str(env_id)


def _class_name(entry: Any) -> str:
    return str(entry.get("class_path", "")).rsplit(".", 1)[-1] if isinstance(entry, dict) else ""


def trial_config(trial: Trial, trial_dir: Path) -> dict[str, Any]:
    """The trial's config file content: its base config, its callback settings, and its files in ``trial_dir``.

    The first logger writes to ``trial_dir/version_0``, the trial's run folder (a base config without a CSV or
    TensorBoard logger first gets a CSV logger there, ahead of its others); ``ModelCheckpoint`` writes to its
    ``checkpoints/``; ``trainer.default_root_dir`` is ``trial_dir``; the progress bar is off (the log is a file).

    Raises:
        UserInputError: a callback setting names a class that the base config's ``trainer.callbacks`` lacks.

    """
    config = copy.deepcopy(_read_base_config(trial.config_file))
    trainer = config.setdefault("trainer", {})
    callbacks = trainer.get("callbacks") or []
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    for key, value in trial.callback_settings.items():
        class_name, _, argument = key.removeprefix(CALLBACK_PREFIX).partition(".")
        matches = [callback for callback in callbacks if _class_name(callback) == class_name]
        if not argument or not matches:
            raise UserInputError(
                f"{key}: {trial.config_file} has no callback {class_name} in trainer.callbacks "
                f"(keys {CALLBACK_PREFIX}CLASS.ARGUMENT set an argument of a callback the base config has)"
            )
        for callback in matches:
            callback.setdefault("init_args", {})[argument] = value
    run_dir = trial_dir / RUN_FOLDER
    for callback in callbacks:
        if _class_name(callback) == "ModelCheckpoint":
            callback.setdefault("init_args", {})["dirpath"] = str(run_dir / "checkpoints")
    trainer["callbacks"] = callbacks
    loggers = trainer.get("logger")
    loggers = [] if loggers in (None, True, False) else loggers if isinstance(loggers, list) else [loggers]
    if not (loggers and _class_name(loggers[0]) in ("CSVLogger", "TensorBoardLogger")):
        loggers.insert(0, {"class_path": "lightning_sparse_rl.loggers.CSVLogger"})
    for logger in loggers:
        if _class_name(logger) in ("CSVLogger", "TensorBoardLogger"):
            logger.setdefault("init_args", {}).update(save_dir=str(trial_dir), name="", version=0)
    trainer["logger"] = loggers
    trainer["default_root_dir"] = str(trial_dir)
    trainer.setdefault("enable_progress_bar", False)
    return config
