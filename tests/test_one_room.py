"""The proof that a runtime and an exportable method are each one room (issue 25): a toy runtime (one
`GraphSession` class: ONNX's own reference evaluator, pure NumPy) and a toy method (one `CamMethod` class) run
through `camstream explain`'s function, the Python API and a one-stream pipeline, and the exported graph of the
toy method gives torch's maps."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from camstream.backends import BackendRequest, make_backend
from camstream.backends import graph as graph_module
from camstream.explain import registry
from camstream.explain.base import CamMethod
from camstream.model.card import ModelCard

SIDE = 32


class MaxGradientCam(CamMethod):
    """A toy method: w_k = max_ij ∂y_c/∂A_kij (Grad-CAM with the max in place of the mean)."""

    name = "toy-max-gradient"
    needs_gradient = True

    def channel_weights(self, activation, gradient, targets):
        return gradient.amax((2, 3))


class ReferenceSession(graph_module.GraphSession):
    """A toy runtime: ONNX's reference evaluator, which runs any graph in NumPy."""

    name, module, extra = "onnx-reference", "onnx", "onnx"

    def __init__(self, path, threads=None, device="cpu"):
        super().__init__(path, threads, device)
        from onnx.reference import ReferenceEvaluator

        self.load()
        self._evaluator = ReferenceEvaluator(path)
        self.provider = "onnx reference evaluator"

    def __call__(self, *inputs):
        return self._evaluator.run(None, dict(zip(self._evaluator.input_names, inputs, strict=True)))


@pytest.fixture
def toys(monkeypatch, tmp_path):
    """Both toys registered (one call each), and gone again after the test; a small CNN file and a photo."""
    pytest.importorskip("onnx", reason="the onnx extra (in the test extra) provides the reference evaluator")
    tables = (registry.REGISTRY[registry.ModelKind.CNN], registry.CAM_METHODS, registry.FRAME_METHODS,
              graph_module.RUNTIMES)
    saved = [dict(table) for table in tables]
    registry.register_method(MaxGradientCam)
    graph_module.register_runtime(ReferenceSession)
    monkeypatch.setenv("CAMSTREAM_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5)).eval()
    torch.save(model, tmp_path / "model.pt")
    yield tmp_path
    for table, entries in zip(tables, saved, strict=True):
        table.clear()
        table.update(entries)


LAYER = "2"  # the second convolution: a ReLU stands between it and the pooling, so the gradient varies by cell


def request(folder, backend: str, method: str = MaxGradientCam.name) -> BackendRequest:
    return BackendRequest(backend, str(folder / "model.pt"), method, layer=LAYER, max_batch=2,
                          card=ModelCard(input_size=(SIDE, SIDE)))


def test_a_toy_method_exports_and_runs_on_a_toy_runtime_with_torchs_maps(toys, chelsea_rgb):
    frames = [cv2.resize(chelsea_rgb, (SIDE, SIDE)), cv2.resize(chelsea_rgb[::-1].copy(), (SIDE, SIDE))]
    reference = make_backend(request(toys, "torch"))
    toy = make_backend(request(toys, ReferenceSession.name))
    assert toy.name == "onnx-reference" and toy.method == "toy-max-gradient" and toy.provider.startswith("onnx ref")
    expected, found = reference.explain(frames), toy.explain(frames)
    assert np.asarray(found.maps).shape == (2, SIDE // 2, SIDE // 2)
    np.testing.assert_allclose(np.asarray(found.maps), np.asarray(expected.maps), atol=1e-4)
    np.testing.assert_array_equal(np.asarray(found.class_ids), np.asarray(expected.class_ids))
    # the max is not the mean: the toy's maps are its own, not Grad-CAM's under another name
    gradcam = make_backend(request(toys, "torch", "gradcam")).explain(frames)
    assert float(np.abs(np.asarray(gradcam.maps) - np.asarray(expected.maps)).max()) > 1e-3


def test_the_toys_run_through_explain_and_a_one_stream_pipeline(toys, chelsea_rgb, demo_clip):
    import camstream
    from camstream.commands.explain_image import explain_image
    from camstream.stream.config import PipelineConfig
    from camstream.stream.pipeline import Pipeline

    cv2.imwrite(str(toys / "photo.png"), chelsea_rgb[..., ::-1])
    summary = explain_image(str(toys / "photo.png"), str(toys / "overlay.png"), str(toys / "model.pt"),
                            MaxGradientCam.name, layer=LAYER, backend=ReferenceSession.name,
                            card=ModelCard(input_size=(SIDE, SIDE)))
    assert summary["backend"] == "onnx-reference" and summary["method"] == "toy-max-gradient"
    assert cv2.imread(str(toys / "overlay.png")).shape[:2] == chelsea_rgb.shape[:2]

    api = camstream.explain(torch.load(toys / "model.pt", weights_only=False), torch.rand(2, 3, SIDE, SIDE),
                            method=MaxGradientCam.name, layer=LAYER)
    assert api.method == "toy-max-gradient" and tuple(api.maps.shape) == (2, SIDE // 2, SIDE // 2)

    config = PipelineConfig(source=str(demo_clip), model=str(toys / "model.pt"), method=MaxGradientCam.name,
                            layer=LAYER, backend=ReferenceSession.name, input_size=(SIDE, SIDE), sinks=("null",),
                            max_frames=6, out_dir=str(toys / "run"))
    Pipeline(config).run()
    report = json.loads((toys / "run" / "report.json").read_text())
    assert report["total"]["frames_out"] == 6 and report["streams"][0]["error"] is None
    assert report["backend"]["name"] == "onnx-reference" and report["method"] == "toy-max-gradient"
