"""`camstream eval`: faithfulness, localisation and cost of each method, full map vs thresholded maps,
with paired statistics across images. Writes eval.json and eval.md."""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable

import cv2
import numpy as np
import torch

from camstream.eval.boundary import BoundaryF1
from camstream.eval.datasets import load_samples
from camstream.eval.faithfulness import AverageDrop, DeletionAUC, IncreaseInConfidence, InsertionAUC
from camstream.eval.localisation import Dice, IoU, PointingGame, Precision, Recall
from camstream.kernels import ThresholdSpec, parse_threshold, simplify, threshold_value, upsample_bilinear
from camstream.stream.explain import HookedModel, make_method
from camstream.stream.models import load_model
from camstream.stream.preprocess import Preprocessor

LOCALISATION = (PointingGame(), IoU(), Dice(), Precision(), Recall(), BoundaryF1())


def simplified(maps: np.ndarray, spec: ThresholdSpec) -> np.ndarray:
    """Each map thresholded by `spec` with the jitted kernels (values above the threshold kept, others 0)."""
    if spec.keep_percent is None and not spec.dynamic:
        return maps
    if spec.keep_percent is not None:
        return np.stack([simplify(m, spec.keep_percent) for m in maps])
    return np.stack([np.where(m > threshold_value(m, spec), m, 0).astype(np.float32) for m in maps])


def paired_statistics(a: np.ndarray, b: np.ndarray) -> dict:
    """Paired t-test and Wilcoxon signed-rank of a − b, with Cohen's d_z and the rank-biserial correlation."""
    from scipy import stats

    difference = a - b
    if len(difference) < 2 or np.allclose(difference, 0):
        return {"n": len(difference), "mean_difference": float(difference.mean()) if len(difference) else 0.0}
    t = stats.ttest_rel(a, b)
    w = stats.wilcoxon(a, b, zero_method="zsplit")
    ranks = stats.rankdata(np.abs(difference))
    positive, negative = ranks[difference > 0].sum(), ranks[difference < 0].sum()
    return {"n": len(difference), "mean_difference": float(difference.mean()),
            "t": float(t.statistic), "t_p": float(t.pvalue), "wilcoxon_p": float(w.pvalue),
            "cohens_dz": float(difference.mean() / difference.std(ddof=1)) if difference.std(ddof=1) else None,
            "rank_biserial": float((positive - negative) / ranks.sum())}


def run_eval(data: str, out_dir: str, methods: list[str], thresholds: list[str], class_id: int | None = None,
             model: str = "efficientnet_lite0", limit: int | None = None, batch: int = 8, steps: int = 8,
             progress: Callable[[str], None] = print) -> dict:
    """Evaluate `methods` on the images of `data`; returns the results (also written to `out_dir`)."""
    started = time.perf_counter()
    samples = load_samples(data, limit)
    spec = load_model(model)
    height, width = spec.input_size
    rgb = [cv2.cvtColor(cv2.resize(s.image, (width, height), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
           for s in samples]
    pixels = torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).float() / 255.0
    has_truth = np.array([s.truth is not None for s in samples])
    truth = np.stack([cv2.resize(s.truth.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
                      .astype(bool) if s.truth is not None else np.zeros((height, width), bool) for s in samples])
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        frozen = torch.jit.freeze(torch.jit.trace(spec.module.eval(), (pixels[:batch] - mean) / std))
    unmodified: list[torch.Tensor] = []

    def predict(images: torch.Tensor) -> torch.Tensor:
        if images is pixels and unmodified:  # the untouched images are scored once, not once per metric
            return unmodified[0]
        scores = torch.cat([torch.softmax(frozen((chunk - mean) / std), 1) for chunk in images.split(batch)])
        if images is pixels:
            unmodified.append(scores)
        return scores

    specs = {name: parse_threshold(name) for name in ["none", *thresholds]}
    faithfulness = (InsertionAUC(steps), DeletionAUC(steps), AverageDrop(), IncreaseInConfidence())
    results: dict = {"data": os.path.abspath(data), "images": len(samples), "with_truth": int(has_truth.sum()),
                     "model": spec.name, "class_id": class_id, "insertion_deletion_steps": steps,
                     "metrics": [m.describe() for m in (*faithfulness, *LOCALISATION)], "methods": {}}
    preprocessor = Preprocessor(spec, batch)
    for method in methods:
        progress(f"{method}: explaining {len(samples)} images")
        maps, targets, seconds = [], [], 0.0
        with HookedModel(spec.module, (3, height, width)) as hooked:
            explainer = make_method(method, hooked)
            for first in range(0, len(samples), batch):
                chunk = rgb[first:first + batch]
                began = time.perf_counter()
                explanation = explainer(preprocessor(chunk), class_id)
                seconds += time.perf_counter() - began
                targets.append(explanation.class_ids.clone())
                maps.extend(upsample_bilinear(cam, (height, width)) for cam in explanation.cams.numpy())
        maps_array, target_ids = np.stack(maps), torch.cat(targets)
        entry: dict = {"ms_per_image": round(seconds * 1e3 / len(samples), 3), "variants": {}, "statistics": {}}
        per_sample: dict[str, dict[str, np.ndarray]] = {}
        for label, threshold in specs.items():
            progress(f"{method}: metrics for threshold {label}")
            variant = simplified(maps_array, threshold)
            scores = {m.name: m(predict, pixels, variant, target_ids) for m in faithfulness}
            if has_truth.any():
                shown = variant > 0
                for metric in LOCALISATION:
                    given = variant if metric.name == "pointing_game" else shown
                    scores[metric.name] = metric(given[has_truth], truth[has_truth])
            per_sample[label] = scores
            entry["variants"][label] = {name: round(float(values.mean()), 4) for name, values in scores.items()}
        full = entry["variants"]["none"]
        for label in thresholds:
            kept = entry["variants"][label]
            entry["variants"][label]["insertion_retained"] = round(kept["insertion_auc"] / full["insertion_auc"], 4)
            entry["statistics"][label] = {name: paired_statistics(per_sample[label][name], per_sample["none"][name])
                                          for name in ("insertion_auc", "deletion_auc")}
        results["methods"][method] = entry
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "eval.json"), "w") as handle:
        json.dump(results, handle, indent=2)
    with open(os.path.join(out_dir, "eval.md"), "w") as handle:
        handle.write(markdown(results))
    return results


def markdown(results: dict) -> str:
    """Tables in the spirit of the seed paper's Tables 7 and 8, with our measured numbers."""
    lines = [f"# camstream eval\n\n{results['images']} images ({results['with_truth']} with ground truth) from "
             f"`{results['data']}`, model {results['model']}, class {results['class_id'] or 'top-1'}; "
             f"{results['elapsed_s']} s.\n",
             "| method | threshold | insertion AUC ↑ | retained | deletion AUC ↓ | AD ↓ | IIC ↑ | pointing ↑ | IoU ↑ "
             "| Dice ↑ | precision ↑ | recall ↑ | boundary F1 ↑ |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for method, entry in results["methods"].items():
        for label, v in entry["variants"].items():
            local = [f"{v[k]:.3f}" if k in v else "n/a"
                     for k in ("pointing_game", "iou", "dice", "precision", "recall", "boundary_f1")]
            retained = v.get("insertion_retained", 1.0)
            lines.append(f"| {method} | {label} | {v['insertion_auc']:.3f} | {retained:.2f} | "
                         f"{v['deletion_auc']:.3f} | {v['average_drop']:.3f} | {v['increase_in_confidence']:.3f} | "
                         + " | ".join(local) + " |")
    lines += ["", "| method | ms per image |", "|---|---|"]
    lines += [f"| {method} | {entry['ms_per_image']:.1f} |" for method, entry in results["methods"].items()]
    lines += ["", "Paired tests, thresholded vs full map (insertion AUC): mean difference, t-test p, Wilcoxon p, "
              "Cohen's d_z\n", "| method | threshold | mean diff | t p | Wilcoxon p | d_z |",
              "|---|---|---|---|---|---|"]
    for method, entry in results["methods"].items():
        for label, stats in entry["statistics"].items():
            s = stats["insertion_auc"]
            if "t_p" in s:
                lines.append(f"| {method} | {label} | {s['mean_difference']:+.4f} | {s['t_p']:.3g} | "
                             f"{s['wilcoxon_p']:.3g} | {s['cohens_dz']:.2f} |")
    return "\n".join(lines) + "\n"
