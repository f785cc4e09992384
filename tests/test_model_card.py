"""A model file carries what it needs (issue 17): labels, input size, mean/std, resize mode, layer and method from
a sidecar, the checkpoint or the options, in that order of weight; letterboxed and cropped frames drawn back in
the right place; a 3-class classifier trained here on the shared photos, explained end to end."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from camstream.errors import ModelError
from camstream.model.card import ModelCard, read_sidecar
from camstream.model.load import load_model
from camstream.model.preprocess import Placement, resize_mask, resize_to_rgb
from camstream.stream.render import HeatmapPainter
from camstream.threshold_spec import ThresholdSpec

from .cli import assert_one_line_error, camstream
from .conftest import shared_file
from .training import fit

LABELS = ["balloon", "road", "indoor"]


def small_cnn(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, classes)).eval()


# --- placement: hand-computed geometry -------------------------------------------------------------------------

def test_letterbox_keeps_the_aspect_ratio_and_pads_the_short_side():
    placement = Placement.of((100, 200), (50, 50), "letterbox")  # scale min(0.5, 0.25) = 0.25
    assert placement.scaled == (25, 50) and placement.offset == (12, 0)
    assert placement.model_window() == (slice(12, 37), slice(0, 50))
    assert placement.frame_window() == (slice(0, 100), slice(0, 200))
    frame = np.full((100, 200, 3), 200, np.uint8)
    model_input = resize_to_rgb(frame, (50, 50), "letterbox")
    assert model_input.shape == (50, 50, 3)
    assert (model_input[:12] == 0).all() and (model_input[37:] == 0).all() and (model_input[12:37] == 200).all()


@pytest.mark.parametrize("mode", ["stretch", "letterbox", "crop"])
def test_a_truth_mask_lands_where_its_object_lands_in_the_model_input(mode):
    frame = np.zeros((300, 500, 3), np.uint8)
    mask = np.zeros((300, 500), bool)
    frame[40:200, 150:480], mask[40:200, 150:480] = 255, True  # a white object and its ground truth
    placed_mask = resize_mask(mask, (96, 96), mode)
    placed_object = resize_to_rgb(frame, (96, 96), mode)[..., 0] > 127
    assert placed_mask.shape == (96, 96) and placed_mask.dtype == bool
    overlap = (placed_mask & placed_object).sum() / (placed_mask | placed_object).sum()
    assert overlap > 0.95, overlap
    if mode == "letterbox":  # the black bands show nothing, so hold no truth
        window = Placement.of((300, 500), (96, 96), mode).model_window()
        outside = np.ones((96, 96), bool)
        outside[window] = False
        assert outside.any() and not placed_mask[outside].any()


def test_eval_places_photos_and_their_truth_as_the_model_card_says(tmp_path):
    from camstream.eval.suite import EvalPlan, _Images

    torch.save(small_cnn(3), tmp_path / "model.pt")
    card = ModelCard(labels=("a", "b", "c"), input_size=(64, 64), resize="letterbox")
    images = _Images(str(shared_file("images", "balloon", "train")), EvalPlan(model=str(tmp_path / "model.pt"),
                                                                             card=card, limit=2, runtime="torch"))
    assert images.pixels.shape == (2, 3, 64, 64) and images.spec.labels == ("a", "b", "c")
    for pixels, truth, (height, width) in zip(images.pixels, images.truth, images.shapes, strict=True):
        window = Placement.of((height, width), (64, 64), "letterbox").model_window()
        outside = np.ones((64, 64), bool)
        outside[window] = False
        assert outside.any()  # the photos are not square: there are bands
        assert (pixels[:, torch.from_numpy(outside)] == 0).all() and not truth[outside].any()
        assert truth[window].any()


def test_eval_and_sanity_take_the_model_card_options(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMSTREAM_CACHE", str(tmp_path / "cache"))
    torch.save(small_cnn(3), tmp_path / "model.pt")
    (tmp_path / "labels.txt").write_text("a\nb\nc\n")
    card_options = ["--model", tmp_path / "model.pt", "--labels", tmp_path / "labels.txt", "--input-size", "64", "96",
                    "--resize", "crop"]
    result = camstream("eval", "--data", shared_file("images", "balloon", "train"), *card_options, "--methods",
                       "gradcam", "--class-id", "1", "--thresholds", "10", "--limit", "2", "--steps", "2", "--video",
                       "none", "--no-plots", "--out", tmp_path / "eval")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["model_input"]["size"] == [64, 96] and report["model_input"]["resize"] == "crop"
    assert report["methods"]["gradcam"]["computed_by"] == "openvino (exported graph)"  # exported at 64×96
    result = camstream("sanity", *card_options, "--methods", "gradcam", "--frames", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["methods"]["gradcam"]["randomisation_spearman"] is not None


def test_a_sanity_verdict_belongs_to_the_weights_it_was_found_with(tmp_path, monkeypatch):
    from camstream.sanity_record import failed_sanity, record_verdicts

    monkeypatch.setenv("CAMSTREAM_CACHE", str(tmp_path))
    (tmp_path / "tuned.pt").write_bytes(b"weights")
    failing = {"methods": {"gradcam": {"passed": False, "class_sensitivity_spearman": 0.9,
                                       "randomisation_spearman": 0.8}}}
    record_verdicts("resnet18", failing, str(tmp_path / "tuned.pt"))
    assert "gradcam failed the sanity checks" in failed_sanity("resnet18", "gradcam", str(tmp_path / "tuned.pt"))
    assert failed_sanity("resnet18", "gradcam") is None  # the architecture with other weights was not checked


def test_crop_keeps_the_aspect_ratio_and_cuts_the_centre_out():
    placement = Placement.of((100, 200), (50, 50), "crop")  # scale max(0.5, 0.25) = 0.5
    assert placement.scaled == (50, 100) and placement.offset == (0, -25)
    assert placement.model_window() == (slice(0, 50), slice(0, 50))
    assert placement.frame_window() == (slice(0, 100), slice(50, 150))
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[:, 50:150] = 90
    assert (resize_to_rgb(frame, (50, 50), "crop") == 90).all()  # only the centre half is seen
    assert Placement.of((100, 200), (50, 100), "crop").whole  # equal aspect ratios: nothing to cut or pad


def test_a_letterboxed_map_is_drawn_from_the_rows_that_show_the_frame():
    frame = np.full((100, 200, 3), 128, np.uint8)
    painter = HeatmapPainter(ThresholdSpec(keep_percent=20), model_size=(56, 56), resize="letterbox")
    padding_hot, middle_hot = np.zeros((7, 7), np.float32), np.zeros((7, 7), np.float32)
    padding_hot[0] = padding_hot[-1] = 1.0  # the input's padding rows (the frame fills rows 14..42 of 56)
    middle_hot[3] = 1.0
    painted = np.empty_like(frame)
    painter.paint(frame, padding_hot, painted)
    assert (painted == frame).all()  # stretched over the frame, the hot padding would tint its top and bottom
    painter.paint(frame, middle_hot, painted)
    changed = (painted != frame).any(axis=2)
    assert changed[50].all() and not changed[0].any() and not changed[-1].any()


def test_a_cropped_map_is_drawn_over_the_centre_the_model_saw_only():
    frame = np.full((100, 200, 3), 128, np.uint8)
    painter = HeatmapPainter(ThresholdSpec(), model_size=(56, 56), resize="crop")
    painted = np.empty_like(frame)
    painter.paint(frame, np.full((7, 7), 0.5, np.float32), painted)
    changed = (painted != frame).any(axis=2)
    assert changed[:, 50:150].all() and not changed[:, :50].any() and not changed[:, 150:].any()


# --- where the facts come from ---------------------------------------------------------------------------------

def test_the_options_win_over_the_sidecar_which_wins_over_the_checkpoint(tmp_path):
    torch.save({"model": small_cnn(), "camstream": {"labels": ["a", "b", "c"], "input_size": [64, 64],
                                                    "resize": "crop"}}, tmp_path / "model.pt")
    (tmp_path / "model.camstream.json").write_text(json.dumps({"input_size": [48, 80], "resize": "letterbox",
                                                              "mean": [0.5, 0.5, 0.5], "method": "recipro"}))
    spec = load_model(str(tmp_path / "model.pt"))
    assert (spec.labels, spec.input_size, spec.resize, spec.mean, spec.method) == (
        ("a", "b", "c"), (48, 80), "letterbox", (0.5, 0.5, 0.5), "recipro")
    spec = load_model(str(tmp_path / "model.pt"), card=ModelCard(input_size=(32, 32), resize="stretch"))
    assert (spec.input_size, spec.resize, spec.labels) == ((32, 32), "stretch", ("a", "b", "c"))


def test_a_state_dict_with_an_architecture_name_takes_its_class_count_from_its_labels(tmp_path):
    import torchvision

    fine_tuned = torchvision.models.resnet18(num_classes=3)
    torch.save(fine_tuned.state_dict(), tmp_path / "resnet18-3.pt")
    (tmp_path / "resnet18-3.camstream.json").write_text(json.dumps({"labels": LABELS, "input_size": [96, 128]}))
    result = camstream("explain", shared_file("images", "dashcam", "solidWhiteRight.jpg"), "--model", "resnet18",
                       "--weights", tmp_path / "resnet18-3.pt", "--out", tmp_path / "o.png", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["label"] in LABELS and summary["input_size"] == [96, 128]


def test_a_bad_model_card_is_one_line_naming_the_file_and_key(tmp_path):
    torch.save(small_cnn(), tmp_path / "model.pt")
    out = tmp_path / "o.png"
    image = tmp_path / "i.png"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    cases = [({"resize": "squash"}, "resize must be one of stretch, letterbox, crop"),
             ({"input_size": [2, 2]}, "input_size must be at least 8×8"),
             ({"labels": ["only", "two"]}, "has 3 outputs but 2 class names were given"),
             ({"colour": "rgb"}, "unknown key(s) colour")]
    for card, message in cases:
        (tmp_path / "model.camstream.json").write_text(json.dumps(card))
        assert_one_line_error(camstream("explain", image, "--model", tmp_path / "model.pt", "--out", out), message)
    (tmp_path / "model.camstream.json").write_text("{not json")
    with pytest.raises(Exception, match="is not valid JSON"):
        read_sidecar(str(tmp_path / "model.pt"))
    (tmp_path / "model.camstream.json").unlink()
    assert_one_line_error(camstream("explain", image, "--model", tmp_path / "model.pt", "--out", out,
                                    "--std", "0.2", "0", "0.2"), "--std must be positive")


def test_inspect_says_what_camstream_will_do_with_a_model(tmp_path):
    torch.save(small_cnn(), tmp_path / "model.pt")
    (tmp_path / "model.camstream.json").write_text(json.dumps({"labels": LABELS, "input_size": [48, 64],
                                                              "resize": "letterbox", "method": "recipro"}))
    result = camstream("inspect", tmp_path / "model.pt", "--rounds", "2", "--json")
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["kind"] == "cnn" and facts["input"]["size"] == [48, 64] and facts["input"]["resize"] == "letterbox"
    assert facts["classes"] == 3 and facts["labels"] == LABELS and facts["default_method"] == "recipro"
    assert facts["model_cards"] == [str(tmp_path / "model.camstream.json")]
    assert [layer["name"] for layer in facts["layers"] if layer["default"]] == ["3"]  # the last conv block's ReLU
    assert {cost["method"] for cost in facts["methods"]} == {"gradcam", "gradcam++", "cam", "recipro"}
    assert all(cost["ms_min"] <= cost["ms"] <= cost["ms_max"] and cost["ms"] > 0 for cost in facts["methods"])
    text = camstream("inspect", tmp_path / "model.pt", "--rounds", "1", "--input-size", "32", "32")
    assert text.returncode == 0 and "32×32 RGB, letterbox" in text.stdout and "recipro" in text.stdout
    assert_one_line_error(camstream("inspect", tmp_path / "none.pt"), "no such model file")


def test_a_model_fed_the_wrong_input_size_says_to_give_its_size(tmp_path):
    fixed = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 32 * 32, 2))
    torch.save(fixed, tmp_path / "fixed.pt")
    with pytest.raises(ModelError, match="does not take a 3×224×224 input.*--input-size H W"):
        load_model(str(tmp_path / "fixed.pt"))
    assert load_model(str(tmp_path / "fixed.pt"), card=ModelCard(input_size=(32, 32))).labels == ()


# --- a classifier trained here, end to end ---------------------------------------------------------------------

def _photos(folder: tuple[str, ...], count: int) -> list[np.ndarray]:
    paths = sorted(p for p in shared_file("images", *folder).iterdir() if p.suffix.lower() in (".jpg", ".png"))
    return [resize_to_rgb(cv2.imread(str(p)), (48, 64), "letterbox") for p in paths[:count]]


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    """A 3-class classifier (balloon photos, dashcam stills, indoor scenes) trained in a few seconds on 48×64
    letterboxed inputs, saved with its model card as a sidecar."""
    photos = [_photos(("balloon", "train"), 24), _photos(("dashcam",), 12), _photos(("indoor_boxes", "images"), 24)]
    inputs = torch.from_numpy(np.stack([p for group in photos for p in group])).permute(0, 3, 1, 2).float() / 255
    inputs = (inputs - 0.5) / 0.25
    labels = torch.tensor([k for k, group in enumerate(photos) for _ in group])
    model = small_cnn()
    fit(model, inputs, labels, epochs=60, batch=16, optimiser=torch.optim.Adam(model.parameters(), 1e-2))
    accuracy = float((model(inputs).argmax(1) == labels).float().mean())
    folder = tmp_path_factory.mktemp("own")
    torch.save(model, folder / "scenes.pt")
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (folder / "scenes.camstream.json").write_text(json.dumps({
        "labels": "labels.txt", "input_size": [48, 64], "mean": [0.5] * 3, "std": [0.25] * 3,
        "resize": "letterbox", "method": "gradcam"}))
    return folder, accuracy


def test_a_fine_tuned_model_runs_end_to_end_with_its_own_labels_and_input(trained_model, tmp_path):
    folder, accuracy = trained_model
    assert accuracy >= 0.9  # it learned the three scenes
    result = camstream("run", "--source", shared_file("video", "dashcam_solidWhiteRight.mp4"), "--model",
                       folder / "scenes.pt", "--max-frames", "12", "--out", tmp_path / "out", "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["model_input"] == {"size": [48, 64], "resize": "letterbox", "classes_named": 3}
    top = report["streams"][0]["top_classes"]
    assert top[0]["label"] == "road" and sum(entry["frames"] for entry in top) == 12, top


def test_the_hud_names_the_fine_tuned_class(trained_model, tmp_path):
    from camstream.stream.pipeline import Pipeline, PipelineConfig

    folder, _accuracy = trained_model
    pipeline = Pipeline(PipelineConfig(source=str(shared_file("video", "dashcam_solidWhiteRight.mp4")),
                                       model=str(folder / "scenes.pt"), sinks=("null",), out_dir=str(tmp_path),
                                       max_frames=4))
    pipeline.run()
    top, _bottom = pipeline.render.hud_lines(pipeline.ring.slots[0])
    assert top.startswith("road "), top


def test_the_model_card_travels_into_the_exported_graph(trained_model, tmp_path, monkeypatch):
    folder, _accuracy = trained_model
    monkeypatch.setenv("CAMSTREAM_CACHE", str(tmp_path / "cache"))
    result = camstream("run", "--backend", "onnxruntime", "--source",
                       shared_file("video", "dashcam_solidWhiteRight.mp4"), "--model", folder / "scenes.pt",
                       "--max-frames", "12", "--out", tmp_path / "out", "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["backend"]["name"] == "onnxruntime"
    assert report["model_input"] == {"size": [48, 64], "resize": "letterbox", "classes_named": 3}
    assert report["streams"][0]["top_classes"][0]["label"] == "road"
    exported = camstream("export", "--model", folder / "scenes.pt", "--out", tmp_path / "scenes.onnx")
    assert exported.returncode == 0, exported.stderr
    from camstream.backends.graph import read_metadata

    metadata = read_metadata(str(tmp_path / "scenes.onnx"))
    assert (metadata["labels"], metadata["input_size"], metadata["resize"], metadata["std"]) == (
        LABELS, [48, 64], "letterbox", [0.25] * 3)


def test_inspect_times_the_plain_forward_and_the_methods_round_by_round(monkeypatch, tmp_path):
    """On a shared machine a figure measured minutes apart from its baseline lies (here `inspect` once printed
    'gradcam++ 0.35× plain' while another job ran): every round times the plain forward and each method side by
    side."""
    from dataclasses import replace

    from camstream.commands import inspect_model as command

    order: list[str] = []

    class Tagged(nn.Module):  # counts its own plain forwards; the methods' calls are counted by their wrapper
        def __init__(self) -> None:
            super().__init__()
            self.net = small_cnn()
            self.in_method = False

        def forward(self, x):
            if not self.in_method:
                order.append("plain")
            return self.net(x)

    model = Tagged()
    torch.save(small_cnn(), tmp_path / "model.pt")
    spec = replace(command.load_model(str(tmp_path / "model.pt")), module=model, input_size=(32, 32), layer="net.3")
    monkeypatch.setattr(command, "load_model", lambda *_args, **_kw: spec)
    real_make_method = command.make_method

    def counted(name, hooked):
        method = real_make_method(name, hooked)

        def call(x, *rest):
            order.append(name)
            model.in_method = True
            try:
                return method(x, *rest)
            finally:
                model.in_method = False

        return call

    monkeypatch.setattr(command, "make_method", counted)
    facts = command.inspect_model("model.pt", rounds=3)
    timed = order[-3 * 5:]  # the last three rounds: the plain forward and the four methods, side by side
    assert [timed[i * 5:(i + 1) * 5] for i in range(3)] == [["plain", "gradcam", "gradcam++", "cam", "recipro"]] * 3
    assert all(cost["ms_min"] <= cost["ms"] <= cost["ms_max"] for cost in facts["methods"])
