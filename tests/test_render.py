"""The render stage's HUD text."""

from __future__ import annotations

import queue

import numpy as np
import pytest

from camstream.stream.render import HeatmapPainter, RenderStage
from camstream.stream.ring import FrameRing
from camstream.stream.telemetry import Telemetry
from camstream.threshold_spec import ThresholdSpec


def test_hud_shows_the_process_memory_as_the_readme_says():
    telemetry = Telemetry()
    render = RenderStage(queue.Queue(), FrameRing(2), [], HeatmapPainter(ThresholdSpec(dynamic=True)), telemetry,
                         lambda class_id: f"class {class_id}", "gradcam")
    telemetry.sample_memory()
    top, bottom = render.hud_lines(FrameRing(2).slots[0])
    assert "gradcam" in top and "fps" in top
    assert telemetry.rss_latest_mb > 10
    assert f"rss {telemetry.rss_latest_mb:.0f} MB" in bottom


def _hud_on_white(height: int, width: int, where: str) -> np.ndarray:
    telemetry = Telemetry()
    render = RenderStage(queue.Queue(), FrameRing(2), [], HeatmapPainter(ThresholdSpec(dynamic=True)), telemetry,
                         lambda class_id: "a rather long class name, as ImageNet has them", "gradcam", hud=where)
    canvas = np.full((height, width, 3), 255, np.uint8)
    slot = FrameRing(2).slots[0]
    if render.hud != "off":
        render._draw_hud(canvas, slot)
    return canvas


@pytest.mark.parametrize("size", [(144, 176), (272, 640), (720, 1280), (1080, 1920)])
@pytest.mark.parametrize("where", ["top", "bottom"])
def test_hud_is_sized_to_the_frame_and_never_cut_off(size, where):
    """Issue 18: the HUD covered 11–25 % of the picture and ran off the right of a 176×144 frame."""
    height, width = size
    canvas = _hud_on_white(height, width, where)
    rows = np.where((canvas < 255).any(axis=(1, 2)))[0]
    band = rows.max() - rows.min() + 1
    assert band <= 0.10 * height + 1, (band, height)  # never more than a tenth of the picture
    assert band >= 10  # one legible line at least
    assert (rows.min() == 0) if where == "top" else (rows.max() == height - 1)
    text = canvas[rows.min():rows.max() + 1]
    assert (text[:, -3:] == 0).all(), "the text runs into the right edge: cut off"
    assert (text > 128).any(), "no text drawn"


def test_hud_off_draws_nothing_and_the_cli_takes_top_bottom_off():
    assert (_hud_on_white(144, 176, "off") == 255).all()
    from camstream.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["run", "--hud", "bottom"]).hud == "bottom"
    assert parser.parse_args(["run", "--no-hud"]).hud == "off"
    assert parser.parse_args(["run"]).hud == "top"


def test_status_line_gives_total_percent_and_eta_when_the_length_is_known(monkeypatch):
    telemetry = Telemetry()
    telemetry.frames_out, telemetry.frames_in = 50, 52
    monkeypatch.setattr(telemetry, "fps", lambda: 10.0)
    line = telemetry.live_line(depth=2, dropped=0, total=250)
    assert line.startswith("frames out 50 of 250 (20 %, ETA 0:20), in 52 | 10.0 fps")
    assert telemetry.live_line(depth=2, dropped=0).startswith("frames out 50, in 52 | ")  # a camera: no total


def test_a_file_run_prints_its_total_and_eta_in_plain_lines(tmp_path):
    from .cli import camstream

    result = camstream("run", "--max-frames", "12", "--out", tmp_path, "--status-every", "0.2")
    assert result.returncode == 0, result.stderr
    statuses = [line for line in result.stderr.splitlines() if line.startswith("frames ")]
    assert statuses and all(" of 12 (" in line for line in statuses), result.stderr


def test_a_terminal_gets_a_progress_bar_with_the_total_the_rate_and_the_eta(tmp_path):
    import os
    import pty
    import subprocess
    import sys

    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "camstream", "run", "--max-frames", "24", "--sink", "null",
                                "--out", str(tmp_path)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=terminal)
    os.close(terminal)
    written = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the run closed its end of the terminal
            break
        if not chunk:
            break
        written += chunk
    assert process.wait(timeout=120) == 0
    os.close(controller)
    shown = written.decode(errors="replace")
    assert "24/24" in shown and "100%" in shown and "frame/s" in shown and "rss" in shown, shown[-600:]
    assert "camstream: loading efficientnet_lite0" in shown  # the first line, said before the model loads


def test_in_a_pipe_the_run_says_what_it_is_loading_first_and_again_every_five_seconds(tmp_path):
    """Piped (`camstream run … | cat`), stderr is no terminal: the first line is the model loading, said
    before it loads, and a long load (a cold cache: the graph is traced) is said again every 5 s."""
    import os
    import re

    from camstream.progress import HEARTBEAT_S, is_progress_line

    from .cli import camstream

    result = camstream("run", "--max-frames", "4", "--sink", "null", "--out", tmp_path / "out",
                       env={**os.environ, "CAMSTREAM_CACHE": str(tmp_path / "cold-cache")})
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0] == "camstream: loading efficientnet_lite0 on the default backend …", lines
    ready = next(line for line in lines if line.startswith("camstream: ready in "))
    loading_s = float(re.search(r"ready in ([\d.]+) s", ready).group(1))
    beats = [line for line in lines[:lines.index(ready)] if re.search(r"… \d+ s$", line)]
    assert len(beats) in (int(loading_s // HEARTBEAT_S), int(loading_s // HEARTBEAT_S) - 1), lines
    assert [int(line.rsplit(" ", 2)[1]) for line in beats] == [5 * (i + 1) for i in range(len(beats))]
    assert all(is_progress_line(line) for line in lines[:lines.index(ready) + 1])
    quiet = camstream("run", "--max-frames", "4", "--sink", "null", "--out", tmp_path / "quiet", "-q",
                      env={**os.environ, "CAMSTREAM_CACHE": str(tmp_path / "cold-cache")})
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
