"""eval's fast path: the scorer and torch's CAM methods computed by OpenVINO / ONNX Runtime from exported graphs
that take the float pixels eval perturbs, and must give what torch gives."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from camstream.backends.factory import pixels_graph
from camstream.backends.graph import resolve_runtime
from camstream.errors import CamstreamError
from camstream.eval.explainers import make_explainer
from camstream.eval.suite import EvalPlan, run_eval
from camstream.model.load import ModelSpec
from camstream.model.preprocess import Normaliser

from .conftest import shared_file

RUNTIMES = ("openvino", "onnxruntime")


@pytest.fixture(scope="module")
def pixels(chelsea_rgb) -> torch.Tensor:
    """Two photos in [0, 1] at 224×224, one with noise added as max-sensitivity does (not uint8 values)."""
    image = cv2.resize(chelsea_rgb, (224, 224), interpolation=cv2.INTER_AREA)
    batch = torch.from_numpy(np.stack([image, image[:, ::-1]])).permute(0, 3, 1, 2).float() / 255.0
    batch[1] = (batch[1] + torch.rand(batch[1].shape, generator=torch.Generator().manual_seed(0)) * 0.04 - 0.02)
    return batch.clamp(0, 1)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_plain_pixels_graph_scores_as_the_torch_model(effnet, pixels, runtime, tmp_path, monkeypatch):
    monkeypatch.setenv("CAMSTREAM_CACHE", str(tmp_path))
    logits = pixels_graph(effnet, None, runtime)(pixels.numpy())[0]
    with torch.inference_mode():
        expected = effnet.module(Normaliser(effnet)(pixels))
    assert logits.shape == (2, 1000)
    assert (torch.softmax(torch.from_numpy(logits), 1) - torch.softmax(expected, 1)).abs().max() < 1e-5
    assert list(tmp_path.glob("exports/eval-plain-*.onnx"))  # kept for the next eval


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("method", ["cam", "gradcam", "gradcam++", "recipro"])
def test_exported_methods_give_torchs_maps_and_classes(effnet, pixels, runtime, method, tmp_path, monkeypatch):
    monkeypatch.setenv("CAMSTREAM_CACHE", str(tmp_path))
    exported = make_explainer(method, effnet, runtime=runtime)
    reference = make_explainer(method, effnet)
    try:
        assert exported.computed_by == f"{runtime} (exported graph)" and reference.computed_by == "torch"
        for wanted in (None, 417, torch.tensor([281, 285])):
            maps, targets = exported(pixels, wanted)
            expected_maps, expected_targets = reference(pixels, wanted)
            assert torch.equal(targets, expected_targets)
            assert np.abs(maps - expected_maps).max() < 2e-4, wanted
    finally:
        exported.close()
        reference.close()


class _FlattenHead(nn.Module):
    """Conv features read by a linear layer over every position: no global average pool to differentiate."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.ReLU())
        self.classifier = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def test_a_head_the_graph_cannot_reproduce_stays_on_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMSTREAM_CACHE", str(tmp_path))
    spec = ModelSpec("flatten-head", _FlattenHead().eval(), input_size=(32, 32), labels=("a", "b", "c"))
    explainer = make_explainer("gradcam", spec, runtime="openvino")
    try:
        assert explainer.computed_by == "torch"
        maps, targets = explainer(torch.rand(2, 3, 32, 32), None)
        assert maps.shape == (2, 32, 32) and targets.shape == (2,)
    finally:
        explainer.close()


def test_runtimes_resolve_to_an_installed_one_and_unknown_ones_are_refused():
    assert resolve_runtime("auto") == "openvino"  # both are installed with the test extra; OpenVINO is faster
    assert resolve_runtime("torch") == "torch" and resolve_runtime("onnxruntime") == "onnxruntime"
    with pytest.raises(CamstreamError, match="unknown runtime 'tensorrt'.*auto, torch, openvino, onnxruntime"):
        resolve_runtime("tensorrt")


def test_eval_on_openvino_reports_what_torch_reports(tmp_path):
    data = shared_file("images", "balloon", "train")
    reports = {}
    for runtime in ("torch", "openvino"):
        plan = EvalPlan(methods=["gradcam", "recipro"], thresholds=["10"], class_id=417, limit=2, steps=4,
                        runtime=runtime, plots=False)
        run_eval(str(data), str(tmp_path / runtime), plan, progress=lambda _: None)
        reports[runtime] = json.loads((tmp_path / runtime / "eval.json").read_text())
    fast, slow = reports["openvino"], reports["torch"]
    assert fast["runtime"] == "openvino" and slow["runtime"] == "torch"
    # the model passes are counted and timed: what the run cost, and how fast the machine was
    assert fast["scoring"]["images"] == slow["scoring"]["images"] > 0 and fast["scoring"]["ms_per_image"] > 0
    summary = (tmp_path / "openvino" / "eval.md").read_text()
    assert f"scoring {fast['scoring']['images']} perturbed images on openvino" in summary
    assert "own methods of the torch backend, computed by openvino (exported graph)" in summary  # not "on torch"
    for method in ("gradcam", "recipro"):
        assert fast["methods"][method]["computed_by"] == "openvino (exported graph)"
        assert slow["methods"][method]["computed_by"] == "torch"
        for name, values in slow["methods"][method]["per_image"].items():
            assert np.allclose(fast["methods"][method]["per_image"][name], values, atol=2e-3), (method, name)
