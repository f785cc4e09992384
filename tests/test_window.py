"""`--sink window` in a real X server (Xvfb): frames reach the screen, `q` and Ctrl-C end the run cleanly.

Needs Debian's xvfb, xdotool and imagemagick (`.ci/run` installs them); skips with that reason elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from camstream.bench.clips import count_frames
from camstream.stream.sinks import opencv_gui_backend

from .cli import one_stream

TOOLS = ("Xvfb", "xdotool", "import")
DEADLINE_S = 120  # model load, tracing and kernel compilation on a busy CI machine come before the first frame


def test_installed_opencv_keeps_its_gui():
    """The test extra pulls opencv-python-headless in through a peer library; its cv2 must not win."""
    assert opencv_gui_backend() is not None, "cv2 has no GUI: pip install --force-reinstall --no-deps opencv-python"


@pytest.fixture(scope="module")
def display():
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian's xvfb, xdotool, imagemagick; .ci/run installs them)")
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                              pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as handle:
        number = handle.readline().strip()  # Xvfb writes its display number once it accepts clients
    assert number, "Xvfb did not start"
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


def start_window_run(display: str, out, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "DISPLAY": display}
    return subprocess.Popen([sys.executable, "-m", "camstream", "run", "--sink", "window", "--sink", "file",
                             "--out", str(out), "--live", *extra], env=env, stderr=subprocess.PIPE, text=True)


def x11(display: str, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, env={**os.environ, "DISPLAY": display}, capture_output=True, timeout=60)


def wait_for_drawn_window(display: str, process: subprocess.Popen) -> tuple[str, np.ndarray]:
    """The window's id and a screenshot of it once it shows something other than black. The windows named
    camstream are looked up again on every try: the toolkit may replace the first one it maps (a stale id once
    gave black screenshots for the whole deadline on a loaded machine)."""
    x11(display, "xdotool", "search", "--sync", "--onlyvisible", "--name", "camstream")
    deadline = time.monotonic() + DEADLINE_S
    seen: dict[str, str] = {}
    while time.monotonic() < deadline and process.poll() is None:
        for window in x11(display, "xdotool", "search", "--onlyvisible", "--name", "camstream").stdout.decode().split():
            shot = x11(display, "import", "-window", window, "png:-")
            image = cv2.imdecode(np.frombuffer(shot.stdout, np.uint8), cv2.IMREAD_COLOR) if shot.stdout else None
            if image is not None and image.mean() > 10:
                return window, image
            seen[window] = "black" if image is not None else shot.stderr.decode(errors="replace").strip()[:120]
        time.sleep(0.2)  # polling the screen: the first frame's arrival time is what is being waited for
    raise AssertionError(f"no frame was drawn in the window (exit {process.poll()}; windows seen: {seen})")


def test_window_shows_frames_and_q_ends_the_run(tmp_path, display, demo_clip):
    """Looping the clip, so only q can end the run: on a loaded CI machine the 10 s clip once ended before a
    screenshot caught a frame, and the exit code alone would not show that q ended it."""
    process = start_window_run(display, tmp_path, "--loop")
    try:
        window, image = wait_for_drawn_window(display, process)
        assert image.shape[0] > 50 and image.shape[1] > 50
        assert image.std() > 10  # a picture, not a flat fill
        x11(display, "xdotool", "windowfocus", "--sync", window)
        x11(display, "xdotool", "key", "q")
        stderr = process.communicate(timeout=60)[1]
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    report = one_stream(json.loads((tmp_path / "report.json").read_text()))
    window_sink = next(sink for sink in report["sinks"] if sink["type"] == "window")
    assert window_sink["frames_shown"] >= 1
    assert report["frames_out"] >= 1 and not report["interrupted"]  # a looping run that ended cleanly: q did it
    assert count_frames(str(tmp_path / "overlay.mp4")) == report["frames_out"]


def test_ctrl_c_ends_a_run_with_an_open_window(tmp_path, display, demo_clip):
    process = start_window_run(display, tmp_path, "--loop")
    try:
        wait_for_drawn_window(display, process)
        signalled = time.monotonic()
        process.send_signal(signal.SIGINT)
        stderr = process.communicate(timeout=60)[1]
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert time.monotonic() - signalled < 15
    report = one_stream(json.loads((tmp_path / "report.json").read_text()))
    assert report["interrupted"] is True
    assert count_frames(str(tmp_path / "overlay.mp4")) == report["frames_out"]
