"""Result files in a run directory, written atomically (a reader or a crash never sees half a file)."""

from __future__ import annotations

import csv
import errno
import io
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: ``OSError`` numbers of a full disk or quota.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, ``fsync`` it, rename it over ``path``, sync the folder.

    Raises:
        OSError: as the OS reports it, naming ``path`` (not the temporary file); for a full disk with a message
            naming ``path`` and the bytes, and saying that the previous ``path`` is intact.

    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as err:
        if err.errno in _NO_SPACE:
            raise OSError(
                err.errno,
                f"no space left on the device to write {path} ({len(data):,} bytes); "
                f"{'the previous file is intact' if path.exists() else 'nothing was written'}",
            ) from err
        if err.filename in (temporary, str(temporary)):  # name the file the caller writes, not the temporary one
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    finally:
        if temporary.exists():  # (unlinking a missing file fails on a read-only file system)
            temporary.unlink()
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def write_csv(path: str | Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Write a CSV file with ``header`` and ``rows``, atomically."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_bytes(Path(path), text.getvalue().encode())


def write_npy(path: str | Path, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy``, atomically."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write_bytes(Path(path), buffer.getvalue())


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Save named ``arrays`` as ``.npz``, atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(Path(path), buffer.getvalue())


def read_csv_columns(path: str | Path) -> dict[str, np.ndarray]:
    """The numeric columns of a CSV file with a header, by name (empty cells are NaN)."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        raise ValueError(f"{path} is empty")
    header, body = rows[0], rows[1:]
    return {
        name: np.asarray([float(row[i]) if i < len(row) and row[i] != "" else np.nan for row in body])
        for i, name in enumerate(header)
    }
