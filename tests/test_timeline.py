"""The clip model in the stream: per-stream windows, the HUD's timeline strip, and `camstream run
--clip-model` drawing it into the written video."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch
from torch import nn

from camstream.errors import CamstreamError, ModelError
from camstream.explain.temporal import ClipClassifier
from camstream.kernels import colormap_lut
from camstream.stream.timeline import ClipTracker
from camstream.stream.timeline_strip import draw_timeline, timeline_box

from .cli import assert_one_line_error, camstream, one_stream


def rgb_encoder() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 5, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_strip_cells_take_the_colormap_colour_and_kept_cells_are_framed():
    canvas = np.zeros((240, 320, 3), np.uint8)
    importance = np.array([0.0, 0.5, 1.0, 0.2], np.float32)
    lut = colormap_lut("jet")
    draw_timeline(canvas, importance, 0.6, lut)
    top, bottom, _, _ = timeline_box(canvas.shape)
    assert (top, bottom) == (230, 240)
    for step, value in enumerate(importance):
        centre = canvas[(top + bottom) // 2, step * 80 + 40]
        np.testing.assert_array_equal(centre, lut[round(value * 255)])
        framed = np.all(canvas[top, step * 80 + 40] == 255)
        assert framed == (value > 0.6)
        if step and not framed:
            assert not canvas[(top + bottom) // 2, step * 80].any()  # a black line parts the cells
    assert not canvas[:top].any()  # nothing drawn above the strip


def test_tracker_keeps_the_last_n_frames_of_each_stream():
    torch.manual_seed(0)
    tracker = ClipTracker(ClipClassifier(rgb_encoder(), 8, 3), steps=4, method="step-occlusion", streams=2)
    frames = torch.randn(6, 3, 32, 32)
    readings = tracker(frames, [0, 0, 0, 1, 0, 0])
    assert set(readings) == {0, 1}
    assert len(tracker.windows[0]) == 4 and len(tracker.windows[1]) == 1  # stream 0 had 5 frames, kept 4
    assert readings[0].maps.shape == (1, 4) and readings[1].maps.shape == (1, 1)
    assert 0 <= int(readings[0].class_ids[0]) < 3 and 0.0 < float(readings[0].scores[0]) <= 1.0
    assert tracker.explained == 2 and tracker.latest[1] is readings[1]


def test_tracker_refuses_bad_settings():
    model = ClipClassifier(rgb_encoder(), 8, 3)
    with pytest.raises(CamstreamError, match="at least 2"):
        ClipTracker(model, 1, "step-occlusion", 1)
    with pytest.raises(CamstreamError, match="unknown clip method"):
        ClipTracker(model, 4, "step-magic", 1)
    with pytest.raises(ModelError, match="features\\(clips\\)"):
        ClipTracker(nn.Linear(3, 3), 4, "step-occlusion", 1)


def test_run_draws_the_clip_models_timeline_into_the_video(tmp_path):
    torch.manual_seed(0)
    model_file = tmp_path / "clip.pt"
    torch.save(ClipClassifier(rgb_encoder(), 8, 3), model_file)
    out = tmp_path / "out"
    result = camstream("run", "--clip-model", model_file, "--clip-steps", "8", "--max-frames", "12",
                       "--threshold", "25", "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    report = one_stream(json.loads((out / "report.json").read_text()))
    clip = report["clip"]
    assert clip["steps"] == 8 and clip["windows_explained"] == report["total"]["batches"]
    assert report["stages"]["clip"]["count"] == 12
    importance = np.array(clip["latest"]["0"]["importance"])
    assert importance.shape == (8,) and importance.max() == pytest.approx(1.0)
    with av.open(str(out / "overlay.mp4")) as container:
        last = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)][-1]
    top, bottom, _, right = timeline_box(last.shape)
    lut = colormap_lut("jet").astype(int)
    edges = np.linspace(0, right, 9).round().astype(int)
    for step, value in enumerate(importance):  # H.264 keeps colours only roughly: compare cell means
        patch = last[top + 2:bottom - 2, edges[step] + 4:edges[step + 1] - 4].reshape(-1, 3).mean(0)
        assert np.abs(patch - lut[round(value * 255)]).max() < 60, (step, patch, lut[round(value * 255)])


def test_a_missing_clip_model_is_a_one_line_error(tmp_path):
    result = camstream("run", "--clip-model", tmp_path / "nope.pt", "--max-frames", "2", "--out", tmp_path / "o")
    assert_one_line_error(result, "no such model file")
