"""Each Lightning (and torch) internal that ``lightning_sparse_rl.lightning_internals`` relies on, as it is used.

A Lightning upgrade that breaks one fails here with a message naming the function of that module (and the
Lightning release it was written for): fix that function, or replace it with public API the new release offers.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import lightning
import pytest
import torch
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel, DemoModel
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from lightning_sparse_rl import lightning_internals as internals


def _broken(name: str) -> str:
    return (
        f"lightning_internals.{name} no longer works with Lightning {lightning.__version__} "
        f"(written for {internals.LIGHTNING_VERSION}, torch {internals.TORCH_VERSION}; torch here {torch.__version__})"
    )


class _Data(BoringDataModule):
    """A DataModule with state, as ``EnvDataModule`` has."""

    def state_dict(self):
        return {"train_steps": 7}


def _trainer(root: Path, **kwargs) -> Trainer:
    settings = dict(
        default_root_dir=root,
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    return Trainer(**{**settings, **kwargs})


@pytest.fixture(scope="module")
def one_step(tmp_path_factory):
    """A 1-step fit with its evaluation and a ``ModelCheckpoint(save_last=True)``; its checkpoint as saved."""
    root = tmp_path_factory.mktemp("one_step")
    checkpoint = ModelCheckpoint(dirpath=root / "checkpoints", save_last=True)
    trainer = _trainer(root, callbacks=[checkpoint], enable_checkpointing=True)
    trainer.fit(BoringModel(), datamodule=_Data())
    trainer.save_checkpoint(root / "after.ckpt")
    return trainer, checkpoint, torch.load(root / "after.ckpt", weights_only=False)


def test_checkpoint_has_the_validation_progress(one_step):
    _, _, checkpoint = one_step
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get(internals.VAL_PROGRESS_KEY)
    assert isinstance(progress, dict), _broken("evaluation_pending / mark_evaluation_begun")
    for counts in ("total", "current"):
        assert set(progress[counts]) == {"ready", "started", "processed", "completed"}, _broken("mark_evaluation_begun")
    assert "is_last_batch" in progress, _broken("mark_evaluation_begun")
    assert progress["total"]["completed"] == 1, _broken("evaluation_pending")
    assert not internals.evaluation_pending(checkpoint), _broken("evaluation_pending")


class _StopInEvaluation(Exception):
    pass


class _StopAndSave(Callback):
    """As ``RunCheckpoints`` does on a stop mid-evaluation: save from ``on_exception``, marked as begun."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_validation_batch_start(self, *args, **kwargs):
        raise _StopInEvaluation

    def on_exception(self, trainer, pl_module, exception):
        trainer.save_checkpoint(self.path)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        internals.mark_evaluation_begun(checkpoint)


class _Count(Callback):
    def __init__(self) -> None:
        self.trained = self.evaluated = 0

    def on_train_batch_end(self, *args, **kwargs):
        self.trained += 1

    def on_validation_batch_end(self, *args, **kwargs):
        self.evaluated += 1


def test_an_evaluation_marked_begun_is_repeated_on_resume(tmp_path):
    path = tmp_path / "stopped.ckpt"
    with pytest.raises(_StopInEvaluation):
        _trainer(tmp_path, callbacks=[_StopAndSave(path)]).fit(BoringModel())
    checkpoint = torch.load(path, weights_only=False)
    assert internals.evaluation_pending(checkpoint), _broken("mark_evaluation_begun / evaluation_pending")
    count = _Count()
    _trainer(tmp_path, callbacks=[count]).fit(BoringModel(), ckpt_path=path)
    assert (count.trained, count.evaluated) == (0, 1), _broken("mark_evaluation_begun")


def test_a_checkpoint_without_loop_state_starts_the_loops_afresh(one_step, tmp_path):
    checkpoint = dict(one_step[2])
    internals.drop_loop_state(checkpoint)
    torch.save(checkpoint, tmp_path / "no_loops.ckpt")
    count = _Count()
    trainer = _trainer(tmp_path, callbacks=[count])
    trainer.fit(BoringModel(), ckpt_path=tmp_path / "no_loops.ckpt")
    assert (count.trained, count.evaluated, trainer.global_step) == (1, 1, 1), _broken("drop_loop_state")


def test_the_datamodule_state_is_under_its_key(one_step):
    assert one_step[2].get(internals.datamodule_state_key(_Data)) == {"train_steps": 7}, _broken("datamodule_state_key")


def test_model_checkpoint_says_when_it_saved(one_step):
    trainer, checkpoint, _ = one_step
    assert internals.model_checkpoint_saved_at(ModelCheckpoint()) == 0, _broken("model_checkpoint_saved_at")
    assert Path(checkpoint.last_model_path).name == "last.ckpt"
    assert internals.model_checkpoint_saved_at(checkpoint) == trainer.global_step == 1, _broken(
        "model_checkpoint_saved_at"
    )


@pytest.mark.parametrize("logger_class", [CSVLogger, TensorBoardLogger])
def test_a_logger_takes_the_next_version(tmp_path, logger_class):
    logger = logger_class(tmp_path, name="run")
    assert logger.version == 0
    internals.set_logger_version(logger, logger.version + 1)  # as lsrl fit claims the next folder
    assert logger.version == 1 and Path(logger.log_dir) == tmp_path / "run" / "version_1", _broken("set_logger_version")


def test_a_csv_logger_keeps_and_takes_its_writer(tmp_path):
    logger = CSVLogger(tmp_path, name="run")
    assert internals.csv_logger_writer(logger) is None, _broken("csv_logger_writer")
    created = logger.experiment
    assert internals.csv_logger_writer(logger) is created, _broken("csv_logger_writer")

    logger = CSVLogger(tmp_path, name="other")
    writer = ExperimentWriter(logger.log_dir)
    internals.set_csv_logger_writer(logger, writer)
    assert logger.experiment is writer, _broken("set_csv_logger_writer")
    writer.log_metrics({"loss": 1.5}, step=3)
    logger.finalize("success")  # saves the writer it finds
    with open(Path(logger.log_dir) / "metrics.csv", newline="") as handle:
        assert list(csv.DictReader(handle)) == [{"loss": "1.5", "step": "3"}], _broken("set_csv_logger_writer")


def test_the_csv_writer_checks_its_folder_through_check_log_dir(tmp_path):
    calls = []

    class Keeping(internals.CSVExperimentWriter):
        def check_log_dir(self) -> None:
            calls.append(self.metrics_file_path)

    (tmp_path / "metrics.csv").write_text("step,loss\n0,1.0\n")
    Keeping(str(tmp_path))
    assert calls == [str(tmp_path / "metrics.csv")], _broken("CSVExperimentWriter")
    assert (tmp_path / "metrics.csv").exists(), _broken("CSVExperimentWriter")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning warns that the folder is not empty
        internals.CSVExperimentWriter(str(tmp_path))  # Lightning's own check deletes the file
    assert not (tmp_path / "metrics.csv").exists(), _broken("CSVExperimentWriter")


class _NoFitTrainer(Trainer):
    def fit(self, model: LightningModule, ckpt_path: str | None = None) -> None:
        pass


def _cli(cli_class: type[LightningCLI], root: Path) -> LightningCLI:
    torch.save({"hyper_parameters": {"out_dim": 3}}, root / "hparams.ckpt")
    args = ["fit", "--ckpt_path", str(root / "hparams.ckpt"), "--trainer.logger=false"]
    args += [f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false"]
    options = dict(trainer_class=_NoFitTrainer, save_config_callback=None, seed_everything_default=False)
    return cli_class(DemoModel, **options, args=args)


def test_the_cli_leaves_the_config_as_given_with_a_checkpoint(tmp_path):
    assert _cli(LightningCLI, tmp_path).config["fit"]["model"]["out_dim"] == 3  # Lightning's: the checkpoint's
    cli = _cli(internals.LightningCLIConfigAsGiven, tmp_path)
    assert cli.config["fit"]["model"]["out_dim"] == 10, _broken("LightningCLIConfigAsGiven")


def test_a_subcommand_has_its_parser(tmp_path):
    cli = _cli(internals.LightningCLIConfigAsGiven, tmp_path)
    parser = internals.subcommand_parser(cli, "fit")
    assert isinstance(parser, LightningArgumentParser), _broken("subcommand_parser")
    dumped = yaml.safe_load(parser.dump(cli.config["fit"], skip_none=False))
    assert dumped["model"]["out_dim"] == 10 and "ckpt_path" in dumped, _broken("subcommand_parser")


def test_tensorboard_writes_a_summary_as_it_is(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.compat.proto.summary_pb2 import Summary

    logger = TensorBoardLogger(tmp_path, name="run")
    summary = Summary(value=[Summary.Value(tag="x", simple_value=2.5)])
    internals.tensorboard_file_writer(logger.experiment).add_summary(summary, 4)
    logger.experiment.close()
    internals.tensorboard_file_writer(logger.experiment).add_summary(summary, 5)  # reopened after a close
    logger.experiment.flush()
    events = EventAccumulator(logger.log_dir).Reload()
    assert [(event.step, event.value) for event in events.Scalars("x")] == [(4, 2.5), (5, 2.5)], _broken(
        "tensorboard_file_writer"
    )
