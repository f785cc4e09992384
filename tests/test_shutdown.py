"""SIGINT / SIGTERM at several moments of a real run: exit 130, threads joined, the video finalised and
decodable to exactly the frames written, and report.json saying it was interrupted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from camstream.bench.clips import count_frames

from .cli import one_stream


def frames_in_status(line: str) -> int:
    """The N of a status line `frames out N …, in M | ...`, or -1."""
    if not line.startswith("frames out "):
        return -1
    return int(line.split()[2].rstrip(","))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("after_frames", [1, 40, 120])
def test_signal_mid_run_finalises_everything(tmp_path, dashcam_clip, signum, after_frames):
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "camstream", "run", "--source", str(dashcam_clip), "--out",
                                str(out), "--status-every", "0.05"], stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # wait until the run has written the wanted number of frames
        if frames_in_status(line) >= after_frames:
            break
    signalled = time.monotonic()
    process.send_signal(signum)
    rest = process.stderr.read()
    assert process.wait(timeout=30) == 130
    assert time.monotonic() - signalled < 10
    assert "Traceback" not in rest
    report = one_stream(json.loads((out / "report.json").read_text()))
    assert report["interrupted"] is True and report["stuck_threads"] == []
    assert after_frames <= report["frames_out"] < 221
    assert report["out_of_order"] == 0
    assert count_frames(str(out / "overlay.mp4")) == report["frames_out"]


def test_signal_before_the_run_starts_exits_130_without_a_traceback(tmp_path, dashcam_clip):
    process = subprocess.Popen([sys.executable, "-m", "camstream", "run", "--source", str(dashcam_clip), "--out",
                                str(tmp_path / "run")], stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # the moment under test: imports and model loading, before any frame
    process.send_signal(signal.SIGTERM)
    rest = process.stderr.read()
    assert process.wait(timeout=30) == 130
    assert "Traceback" not in rest and "interrupted" in rest
