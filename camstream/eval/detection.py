"""Faithfulness of a detector's per-box maps, with no ground truth needed.

For every box the detector finds, each method's map (and the baselines': a random map, a Gaussian centred on the
image, a Gaussian on the box itself, and D-RISE) is scored by:

- deletion / insertion AUC on that box's own score: the map's pixels, most salient first, are replaced by a
  heavy blur of the image (deletion) or put back into it (insertion) in `steps` steps; at each step the detector
  runs again, and the box's score is the best score among its detections of the same class that overlap the
  original box by IoU ≥ 0.5 (0 when none does), as D-RISE's evaluation matches boxes (Petsiuk et al., "Black-box
  explanation of object detectors via saliency maps", CVPR 2021). Blurring, not black pixels one by one: on
  classifiers a random map wins the black-pixel game (Rong et al. 2022);
- energy inside the box (the share of the map's mass inside it) and pointing (the map's peak inside it).

D-RISE itself: N random masks (a `cells`×`cells` grid of keep probability p, upsampled and shifted), each masked
image run through the detector; a box's saliency is Σ_j s_j · M_j with s_j = max over the masked image's
detections of IoU(box, d) · [same class] · score(d).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torchvision
from torchvision.transforms.functional import gaussian_blur

from camstream.eval.faithfulness import saliency_order
from camstream.explain.detector import HookedDetector
from camstream.explain.registry import REGISTRY
from camstream.explain.result import ModelKind
from camstream.model.detectors import DetectorModel

BASELINES = ("random", "centred", "box prior", "d-rise")
MATCH_IOU = 0.5
SCORE_FLOOR = 0.01  # while scoring perturbed images, detections this weak still count (a decaying score)


@dataclass
class ImageBoxes:
    """One image (normalised, (3, H, W)) and the boxes the detector found in it, best first."""

    name: str
    image: torch.Tensor
    boxes: torch.Tensor  # (K, 4) input pixels
    labels: torch.Tensor  # (K,)
    scores: torch.Tensor  # (K,)


class BoxScorer:
    """The detector run on perturbed images: for each image, the score of the box it is asked about (the best
    detection of its class with IoU ≥ 0.5, else 0). Counts its forwards."""

    def __init__(self, detector: DetectorModel, batch: int = 8) -> None:
        self.detector = detector
        self.batch = batch
        self.images_scored = 0
        self.seconds = 0.0

    def detect(self, images: torch.Tensor) -> list:
        """Every detection above `SCORE_FLOOR` in each image (any number of them)."""
        began = time.perf_counter()
        kept = (self.detector.score_threshold, self.detector.max_boxes, self.detector.class_id)
        self.detector.score_threshold, self.detector.max_boxes, self.detector.class_id = SCORE_FLOOR, 1000, None
        try:
            found = []
            with torch.inference_mode():
                for start in range(0, len(images), self.batch):
                    found.extend(self.detector(images[start:start + self.batch]))
        finally:
            self.detector.score_threshold, self.detector.max_boxes, self.detector.class_id = kept
        self.images_scored += len(images)
        self.seconds += time.perf_counter() - began
        return found

    def matched(self, images: torch.Tensor, box: torch.Tensor, label: int) -> np.ndarray:
        """(len(images),) the score of the detection matching `box` (class `label`) in each image."""
        values = []
        for found in self.detect(images):
            same = found.labels == label
            if not bool(same.any()):
                values.append(0.0)
                continue
            overlap = torchvision.ops.box_iou(box[None].float(), found.boxes[same].float())[0]
            hits = found.scores.detach()[same][overlap >= MATCH_IOU]
            values.append(float(hits.max()) if len(hits) else 0.0)
        return np.asarray(values)


def box_curves(scorer: BoxScorer, target: ImageBoxes, index: int, saliency: np.ndarray, removed: torch.Tensor,
               steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(deletion, insertion) scores of box `index` over steps + 1 fractions 0, 1/steps … 1 of its map's pixels,
    most salient first (ties in a fixed random order), removed into / inserted from the blurred `removed`."""
    height, width = saliency.shape
    order, _ = saliency_order(saliency.reshape(1, height, width))
    counts = np.round(np.linspace(0, 1, steps + 1) * height * width).astype(int)
    taken = torch.zeros(steps + 1, 1, height * width, dtype=torch.bool)
    for step, count in enumerate(counts):
        taken[step, 0, torch.from_numpy(order[0, :count].copy())] = True
    taken = taken.view(steps + 1, 1, height, width)
    image, blurred = target.image[None], removed[None]
    deleted = torch.where(taken, blurred, image)
    inserted = torch.where(taken, image, blurred)
    box, label = target.boxes[index], int(target.labels[index])
    return scorer.matched(deleted, box, label), scorer.matched(inserted, box, label)


def auc(curve: np.ndarray) -> float:
    """Area under a curve sampled at equal steps over [0, 1] (trapezoids)."""
    return float(((curve[1:] + curve[:-1]) / 2).mean())


def baseline_map(kind: str, size: tuple[int, int], box: torch.Tensor, seed: int) -> np.ndarray:
    """A random map (uniform, seeded), a Gaussian centred on the image (σ a quarter of each side) or one on the
    box (σ half its sides), at `size` (height, width)."""
    height, width = size
    if kind == "random":
        return np.random.default_rng(seed).random((height, width)).astype(np.float32)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "centred":
        centre, sigma = ((height - 1) / 2, (width - 1) / 2), (height / 4, width / 4)
    else:
        x1, y1, x2, y2 = (float(v) for v in box)
        centre, sigma = ((y1 + y2) / 2, (x1 + x2) / 2), (max(y2 - y1, 2) / 2, max(x2 - x1, 2) / 2)
    return np.exp(-((rows - centre[0]) ** 2 / (2 * sigma[0] ** 2) + (cols - centre[1]) ** 2 / (2 * sigma[1] ** 2)))


def drise_maps(scorer: BoxScorer, target: ImageBoxes, black: torch.Tensor, masks: int, cells: int = 16,
               keep: float = 0.5, seed: int = 0) -> np.ndarray:
    """D-RISE saliency (K, H, W) of every box of `target` from `masks` random masks (see the module docstring);
    a masked-out pixel takes the normalised value of black (`black`, (3, 1, 1))."""
    _, height, width = target.image.shape
    generator = torch.Generator().manual_seed(seed)
    cell_h, cell_w = int(np.ceil(height / cells)), int(np.ceil(width / cells))
    saliency = torch.zeros(len(target.scores), height, width)
    for start in range(0, masks, scorer.batch):
        count = min(scorer.batch, masks - start)
        grid = (torch.rand(count, 1, cells, cells, generator=generator) < keep).float()
        up = torch.nn.functional.interpolate(grid, size=((cells + 1) * cell_h, (cells + 1) * cell_w),
                                             mode="bilinear", align_corners=False)
        shifts = torch.randint(0, cell_h, (count,), generator=generator), torch.randint(0, cell_w, (count,),
                                                                                          generator=generator)
        mask = torch.stack([up[j, :, shifts[0][j]:shifts[0][j] + height, shifts[1][j]:shifts[1][j] + width]
                            for j in range(count)])
        masked = target.image[None] * mask + black[None] * (1 - mask)
        for j, found in enumerate(scorer.detect(masked)):
            if not len(found.scores):
                continue
            overlap = torchvision.ops.box_iou(target.boxes.float(), found.boxes.float())  # (K, D)
            same = target.labels[:, None] == found.labels[None, :]
            weight = (overlap * same * found.scores.detach()[None, :]).amax(1)  # (K,)
            saliency += weight[:, None, None] * mask[j, 0][None]
    return (saliency / max(masks, 1)).numpy()


def energy_and_pointing(saliency: np.ndarray, box: torch.Tensor) -> tuple[float, bool]:
    """The share of the map's mass inside `box`, and whether its peak is inside it."""
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    positive = np.clip(saliency, 0, None)
    total = float(positive.sum())
    inside = float(positive[y1:y2, x1:x2].sum()) / total if total > 0 else 0.0
    peak_y, peak_x = np.unravel_index(int(saliency.argmax()), saliency.shape)
    return inside, bool(x1 <= peak_x < x2 and y1 <= peak_y < y2)


def method_maps(hooked: HookedDetector, method: str, target: ImageBoxes) -> tuple[np.ndarray, float]:
    """`method`'s map of each box of `target` at the input's size, and its time per box (ms, the second of two
    calls: the first pays for warming up)."""
    explainer = REGISTRY[ModelKind.DETECTOR][method](hooked)
    explainer(target.image[None])
    found = explainer(target.image[None])
    if len(found.scores) != len(target.scores):
        raise RuntimeError(f"{method}: the detector found {len(found.scores)} boxes, then {len(target.scores)}")
    size = tuple(target.image.shape[1:])
    return found.upsampled(size), explainer.boxes_ms / max(len(found.scores), 1)


def evaluate_boxes(detector: DetectorModel, hooked: HookedDetector, targets: list[ImageBoxes], methods: list[str],
                   black: torch.Tensor, steps: int = 10, drise_masks: int = 500,
                   progress: Callable[[str], None] | None = None) -> dict:
    """Per-box deletion/insertion AUC, energy and pointing of each method and each baseline on the boxes of
    `targets`; cost per box; and per method, the share of boxes whose deletion AUC beats each baseline's."""
    scorer = BoxScorer(detector)
    names = [*methods, *BASELINES]
    rows: dict[str, dict[str, list]] = {name: {"deletion": [], "insertion": [], "energy": [], "pointing": [],
                                               "ms_per_box": []} for name in names}
    boxes_meta = []
    for number, target in enumerate(targets):
        if not len(target.scores):
            continue
        removed = gaussian_blur(target.image[None], kernel_size=[41, 41], sigma=[20.0, 20.0])[0]
        maps = {}
        for method in methods:
            maps[method], per_box = method_maps(hooked, method, target)
            rows[method]["ms_per_box"].append(per_box)
        began = time.perf_counter()
        maps["d-rise"] = drise_maps(scorer, target, black, drise_masks, seed=number)
        rows["d-rise"]["ms_per_box"].append((time.perf_counter() - began) * 1e3 / len(target.scores))
        for index in range(len(target.scores)):
            for name in names:
                saliency = maps[name][index] if name in maps else baseline_map(
                    name, tuple(target.image.shape[1:]), target.boxes[index], seed=1000 * number + index)
                deletion, insertion = box_curves(scorer, target, index, saliency, removed, steps)
                inside, hit = energy_and_pointing(saliency, target.boxes[index])
                rows[name]["deletion"].append(auc(deletion))
                rows[name]["insertion"].append(auc(insertion))
                rows[name]["energy"].append(inside)
                rows[name]["pointing"].append(hit)
            boxes_meta.append({"image": target.name, "box": [round(float(v), 1) for v in target.boxes[index]],
                               "label": int(target.labels[index]), "score": round(float(target.scores[index]), 4)})
        if progress:
            progress(f"image {number + 1}/{len(targets)} ({target.name}): {len(target.scores)} boxes")
    return {"boxes": boxes_meta, "steps": steps, "drise_masks": drise_masks, "match_iou": MATCH_IOU,
            "images_scored": scorer.images_scored, "scoring_s": round(scorer.seconds, 2),
            "methods": {name: summarise(rows[name], rows) for name in names}}


def summarise(own: dict[str, list], every: dict[str, dict[str, list]]) -> dict:
    """Means of a method's per-box figures, and the share of boxes on which its deletion AUC is below (better
    than) each baseline's."""
    deletion = np.asarray(own["deletion"])
    summary = {key: round(float(np.mean(own[key])), 4) if own[key] else None
               for key in ("deletion", "insertion", "energy", "pointing")}
    summary["ms_per_box"] = round(float(np.mean(own["ms_per_box"])), 3) if own["ms_per_box"] else None
    summary["per_box_deletion"] = [round(float(v), 4) for v in deletion]
    summary["deletion_beats"] = {name: round(float(np.mean(deletion < np.asarray(every[name]["deletion"]))), 3)
                                 for name in BASELINES if every[name]["deletion"] and len(deletion)}
    return summary


def _skipped(results: dict) -> str:
    """' N file(s) skipped (name: reason; …).' when some could not be read or were damaged."""
    skipped = results.get("skipped_files") or []
    listed = "; ".join(f"{entry['file']}: {entry['reason']}" for entry in skipped[:5])
    return f" **{len(skipped)} file(s) skipped** ({listed})." if skipped else ""


def markdown(results: dict, labels: Callable[[int], str]) -> str:
    """eval.md for a detector: the per-box table, each method against each baseline, and the cost."""
    methods = results["methods"]
    lines = [f"# camstream eval: {results['model']} (detector), {len(results['boxes'])} boxes on "
             f"{results['images']} images", "",
             f"Per box, on its own score; the box matched after perturbation by IoU ≥ {results['match_iou']} and "
             f"class; pixels removed into a heavy blur (kernel 41, σ 20) in {results['steps']} steps; D-RISE with "
             f"{results['drise_masks']} masks. {results['images_scored']} perturbed images scored in "
             f"{results['scoring_s']:.0f} s.{_skipped(results)}", "",
             "| map | deletion AUC ↓ | insertion AUC ↑ | energy in box ↑ | pointing ↑ | ms per box |",
             "|---|---|---|---|---|---|"]
    if not results["boxes"]:
        lines = lines[:3] + ["**The detector found no box at its score threshold in any image: nothing to score.**"]
        return "\n".join(lines) + "\n"
    for name, row in methods.items():
        shown = f"*{name}*" if name in BASELINES else name
        cost = "–" if row["ms_per_box"] is None else f"{row['ms_per_box']:.1f}"
        lines.append(f"| {shown} | {row['deletion']:.3f} | {row['insertion']:.3f} | {row['energy']:.3f} | "
                     f"{row['pointing']:.3f} | {cost} |")
    lines += ["", "Share of boxes on which a method's deletion AUC is lower (better) than the baseline's:", ""]
    for name, row in methods.items():
        if name in BASELINES:
            continue
        beats = ", ".join(f"{base} {100 * share:.0f} %" for base, share in row["deletion_beats"].items())
        lines.append(f"- **{name}**: {beats}.")
        drise = methods["d-rise"]
        if drise["deletion"] and row["ms_per_box"] and drise["ms_per_box"]:
            lines.append(f"  Mean deletion AUC {row['deletion']:.3f} against D-RISE's {drise['deletion']:.3f} "
                         f"({100 * (row['deletion'] / drise['deletion'] - 1):+.0f} %), at "
                         f"{drise['ms_per_box'] / row['ms_per_box']:.0f}× less time per box.")
    named = sorted({labels(box["label"]) for box in results["boxes"]})
    lines += ["", f"Classes explained: {', '.join(named) or 'none'}. Boxes with their images and scores: eval.json."]
    return "\n".join(lines) + "\n"


def read_photos(folder: str, size: tuple[int, int], resize: str) -> tuple[list[tuple[str, np.ndarray]], list[dict]]:
    """The images of `folder` placed on the model input ((name, RGB)), and the files skipped with the reason."""
    import os

    from camstream.model.preprocess import read_images, resize_to_rgb

    names = [name for name in sorted(os.listdir(folder))
             if os.path.splitext(name)[1].lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp")]
    images, skipped = read_images(folder, names)
    return [(name, resize_to_rgb(image, size, resize)) for name, image in images], skipped


def spread_frames(path: str, count: int, size: tuple[int, int], resize: str) -> list[tuple[str, np.ndarray]]:
    """`count` frames spread evenly over the clip at `path`, placed on the model input ((name, RGB))."""
    import av

    from camstream.model.preprocess import resize_to_rgb

    with av.open(path) as container:
        frames = [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
    picks = np.unique(np.linspace(0, len(frames) - 1, count).round().astype(int)) if frames else []
    return [(f"frame {index}", resize_to_rgb(frames[index], size, resize)) for index in picks]


def run_detector_eval(spec, pictures: list[tuple[str, np.ndarray]], methods: list[str], steps: int = 10,
                      drise_masks: int = 500, progress: Callable[[str], None] | None = None) -> dict:
    """Detect in each picture (RGB at the model's input size) with `spec`'s detector, then score every box
    (`evaluate_boxes`); the results, ready for eval.json."""
    from camstream.explain.registry import hook_model
    from camstream.model.preprocess import Preprocessor

    detector: DetectorModel = spec.module
    unknown = [m for m in methods if m not in REGISTRY[ModelKind.DETECTOR]]
    if unknown:
        from camstream.errors import ModelError

        raise ModelError(f"method '{unknown[0]}' does not explain detectors; choose from "
                         f"{', '.join(REGISTRY[ModelKind.DETECTOR])}")
    normalise = Preprocessor(spec, 1)
    black = ((0.0 - torch.tensor(spec.mean)) / torch.tensor(spec.std)).view(3, 1, 1)
    targets = []
    began = time.perf_counter()
    with hook_model(detector, (3, *spec.input_size), spec.layer) as hooked:
        for name, picture in pictures:
            image = normalise([picture])[0].clone().contiguous()
            with torch.inference_mode():
                found = detector(image[None])[0]
            targets.append(ImageBoxes(name, image, found.boxes, found.labels, found.scores.detach()))
        results = evaluate_boxes(detector, hooked, targets, methods, black, steps, drise_masks, progress)
        results["layer"] = hooked.layer_name
    results.update({"model": spec.name, "images": len(pictures), "input_size": list(spec.input_size),
                    "score_threshold": detector.score_threshold, "max_boxes": detector.max_boxes,
                    "elapsed_s": round(time.perf_counter() - began, 1)})
    return results
