"""``lsrl view`` in a real window: under Xvfb, the shipped HalfCheetah agent's MuJoCo window draws the cheetah.

Needs the Debian package ``xvfb`` (``.ci/run`` installs it) and Mesa's OpenGL (``libgl1-mesa-dri``,
``libglx-mesa0``); the screenshot is Pillow's ``ImageGrab`` over XCB. Skipped, with the reason, where Xvfb is
not installed or does not start.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path
from subprocess import DEVNULL, STDOUT

import numpy as np
import pytest
from helpers import lsrl_command
from PIL import Image, ImageGrab, features

AGENT = Path(__file__).resolve().parents[1] / "agents" / "halfcheetah-v5_ds-sac" / "policy.pt"
#: Seconds for ``lsrl view`` to start and draw its first frame (about 5 s on an idle 2-core machine).
WINDOW_TIMEOUT = 90
#: Seconds for Xvfb to report its display number.
XVFB_TIMEOUT = 15


def _display_number(read_fd: int, server: subprocess.Popen, timeout: float) -> str | None:
    """What Xvfb wrote to its ``-displayfd`` pipe (its display number), or None if it exited or timed out."""
    received = b""
    deadline = time.monotonic() + timeout
    while not received.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([read_fd], [], [], remaining)[0]:
            return None
        chunk = os.read(read_fd, 64)
        if not chunk:  # Xvfb exited: the pipe's write end closed
            return None
        received += chunk
    return received.decode().strip() if server.poll() is None else None


def _stop(process: subprocess.Popen) -> None:
    """End ``process`` (a stopped one too): SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGCONT)  # a stopped process acts on SIGTERM only once continued
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def xvfb_display(tmp_path: Path):
    """A fresh Xvfb server (1024x768, 24-bit, black root) on a free display number (``-displayfd``), e.g. ``":1"``."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (Debian package xvfb; .ci/run installs it)")
    if not features.check("xcb"):
        pytest.skip("this Pillow was built without XCB, so ImageGrab cannot read an X display")
    log = tmp_path / "xvfb.log"
    read_fd, write_fd = os.pipe()
    with log.open("w") as err:
        server = subprocess.Popen(
            # -noreset: by default the server resets when its last client leaves (each screenshot is a client),
            # refusing connections meanwhile, so the viewer's window could fail with "Failed to open display"
            ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1024x768x24", "-nolisten", "tcp", "-br", "-noreset"],
            pass_fds=(write_fd,),
            stdin=DEVNULL,
            stdout=DEVNULL,
            stderr=err,
        )
    os.close(write_fd)
    try:
        number = _display_number(read_fd, server, XVFB_TIMEOUT)
        if number is None:
            try:
                status = f"exited with status {server.wait(timeout=2)}"
            except subprocess.TimeoutExpired:
                status = f"reported no display number within {XVFB_TIMEOUT} s"
            _stop(server)
            pytest.skip(f"Xvfb could not start ({status}): {log.read_text().strip()[-500:]!r}")
        yield f":{number}"
    finally:
        os.close(read_fd)
        _stop(server)


def _grab(display: str) -> Image.Image:
    return ImageGrab.grab(xdisplay=display).convert("RGB")


def _wait_for_drawing(viewer: subprocess.Popen, display: str, log: Path) -> None:
    """Poll the screen (black until a window draws) every 20 ms until something is drawn on it."""
    deadline = time.monotonic() + WINDOW_TIMEOUT
    while time.monotonic() < deadline:
        if _grab(display).getbbox() is not None:
            return
        if viewer.poll() is not None:
            pytest.fail(f"lsrl view exited ({viewer.returncode}) before drawing a window:\n{log.read_text()}")
        time.sleep(0.02)
    pytest.fail(f"lsrl view drew nothing on {display} within {WINDOW_TIMEOUT} s:\n{log.read_text()}")


def test_lsrl_view_opens_a_mujoco_window_that_shows_the_cheetah(xvfb_display, tmp_path):
    """The window draws a scene (many colours, contrast), with the cheetah's warm-coloured body in it."""
    env = dict(os.environ, DISPLAY=xvfb_display, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("MUJOCO_GL", None)  # conftest's headless EGL; a user with a display has none set
    env.pop("WAYLAND_DISPLAY", None)  # GLFW must open its window on the X display
    log = tmp_path / "view.log"
    command = lsrl_command("view", str(AGENT))
    with log.open("w") as out:
        viewer = subprocess.Popen([*command, "--episodes", "1"], cwd=tmp_path, env=env, stdout=out, stderr=STDOUT)
    try:
        _wait_for_drawing(viewer, xvfb_display, log)
        # The window's free camera does not follow the agent (TAB switches to the tracking camera): the cheetah
        # runs out of view after ~30 of its 1000 steps. Freeze the viewer on an early frame to look at it.
        viewer.send_signal(signal.SIGSTOP)
        screen = _grab(xvfb_display)
    finally:
        _stop(viewer)
    screenshot = tmp_path / "window.png"
    screen.save(screenshot)

    box = screen.getbbox()  # the root window is black: what is not is the MuJoCo window
    assert box is not None, f"the window went black ({screenshot}):\n{log.read_text()}"
    width, height = box[2] - box[0], box[3] - box[1]
    pixels = np.asarray(screen.crop(box)).astype(np.int32)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    colours = len(np.unique((red << 16) | (green << 8) | blue))
    contrast = float(pixels.std())
    cheetah = int(((red - blue > 60) & (red - green > 20)).sum())  # its body is rgb(0.8, 0.6, 0.4) and (0.9, 0.6, 0.6)
    measured = f"{width}x{height} window: {colours} colours, std {contrast:.1f}, {cheetah} cheetah pixels; {screenshot}"
    print(measured)
    assert width >= 200 and height >= 200, measured
    assert colours > 100, measured  # a blank or flat-coloured window has a handful
    assert contrast > 20, measured
    assert cheetah > 30, measured  # the floor (grey-green and black) and the menu's text have none
    assert "A MuJoCo window opens" in log.read_text()
