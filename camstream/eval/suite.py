"""`camstream eval`: faithfulness, localisation, robustness and cost of each method, full map vs thresholded
maps, with paired statistics across images. Writes eval.json, eval.md and (with matplotlib) PNG plots."""

from __future__ import annotations

import os
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from camstream.backends.factory import pixels_graph
from camstream.backends.graph import resolve_runtime
from camstream.errors import CamstreamError
from camstream.eval.baselines import BASELINES, COMPARED, against_baselines, baseline_maps
from camstream.eval.boundary import BoundaryF1
from camstream.eval.datasets import load_clip_frames, load_samples
from camstream.eval.explainers import EvalExplainer, make_explainer
from camstream.eval.faithfulness import (
    Adcc,
    AverageDrop,
    DeletionAUC,
    DeletionAUCNormalised,
    DeletionCorrelation,
    IncreaseInConfidence,
    InsertionAUC,
    InsertionAUCNormalised,
    InsertionCorrelation,
    RegionArea,
    RegionScoreShare,
    target_scores,
)
from camstream.eval.labelled import best_classes, labelled_boxes, localisation_scores
from camstream.eval.localisation import (
    Dice,
    Energy,
    IoU,
    PointingGame,
    Precision,
    Recall,
    precision_recall_curve,
)
from camstream.eval.metric import Metric
from camstream.eval.report import markdown
from camstream.eval.road import ROAD_PERCENTS, Road, RoadLeastRelevantFirst, RoadMostRelevantFirst
from camstream.eval.robustness import MaxSensitivity, MaxSensitivityNormalised, TemporalLag, TemporalStability
from camstream.explain.faithful import SCORE_FLOOR, FaithfulChoice, FaithfulSearch
from camstream.explain.result import evaluation_mode
from camstream.kernels import CamSmoother, thresholded
from camstream.model.card import ModelCard
from camstream.model.load import load_model
from camstream.model.preprocess import Normaliser, Placement, resize_mask, resize_to_rgb
from camstream.progress import Tally, step
from camstream.runtime import RssPeak, release_free_memory
from camstream.storage import check_writable_folder, write_json_atomic
from camstream.threshold_spec import ThresholdSpec, parse_threshold

POINTING = PointingGame()  # 15 px, as Zhang et al.
LOCALISATION = (POINTING, Energy(), IoU(), Dice(), Precision(), Recall(), BoundaryF1())
# Methods that need hundreds of forward passes per image: the metrics that explain again (ADCC's coherency,
# max-sensitivity) and the video are skipped for them, and say so.
EXPENSIVE = {"rise", "scorecam", "captum-lime"}


@dataclass
class EvalPlan:
    """What `run_eval` measures; the defaults are those of `camstream eval`."""

    methods: list[str] = field(default_factory=lambda: ["cam", "gradcam", "gradcam++", "recipro"])
    thresholds: list[str] = field(default_factory=lambda: ["1", "5", "10", "20", "dynamic", "faithful"])
    class_id: int | None = None  # the photos' class (None: each photo's top-1)
    video_class_id: int | None = None  # the video's class (None: each frame's own top-1)
    model: str = "efficientnet_lite0"
    weights: str | None = None
    card: ModelCard | None = None  # the model-card options (labels, input size, mean/std, resize)
    backend: str = "torch"  # what runs camstream's own methods as a stream would (the baselines: torch)
    runtime: str = "auto"  # what computes the scorer and torch's methods (exported graphs; see resolve_runtime)
    limit: int | None = None
    batch: int = 8
    # against 224 steps, on the mean AUC of the shared balloon photos: 8 steps 0.011 off, 10 steps 0.007, 12 0.006,
    # 16 0.004
    steps: int = 10
    video: str | None = None  # clip for temporal stability; None: skip
    video_frames: int = 96
    smooth: float = 0.6
    plots: bool = True
    road_percents: tuple[int, ...] = ROAD_PERCENTS  # ROAD's removal percentages for the full maps; () skips it
    pointing_scale: str = "image"  # the pointing game's 15 px: on each original image ("image") or the input


@dataclass
class _Scorers:
    """The metrics of one eval: `faithfulness` on every threshold's maps, `road` on the full maps only (each map
    imputes every image once per percentage and order), `sensitivity` (max-sensitivity; its noisy copies are
    also scored `normalised`)."""

    faithfulness: tuple
    road: tuple
    sensitivity: MaxSensitivity
    normalised: MaxSensitivityNormalised


def simplified(maps: np.ndarray, spec: ThresholdSpec, keep_percents: list[float] | None = None) -> np.ndarray:
    """Each map thresholded by `spec` with the jitted kernels (values above the threshold kept, others 0); a
    faithful spec keeps each map's top `keep_percents` entry (its search's choice for that image)."""
    if spec.keep_percent is None and not spec.dynamic and spec.faithful is None:
        return maps
    specs = [spec] * len(maps)
    if spec.faithful is not None:
        if keep_percents is None:
            raise ValueError("a faithful threshold needs each image's chosen keep-percentage")
        specs = [ThresholdSpec(keep_percent=keep) for keep in keep_percents]
    return np.stack([thresholded(m, one) for m, one in zip(maps, specs, strict=True)])


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


def listed(values: np.ndarray) -> list[float | None]:
    """Per-image figures for eval.json, to 4 places; an image a figure leaves out (NaN) is null."""
    return [None if np.isnan(value) else round(float(value), 4) for value in values]


def mean_of(values: np.ndarray) -> float | None:
    """The mean of the images a figure scores (NaN: left out), to 4 places; None when it scores none."""
    kept = values[~np.isnan(values)]
    return round(float(kept.mean()), 4) if kept.size else None


def explain_all(explainer: EvalExplainer, pixels: torch.Tensor, class_id,
                batch: int, tally: Tally | None = None) -> tuple[np.ndarray, torch.Tensor]:
    """Maps (N, H, W) and targets (N,) of every image, `batch` at a time; `class_id` an int, None or (N,);
    the images done so far counted in `tally`."""
    maps, targets = [], []
    for first in range(0, len(pixels), batch):
        wanted = class_id[first:first + batch] if isinstance(class_id, torch.Tensor) else class_id
        chunk_maps, chunk_targets = explainer(pixels[first:first + batch], wanted)
        maps.append(chunk_maps)
        targets.append(chunk_targets)
        if tally is not None:
            tally.done = min(first + batch, len(pixels))
    return np.concatenate(maps), torch.cat(targets)


class _Images:
    """The evaluated images at the model's input size, their ground truth, and the scorer: the model on the
    plan's runtime (an exported graph), or frozen torch."""

    def __init__(self, data: str, plan: EvalPlan) -> None:
        samples, self.skipped_files = load_samples(data, plan.limit)  # damaged files skipped and counted
        self.spec = load_model(plan.model, plan.weights, plan.card)
        height, width = self.size = self.spec.input_size
        resize = self.spec.resize  # images and their truth are placed on the input as a stream places frames
        rgb = [resize_to_rgb(s.image, (height, width), resize) for s in samples]
        self.names = [s.name for s in samples]
        self.shapes = [s.image.shape[:2] for s in samples]  # the originals' (height, width), for the plots
        self.pixels = torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).float() / 255.0
        self.has_truth = np.array([s.truth is not None for s in samples])
        self.truth = np.stack([resize_mask(s.truth, (height, width), resize) if s.truth is not None
                               else np.zeros((height, width), bool) for s in samples])
        # the pointing game at each image's own scale (Zhang et al.'s 15 px): where on the original the truth is
        # near, and how the original was placed on the input
        self.pointing_at_image_scale = plan.pointing_scale == "image"
        with_truth = [s for s in samples if s.truth is not None]
        self.near = [POINTING.near_truth(_on_image(s.truth, s.image.shape[:2])) for s in with_truth] if (
            self.pointing_at_image_scale) else []
        self.placements = [Placement.of(s.image.shape[:2], (height, width), resize) for s in with_truth]
        self.pairs = labelled_boxes(samples, (height, width), resize=resize)  # box labels → ImageNet classes
        self.pair_classes: torch.Tensor | None = None  # each pair's class, once the scorer is ready
        # images per model call, scoring included (OpenVINO, Lite0, 6 interleaved rounds here: 10.0 ms an image in
        # 8s, 11.1 in 16s)
        self.batch = plan.batch
        self.runtime = resolve_runtime(plan.runtime)
        self.logits = self._scorer()
        self.scored, self.scoring_s = 0, 0.0  # images the scorer ran, and its time: the host's speed in the report
        self._unmodified: torch.Tensor | None = None
        if len(self.pairs.labels):
            self.pair_classes = best_classes(self.predict(self.pixels), self.pairs)

    def _scorer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Logits of pixels in [0, 1]: the plain graph on the runtime, or the frozen torch model."""
        if self.runtime != "torch":
            graph = pixels_graph(self.spec, None, self.runtime)
            return lambda pixels: torch.from_numpy(graph(pixels.contiguous().numpy())[0])
        normalise = Normaliser(self.spec)
        with torch.no_grad(), warnings.catch_warnings(), evaluation_mode(self.spec.module):
            warnings.simplefilter("ignore")
            frozen = torch.jit.freeze(torch.jit.trace(self.spec.module, normalise(self.pixels[:self.batch])))
        return lambda pixels: frozen(normalise(pixels))

    def baselines(self, faithfulness: tuple, class_id: int | None) -> dict[str, dict[str, list[float]]]:
        """Per baseline map (`BASELINES`), the per-image figures of `COMPARED` that the methods' full maps get:
        scored by the same metrics, on the same images, for the same classes (`class_id`, or each image's top-1)."""
        targets = (self.predict(self.pixels).argmax(1) if class_id is None
                   else torch.full((len(self.pixels),), class_id, dtype=torch.int64))
        scored: dict[str, dict[str, list[float]]] = {}
        for kind in BASELINES:
            maps = baseline_maps(kind, len(self.pixels), self.size)
            scores = {m.name: m(self.predict, self.pixels, maps, targets) for m in faithfulness if m.name in COMPARED}
            for metric in LOCALISATION if self.has_truth.any() else ():
                if metric.name in COMPARED:
                    scores[metric.name] = self.localised(metric, maps)
            scored[kind] = {name: listed(values) for name, values in scores.items()}
        return scored

    def faithful_choices(self, maps: np.ndarray, targets: torch.Tensor,
                         ratio: float) -> tuple[list[FaithfulChoice], np.ndarray]:
        """`--threshold faithful:R` on each image: its candidates, kept where its map is in the top P % and black
        elsewhere, scored in one batch by the scorer (`camstream.explain.faithful`); and each image's whole
        score of its class."""
        search = FaithfulSearch(ratio)
        whole = target_scores(self.predict, self.pixels, targets)
        frames = self.pixels.permute(0, 2, 3, 1).numpy()  # (N, H, W, 3) in [0, 1], as the search masks them

        def score(batch: np.ndarray, class_id: int) -> np.ndarray:
            return target_scores(self.predict, torch.from_numpy(batch).permute(0, 3, 1, 2),
                                 torch.full((len(batch),), class_id, dtype=torch.int64))

        return search.each(frames, maps, targets.tolist(), whole.tolist(), score), whole

    def localised(self, metric: Metric, maps: np.ndarray) -> np.ndarray:
        """`metric` of the `maps` (N, H, W) of the images with ground truth, against it: the pointing game at
        each image's own scale unless the plan says the input's; the others on the map's values or on what it
        shows (> 0), as each reads."""
        given = maps[self.has_truth]
        if metric is POINTING and self.pointing_at_image_scale:
            return metric.at_image_scale(given, self.near, self.placements)
        return metric(given if metric.reads_values else given > 0, self.truth[self.has_truth])

    def label_aware(self) -> dict | None:
        """What the label-aware localisation is scored on, with its coverage and both baselines; None without
        labelled boxes."""
        pairs = self.pairs
        if not len(pairs.labels) and not pairs.skipped:
            return None
        count = len(pairs.labels)
        return {"pairs": count, "images": len(set(pairs.image_index.tolist())), "coverage": round(pairs.coverage, 4),
                "labels": dict(Counter(pairs.labels).most_common()),
                "skipped_labels": dict(pairs.skipped.most_common()),
                "baselines": {kind: localisation_scores(baseline_maps(kind, count, self.size), pairs.truth)
                              for kind in ("random", "centre")} if count else {}}

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities of images in [0, 1]; the untouched images are scored once, not per metric."""
        if images is self.pixels and self._unmodified is not None:
            return self._unmodified
        began = time.perf_counter()
        with torch.inference_mode():
            chunks = torch.tensor_split(images, -(-len(images) // self.batch))  # even: no runt batch
            scores = torch.cat([torch.softmax(self.logits(chunk), 1) for chunk in chunks])
        self.scored += len(images)
        self.scoring_s += time.perf_counter() - began
        if images is self.pixels:
            self._unmodified = scores
        return scores


def run_eval(data: str, out_dir: str, plan: EvalPlan | None = None,
             progress: Callable[[str], None] = print) -> dict:
    """Evaluate `plan.methods` on the images of `data`; returns the results (also written to `out_dir`)."""
    plan = plan or EvalPlan()
    started = time.perf_counter()
    check_writable_folder(out_dir)  # what cannot be written or read is said before the model loads
    if plan.video:
        load_clip_frames(plan.video, 2, (8, 8))
    with step(f"reading {data} and loading {plan.model}", tell=progress):
        images = _Images(data, plan)
    thresholds = {name: parse_threshold(name) for name in ["none", *plan.thresholds]}
    insertion, deletion = InsertionAUC(plan.steps), DeletionAUC(plan.steps)
    faithfulness = (insertion, deletion, InsertionCorrelation(insertion), DeletionCorrelation(deletion),
                    InsertionAUCNormalised(insertion), DeletionAUCNormalised(deletion), AverageDrop(),
                    IncreaseInConfidence(), RegionScoreShare(), RegionArea())
    sensitivity = MaxSensitivity()
    morf, lerf = RoadMostRelevantFirst(plan.road_percents), RoadLeastRelevantFirst(plan.road_percents)
    scorers = _Scorers(faithfulness, (morf, lerf, Road(morf, lerf)) if plan.road_percents else (), sensitivity,
                       MaxSensitivityNormalised(sensitivity.radius, sensitivity.samples, sensitivity.seed))
    clip = _Clip(load_clip_frames(plan.video, plan.video_frames, images.size, images.spec.resize),
                 plan.steps) if plan.video else None
    results: dict = {"data": os.path.abspath(data), "images": len(images.names),
                     "skipped_files": images.skipped_files,
                     "with_truth": int(images.has_truth.sum()), "model": images.spec.name, "backend": plan.backend,
                     "runtime": images.runtime,
                     "model_input": {"size": list(images.size), "resize": images.spec.resize,
                                     "mean": list(images.spec.mean), "std": list(images.spec.std)},
                     "class_id": plan.class_id, "video_class_id": plan.video_class_id,
                     "insertion_deletion_steps": plan.steps,
                     "pointing": {"tolerance_px": POINTING.tolerance, "scale": plan.pointing_scale},
                     "max_sensitivity": {"radius": sensitivity.radius, "samples": sensitivity.samples},
                     "road_percents": list(plan.road_percents),
                     "video": plan.video and {"path": os.path.abspath(plan.video), "frames": len(clip),
                                              "smooth": plan.smooth},
                     "metrics": [m.describe() for m in (*faithfulness, *scorers.road, Adcc(), sensitivity,
                                                        scorers.normalised, *LOCALISATION, TemporalStability(),
                                                        TemporalLag())],
                     "label_aware": images.label_aware(),
                     "truth_coverage": round(float(images.truth[images.has_truth].mean()), 4)
                     if images.has_truth.any() else None,
                     "methods": {}, "skipped": {}}
    examples: dict[str, np.ndarray] = {}
    for method in plan.methods:
        try:
            entry, example_maps = _evaluate_method(method, images, plan, thresholds, scorers, clip, progress)
        except CamstreamError as exc:
            reason = str(exc).split(". ")[0]
            progress(f"{method}: skipped: {reason}")
            results["skipped"][method] = reason
            continue
        results["methods"][method] = entry
        examples[method] = example_maps
    if not results["methods"]:
        raise CamstreamError("no method could be evaluated: " + "; ".join(results["skipped"].values()))
    results["between_methods"] = _between_methods(results)
    with step(f"the baselines: {', '.join(BASELINES)} maps", tell=progress):
        results["baselines"] = images.baselines((*faithfulness, *scorers.road), plan.class_id)
    for entry in results["methods"].values():
        entry["against_baselines"] = against_baselines(entry["per_image"], results["baselines"])
    results["normalised_floor"] = {"floor": InsertionAUCNormalised.FLOOR, "excluded": sum(
        value is None for value in results["baselines"]["random"]["insertion_auc_normalised"])}
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    results["scoring"] = {"images": images.scored, "seconds": round(images.scoring_s, 1),
                          "ms_per_image": round(images.scoring_s * 1e3 / max(images.scored, 1), 2)}
    os.makedirs(out_dir, exist_ok=True)
    results["plots"] = _plots(results, examples, images, out_dir) if plan.plots else []
    write_json_atomic(os.path.join(out_dir, "eval.json"), results, default=_plain)
    with open(os.path.join(out_dir, "eval.md"), "w") as handle:
        handle.write(markdown(results))
    return results


def _evaluate_method(method: str, images: _Images, plan: EvalPlan, thresholds: dict[str, ThresholdSpec],
                     scorers: _Scorers, clip: _Clip | None,
                     progress: Callable[[str], None]) -> tuple[dict, np.ndarray]:
    """Everything measured for one method; also returns a few full maps for the example grid."""
    pixels, batch = images.pixels, images.batch
    faithfulness, sensitivity = scorers.faithfulness, scorers.sensitivity
    explainer = make_explainer(method, images.spec, images.predict, plan.backend, plan.model, images.runtime,
                               plan.weights, plan.card)
    try:
        explained = Tally(len(pixels), "images")
        with step(f"{method}: explaining {len(pixels)} images", tell=progress, tally=explained):
            explainer(pixels[:1], plan.class_id)  # warm-up: first-call compilation is not a per-image cost
            release_free_memory()
            with RssPeak() as memory:
                began = time.perf_counter()
                maps, targets = explain_all(explainer, pixels, plan.class_id, batch, explained)
                seconds = time.perf_counter() - began
        affordable = method not in EXPENSIVE
        noisy = _noisy_maps(method, explainer, pixels, targets, batch, sensitivity, progress) if affordable else []
        entry: dict = {"computed_by": explainer.computed_by, "ms_per_image": round(seconds * 1e3 / len(pixels), 3),
                       "peak_rss_mb": round(memory.peak_mb, 1), "variants": {}, "curves": {}, "statistics": {}}
        if not affordable:
            entry["not_computed"] = ("adcc, max_sensitivity and temporal stability: each needs another "
                                     f"explanation of every image at {entry['ms_per_image']:.0f} ms each")
        per_sample: dict[str, dict[str, np.ndarray]] = {}
        for label, threshold in thresholds.items():
            with step(f"{method}: metrics for threshold {label}", tell=progress):
                percents = None
                if threshold.faithful is not None:  # each image's search; the variants below keep its choice
                    choices, whole = images.faithful_choices(maps, targets, threshold.faithful)
                    percents = [choice.keep_percent for choice in choices]
                    entry.setdefault("faithful", {})[label] = _faithful_summary(choices, whole, threshold.faithful)
                variant = simplified(maps, threshold, percents)
                scores = _scores(images, scorers, variant, targets, label)
                if affordable:
                    remapped = simplified(explain_all(explainer, pixels * torch.from_numpy(variant)[:, None], targets,
                                                      batch)[0], threshold, percents)
                    scores["adcc"] = Adcc()(images.predict, pixels, variant, targets, remapped)
                    noisy_kept = [simplified(m, threshold, percents) for m in noisy]
                    for robustness in (sensitivity, scorers.normalised):
                        scores[robustness.name] = robustness(variant, noisy_kept)
                per_sample[label] = scores
                entry["variants"][label] = {name: mean_of(values) for name, values in scores.items()}
                entry["curves"][label] = {"insertion": faithfulness[0].curves.mean(0).round(4).tolist(),
                                          "deletion": faithfulness[1].curves.mean(0).round(4).tolist()}
        full = entry["variants"]["none"]
        for label in plan.thresholds:
            kept = entry["variants"][label]
            kept["retained"] = {name: round(kept[name] / full[name], 4) for name in _RETAINED if full.get(name)}
            kept["change"] = {name: round(kept[name] - full[name], 4) for name in _CHANGED if name in full}
            entry["statistics"][label] = {name: paired_statistics(per_sample[label][name], per_sample["none"][name])
                                          for name in _TESTED if name in per_sample[label]}
        if images.has_truth.any():
            entry["precision_recall"] = precision_recall_curve(maps[images.has_truth], images.truth[images.has_truth])
        if images.pair_classes is not None:
            progress(f"{method}: each labelled box against the map of its own class")
            own, _ = explain_all(explainer, pixels[torch.from_numpy(images.pairs.image_index)], images.pair_classes,
                                 batch)
            entry["label_aware"] = localisation_scores(own, images.pairs.truth)
        if clip is not None and affordable:
            progress(f"{method}: temporal stability on {len(clip)} frames")
            entry["temporal"] = _temporal(explainer, clip, plan, batch, images.predict)
        entry["per_image"] = {name: listed(values) for name, values in per_sample["none"].items()}
        return entry, maps[:4].copy()
    finally:
        explainer.close()


def _on_image(truth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A truth mask at its image's `size` (height, width): a mask file of another size is stretched to it."""
    if truth.shape == tuple(size):
        return truth
    return cv2.resize(truth.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


def _faithful_summary(choices: list[FaithfulChoice], whole: np.ndarray, ratio: float) -> dict:
    """What eval says of a method's faithful threshold: the mean kept percentage, the mean share of the score (over
    the images whose class scores at least the floor, as `RegionScoreShare`), and on how many images the asked
    share was reached."""
    scored = whole >= SCORE_FLOOR
    return {"ratio": ratio, "images": len(choices), "reached": sum(choice.reached for choice in choices),
            "below_score_floor": int((~scored).sum()),
            "kept_percent_mean": round(float(np.mean([c.keep_percent for c in choices])), 2),
            "retained_mean": mean_of(np.array([c.retained for c in choices])[scored]) if scored.any() else None,
            "kept_percents": [c.keep_percent for c in choices]}


def _scores(images: _Images, scorers: _Scorers, maps: np.ndarray, targets: torch.Tensor,
            label: str) -> dict[str, np.ndarray]:
    """The per-image faithfulness figures of one threshold's `maps` (ROAD on the full maps, `label` "none") and
    their localisation against the ground truth where there is some."""
    full_only = scorers.road if label == "none" else ()  # ROAD: the full maps' figure (imputation is dear)
    scores = {m.name: m(images.predict, images.pixels, maps, targets) for m in (*scorers.faithfulness, *full_only)}
    for metric in LOCALISATION if images.has_truth.any() else ():
        scores[metric.name] = images.localised(metric, maps)
    return scores


def _noisy_maps(method: str, explainer: EvalExplainer, pixels: torch.Tensor, targets: torch.Tensor, batch: int,
                sensitivity: MaxSensitivity, progress: Callable[[str], None]) -> list[np.ndarray]:
    """The maps of max-sensitivity's noisy copies of every image, one array per draw."""
    drawn, noisy = Tally(sensitivity.samples * len(pixels), "images"), []
    with step(f"{method}: {sensitivity.samples} noisy copies of each image (max-sensitivity)", tell=progress,
              tally=drawn):
        for draw, noisy_pixels in enumerate(sensitivity.noisy_inputs(pixels)):
            noisy.append(explain_all(explainer, noisy_pixels, targets, batch)[0])
            drawn.done = (draw + 1) * len(pixels)
    return noisy


# A ratio to the full map's score only for scores ≥ 0 that thresholding can move: the pointing game keeps the map's
# maximum by construction (always 1.00), and a ratio of signed correlations means nothing (15.84, −6.20 were
# seen); those are reported as differences.
_RETAINED = ("insertion_auc", "adcc", "iou", "dice", "boundary_f1")
_CHANGED = ("insertion_correlation", "deletion_correlation")
_TESTED = ("insertion_auc", "deletion_auc", "adcc", "iou")


VIDEO_FAITHFULNESS_FRAMES = 12  # frames of the clip whose insertion AUC is measured (evenly spread)


class _Clip:
    """The video's frames as pixels, and the evenly spread frames whose insertion AUC is measured; one insertion
    metric for every method, so a perturbed frame (and the constant map's whole curve) is scored once."""

    def __init__(self, frames: np.ndarray, steps: int) -> None:
        self.frames = frames
        self.pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        self.images = frames.astype(np.float32) / 255.0
        self.picked = np.unique(np.linspace(0, len(frames) - 1, VIDEO_FAITHFULNESS_FRAMES).round().astype(int))
        self.picked_pixels = self.pixels[self.picked]
        self.insertion = InsertionAUC(steps)

    def __len__(self) -> int:
        return len(self.frames)

    def insertion_auc(self, predict: Callable[[torch.Tensor], torch.Tensor], maps: np.ndarray,
                      targets: torch.Tensor) -> float:
        """Mean insertion AUC of the picked frames under `maps` (one per picked frame)."""
        return round(float(self.insertion(predict, self.picked_pixels, maps, targets[self.picked]).mean()), 4)


def _temporal(explainer: EvalExplainer, clip: _Clip, plan: EvalPlan, batch: int,
              predict: Callable[[torch.Tensor], torch.Tensor]) -> dict:
    """On the clip, each frame explained for its own top-1 (or `plan.video_class_id`), raw and with the
    pipeline's EMA: map change per unit of image change, the lag the smoothing adds, and — on the same frames,
    so that steadiness bought by lagging or by a map that never moves shows — insertion AUC per frame. A
    constant map is scored beside them: perfectly steady, and no better than chance at insertion."""
    raw, targets = explain_all(explainer, clip.pixels, plan.video_class_id, batch)
    smoothed = raw.copy()
    smoother = CamSmoother(plan.smooth)
    for cam in smoothed:
        smoother(cam)
    stability = TemporalStability()
    picked = clip.picked
    constant = np.full_like(raw[picked], 0.5)
    return {"raw": {**stability(clip.images, raw), "insertion_auc": clip.insertion_auc(predict, raw[picked], targets)},
            "smoothed": {**stability(clip.images, smoothed),
                         "insertion_auc": clip.insertion_auc(predict, smoothed[picked], targets),
                         **TemporalLag()(raw, smoothed)},
            "constant": {**stability(clip.images, np.repeat(constant[:1], len(clip), 0)),
                         "insertion_auc": clip.insertion_auc(predict, constant, targets)},
            "alpha": plan.smooth, "class": plan.video_class_id, "faithfulness_frames": picked.tolist(),
            "smoothing_departure": round(float(np.abs(smoothed - raw).mean()), 4)}


def _between_methods(results: dict) -> dict:
    """Each method's full-map per-image scores against the first method's, paired across images."""
    methods = list(results["methods"])
    if len(methods) < 2:
        return {}
    reference = results["methods"][methods[0]]["per_image"]
    comparisons: dict = {"reference": methods[0]}
    for method in methods[1:]:
        scores = results["methods"][method]["per_image"]
        comparisons[method] = {name: paired_statistics(np.array(scores[name]), np.array(reference[name]))
                               for name in ("insertion_auc", "deletion_auc", "pointing_game")
                               if name in scores and name in reference}
    return comparisons


def _plots(results: dict, examples: dict[str, np.ndarray], images: _Images, out_dir: str) -> list[str]:
    try:
        from camstream.eval.plots import write_plots
    except ImportError:
        results["plots_skipped"] = "matplotlib is not installed: pip install 'camstream[plots]'"
        return []
    shown = images.pixels[:4].permute(0, 2, 3, 1).numpy()
    truths = [images.truth[i] if images.has_truth[i] else None for i in range(len(shown))]
    return write_plots(results, examples, shown, images.names[:4], out_dir, images.shapes[:4], truths)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
