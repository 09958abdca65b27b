"""RLProgressBar: plain progress lines when stdout is a file, Lightning's TQDM bar on a terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
from pathlib import Path

import pytest
import yaml
from helpers import lsrl_command
from test_run_safety import BASE

from lightning_sparse_rl.callbacks import RLProgressBar


def _config(folder: Path) -> Path:
    """The small Pendulum run of the run-safety tests (400 training steps) with RLProgressBar, a line every 100."""
    config = yaml.safe_load(yaml.safe_dump(BASE))
    config["trainer"]["callbacks"][-1] = {
        "class_path": "lightning_sparse_rl.callbacks.RLProgressBar",
        "init_args": {"refresh_rate": 10, "line_every": 100},
    }
    config["trainer"]["enable_progress_bar"] = True
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _fit(folder: Path, stdout: int) -> subprocess.Popen:
    command = lsrl_command("fit", "--config", str(_config(folder)))
    return subprocess.Popen(command, cwd=folder, stdout=stdout, stderr=subprocess.STDOUT, env={**os.environ})


def test_a_run_logged_to_a_file_prints_plain_progress_lines_and_no_carriage_returns(tmp_path):
    with open(tmp_path / "fit.log", "wb") as log:
        assert _fit(tmp_path, log.fileno()).wait(timeout=300) == 0
    text = (tmp_path / "fit.log").read_text()
    assert "\r" not in text
    lines = [line for line in text.splitlines() if line.startswith("progress: ")]
    steps = [int(re.match(r"progress: step (\d+) of 400 \(", line).group(1)) for line in lines]
    assert steps == [100, 200, 300, 400], lines
    # the throughput of RLProgressReporter, the last return (from the first episode on) and the time left
    assert all(re.search(r"  sps \d+\.\d\d  ups \d+\.\d\d  ", line) for line in lines), lines
    assert all(re.search(r"  return -?\d+\.\d\d", line) for line in lines[1:]), lines
    assert all(re.search(r"  ETA \d+:\d\d:\d\d$", line) for line in lines), lines
    assert lines[-1].endswith("ETA 0:00:00")


def test_a_run_on_a_terminal_draws_the_tqdm_bar_and_no_plain_lines(tmp_path):
    controller, terminal = pty.openpty()
    # a terminal of 120 × 40 characters (a new pty has 0 columns, and tqdm draws nothing in 0 columns)
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    child = _fit(tmp_path, terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the child has exited
            break
        if not chunk:
            break
        output += chunk
    text = output.decode(errors="replace")
    assert child.wait(timeout=300) == 0, text[-3000:]
    assert "\r" in text and "Epoch 0:" in text and "200/200" in text
    assert "progress: step" not in text


def test_line_every_must_be_positive():
    with pytest.raises(ValueError, match="line_every=0 must be a positive number of training steps"):
        RLProgressBar(line_every=0)
