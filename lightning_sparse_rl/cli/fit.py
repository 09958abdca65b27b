"""``lsrl fit``: LightningCLI wired for off-policy RL, with resumes checked before anything in a run folder changes."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.callbacks.progress import ProgressBar
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, SaveConfigCallback
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import TensorBoardLogger
from typing_extensions import override

from lightning_sparse_rl.algorithms import OffPolicyAlgorithm
from lightning_sparse_rl.callbacks import EvaluationResults, RLProgressReporter, RunCheckpoints
from lightning_sparse_rl.data.datamodule import EnvDataModule
from lightning_sparse_rl.lightning_internals import LightningCLIConfigAsGiven, set_logger_version, subcommand_parser
from lightning_sparse_rl.loggers import CSVLogger
from lightning_sparse_rl.networks import check_actor_critic_fits
from lightning_sparse_rl.persistence.resume import (
    ResumePlan,
    RunFinished,
    check_resume,
    continue_loggers_in,
    record_resume,
    resume_target,
)
from lightning_sparse_rl.persistence.run_files import atomic_write_bytes
from lightning_sparse_rl.persistence.run_lock import RunLock
from lightning_sparse_rl.run_position import run_directory
from lightning_sparse_rl.trainer import TRAINER_DEFAULTS, arrange_for_rl
from lightning_sparse_rl.validation import (
    MAX_SEED,
    UserInputError,
    class_at,
    leads_out_of_folder,
    parse_seeds,
    read_yaml_file,
)

#: The trainer defaults of :func:`~lightning_sparse_rl.trainer.make_trainer`, with a CSV log in ``runs/``.
CLI_TRAINER_DEFAULTS: dict[str, Any] = {
    **TRAINER_DEFAULTS,
    "logger": {"class_path": "lightning_sparse_rl.loggers.CSVLogger", "init_args": {"save_dir": "runs"}},
}


class SaveRunConfig(SaveConfigCallback):
    """LightningCLI's config saving, with the config recorded in every checkpoint and resumes that change nothing early.

    * ``config.yaml`` is written (atomically) at ``setup`` for a new run; for a resumed run only once the
      checkpoint has been restored (``on_fit_start``), so a resume that fails leaves the run folder as it
      was; the settings a resume changed (and, for a resume into a new folder, the checkpoint it started
      from) are appended to ``RUN_DIR/resumes.yaml`` (:func:`~lightning_sparse_rl.persistence.resume.record_resume`);
    * ``config.yaml`` describes the run, never the resume (no ``ckpt_path``, no logger version folder), so
      ``lsrl fit --config RUN_DIR/config.yaml`` repeats the run;
    * the resolved config (as in ``config.yaml``) is in the checkpoint (this callback's state), where a
      later resume compares it with its own.
    """

    def __init__(self, parser: LightningArgumentParser, config: Any, config_filename: str = "config.yaml") -> None:
        super().__init__(parser, config, config_filename, save_to_log_dir=False)
        self.resume: ResumePlan | None = None
        self._dumped: str | None = None

    @override
    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Write the resolved config to ``RUN_DIR/config.yaml``, atomically (a resume reads it)."""
        atomic_write_bytes(run_directory(trainer) / self.config_filename, self._config_yaml().encode())

    def _config_yaml(self) -> str:
        """The run's config as YAML (for a resume, the config it was given, not where it resumed from)."""
        if self.resume is not None:
            return self.resume.run_config
        if self._dumped is None:
            self._dumped = self.parser.dump(self.config, skip_none=False)
        return self._dumped

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Write ``config.yaml`` now, unless this fit resumes a checkpoint."""
        if self.resume is None:
            super().setup(trainer, pl_module, stage)

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """For a resume (the checkpoint restored without error): write ``config.yaml`` and record the changes."""
        if self.resume is None or self.resume.finished:
            return
        super().setup(trainer, pl_module, "fit")
        record_resume(run_directory(trainer), self.resume)

    @override
    def state_dict(self) -> dict[str, Any]:
        """The resolved config, as YAML."""
        return {"config": self._config_yaml()}


def _config_files(args: Sequence[str]) -> list[str]:
    files = []
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            files.append(args[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def check_config_file(path: str) -> None:
    """Reject a missing, empty or malformed YAML config file with one line naming the file (and line)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    read_yaml_file(path, f"config file {path}", check_before_size=partial(_check_holds_keys, path), with_position=True)


def _check_holds_keys(path: str, content: Any) -> None:
    """Refuse the content of config file ``path`` unless it is a mapping (``model:``, ``data:``, ...)."""
    if content is None:
        raise ValueError(f"config file {path} is empty: give keys such as model:, data:, trainer:")
    if not isinstance(content, dict):
        kind = type(content).__name__
        raise ValueError(f"config file {path} must hold keys (model:, data:, trainer:, ...), not a {kind}")


class SparseRLCLI(LightningCLIConfigAsGiven):
    """LightningCLI wired for off-policy RL.

    * ``data.env_spec`` (made by the DataModule from the env) is linked into ``model.env_spec``;
    * ``seed_everything`` is linked into ``data.seed`` (one seed for torch, numpy, envs, buffer);
    * the :class:`RLProgressReporter`, :class:`EvaluationResults` and :class:`RunCheckpoints` callbacks are
      always present, configurable as ``progress.*``, ``results.*`` and ``checkpoints.*``;
    * checkpoints are written by :class:`~lightning_sparse_rl.persistence.checkpoint_io.RunCheckpointIO` (atomic files,
      replay buffer in a side file, a checksum) and record the resolved config (:class:`SaveRunConfig`);
    * a run folder is locked (:class:`~lightning_sparse_rl.persistence.run_lock.RunLock`) while a fit uses it;
    * ``--ckpt_path`` resumes as a transaction: the checkpoint is verified and the given config compared with
      the recorded one before anything in a run folder changes (:meth:`plan_resume`, with the checks of
      :mod:`lightning_sparse_rl.persistence.resume`);
      ``--config RUN_DIR/config.yaml --ckpt_path last`` resumes ``RUN_DIR/checkpoints/last.ckpt`` with its
      loggers continuing in ``RUN_DIR``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.resume: ResumePlan | None = None
        self.run_lock: RunLock | None = None
        self.new_run_dir: Path | None = None
        self._running = False  # the subcommand runs (from after_instantiate_classes to after_fit)
        completed = False
        try:
            super().__init__(*args, **kwargs)  # parses, instantiates and runs the subcommand
            completed = True
        except RuntimeError as error:
            if not self._running or not str(error).startswith("Error(s) in loading state_dict"):
                self._mark_if_running(error)
                raise
            raise UserInputError(  # only reachable with --force_resume or a checkpoint without a recorded config
                f"checkpoint {self.resume.checkpoint if self.resume else ''} does not fit this config's networks "
                f"({str(error).splitlines()[1].strip()})"
            ) from error
        except BaseException as error:
            self._mark_if_running(error)
            raise
        finally:
            if self.run_lock is not None:
                self.run_lock.release()
            if not completed:
                self._remove_unused_new_run_folder()

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Add the links, the always-on callbacks and ``--force_resume``."""
        parser.link_arguments("data.env_spec", "model.init_args.env_spec", apply_on="instantiate")
        parser.link_arguments("seed_everything", "data.seed")
        parser.add_argument(
            "--seeds",
            type=str | int | list[int] | None,
            default=None,
            help="train a population, one agent per seed, in one process: 1-8, 1,3,5 or a YAML list [1, 2, 3]",
        )
        parser.link_arguments("seeds", "data.seeds", compute_fn=_population_seeds)
        parser.link_arguments("data.seeds", "model.init_args.agent_seeds", apply_on="instantiate")
        parser.add_lightning_class_args(RLProgressReporter, "progress")
        parser.add_lightning_class_args(EvaluationResults, "results")
        parser.add_lightning_class_args(RunCheckpoints, "checkpoints")
        parser.add_argument(
            "--force_resume",
            type=bool,
            default=False,
            help="resume even when the config changes keys that define the checkpoint (network, env, sparsity, seed)",
        )

    @override
    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Check config files, parse, then check what must be checked before anything is instantiated or seeded."""
        if args is None or isinstance(args, (list, tuple)):
            for path in _config_files(list(sys.argv[1:] if args is None else args)):
                check_config_file(path)
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        seed = config.get("seed_everything")
        if not isinstance(seed, bool) and seed is not None and not 0 <= seed < MAX_SEED:
            raise ValueError(f"seed_everything={seed} must be in [0, {MAX_SEED - 1}] (tutorial front: --seed)")
        self._drop_progress_bars_if_disabled(config)
        _check_checkpoint_filenames(config)
        if subcommand == "fit":
            _check_networks_fit(config)
        if subcommand == "fit" and config.get("ckpt_path"):
            path, run_dir = resume_target(str(config["ckpt_path"]), [str(file) for file in config.get("config") or []])
            if run_dir is not None:  # the run folder is ours before its checkpoint is read
                self._lock(run_dir)
            self.resume = self.plan_resume(config, subcommand_parser(self, subcommand), path, run_dir)

    @staticmethod
    def _drop_progress_bars_if_disabled(config: Any) -> None:
        trainer = config.get("trainer")
        if trainer is None or trainer.get("enable_progress_bar") is not False or not trainer.get("callbacks"):
            return
        callbacks = trainer["callbacks"]
        trainer["callbacks"] = [
            callback
            for callback in (callbacks if isinstance(callbacks, list) else [callbacks])
            if not (isinstance(cls := class_at(str(callback.get("class_path"))), type) and issubclass(cls, ProgressBar))
        ]

    @staticmethod
    def plan_resume(config: Any, parser: LightningArgumentParser, path: Path, run_dir: Path | None) -> ResumePlan:
        """Check a resume of checkpoint ``path`` before anything is created or written, and set ``config`` up for it.

        The checks are :func:`~lightning_sparse_rl.persistence.resume.check_resume`'s (which raises
        ``CheckpointDamaged``, ``UserInputError`` or ``RunFinished``). Then ``config`` resumes ``path``, its
        loggers continuing in ``run_dir`` when the run continues in place; the plan's ``run_config`` is the
        config without what makes it a resume.
        """
        plan = check_resume(
            path,
            run_dir,
            given_config=parser.dump(config, skip_none=False),
            config_state=SaveRunConfig.__qualname__,
            weights_only=config.get("weights_only"),
            force_resume=bool(config.get("force_resume")),
            max_timesteps=config["data"]["max_timesteps"],
        )
        config["ckpt_path"], config["force_resume"] = None, False  # they describe this resume, not the run
        plan.run_config = parser.dump(config, skip_none=False)
        config["ckpt_path"] = str(path)
        if run_dir is not None:
            continue_loggers_in(config["trainer"].get("logger"), run_dir, plan.train_steps)
        return plan

    @override
    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """The trainer, arranged as by :func:`~lightning_sparse_rl.trainer.arrange_for_rl`; resumes continue logs."""
        trainer = arrange_for_rl(super().instantiate_trainer(**kwargs))
        for callback in trainer.callbacks:
            if isinstance(callback, SaveRunConfig):
                callback.resume = self.resume
        if self.resume is not None and self.resume.finished:
            trainer.limit_train_batches = 0  # the fit restores the run, trains nothing and runs on_fit_end hooks
        if self.resume is not None and self.resume.run_dir is not None:
            for logger in trainer.loggers:
                if isinstance(logger, CSVLogger):
                    logger.continue_from(self.resume.train_steps)
        return trainer

    def _lock(self, run_dir: Path) -> None:
        self.run_lock = RunLock(run_dir)
        notice = self.run_lock.acquire()
        if notice:
            print(notice, flush=True)

    def _lock_new_run_folder(self) -> None:
        """Claim and lock a new run's CSV/TensorBoard version folder (the next version if another run took it)."""
        logger = self.trainer.logger
        if not isinstance(logger, (LightningCSVLogger, TensorBoardLogger)):
            return
        while isinstance(logger.version, int):
            try:
                run_directory(self.trainer).mkdir(parents=True)
                break
            except FileExistsError:  # another run started at the same moment took this version
                set_logger_version(logger, logger.version + 1)
        self.new_run_dir = run_directory(self.trainer)
        self._lock(self.new_run_dir)

    def _remove_unused_new_run_folder(self) -> None:
        """Remove the version folder this fit made when it failed before writing anything but ``hparams.yaml``."""
        folder = self.new_run_dir
        if folder is not None and folder.is_dir() and {path.name for path in folder.iterdir()} <= {"hparams.yaml"}:
            shutil.rmtree(folder)

    @override
    def after_instantiate_classes(self) -> None:
        """The subcommand runs next: from here on, errors are marked as raised during the fit (see ``__init__``)."""
        self._running = self.subcommand is not None

    def _mark_if_running(self, error: BaseException) -> None:
        """Mark an error raised while the subcommand ran, so that a bug is told apart from a user error."""
        if self._running:
            error.lsrl_during_fit = True  # type: ignore[attr-defined]

    def before_fit(self) -> None:
        """Claim and lock a new run's folder (a resume in place locked its folder before reading the checkpoint)."""
        if self.run_lock is None:
            self._lock_new_run_folder()

    def after_fit(self) -> None:
        """A finished run resumed in place: say so (:class:`RunFinished`) once its end-of-training hooks ran again."""
        self._running = False
        if self.resume is not None and self.resume.finished:
            raise RunFinished(self.resume.finished)


def _training_device(trainer: Any) -> torch.device:
    """The device a fit with these trainer settings trains on (a GPU unless the accelerator is the CPU or none)."""
    use_gpu = str(trainer.get("accelerator") or "auto") in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return torch.device("cuda", torch.cuda.current_device()) if use_gpu else torch.device("cpu")


def _check_networks_fit(config: Any) -> None:
    """Refuse networks too large for the device's memory before any is made (an actor-critic of ``model``'s shape)."""
    model = config.get("model")
    cls = class_at(str(model.get("class_path"))) if model is not None else None
    init_args = model.get("init_args") if model is not None else None
    if not (isinstance(cls, type) and issubclass(cls, OffPolicyAlgorithm) and init_args is not None):
        return
    layers, width = init_args.get("hidden_layers"), init_args.get("hidden_width")
    if isinstance(layers, int) and isinstance(width, int) and layers >= 1 and width >= 1:  # else the model refuses
        agents = len(config["data"].get("seeds") or [config.get("seed_everything")])
        check_actor_critic_fits(agents, layers, width, _training_device(config["trainer"]))


def _check_checkpoint_filenames(config: Any) -> None:
    """Refuse a ``ModelCheckpoint`` ``filename`` that leads out of its checkpoint folder (absolute, ``..``, ``~``)."""
    callbacks = (config.get("trainer") or {}).get("callbacks") or []
    for callback in callbacks if isinstance(callbacks, list) else [callbacks]:
        cls = class_at(str(callback.get("class_path")))
        filename = str((callback.get("init_args") or {}).get("filename") or "")
        if not (isinstance(cls, type) and issubclass(cls, ModelCheckpoint)):
            continue
        if leads_out_of_folder(filename):
            raise UserInputError(
                f"trainer.callbacks[{cls.__name__}].filename={filename!r} must name a file inside the checkpoint "
                "folder (no absolute path, no '..', no '~'); choose the folder with dirpath"
            )


def _population_seeds(seeds: str | int | list[int] | None) -> list[int] | None:
    """``--seeds`` as a list (``None``: no population)."""
    return None if seeds is None else parse_seeds(seeds)


def cli_options(args: ArgsType = None, run: bool = True) -> dict[str, Any]:
    """The arguments of :class:`SparseRLCLI` that make ``lsrl fit`` (``args``: ``sys.argv[1:]`` when ``None``)."""
    return dict(
        model_class=OffPolicyAlgorithm,
        datamodule_class=EnvDataModule,
        subclass_mode_model=True,
        seed_everything_default=42,
        trainer_defaults=CLI_TRAINER_DEFAULTS,
        save_config_callback=SaveRunConfig,
        parser_kwargs={"exit_on_error": False},
        auto_configure_optimizers=False,
        args=args,
        run=run,
    )


def build_cli(args: ArgsType = None, run: bool = True) -> SparseRLCLI:
    """Parse ``args`` (``sys.argv[1:]`` when ``None``) and, with ``run``, execute the subcommand."""
    return SparseRLCLI(**cli_options(args, run))
