"""A user's own classifier file (issue 17, first part): its own class names through --labels, a TorchScript file
refused with one line that says what to give instead, and the public API's names."""

from __future__ import annotations

import json

import cv2
import pytest
import torch
from torch import nn

from camstream.errors import ModelError

from .cli import assert_one_line_error, camstream

LABELS = ("pedestrian", "cyclist", "empty road")


def three_class_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3)).eval()


@pytest.fixture
def own_model(tmp_path, chelsea_rgb):
    torch.save(three_class_model(), tmp_path / "model.pt")
    (tmp_path / "labels.txt").write_text("\n".join(LABELS) + "\n")
    cv2.imwrite(str(tmp_path / "photo.png"), chelsea_rgb[..., ::-1])
    return tmp_path


def test_explain_names_the_class_with_the_models_own_labels(own_model):
    result = camstream("explain", own_model / "photo.png", "--model", own_model / "model.pt", "--labels",
                       own_model / "labels.txt", "--out", own_model / "overlay.png", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["class_id"] in (0, 1, 2) and summary["label"] == LABELS[summary["class_id"]]


def test_run_shows_the_models_own_labels_on_the_hud(own_model, demo_clip):
    from camstream.stream.pipeline import Pipeline, PipelineConfig

    pipeline = Pipeline(PipelineConfig(source=str(demo_clip), model=str(own_model / "model.pt"),
                                       labels=str(own_model / "labels.txt"), sinks=("null",),
                                       out_dir=str(own_model / "out"), max_frames=8))
    pipeline.run()
    top, _bottom = pipeline.render.hud_lines(pipeline.ring.slots[0])
    assert top.split(" 0.")[0] in LABELS, top  # "cyclist 0.41 | gradcam …", never an ImageNet name
    assert pipeline.report["total"]["frames_out"] == 8


def test_a_missing_or_empty_labels_file_is_one_line_before_the_model_loads(own_model):
    (own_model / "empty.txt").write_text("\n\n")
    for labels, message in ((own_model / "none.txt", "cannot read labels file"), (own_model / "empty.txt",
                                                                                     "has no labels")):
        assert_one_line_error(camstream("run", "--labels", labels, "--out", own_model / "out"), message)
    assert not (own_model / "out").exists()


def test_a_torchscript_file_is_refused_with_what_to_give_instead(own_model):
    scripted = torch.jit.script(three_class_model())
    scripted.save(str(own_model / "scripted.pt"))
    assert_one_line_error(camstream("run", "--model", own_model / "scripted.pt", "--out", own_model / "out"),
                          "a TorchScript model cannot be explained")
    import camstream as api

    with pytest.raises(ModelError, match=r"torch.save\(model\)"):  # was a raw RuntimeError from a hook
        api.explain(scripted, torch.rand(1, 3, 64, 64))


def test_the_public_api_lists_its_names_and_ships_its_types():
    import importlib.resources

    import camstream as api

    assert set(api.__all__) == {"explain", "overlay", "Explanation", "ModelCard", "ModelKind", "__version__"}
    assert set(api.__all__) <= set(dir(api))
    assert callable(api.explain) and api.Explanation.__name__ == "Explanation"
    assert importlib.resources.files("camstream").joinpath("py.typed").is_file()
