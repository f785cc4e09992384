"""`camstream eval` end to end on a few real balloon photos with polygon masks."""

from __future__ import annotations

import json

import cv2

from .cli import assert_one_line_error, camstream
from .conftest import shared_file


def test_eval_writes_json_markdown_and_plots_with_every_metric(tmp_path):
    data = shared_file("images", "balloon", "train")
    result = camstream("eval", "--data", data, "--class-id", "417", "--methods", "gradcam,recipro,captum-lrp",
                       "--thresholds", "10,dynamic,faithful", "--limit", "4", "--steps", "4", "--video-frames", "12",
                       "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["images"] == report["with_truth"] == 4
    names = {m["name"] for m in report["metrics"]}
    assert report["max_sensitivity"]["samples"] == 16
    assert names >= {"insertion_auc", "deletion_auc", "insertion_correlation", "deletion_correlation",
                     "average_drop", "increase_in_confidence", "adcc", "max_sensitivity", "pointing_game", "iou",
                     "dice", "precision", "recall", "boundary_f1", "temporal_instability"}
    for method in ("gradcam", "recipro"):
        entry = report["methods"][method]
        assert set(entry["variants"]) == {"none", "10", "dynamic", "faithful"}
        faithful = entry["faithful"]["faithful"]  # per threshold label: each image's search, kept % and share
        assert faithful["images"] == 4 and len(faithful["kept_percents"]) == 4 and 0 <= faithful["reached"] <= 4
        shown = entry["variants"]["faithful"]
        assert abs(shown["region_area"] - faithful["kept_percent_mean"] / 100) < 0.02  # the chosen region is shown
        assert abs(shown["region_score_share"] - faithful["retained_mean"]) < 0.02  # and keeps what it found
        full = entry["variants"]["none"]  # ROAD: the full maps' figure (imputation is too dear for each threshold)
        assert abs(full["road"] - (full["road_lerf"] - full["road_morf"]) / 2) < 2e-4  # each rounded to 4 places
        assert "road" not in entry["variants"]["10"] and -0.5 <= full["road"] <= 0.5
        assert entry["ms_per_image"] > 0 and entry["peak_rss_mb"] >= 0
        for values in entry["variants"].values():
            assert 0.0 <= values["insertion_auc"] <= 1.0 and 0.0 <= values["iou"] <= 1.0
            assert 0.0 <= values["adcc"] <= 1.0 and values["max_sensitivity"] >= 0.0
            assert 0.0 <= values["max_sensitivity_normalised"] < values["max_sensitivity"]  # ‖Φ‖ > 1 at 224 px
            assert -1.0 <= values["insertion_correlation"] <= 1.0
        assert entry["variants"]["10"]["recall"] <= entry["variants"]["none"]["recall"]  # less shown, less found
        kept, full = entry["variants"]["10"], entry["variants"]["none"]
        assert "pointing_game" not in kept["retained"] and "insertion_correlation" not in kept["retained"]
        assert kept["change"]["insertion_correlation"] == round(kept["insertion_correlation"]
                                                                - full["insertion_correlation"], 4)
        assert "t_p" in entry["statistics"]["10"]["insertion_auc"]
        assert entry["precision_recall"]["recall"][-1] == 1.0  # the whole map covers the whole balloon
        temporal = entry["temporal"]
        # the EMA can only calm the map down between frames
        assert temporal["smoothed"]["map_change"] < temporal["raw"]["map_change"]
        assert temporal["smoothed"]["lag_frames"] > 0.5 and temporal["class"] is None  # each frame's own top-1
        assert temporal["constant"]["temporal_instability"] == 0.0  # perfectly steady …
        for kind in ("raw", "smoothed", "constant"):
            assert 0.0 <= temporal[kind]["insertion_auc"] <= 1.0  # … and scored for faithfulness beside it
        assert len(entry["curves"]["none"]["insertion"]) == 5
    assert "captum-lrp cannot run on efficientnet_lite0" in report["skipped"]["captum-lrp"]
    assert "recipro" in report["between_methods"]
    # every compared figure stands beside what a random, a centred and a constant map score on the same images
    baselines = report["baselines"]
    assert set(baselines) == {"random", "centre", "constant"} and 0.0 < report["truth_coverage"] < 1.0
    for kind in baselines:
        assert set(baselines[kind]) == {"road", "road_morf", "road_lerf", "insertion_auc", "deletion_auc",
                                        "insertion_auc_normalised", "deletion_auc_normalised", "pointing_game",
                                        "energy", "iou"}
        assert all(value in (0.0, 1.0) for value in baselines[kind]["pointing_game"])
        assert len(baselines[kind]["deletion_auc"]) == 4
    assert baselines["constant"]["energy"] == [round(c, 4) for c in baselines["constant"]["energy"]]
    for method in ("gradcam", "recipro"):
        compared = report["methods"][method]["against_baselines"]
        assert set(compared) == set(baselines["random"])
        deletion = compared["deletion_auc"]
        best = min(baselines, key=lambda kind: sum(baselines[kind]["deletion_auc"]))  # lower deletion is better
        assert deletion["baseline"] == best and deletion["n"] == 4 and isinstance(deletion["beats"], bool)
    markdown = (tmp_path / "eval.md").read_text()
    summary = markdown.split("## Faithfulness")[0]
    assert "| *random map* |" in summary and "| *centre map* |" in summary and "| *constant map* |" in summary
    assert "ground truth covers" in summary and "## Against the baselines" in summary
    assert "| gradcam | faithful |" in markdown.split("What each threshold's region keeps")[1]
    assert "| gradcam | 10 |" in markdown and "Temporal stability" in markdown and "*constant map*" in markdown
    assert "- **gradcam** " in markdown and "**Small sample: 4 images.**" in markdown
    for plot in ("pr_curves.png", "insertion_deletion.png", "heatmaps.png"):
        image = cv2.imread(str(tmp_path / plot))
        assert image is not None and image.shape[0] > 200 and image.std() > 10  # a real picture, not blank
        assert f"({plot})" in markdown


def test_eval_rejects_unknown_methods_and_missing_folders(tmp_path):
    assert_one_line_error(camstream("eval", "--data", tmp_path / "none", "--out", tmp_path), "no such folder")
    assert_one_line_error(camstream("eval", "--data", tmp_path, "--methods", "magic", "--out", tmp_path),
                          "unknown method 'magic'")
    assert_one_line_error(camstream("eval", "--data", tmp_path, "--video", tmp_path / "missing.mp4", "--out",
                                    tmp_path), "no such video")
    assert_one_line_error(camstream("eval", "--data", tmp_path, "--road-percents", "20,100", "--out", tmp_path),
                          "--road-percents '20,100': give whole percentages from 1 to 99")


def test_eval_scores_vit_methods_on_a_vit(tmp_path):
    data = shared_file("images", "balloon", "train")
    result = camstream("eval", "--data", data, "--model", "deit_tiny", "--methods", "vit-rollout,vit-recipro",
                       "--thresholds", "10", "--limit", "2", "--steps", "2", "--video", "none", "--no-plots",
                       "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "eval.json").read_text())
    for method in ("vit-rollout", "vit-recipro"):
        values = report["methods"][method]["variants"]["10"]
        assert 0.0 <= values["insertion_auc"] <= 1.0 and 0.0 <= values["iou"] <= 1.0
    result = camstream("eval", "--data", data, "--model", "deit_tiny", "--methods", "gradcam", "--limit", "1",
                       "--video", "none", "--no-plots", "--out", tmp_path / "cnn-method")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no method could be evaluated: method 'gradcam' explains CNN models" in result.stderr.splitlines()[-1]


def test_each_method_gets_a_verdict_in_words_coinciding_methods_are_said_once_and_a_small_sample_is_flagged():
    """Issue 29: the verdict sets each figure beside the best of the baselines, image by image. Hand-computed: a
    method better than every baseline on all 10 images has a two-sided Wilcoxon p of 2 / 2**10 = 0.00195 and beats
    them; one worse than the random map on every image does not; a tie everywhere does not."""
    from camstream.eval.baselines import against_baselines
    from camstream.eval.report import _verdicts, coinciding_methods

    ten = [0.1 * i for i in range(10)]
    baselines = {"random": {"insertion_auc": ten, "deletion_auc": [0.01] * 10},
                 "centre": {"insertion_auc": [v + 0.05 for v in ten], "deletion_auc": [0.2] * 10},
                 "constant": {"insertion_auc": [0.0] * 10, "deletion_auc": [0.02] * 10}}
    ours = {"insertion_auc": [v + 0.1 + 0.01 * i for i, v in enumerate(ten)], "deletion_auc": [0.05] * 10}
    compared = against_baselines(ours, baselines)
    insertion, deletion = compared["insertion_auc"], compared["deletion_auc"]
    assert (insertion["baseline"], insertion["better"], insertion["worse"]) == ("centre", 10, 0)
    assert abs(insertion["wilcoxon_p"] - 2 / 2**10) < 1e-12 and insertion["rank_biserial"] == 1.0
    assert insertion["beats"] is True
    assert (deletion["baseline"], deletion["better"], deletion["worse"], deletion["beats"]) == ("random", 0, 10, False)
    left_out = against_baselines({"insertion_auc_normalised": [1.0, None, 2.0, 3.0]},
                                 {"random": {"insertion_auc_normalised": [0.5, 0.5, None, 1.0]}})
    assert left_out["insertion_auc_normalised"]["n"] == 2  # only the images both sides score
    tied = against_baselines({"deletion_auc": [0.01] * 10}, baselines)["deletion_auc"]
    assert (tied["better"], tied["worse"], tied["wilcoxon_p"], tied["beats"]) == (0, 0, 1.0, False)

    same = {"per_image": ours, "against_baselines": compared}
    results = {"images": 10, "methods": {"cam": same, "gradcam": dict(same),
                                         "recipro": {"per_image": {"insertion_auc": ten}, "against_baselines": {}}}}
    assert coinciding_methods(results) == [["cam", "gradcam"]]
    lines = _verdicts(results)
    assert lines[1] == ("- **cam** beats the baselines on insertion AUC (0.595 against a centred map's 0.500, better "
                        "on 10 of 10, p = 0.002); does not beat them on deletion AUC (0.050 against a random map's "
                        "0.010, better on 0 of 10, p = 0.002).")
    assert lines[3] == "- **recipro** was not set beside the baselines."
    assert sum("coincide" in line for line in lines) == 1 and "**cam and gradcam coincide**" in "".join(lines)
    assert "Small sample: 10 images." in lines[-1]
    results["images"] = 20
    assert "Small sample" not in "".join(_verdicts(results))


def test_the_heatmap_grid_outlines_the_ground_truth(tmp_path):
    """eval.md's heatmap grid drew no ground truth: each row's truth is now outlined in white on every panel."""
    import numpy as np

    from camstream.eval.plots import heatmap_grid

    images = np.zeros((2, 64, 64, 3), np.float32)  # black pictures under empty (dark blue) maps: no white anywhere
    maps = {"gradcam": np.zeros((2, 64, 64), np.float32)}
    truth = np.zeros((64, 64), bool)
    truth[16:48, 20:40] = True
    heatmap_grid(maps, images, ["a", "b"], str(tmp_path / "plain.png"))
    heatmap_grid(maps, images, ["a", "b"], str(tmp_path / "outlined.png"), truths=[truth, None])

    def white(path) -> int:  # near-white pixels: the same figure background in both, so the outlines differ
        return int((cv2.imread(str(path)).min(axis=2) > 230).sum())

    plain, outlined = white(tmp_path / "plain.png"), white(tmp_path / "outlined.png")
    assert outlined > plain + 200, (plain, outlined)  # two outlines of a 32×20 box (row a), none on row b


def test_explaining_many_images_says_how_many_are_done_between_its_lines():
    """Issue 28: eval said one line per method and threshold, so a long step over many images went quiet. Its
    steps now beat every few seconds, the explaining step with the images done so far; the beats are progress
    lines (what a one-line-error test lets stand)."""
    import threading

    import numpy as np
    import torch

    from camstream.eval.suite import explain_all
    from camstream.progress import Tally, configure, is_progress_line, step

    configure()
    said: list[str] = []
    first_beat_counted = threading.Event()

    def tell(message: str) -> None:
        said.append(message)
        if "(1/3 images)" in message:
            first_beat_counted.set()

    def explainer(pixels: torch.Tensor, class_id) -> tuple[np.ndarray, torch.Tensor]:
        if explained.done == 1:  # the second batch waits for a beat that counts the first
            assert first_beat_counted.wait(30), said
        return np.zeros((len(pixels), 2, 2), np.float32), torch.zeros(len(pixels), dtype=torch.int64)

    explained = Tally(3, "images")
    with step("gradcam: explaining 3 images", every_s=0.01, tell=tell, tally=explained):
        maps, _ = explain_all(explainer, torch.zeros(3, 3, 2, 2), None, 1, explained)
    assert maps.shape == (3, 2, 2) and explained.done == 3
    assert said[0] == "gradcam: explaining 3 images …"
    assert any(line.startswith("gradcam: explaining 3 images … ") and line.endswith(" s (1/3 images)")
               for line in said), said
    assert all(is_progress_line(f"camstream: {line}") for line in said), said


def test_pointing_at_the_image_scale_takes_a_mask_file_of_another_size(tmp_path):
    """A `_mask.png` at half its photo's size crashed the image-scale pointing game (IndexError): the mask is
    stretched to its photo first."""
    import numpy as np

    photo = np.full((200, 300, 3), 90, np.uint8)
    photo[60:140, 100:200] = (30, 160, 220)
    mask = np.zeros((100, 150), np.uint8)
    mask[30:70, 50:100] = 255
    cv2.imwrite(str(tmp_path / "a.png"), photo)
    cv2.imwrite(str(tmp_path / "a_mask.png"), mask)
    result = camstream("eval", "--data", tmp_path, "--methods", "gradcam", "--thresholds", "10", "--video", "none",
                       "--no-plots", "--road-percents", "none", "--steps", "2", "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert report["with_truth"] == 1 and report["methods"]["gradcam"]["per_image"]["pointing_game"][0] in (0.0, 1.0)
