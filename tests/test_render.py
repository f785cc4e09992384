"""The render stage's HUD text."""

from __future__ import annotations

import queue

from camstream.kernels import ThresholdSpec
from camstream.stream.render import HeatmapPainter, RenderStage
from camstream.stream.ring import FrameRing
from camstream.stream.telemetry import Telemetry


def test_hud_shows_the_process_memory_as_the_readme_says():
    telemetry = Telemetry()
    render = RenderStage(queue.Queue(), FrameRing(2), [], HeatmapPainter(ThresholdSpec(dynamic=True)), telemetry,
                         lambda class_id: f"class {class_id}", "gradcam")
    telemetry.sample_memory()
    top, bottom = render.hud_lines(FrameRing(2).slots[0])
    assert "gradcam" in top and "fps" in top
    assert telemetry.rss_latest_mb > 10
    assert f"rss {telemetry.rss_latest_mb:.0f} MB" in bottom
