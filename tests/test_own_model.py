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
    assert_one_line_error(camstream("inspect", own_model / "scripted.pt"),  # was a traceback from a hook
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


PICKLED_IN_A_SCRIPT = """
import sys, torch
class Net(torch.nn.Module):  # defined in the script itself: pickle records it as __main__.Net
    def __init__(self):
        super().__init__()
        self.conv, self.fc = torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(4, 2)
    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))
torch.save(Net(), sys.argv[1])
"""


def test_a_pickled_class_that_cannot_be_imported_is_named_with_what_to_do(tmp_path):
    """It said "neither TorchScript nor a pickled nn.Module (AttributeError)"; the cause is the class."""
    import subprocess
    import sys

    saved = subprocess.run([sys.executable, "-c", PICKLED_IN_A_SCRIPT, str(tmp_path / "net.pt")], capture_output=True,
                           text=True, timeout=120)
    assert saved.returncode == 0, saved.stderr
    assert_one_line_error(camstream("run", "--model", tmp_path / "net.pt", "--out", tmp_path / "out"),
                          "the class Net of the module '__main__' cannot be imported here (it was defined in the "
                          "script that saved it)")
    assert_one_line_error(camstream("inspect", tmp_path / "net.pt"), "save a state dict")


def test_weights_for_another_class_count_name_the_tensors_and_both_counts(tmp_path):
    """It said "Error(s) in loading state_dict for ResNet:" and stopped."""
    torchvision = pytest.importorskip("torchvision")
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "ten.pt")
    assert_one_line_error(camstream("run", "--model", "resnet18", "--weights", tmp_path / "ten.pt", "--out",
                                    tmp_path / "out"),
                          "fc.weight is [10, 512] in the file, [1000, 512] in the model")
    result = camstream("inspect", "resnet18", "--weights", tmp_path / "ten.pt")
    assert_one_line_error(result, "the weights have 10 outputs and the model was built for 1000")
    assert "give --labels with 10 class names" in result.stderr
    state = torchvision.models.resnet18().state_dict()
    torch.save({f"module.{key}": value for key, value in state.items()}, tmp_path / "parallel.pt")
    assert_one_line_error(camstream("run", "--model", "resnet18", "--weights", tmp_path / "parallel.pt", "--out",
                                    tmp_path / "out"), "save model.module.state_dict() instead")


def test_an_input_size_that_moves_the_target_layer_is_a_warning(tmp_path):
    result = camstream("run", "--input-size", "8", "8", "--max-frames", "2", "--sink", "null", "--out", tmp_path,
                       "-q")
    assert result.returncode == 0, result.stderr
    assert ("camstream: warning: at 8×8 the last layer with a spatial map is 'blocks.2.0.bn1', not 'bn2' as at "
            "224×224") in result.stderr
