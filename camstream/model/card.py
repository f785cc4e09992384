"""What travels with a user's model: its class names, input size, mean/std, resize mode, target layer and
default method (a `ModelCard`).

A card comes from (later ones win): the model's built-in defaults, a ``"camstream"`` dict saved inside the
checkpoint (``torch.save({"model": module, "camstream": {...}}, path)``), a JSON sidecar beside the model or
weights file (``my_model.pt`` → ``my_model.camstream.json``) and the command-line options (`--labels`,
`--input-size`, `--mean`, `--std`, `--resize`, `--layer`, `--method`). Torch-free: the CLI reads and checks a
sidecar before any model loads.

The sidecar format (every key optional)::

    {
      "labels": ["pedestrian", "cyclist", "empty road"],   // or a file name, one class per line
      "input_size": [160, 160],                            // height, width
      "mean": [0.485, 0.456, 0.406],                       // of RGB pixels scaled to [0, 1]
      "std": [0.229, 0.224, 0.225],
      "resize": "letterbox",                               // stretch | letterbox | crop
      "layer": "features.6",
      "method": "gradcam",
      "score_threshold": 0.5,                              // detectors: boxes kept at or above this score
      "max_boxes": 5                                       // detectors: the best boxes explained per frame
    }
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace
from typing import Any

from camstream.errors import InputError

RESIZE_MODES = ("stretch", "letterbox", "crop")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # of RGB pixels in [0, 1]: most torchvision and timm models' inputs
IMAGENET_STD = (0.229, 0.224, 0.225)
SIDECAR_SUFFIX = ".camstream.json"
CARD_KEY = "camstream"  # the key of the card inside a checkpoint dict


@dataclass(frozen=True)
class ModelCard:
    """A model's input and output facts; None where this card does not say (another source then does)."""

    labels: tuple[str, ...] | None = None
    input_size: tuple[int, int] | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    resize: str | None = None
    layer: str | None = None
    method: str | None = None
    score_threshold: float | None = None  # detectors only
    max_boxes: int | None = None  # detectors only

    def over(self, under: ModelCard) -> ModelCard:
        """This card, with `under`'s facts where this one says nothing."""
        return replace(under, **{f.name: getattr(self, f.name) for f in fields(self)
                                 if getattr(self, f.name) is not None})

    def said(self) -> dict[str, Any]:
        """The facts this card gives, as JSON-ready values."""
        return {f.name: list(v) if isinstance(v, tuple) else v for f in fields(self)
                if (v := getattr(self, f.name)) is not None}


def card_from_dict(values: Any, where: str, folder: str = ".") -> ModelCard:
    """The card a sidecar or checkpoint dict gives; an InputError naming `where` and the bad key.
    A `labels` string is a file name, read relative to `folder`."""
    if not isinstance(values, dict):
        raise InputError(f"{where}: expected a JSON object of model facts, got {type(values).__name__}")
    unknown = set(values) - {f.name for f in fields(ModelCard)}
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: "
                         f"{', '.join(f.name for f in fields(ModelCard))})")
    labels = values.get("labels")
    if isinstance(labels, str):
        labels = read_labels(os.path.join(folder, labels))
    elif labels is not None:
        if not isinstance(labels, list) or not labels or not all(isinstance(name, str) for name in labels):
            raise InputError(f"{where}: labels must be a non-empty list of class names or a labels file name")
        labels = tuple(labels)
    resize = values.get("resize")
    if resize is not None and resize not in RESIZE_MODES:
        raise InputError(f"{where}: resize must be one of {', '.join(RESIZE_MODES)}, not {resize!r}")
    for key in ("layer", "method"):
        if values.get(key) is not None and not isinstance(values[key], str):
            raise InputError(f"{where}: {key} must be a string")
    threshold, boxes = values.get("score_threshold"), values.get("max_boxes")
    problem = detection_problem(threshold, boxes)
    if problem:
        raise InputError(f"{where}: {problem}")
    return ModelCard(labels=labels, input_size=_numbers(values, "input_size", 2, int, where),
                     mean=_numbers(values, "mean", 3, float, where), std=_numbers(values, "std", 3, float, where),
                     resize=resize, layer=values.get("layer"), method=values.get("method"),
                     score_threshold=None if threshold is None else float(threshold), max_boxes=boxes)


def detection_problem(score_threshold: object, max_boxes: object) -> str | None:
    """What is wrong with a detector's score threshold (a number in [0, 1]) or box count (an integer ≥ 1)."""
    if score_threshold is not None and (isinstance(score_threshold, bool) or not isinstance(score_threshold, (
            int, float)) or not 0.0 <= score_threshold <= 1.0):
        return f"score_threshold must be a number in [0, 1], got {score_threshold!r}"
    if max_boxes is not None and (isinstance(max_boxes, bool) or not isinstance(max_boxes, int) or max_boxes < 1):
        return f"max_boxes must be an integer of at least 1, got {max_boxes!r}"
    return None


def _numbers(values: dict, key: str, count: int, kind: type, where: str) -> tuple | None:
    given = values.get(key)
    if given is None:
        return None
    ok = isinstance(given, list) and len(given) == count and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and (kind is float or float(v).is_integer())
        for v in given)
    if not ok:
        raise InputError(f"{where}: {key} must be a list of {count} {'integers' if kind is int else 'numbers'}")
    checked = tuple(kind(v) for v in given)
    problem = number_problem(key, checked)
    if problem:
        raise InputError(f"{where}: {key} {problem}")
    return checked


def number_problem(key: str, values: tuple) -> str | None:
    """What is wrong with the `input_size` (at least 8×8) or `std` (all positive) `values`, or None."""
    if key == "input_size" and min(values) < 8:
        return f"must be at least 8×8 pixels, got {values[0]}×{values[1]}"
    if key == "std" and min(values) <= 0:
        return f"must be positive, got {', '.join(map(str, values))}"
    return None


def options_card(input_size: list | tuple | None = None, mean: list | tuple | None = None,
                 std: list | tuple | None = None, resize: str | None = None, score_threshold: float | None = None,
                 max_boxes: int | None = None) -> ModelCard:
    """The card of the command-line options; an InputError naming the option that is out of range."""
    problem = detection_problem(score_threshold, max_boxes)
    if problem:
        option = "--score-threshold" if problem.startswith("score") else "--boxes"
        raise InputError(f"{option} {problem.split(' ', 1)[1]}")
    for key, values in (("input_size", input_size), ("std", std)):
        problem = None if values is None else number_problem(key, tuple(values))
        if problem:
            raise InputError(f"--{key.replace('_', '-')} {problem}")
    if resize is not None and resize not in RESIZE_MODES:
        raise InputError(f"--resize must be one of {', '.join(RESIZE_MODES)}")
    return ModelCard(input_size=None if input_size is None else (int(input_size[0]), int(input_size[1])),
                     mean=None if mean is None else (float(mean[0]), float(mean[1]), float(mean[2])),
                     std=None if std is None else (float(std[0]), float(std[1]), float(std[2])), resize=resize,
                     score_threshold=score_threshold, max_boxes=max_boxes)


def read_labels(path: str) -> tuple[str, ...]:
    """Class names from a text file, one per line (line N names class N; blank lines keep their place)."""
    try:
        with open(path, encoding="utf-8") as handle:
            labels = tuple(line.strip() for line in handle.read().splitlines())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read labels file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    while labels and not labels[-1]:
        labels = labels[:-1]
    if not labels:
        raise InputError(f"labels file {path} has no labels (one class name per line)")
    return labels


def sidecar_path(model_file: str) -> str:
    """Where the sidecar of `model_file` lives: the same name with its extension replaced by .camstream.json."""
    return os.path.splitext(model_file)[0] + SIDECAR_SUFFIX


def read_sidecar(model_file: str) -> ModelCard:
    """The card in the sidecar beside `model_file`, or an empty card when there is none."""
    path = sidecar_path(model_file)
    if not os.path.isfile(path):
        return ModelCard()
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    return card_from_dict(values, path, os.path.dirname(path) or ".")


def files_card(model: str, weights: str | None) -> ModelCard:
    """The sidecars of the model file and of the weights file, the weights' winning where both say."""
    card = read_sidecar(model) if os.path.isfile(model) else ModelCard()
    return read_sidecar(weights).over(card) if weights and os.path.isfile(weights) else card
