"""Each method against an independent oracle, on real photos, in batches with different targets."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch

from camstream.explain import HookedModel, make_method

from .conftest import random_weights_model, skimage_rgb, to_batch

MODELS = ["efficientnet_lite0", "mobilenet_v2", "resnet18"]
TARGETS = [285, 967, 417, 817]  # Egyptian cat, espresso, balloon, sports car


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(np.corrcoef(a, b)[0, 1])


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [skimage_rgb(name) for name in ("chelsea", "coffee", "astronaut", "rocket")]


@pytest.fixture(scope="module", params=MODELS)
def model_and_batch(request, photos):
    if request.param == "efficientnet_lite0":
        from camstream.model.load import load_model

        spec = load_model()
    else:
        spec = random_weights_model(request.param)
    return spec, to_batch(spec, photos)


def ours(spec, batch, method: str) -> tuple[np.ndarray, str]:
    with HookedModel(copy.deepcopy(spec.module)) as hooked:
        cams = make_method(method, hooked)(batch, torch.tensor(TARGETS)).maps.numpy().copy()
        return cams, hooked.layer_name


def upsampled(cams: np.ndarray, size: int = 224) -> np.ndarray:
    return np.stack([cv2.resize(cam, (size, size), interpolation=cv2.INTER_LINEAR) for cam in cams])


def assert_maps_agree(mine: np.ndarray, theirs: np.ndarray, minimum: float = 0.99) -> None:
    assert mine.shape == theirs.shape
    for index, (a, b) in enumerate(zip(mine, theirs, strict=True)):
        if np.ptp(a) == 0 and np.ptp(b) == 0:
            continue  # both empty (every weighted sum negative): agree
        assert correlation(a, b) > minimum, f"sample {index} (target {TARGETS[index]})"


@pytest.mark.parametrize("method,oracle", [("gradcam", "GradCAM"), ("gradcam++", "GradCAMPlusPlus")])
def test_matches_pytorch_grad_cam(model_and_batch, method, oracle):
    pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    spec, batch = model_and_batch
    mine, layer_name = ours(spec, batch, method)
    model = copy.deepcopy(spec.module)
    layer = dict(model.named_modules())[layer_name]
    with getattr(pytorch_grad_cam, oracle)(model=model, target_layers=[layer]) as extractor:
        theirs = extractor(input_tensor=batch.clone(), targets=[ClassifierOutputTarget(t) for t in TARGETS])
    assert_maps_agree(upsampled(mine), theirs)


# torchcam's Grad-CAM++ uses another closed form (sum_ij A·g³ in the denominator), so only Grad-CAM is compared
@pytest.mark.parametrize("method,oracle", [("gradcam", "GradCAM")])
def test_matches_torchcam(model_and_batch, method, oracle):
    methods = pytest.importorskip("torchcam.methods")
    spec, batch = model_and_batch
    mine, layer_name = ours(spec, batch, method)
    model = copy.deepcopy(spec.module)
    with getattr(methods, oracle)(model, target_layer=layer_name) as extractor:
        scores = model(batch.clone())
        theirs = extractor(class_idx=TARGETS, scores=scores)[0].detach().numpy()
    assert_maps_agree(mine, theirs)


def test_cam_equals_gradcam_on_gap_linear_heads(model_and_batch):
    spec, batch = model_and_batch
    cam, _ = ours(spec, batch, "cam")
    gradcam, _ = ours(spec, batch, "gradcam")
    assert_maps_agree(cam, gradcam)


@pytest.mark.parametrize("method", ["recipro", "gradcam", "gradcam++", "cam"])
def test_heatmap_peak_lies_on_the_cat(effnet, cat_on_canvas, method):
    """Pretrained weights: the cat pasted in the lower-right quarter of a grey canvas draws the map's peak."""
    canvas_bgr, (left, top, right, bottom) = cat_on_canvas
    batch = to_batch(effnet, [cv2.cvtColor(canvas_bgr, cv2.COLOR_BGR2RGB)])
    with HookedModel(effnet.module) as hooked:
        explanation = make_method(method, hooked)(batch, 285)
    heat = cv2.resize(explanation.maps[0].numpy(), (canvas_bgr.shape[1], canvas_bgr.shape[0]),
                      interpolation=cv2.INTER_LINEAR)
    y, x = np.unravel_index(int(heat.argmax()), heat.shape)
    assert left <= x < right and top <= y < bottom
    inside = heat[top:bottom, left:right].sum() / heat.sum()
    assert inside > 0.5
