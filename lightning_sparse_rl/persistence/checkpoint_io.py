"""Checkpoint files that survive crashes: atomic writes, the replay buffer in a side file, damage detected.

:class:`RunCheckpointIO` is the ``CheckpointIO`` plugin that ``lsrl fit`` installs:

* every file is written to a temporary file in the same folder, flushed to disk, then renamed over the
  target (``os.replace``): a crash mid-write leaves the previous checkpoint intact;
* the replay buffer (up to hundreds of MB) goes to a side file ``<name>.buffer-<id>.pt`` next to the
  checkpoint, which references it by name, size and SHA-256; the side file is written first and the old
  one removed only after the new checkpoint is in place;
* the checkpoint records the SHA-256 of its own bytes in the zip archive's comment field (the file stays a
  plain ``torch.load``-able checkpoint); :func:`verify_checkpoint` checks it, and every load does;
* a truncated or corrupted checkpoint or side file is reported with its path and what is wrong.
"""

from __future__ import annotations

import glob
import hashlib
import io
import pickle
import struct
import uuid
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from typing_extensions import override

from lightning_sparse_rl.persistence.run_files import atomic_write_bytes
from lightning_sparse_rl.validation import UserInputError

_SIDE_FILE = "side_file"
#: Prefix of the zip comment that records a checkpoint's SHA-256.
_DIGEST_TAG = b"lsrl-sha256:"
_DIGEST_COMMENT_BYTES = len(_DIGEST_TAG) + 64
#: The zip format's end-of-central-directory record: signature, fixed size with no comment.
_EOCD_SIGNATURE, _EOCD_BYTES = b"PK\x05\x06", 22


class CheckpointDamaged(RuntimeError):
    """A checkpoint or its replay-buffer file is truncated or corrupted."""


def torch_bytes(value: Any) -> bytes:
    """What ``torch.save(value, file)`` writes, as bytes (for :func:`~.run_files.atomic_write_bytes`)."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _with_digest(data: bytes) -> bytes:
    """``torch.save`` bytes with their SHA-256 in the zip comment (torch writes an empty comment)."""
    if data[-_EOCD_BYTES:-18] != _EOCD_SIGNATURE or data[-2:] != b"\x00\x00":
        raise RuntimeError("unexpected torch.save format: no empty zip comment to record the checksum in")
    comment = _DIGEST_TAG + hashlib.sha256(data).hexdigest().encode()
    return data[:-2] + struct.pack("<H", len(comment)) + comment


def verify_checkpoint(path: str | Path) -> bool:
    """Check a checkpoint file against the SHA-256 recorded in it when it was written.

    Returns ``False`` for a checkpoint that records no checksum (written by plain Lightning): it is then
    only checked when read.

    Raises:
        FileNotFoundError: there is no such file.
        CheckpointDamaged: the bytes differ from the recorded checksum, or the file is cut short.

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    comment = data[-_DIGEST_COMMENT_BYTES:]
    if not comment.startswith(_DIGEST_TAG):
        if zipfile.is_zipfile(io.BytesIO(data)):
            return False  # a complete zip file without our checksum
        raise CheckpointDamaged(f"checkpoint {path} is truncated or corrupted: it does not end like a checkpoint file")
    end = len(data) - _DIGEST_COMMENT_BYTES
    digest = hashlib.sha256(memoryview(data)[: end - 2])
    digest.update(b"\x00\x00")  # the empty comment's length, as torch wrote it
    if data[end - _EOCD_BYTES : end - 18] != _EOCD_SIGNATURE or (
        digest.hexdigest().encode() != comment[len(_DIGEST_TAG) :]
    ):
        raise CheckpointDamaged(
            f"checkpoint {path} is truncated or corrupted: its bytes do not match the SHA-256 recorded when it was "
            "written. Resume from another checkpoint (e.g. --ckpt_path path/to/best.ckpt)."
        )
    return True


def _buffer_states(checkpoint: dict[str, Any]) -> list[dict[str, Any]]:
    """The replay-buffer states inside ``checkpoint`` (the DataModule's state holds one)."""
    return [
        value["replay_buffer"]
        for value in checkpoint.values()
        if isinstance(value, dict) and isinstance(value.get("replay_buffer"), dict)
    ]


def _side_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{glob.escape(path.stem)}.buffer-*.pt"))


def _remove_temporary_files(path: Path) -> None:
    """Remove the temporary files of earlier writes of ``path`` and its side files that a killed process left.

    Only one process writes a run folder (``lsrl fit`` locks it), so they are not being written now.
    """
    for pattern in (f".{glob.escape(path.name)}.*.tmp", f".{glob.escape(path.stem)}.buffer-*.pt.*.tmp"):
        for temporary in path.parent.glob(pattern):
            temporary.unlink(missing_ok=True)


def check_side_files(path: Path, checkpoint: dict[str, Any]) -> None:
    """Check that the replay-buffer files that ``checkpoint`` (read from ``path``) refers to exist with their size.

    Raises:
        CheckpointDamaged: one is missing or of the wrong size (its SHA-256 is checked when it is read).

    """
    for state in _buffer_states(checkpoint):
        reference = state.get("rows")
        if isinstance(reference, dict) and _SIDE_FILE in reference:
            side = path.with_name(reference[_SIDE_FILE])
            if not side.is_file() or side.stat().st_size != reference["bytes"]:
                raise CheckpointDamaged(
                    f"the replay buffer file {side} of checkpoint {path} is missing or truncated "
                    f"(expected {reference['bytes']:,} bytes)"
                )


def read_checkpoint(path: Path, map_location: Any = "cpu", weights_only: bool | None = None) -> dict[str, Any]:
    """A checkpoint's content, checked against its recorded SHA-256; its replay buffer stays in the side file.

    Raises:
        FileNotFoundError: there is no such file.
        CheckpointDamaged: the file is truncated or corrupted.
        UserInputError: ``weights_only`` loading refuses an object in it (pass ``weights_only=False`` if trusted).

    """
    verify_checkpoint(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only is not False)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):
            raise UserInputError(
                f"checkpoint {path} holds objects that safe (weights_only) loading refuses; "
                "if you trust the file, pass --weights_only false"
            ) from err
        raise _unreadable(path, err) from err
    except (EOFError, RuntimeError, zipfile.BadZipFile) as err:
        raise _unreadable(path, err) from err


def _unreadable(path: Path, err: BaseException) -> CheckpointDamaged:
    return CheckpointDamaged(
        f"checkpoint {path} cannot be read: the file is truncated or corrupted "
        f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
        "Resume from another checkpoint (e.g. --ckpt_path path/to/best.ckpt)."
    )


class RunCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with atomic writes, a replay-buffer side file and clear errors for damaged files."""

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Write the buffer's side file, then the checkpoint (both atomically), then drop older side files."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        _remove_temporary_files(path)
        written: list[Path] = []
        payload = b""
        try:
            for state in _buffer_states(checkpoint):
                if isinstance(state.get("rows"), torch.Tensor):
                    data = torch_bytes(state["rows"])
                    side = path.with_name(f"{path.stem}.buffer-{uuid.uuid4().hex[:8]}.pt")
                    atomic_write_bytes(side, data)
                    written.append(side)
                    digest = hashlib.sha256(data).hexdigest()
                    state["rows"] = {_SIDE_FILE: side.name, "bytes": len(data), "sha256": digest}
                    del data
            payload = _with_digest(torch_bytes(checkpoint))
            atomic_write_bytes(path, payload)
        except BaseException:
            replaced = bool(payload) and path.is_file() and path.read_bytes() == payload
            if not replaced:  # the old checkpoint and its side file stay as they were: drop the new side file
                for side in written:
                    side.unlink(missing_ok=True)
            raise
        for old in _side_files(path):
            if old not in written:
                old.unlink(missing_ok=True)

    @override
    def load_checkpoint(self, path: Any, map_location: Any | None = "cpu", weights_only: bool | None = None) -> Any:
        """Read a checkpoint and its side file.

        Raises:
            FileNotFoundError: the checkpoint or its side file does not exist.
            CheckpointDamaged: either file is truncated or corrupted (cannot be read, wrong size or checksum).
            UserInputError: ``weights_only`` loading refuses an object in the checkpoint.

        """
        path = Path(path)
        checkpoint = read_checkpoint(path, map_location, weights_only)
        for state in _buffer_states(checkpoint):
            reference = state.get("rows")
            if isinstance(reference, dict) and _SIDE_FILE in reference:
                state["rows"] = self._read_side_file(path, reference, map_location)
        return checkpoint

    @staticmethod
    def _read_side_file(path: Path, reference: dict[str, Any], map_location: Any) -> torch.Tensor:
        side = path.with_name(reference[_SIDE_FILE])
        if not side.exists():
            raise FileNotFoundError(f"the replay buffer file {side} that checkpoint {path} refers to is missing")
        data = side.read_bytes()
        if len(data) != reference["bytes"] or hashlib.sha256(data).hexdigest() != reference["sha256"]:
            raise CheckpointDamaged(
                f"the replay buffer file {side} of checkpoint {path} is truncated or corrupted: "
                f"{len(data)} bytes, expected {reference['bytes']} with SHA-256 {reference['sha256'][:12]}..."
            )
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)

    @override
    def remove_checkpoint(self, path: Any) -> None:
        """Remove a checkpoint and its side files."""
        super().remove_checkpoint(path)
        for side in _side_files(Path(path)):
            side.unlink(missing_ok=True)
