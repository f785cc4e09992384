"""Label-aware localisation (issue 19): each box against the map of its own class, with coverage and a random and
a centred baseline beside every figure; pinned on hand-made cases, then run on the shared indoor photos."""

from __future__ import annotations

import json

import numpy as np
import torch

from camstream.eval.baselines import baseline_maps
from camstream.eval.datasets import Sample
from camstream.eval.labelled import (
    best_classes,
    imagenet_classes_of_labels,
    labelled_boxes,
    localisation_scores,
)

from .cli import camstream
from .conftest import shared_file


def test_boxes_are_grouped_by_mapped_label_and_unmapped_labels_are_counted():
    image = np.zeros((100, 200, 3), np.uint8)
    sample = Sample("a.jpg", image, None, [("tvmonitor", 0, 0, 99, 49), ("tvmonitor", 100, 50, 199, 99),
                                           ("person", 10, 10, 20, 20), ("chair", 0, 50, 49, 99)])
    pairs = labelled_boxes([sample], (50, 100))
    assert pairs.labels == ["chair", "tvmonitor"] and dict(pairs.skipped) == {"person": 1}
    assert pairs.candidates[1] == imagenet_classes_of_labels()["tvmonitor"] == [527, 664, 782, 851]
    assert pairs.truth[1].sum() == 50 * 25 * 2  # both monitor boxes, scaled by ½ in each axis
    assert abs(pairs.coverage - (0.125 + 0.5) / 2) < 0.01


def test_the_class_explained_for_a_box_is_the_best_scoring_of_its_labels_ids():
    probabilities = torch.zeros(2, 1000)
    probabilities[0, 851], probabilities[0, 664], probabilities[1, 559] = 0.3, 0.2, 0.1
    sample = Sample("a.jpg", np.zeros((10, 10, 3), np.uint8), None, [("tvmonitor", 0, 0, 5, 5)])
    other = Sample("b.jpg", np.zeros((10, 10, 3), np.uint8), None, [("chair", 0, 0, 5, 5)])
    assert best_classes(probabilities, labelled_boxes([sample, other], (10, 10))).tolist() == [851, 559]


def test_scores_on_hand_made_maps_and_what_the_baselines_give():
    truth = np.zeros((1, 40, 40), bool)
    truth[0, :20, :20] = True  # the top-left quarter
    inside = np.zeros((1, 40, 40), np.float32)
    inside[0, 5:15, 5:15] = 1.0
    scores = localisation_scores(inside, truth)
    assert scores["pointing_game"] == 1.0 and scores["energy_in_box"] == 1.0 and scores["precision"] == 1.0
    assert scores["iou"] == 0.25  # the kept 10×10 square in the 20×20 box
    flat = localisation_scores(np.ones((1, 40, 40), np.float32), truth)
    assert flat["energy_in_box"] == 0.25  # a map that lights everything scores the coverage
    centre = baseline_maps("centre", 1, (40, 40))
    assert centre[0].argmax() in (np.ravel_multi_index((19, 19), (40, 40)), np.ravel_multi_index((20, 20), (40, 40)))
    random = baseline_maps("random", 3, (40, 40))
    assert random.shape == (3, 40, 40) and abs(float(random.mean()) - 0.5) < 0.02


def test_eval_on_the_indoor_photos_scores_each_box_label_with_coverage_and_baselines(tmp_path):
    data = shared_file("images", "indoor_boxes")
    result = camstream("eval", "--data", data, "--methods", "gradcam", "--thresholds", "dynamic", "--limit", "6",
                       "--steps", "4", "--video", "none", "--no-plots", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    aware = report["label_aware"]
    assert aware["pairs"] >= 6 and 0.0 < aware["coverage"] < 1.0 and set(aware["baselines"]) == {"random", "centre"}
    assert "person" not in aware["labels"]
    own = report["methods"]["gradcam"]["label_aware"]
    assert set(own) == {"pointing_game", "energy_in_box", "iou", "precision"}
    assert all(0.0 <= value <= 1.0 for value in own.values())
    markdown = (tmp_path / "eval.md").read_text()
    assert "## Localisation per box label" in markdown and "*random baseline*" in markdown
    assert f"{aware['coverage']:.1%}" in markdown
    summary = markdown.split("## Summary")[1].split("\n## ")[0]  # the one screen that opens the report
    assert "| gradcam |" in summary and "*random map*" in summary and "*centre map*" in summary and " ± " in summary
