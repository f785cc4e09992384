"""`camstream explain` end to end: real photos, real weights, the overlay file, and bad input."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from .cli import assert_one_line_error, camstream
from .conftest import skimage_rgb


def save(path, rgb: np.ndarray) -> str:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return str(path)


def test_explains_the_cat_as_a_cat(tmp_path, chelsea_rgb):
    image = save(tmp_path / "chelsea.png", chelsea_rgb)
    result = camstream("explain", image, "--out", tmp_path / "overlay.png", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert 281 <= summary["class_id"] <= 285
    assert set(summary) >= {"class_id", "label", "score", "method", "cam_shape", "ms"}
    assert summary["method"] == "gradcam" and summary["cam_shape"] == [7, 7] and 0 < summary["score"] <= 1
    overlay = cv2.imread(str(tmp_path / "overlay.png"))
    assert overlay.shape == chelsea_rgb.shape


def test_explains_the_coffee_as_espresso(tmp_path):
    image = save(tmp_path / "coffee.png", skimage_rgb("coffee"))
    result = camstream("explain", image, "--out", tmp_path / "o.png", "--json", "--method", "recipro")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["class_id"] == 967


@pytest.mark.parametrize("method", ["gradcam", "recipro"])
def test_overlay_heat_sits_on_the_cat(tmp_path, cat_on_canvas, method):
    canvas, (left, top, right, bottom) = cat_on_canvas
    image = tmp_path / "canvas.png"
    cv2.imwrite(str(image), canvas)
    out = tmp_path / "overlay.png"
    result = camstream("explain", image, "--out", out, "--method", method, "--class-id", "285", "--threshold", "20")
    assert result.returncode == 0, result.stderr
    overlay = cv2.imread(str(out))
    assert overlay.shape == canvas.shape
    changed = np.any(overlay != canvas, axis=2)
    fraction_changed = changed.mean()
    assert 0.1 < fraction_changed < 0.3  # top 20 % of the map is drawn
    inside = changed[top:bottom, left:right].sum() / changed.sum()
    assert inside > 0.8  # the cat fills a quarter of the canvas; 7×7 cells blur across its edge


def test_missing_image_is_a_one_line_error(tmp_path):
    assert_one_line_error(camstream("explain", tmp_path / "nope.png", "--out", tmp_path / "o.png"), "no such file")


def test_directory_is_a_one_line_error(tmp_path):
    assert_one_line_error(camstream("explain", tmp_path, "--out", tmp_path / "o.png"), "is a directory")


def test_unreadable_image_is_a_one_line_error(tmp_path):
    bogus = tmp_path / "noise.png"
    bogus.write_bytes(np.random.default_rng(0).bytes(5000))
    assert_one_line_error(camstream("explain", bogus, "--out", tmp_path / "o.png"), "cannot read")


@pytest.mark.parametrize("option,value,fragment", [("--model", "alexnet9", "unknown model"),
                                                   ("--layer", "nope", "no layer named 'nope'")])
def test_unknown_model_or_layer_is_a_one_line_error(tmp_path, chelsea_rgb, option, value, fragment):
    image = save(tmp_path / "c.png", chelsea_rgb)
    assert_one_line_error(camstream("explain", image, "--out", tmp_path / "o.png", option, value), fragment)


def test_unknown_method_is_rejected_with_exit_code_2(tmp_path, chelsea_rgb):
    image = save(tmp_path / "c.png", chelsea_rgb)
    result = camstream("explain", image, "--out", tmp_path / "o.png", "--method", "magic")
    assert result.returncode == 2 and "invalid choice: 'magic'" in result.stderr and "Traceback" not in result.stderr
