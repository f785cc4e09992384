"""The baselines `camstream eval` compares against: our RISE and Score-CAM on a real photo with pretrained
weights, the library adapters, and the clear refusal where a library cannot handle the model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from camstream.errors import CamstreamError, ModelError
from camstream.eval.explainers import EXPLAINERS, make_explainer


def canvas_pixels(cat_on_canvas) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """The cat-on-grey canvas at 224×224 in [0, 1], and the cat's box at that size."""
    canvas, (left, top, right, bottom) = cat_on_canvas
    height, width = canvas.shape[:2]
    rgb = cv2.cvtColor(cv2.resize(canvas, (224, 224), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    box = (left * 224 // width, top * 224 // height, right * 224 // width, bottom * 224 // height)
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0, box


@pytest.mark.parametrize("name", ["rise", "scorecam", "gradcam", "recipro"])
def test_map_peaks_on_the_cat_and_most_heat_lies_there(effnet, cat_on_canvas, name):
    pixels, (left, top, right, bottom) = canvas_pixels(cat_on_canvas)
    explainer = make_explainer(name, effnet)
    try:
        maps, targets = explainer(pixels, 285)
    finally:
        explainer.close()
    assert maps.shape == (1, 224, 224) and maps.dtype == np.float32 and targets.tolist() == [285]
    assert maps.min() >= 0.0 and maps.max() == pytest.approx(1.0)
    y, x = np.unravel_index(int(maps[0].argmax()), maps[0].shape)
    assert left <= x < right and top <= y < bottom
    # the cat covers a quarter of the canvas; a map blind to it would put ~25 % of its mass there (mass above
    # the map's minimum: RISE's map is an expected score, offset by what the masked background scores)
    heat = maps[0] - maps[0].min()
    assert heat[top:bottom, left:right].sum() / heat.sum() > 0.4


def test_rise_masks_are_fixed_by_the_seed_and_keep_about_half(effnet):
    first = make_explainer("rise", effnet).random_masks(64, 64)
    again = make_explainer("rise", effnet).random_masks(64, 64)
    assert torch.equal(first, again) and first.shape == (500, 1, 64, 64)
    assert 0.4 < float(first.mean()) < 0.6 and float(first.min()) >= 0.0 and float(first.max()) <= 1.0


def test_pytorch_grad_cam_baseline_matches_our_gradcam(effnet, chelsea_rgb):
    pytest.importorskip("pytorch_grad_cam")
    rgb = cv2.resize(chelsea_rgb, (224, 224), interpolation=cv2.INTER_AREA)
    pixels = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
    maps = {}
    for name in ("gradcam", "pgc-gradcam"):
        explainer = make_explainer(name, effnet)
        maps[name] = explainer(pixels, 285)[0][0]
        explainer.close()
    assert np.corrcoef(maps["gradcam"].ravel(), maps["pgc-gradcam"].ravel())[0, 1] > 0.99


def test_a_library_that_cannot_handle_the_model_says_so_in_one_line(effnet, chelsea_rgb):
    pytest.importorskip("captum")
    explainer = make_explainer("captum-lrp", effnet)
    with pytest.raises(ModelError, match="captum-lrp cannot run on efficientnet_lite0"):
        explainer(torch.rand(1, 3, 224, 224), 285)


def test_unknown_names_list_every_method():
    with pytest.raises(CamstreamError, match="unknown method 'magic'") as error:
        make_explainer("magic", None)
    assert all(name in str(error.value) for name in EXPLAINERS)


def test_eval_explains_at_the_model_cards_layer_as_a_run_does(effnet):
    from dataclasses import replace

    explainer = make_explainer("gradcam", replace(effnet, layer="blocks.5"))
    try:
        assert explainer.hooked.layer_name == "blocks.5"
    finally:
        explainer.close()
