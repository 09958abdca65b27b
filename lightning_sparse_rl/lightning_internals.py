"""The Lightning internals lsrl relies on, one small named piece each: nothing else in the package touches them.

Everything else stays on Lightning's public API (hooks, constructor arguments, public attributes), as
Lightning's own ``ModelCheckpoint`` and ``ModelPruning`` do. What is here has no public equivalent in the
Lightning release named by :data:`LIGHTNING_VERSION`:

* the loop state in a checkpoint (:func:`evaluation_pending`, :func:`mark_evaluation_begun`,
  :func:`drop_loop_state`): a stop mid-warm-up or mid-evaluation must resume where it stopped; and where a
  checkpoint keeps the DataModule's state (:func:`datamodule_state_key`), read before a resume;
* when a ``ModelCheckpoint`` last wrote its files (:func:`model_checkpoint_saved_at`);
* a CSV or TensorBoard logger's version folder, claimed again when another run took it
  (:func:`set_logger_version`);
* the writer a ``CSVLogger`` keeps (:func:`csv_logger_writer`, :func:`set_csv_logger_writer`) and the step where
  Lightning's CSV writer deletes an existing ``metrics.csv`` (:class:`CSVExperimentWriter`): a resumed run
  continues its file;
* a subcommand's argument parser (:func:`subcommand_parser`) and the step where ``LightningCLI`` replaces the
  given model config with a checkpoint's hyperparameters (:class:`LightningCLIConfigAsGiven`);
* one of torch's, reached through Lightning's ``TensorBoardLogger.experiment``: the ``SummaryWriter``'s
  event-file writer (:func:`tensorboard_file_writer`), to log a GIF summary without moviepy.

``tests/test_lightning_internals.py`` checks each against the installed Lightning (and torch): after an
upgrade that breaks one, the test of that function fails and names it.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningDataModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from typing_extensions import override

#: The Lightning release these internals were written and tested against (``tests/test_lightning_internals.py``
#: checks each one; the package declares ``lightning>=2.4``). On an upgrade, run that test and update this.
LIGHTNING_VERSION = "2.6.6"

#: The torch release :func:`tensorboard_file_writer` was tested against (``torch.utils.tensorboard``).
TORCH_VERSION = "2.13.0"

#: Where a checkpoint keeps the fit loop's state (``Trainer.save_checkpoint``: ``checkpoint["loops"]``).
LOOPS_KEY = "loops"

#: The fit loop's key in :data:`LOOPS_KEY`, and the validation loop's progress in it (``_BatchProgress.state_dict()``:
#: ``total`` and ``current`` counts of ``ready``/``started``/``processed``/``completed`` batches, ``is_last_batch``).
FIT_LOOP_KEY, VAL_PROGRESS_KEY = "fit_loop", "epoch_loop.val_loop.batch_progress"


def evaluation_pending(checkpoint: dict[str, Any]) -> bool:
    """Whether the checkpoint was written during an evaluation that a resume repeats (a stop mid-evaluation).

    Lightning internal: the validation loop's progress in the checkpoint's loop state
    (``checkpoint["loops"]["fit_loop"]["epoch_loop.val_loop.batch_progress"]["total"]``): a batch started and not
    processed. Lightning offers no public reading of a checkpoint's loop position.
    """
    loops = checkpoint.get(LOOPS_KEY, {}).get(FIT_LOOP_KEY, {})
    total = loops.get(VAL_PROGRESS_KEY, {}).get("total", {})
    return total.get("started", 0) > total.get("processed", 0)


def mark_evaluation_begun(checkpoint: dict[str, Any]) -> None:
    """Mark the checkpoint's evaluation as begun and not finished, so that Lightning repeats it on resume.

    Lightning internal: the validation loop's progress in ``checkpoint["loops"]["fit_loop"]`` (see
    :func:`evaluation_pending`). Lightning resumes a checkpoint written after an epoch's last training step by
    skipping that epoch's evaluation unless this progress shows a batch started and not processed
    (``_TrainingEpochLoop.advance``: ``val_loop.restarted_mid_evaluation``). No public API sets where a fit resumes.
    """
    progress = checkpoint[LOOPS_KEY][FIT_LOOP_KEY][VAL_PROGRESS_KEY]
    for counts in (progress["total"], progress["current"]):
        counts.update(ready=1, started=1, processed=0, completed=0)
    progress["is_last_batch"] = False


def drop_loop_state(checkpoint: dict[str, Any]) -> None:
    """Leave the loop state out of the checkpoint, so that a fit resumed from it starts Lightning's loops afresh.

    Lightning internal: the checkpoint's ``"loops"`` entry; without it, ``_CheckpointConnector.restore_loops``
    restores no loop (the model, optimizers and callbacks are still restored).
    """
    del checkpoint[LOOPS_KEY]


def datamodule_state_key(datamodule_class: type[LightningDataModule]) -> str:
    """The key under which a checkpoint holds the state (``state_dict()``) of a DataModule of this class.

    Lightning internal (checkpoint layout): ``_CheckpointConnector.dump_checkpoint`` stores a DataModule's
    ``state_dict()`` under its class's ``__qualname__``. The documentation says the state is saved, not where;
    ``lsrl fit`` reads it before the fit (``persistence.resume.check_resume``).
    """
    return datamodule_class.__qualname__


def model_checkpoint_saved_at(callback: ModelCheckpoint) -> int | None:
    """The ``global_step`` at which ``callback`` last wrote its checkpoints (``None``: the attribute is gone).

    Lightning internal: ``ModelCheckpoint._last_global_step_saved`` (0 until it first saves), which its own
    ``_should_skip_saving_checkpoint`` uses to write at most once a step. Its public state (``last_model_path``,
    ``state_dict()``) says which file it wrote last, not when.
    """
    return getattr(callback, "_last_global_step_saved", None)


def set_logger_version(logger: CSVLogger | TensorBoardLogger, version: int) -> None:
    """Make a CSV or TensorBoard logger log to ``version_<version>`` (before it has written anything).

    Lightning internal: ``_version``, where both loggers keep the version (``version`` is a read-only property
    that picks the next free folder once). Used to claim the next folder when another run started at the same
    moment took this one.
    """
    logger._version = version


def csv_logger_writer(logger: CSVLogger) -> ExperimentWriter | None:
    """The writer ``logger`` has created (``None`` before its first use of ``experiment``).

    Lightning internal: ``CSVLogger._experiment``, where ``CSVLogger.experiment`` keeps the writer it creates
    and ``CSVLogger.finalize`` looks for it.
    """
    return logger._experiment


def set_csv_logger_writer(logger: CSVLogger, writer: ExperimentWriter) -> None:
    """Give ``logger`` the writer its ``experiment`` returns, ``save`` saves and ``finalize`` saves.

    Lightning internal: ``CSVLogger._experiment`` (see :func:`csv_logger_writer`); ``CSVLogger.experiment``
    creates Lightning's own ``ExperimentWriter`` and offers no way to choose another.
    """
    logger._experiment = writer


class CSVExperimentWriter(ExperimentWriter):
    """Lightning's CSV ``ExperimentWriter``, with the check of an existing log folder as a public method.

    Lightning internal: ``ExperimentWriter.__init__`` calls the private ``_check_log_dir_exists``, which warns
    about a folder that is not empty and deletes its ``metrics.csv``. It calls :meth:`check_log_dir` here, which
    a subclass overrides to keep the file.
    """

    @override
    def _check_log_dir_exists(self) -> None:
        self.check_log_dir()

    def check_log_dir(self) -> None:
        """Called by ``__init__`` before the folder is made; Lightning's check (deletes an existing ``metrics.csv``)."""
        super()._check_log_dir_exists()


class LightningCLIConfigAsGiven(LightningCLI):
    """A ``LightningCLI`` that leaves the parsed config as given when ``--ckpt_path`` names a checkpoint.

    Lightning internal: after ``parse_arguments``, ``LightningCLI.__init__`` calls the private
    ``_parse_ckpt_path``, which reads the checkpoint's ``hyper_parameters`` and parses them over the given
    ``model`` config. ``lsrl fit`` compares the given config with the checkpoint's instead (and refuses changes
    that would not fit it), so that step does nothing here. There is no public switch for it.
    """

    @override
    def _parse_ckpt_path(self) -> None:
        """Leave the config as given."""


def subcommand_parser(cli: LightningCLI, subcommand: str) -> LightningArgumentParser:
    """The parser of one of ``cli``'s subcommands (``fit``, ...): the one that parses and dumps its config.

    Lightning internal: ``LightningCLI._subcommand_parsers``, filled as the subcommands are added (the main
    parser, ``cli.parser``, dumps the config of all subcommands together). ``SaveConfigCallback`` gets the same
    parser, so a config dumped with it reads like the ``config.yaml`` Lightning writes.
    """
    return cli._subcommand_parsers[subcommand]


def tensorboard_file_writer(experiment: Any) -> Any:
    """The event-file writer of a ``TensorBoardLogger``'s ``experiment`` (a ``SummaryWriter``), opened if closed.

    torch internal (``torch.utils.tensorboard``, also tensorboardX): ``SummaryWriter._get_file_writer()``. Its
    ``add_summary(summary, step)`` writes a ``Summary`` protocol buffer as it is; ``SummaryWriter`` has no public
    method for one (``add_video`` encodes with moviepy, ``add_image`` as PNG).
    """
    return experiment._get_file_writer()
