"""Label-aware localisation: each labelled box is scored against the map of *its own* class, not the image's
top-1. A dataset label is mapped to the ImageNet classes that name the same thing
(`imagenet_classes_of_labels.json`, shipped with camstream); the class explained for a box is the best-scoring
of them on that image; labels with no ImageNet counterpart are skipped and counted. Every figure comes with the
boxes' coverage (a map that lights everything scores about that) and with two baselines scored the same way:
a random map and a centred Gaussian."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from importlib import resources

import cv2
import numpy as np
import torch

from camstream.eval.localisation import Energy, IoU, PointingGame, Precision
from camstream.kernels import threshold_value
from camstream.model.preprocess import resize_mask
from camstream.threshold_spec import ThresholdSpec


def imagenet_classes_of_labels() -> dict[str, list[int]]:
    """Dataset label → ImageNet class ids (the shipped table; keys lower-case, no spaces)."""
    text = (resources.files("camstream.eval") / "imagenet_classes_of_labels.json").read_text(encoding="utf-8")
    return {label: ids for label, ids in json.loads(text).items() if not label.startswith("_")}


def _key(label: str) -> str:
    return label.lower().replace(" ", "").replace("_", "")


@dataclass
class LabelledBoxes:
    """The (image, label) pairs to explain: which image, its label, the ImageNet ids it maps to, and the union of
    that label's boxes as a mask at the model's input size."""

    image_index: np.ndarray  # (P,) into the evaluated images
    labels: list[str]
    candidates: list[list[int]]
    truth: np.ndarray  # (P, H, W) bool
    skipped: Counter  # label → boxes with no ImageNet counterpart

    @property
    def coverage(self) -> float:
        """Mean share of the image the boxes of a pair cover."""
        return float(self.truth.reshape(len(self.truth), -1).mean(1).mean()) if len(self.truth) else 0.0


def labelled_boxes(samples: list, size: tuple[int, int], table: dict[str, list[int]] | None = None,
                   resize: str = "stretch") -> LabelledBoxes:
    """One pair per image and mapped label (its boxes united), from samples' boxes placed on the model input of
    `size` (H, W) as the image is (`resize`: stretch, letterbox or crop)."""
    table = table if table is not None else imagenet_classes_of_labels()
    height, width = size
    index, labels, candidates, masks, skipped = [], [], [], [], Counter()
    for number, sample in enumerate(samples):
        by_label: dict[str, list] = {}
        for label, *box in sample.boxes:
            if _key(label) in table:
                by_label.setdefault(_key(label), []).append(box)
            else:
                skipped[_key(label)] += 1
        for label, boxes in sorted(by_label.items()):
            mask = np.zeros(sample.image.shape[:2], np.uint8)
            for left, top, right, bottom in boxes:
                cv2.rectangle(mask, (int(left), int(top)), (int(right), int(bottom)), 1, thickness=-1)
            index.append(number)
            labels.append(label)
            candidates.append(table[label])
            masks.append(resize_mask(mask, size, resize))
    truth = np.stack(masks) if masks else np.zeros((0, height, width), bool)
    return LabelledBoxes(np.array(index, dtype=np.int64), labels, candidates, truth, skipped)


def best_classes(probabilities: torch.Tensor, pairs: LabelledBoxes) -> torch.Tensor:
    """For each pair, the best-scoring of its label's ImageNet ids on its image ((P,) int64)."""
    chosen = [ids[int(probabilities[image, ids].argmax())] for image, ids in zip(pairs.image_index.tolist(),
                                                                               pairs.candidates, strict=True)]
    return torch.tensor(chosen, dtype=torch.int64)


def localisation_scores(maps: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Pointing game (15 px), the share of the map's mass inside the boxes (threshold-free, Wang et al. 2020's
    energy-based pointing game), and IoU and precision of the region the dynamic threshold keeps."""
    dynamic = ThresholdSpec(dynamic=True)
    kept = np.stack([m > threshold_value(np.ascontiguousarray(m), dynamic) for m in maps])
    return {"pointing_game": round(float(PointingGame()(maps, truth).mean()), 4),
            "energy_in_box": round(float(Energy()(maps, truth).mean()), 4),
            "iou": round(float(IoU()(kept, truth).mean()), 4),
            "precision": round(float(Precision()(kept, truth).mean()), 4)}
