"""Adebayo et al.'s sanity checks as a command (issue 19): Grad-CAM++ on EfficientNet-Lite0 keeps the same map
for another class and for a model with a random classifier (it is the activation's magnitude), Grad-CAM does
not."""

from __future__ import annotations

import json

import cv2

from .cli import assert_one_line_error, camstream


def test_sanity_flags_gradcam_plus_plus_and_passes_gradcam_on_the_default_model(tmp_path, monkeypatch, chelsea_rgb):
    monkeypatch.setenv("CAMSTREAM_CACHE", str(tmp_path / "cache"))
    result = camstream("sanity", "--methods", "gradcam,gradcam++", "--frames", "4", "--json")
    assert result.returncode == 0, result.stderr
    methods = json.loads(result.stdout)["methods"]
    assert methods["gradcam"]["passed"] is True
    assert methods["gradcam++"]["passed"] is False
    assert methods["gradcam++"]["class_sensitivity_spearman"] > 0.5 > methods["gradcam"]["class_sensitivity_spearman"]
    assert methods["gradcam++"]["randomisation_spearman"] > 0.5 > methods["gradcam"]["randomisation_spearman"]
    # what sanity found is kept: explaining with the method that failed says so, once; the one that passed, not
    cv2.imwrite(str(tmp_path / "cat.png"), chelsea_rgb[..., ::-1])
    for method, warned in (("gradcam++", True), ("gradcam", False)):
        explained = camstream("explain", tmp_path / "cat.png", "--method", method, "--out", tmp_path / "o.png")
        assert explained.returncode == 0, explained.stderr
        warnings = [line for line in explained.stderr.splitlines() if "failed the sanity checks" in line]
        assert len(warnings) == int(warned), explained.stderr


def test_sanity_refuses_unknown_methods_in_one_line():
    assert_one_line_error(camstream("sanity", "--methods", "magic"), "unknown method 'magic'")
