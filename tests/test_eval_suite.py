"""`camstream eval` end to end on a few real balloon photos with polygon masks."""

from __future__ import annotations

import json

from .cli import assert_one_line_error, camstream
from .conftest import shared_file


def test_eval_writes_json_and_markdown_with_every_metric(tmp_path):
    data = shared_file("images", "balloon", "train")
    result = camstream("eval", "--data", data, "--class-id", "417", "--methods", "gradcam,recipro",
                       "--thresholds", "10,dynamic", "--limit", "4", "--steps", "4", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["images"] == report["with_truth"] == 4
    names = {m["name"] for m in report["metrics"]}
    assert names >= {"insertion_auc", "deletion_auc", "average_drop", "increase_in_confidence", "pointing_game",
                     "iou", "dice", "precision", "recall", "boundary_f1"}
    for method in ("gradcam", "recipro"):
        entry = report["methods"][method]
        assert set(entry["variants"]) == {"none", "10", "dynamic"}
        assert entry["ms_per_image"] > 0
        for values in entry["variants"].values():
            assert 0.0 <= values["insertion_auc"] <= 1.0 and 0.0 <= values["iou"] <= 1.0
        assert entry["variants"]["10"]["recall"] <= entry["variants"]["none"]["recall"]  # less shown, less found
        assert "t_p" in entry["statistics"]["10"]["insertion_auc"]
    assert "| gradcam | 10 |" in (tmp_path / "eval.md").read_text()


def test_eval_rejects_unknown_methods_and_missing_folders(tmp_path):
    assert_one_line_error(camstream("eval", "--data", tmp_path / "none", "--out", tmp_path), "no such folder")
    assert_one_line_error(camstream("eval", "--data", tmp_path, "--methods", "magic", "--out", tmp_path),
                          "unknown method 'magic'")
