"""`explain(model, inputs)`: one entry point for every model kind, one result type, the same thresholds.

The kind is read off the model and the inputs:

- graph: inputs are (x, edge_index) with edge_index a (2, E) integer tensor, or a PyTorch Geometric
  `Data` (anything with `.x` and `.edge_index`) → `camstream.explain.graph`;
- temporal: clips (B, T, C, H, W) and a recurrent layer (GRU / LSTM / RNN) in the model → `camstream.explain.temporal`;
- vit: images (B, C, H, W) and a patch embedding + token blocks (`find_token_layout`) → rollout / ViT Recipro-CAM;
- cnn: images (B, C, H, W) and a layer with a spatial feature map → Grad-CAM and the other CAM methods;
- detector: a `DetectorModel` (e.g. `load_model("centerface").module`) or a torchvision detection model →
  one map per detected box (`box-gradcam`, `eigencam`), with `boxes` and `box_frames`.

Images may also be NumPy arrays (H×W×3 RGB, or a B×H×W×3 stack) or PIL images, one or a list: they are
normalised with `mean` and `std` (ImageNet's by default) and resized to `input_size` when given
(`camstream.explain.inputs`).

Example::

    found = explain(model, images, threshold="10")
    found.maps            # (B, h, w) for images, (B, T) for clips, (1, N) for a graph
    found.kept            # the same shape, True where the top 10 % is kept
    found.upsampled((224, 224))   # (B, 224, 224) NumPy maps, bilinear as the stream draws them

    faces = explain(load_model("centerface").module, photo_rgb, input_size=(384, 640))
    faces.boxes, faces.scores     # (N, 4) x1 y1 x2 y2 at the input size, (N,); faces.maps (N, h, w), one per box
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from camstream.errors import ModelError
from camstream.explain.base import SCRIPTED_MODEL, model_device, spatial_layers
from camstream.explain.faithful import NOT_FOR_DETECTORS, FaithfulChoice, FaithfulSearch
from camstream.explain.inputs import is_picture, picture_batch
from camstream.explain.registry import (
    DEFAULT_METHOD,
    REGISTRY,
    hook_model,
    make_method,
    methods_for,
)
from camstream.explain.result import Explanation, ModelKind, host_array
from camstream.explain.vit import find_token_layout
from camstream.model.card import IMAGENET_MEAN, IMAGENET_STD
from camstream.model.detectors import as_detector
from camstream.threshold_spec import ThresholdSpec, parse_threshold


def graph_inputs(inputs) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(x, edge_index) from an (x, edge_index) pair or a PyTorch Geometric `Data`-like object, else None."""
    if hasattr(inputs, "x") and hasattr(inputs, "edge_index"):
        return inputs.x, inputs.edge_index
    if isinstance(inputs, (tuple, list)) and len(inputs) == 2:
        return inputs[0], inputs[1]
    return None


def model_kind(model: nn.Module, inputs) -> ModelKind:
    """The kind of `model` fed `inputs`; a ModelError naming what it looked for."""
    if as_detector(model) is not None:
        return ModelKind.DETECTOR
    pair = graph_inputs(inputs)
    if pair is not None or isinstance(inputs, (tuple, list)):
        edge_index = None if pair is None else pair[1]
        if (isinstance(edge_index, torch.Tensor) and edge_index.dim() == 2 and edge_index.shape[0] == 2
                and not edge_index.is_floating_point()):
            return ModelKind.GRAPH
        raise ModelError("explain(): a pair of inputs (or a graph object with .x and .edge_index) is read as a "
                         "graph (x, edge_index) with edge_index a (2, E) integer tensor; this one is not")
    if not isinstance(inputs, torch.Tensor):
        raise ModelError(f"explain(): inputs must be a tensor, an (x, edge_index) pair, or pictures (H×W×3 NumPy "
                         f"arrays, PIL images), got {type(inputs).__name__}")
    recurrent = any(isinstance(m, nn.RNNBase) for m in model.modules())
    if inputs.dim() == 5 and recurrent:
        return ModelKind.TEMPORAL
    if inputs.dim() == 4 and not recurrent:
        shape = tuple(inputs.shape[1:])
        if find_token_layout(model, shape) is not None:
            return ModelKind.VIT
        if any(not r.pools for r in spatial_layers(model, torch.zeros(1, *shape))):
            return ModelKind.CNN
    raise ModelError(f"explain(): cannot tell what kind of model this is for inputs {tuple(inputs.shape)}: looked "
                     "for a graph ((x, edge_index) inputs), a recurrent layer (GRU/LSTM/RNN) with (B, T, C, H, W) "
                     "clips, a vision transformer (patch embedding + token blocks) or a CNN (a layer with a spatial "
                     "feature map) with (B, C, H, W) images")


def explain(model: nn.Module, inputs: Any, method: str | None = None, threshold: str | ThresholdSpec = "dynamic",
            class_ids: torch.Tensor | Sequence[int] | int | None = None, layer: str | None = None,
            mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
            input_size: tuple[int, int] | None = None) -> Explanation:
    """Explain `model` on `inputs` with the method fitting its kind (`DEFAULT_METHOD`, or `method`),
    thresholded by `threshold` ("dynamic", "none", a keep-percentage like "10", "faithful[:R]" — the smallest top
    P % whose region alone, black around it, keeps R of the class score; `faithful` then holds each sample's
    choice — or a ThresholdSpec).

    `inputs` is a normalised tensor, an (x, edge_index) graph, or pictures: NumPy RGB arrays or PIL images,
    normalised here by `mean` / `std` (default: ImageNet's; a detector's own) and resized to `input_size` (height,
    width) when given. `class_ids`: one class for all samples, one per sample, or None (each sample's top-1); for
    a detector, one class keeps only its boxes. The model is left in the mode it came in (a training model stays
    training) and gets no `.grad`.
    """
    if isinstance(model, torch.jit.ScriptModule):
        raise ModelError(SCRIPTED_MODEL)
    detector = as_detector(model)
    if is_picture(inputs):
        own_mean, own_std = (detector.pixel_mean, detector.pixel_std) if detector else (IMAGENET_MEAN, IMAGENET_STD)
        inputs = picture_batch(inputs, mean or own_mean, std or own_std, input_size, model_device(model))
    if isinstance(class_ids, (list, tuple)):
        class_ids = torch.tensor(class_ids, dtype=torch.int64)
    kind = model_kind(model, inputs)
    method = method or DEFAULT_METHOD[kind]
    if method not in REGISTRY[kind]:
        raise ModelError(f"explain(): method '{method}' does not explain {kind} models; choose from "
                         f"{', '.join(methods_for(kind))}")
    spec = threshold if isinstance(threshold, ThresholdSpec) else parse_threshold(str(threshold))
    if kind == ModelKind.GRAPH:
        x, edge_index = graph_inputs(inputs)
        found = REGISTRY[kind][method]()(model, x, edge_index, class_ids)
    elif kind == ModelKind.TEMPORAL:
        found = REGISTRY[kind][method]()(model, inputs, class_ids)
    else:
        with hook_model(detector or model, tuple(inputs.shape[1:]), layer) as hooked:
            found = make_method(method, hooked)(inputs, class_ids)
            if spec.faithful is not None:
                if detector is not None:
                    raise ModelError(f"explain(): a faithful threshold {NOT_FOR_DETECTORS}")
                choices = faithful_choices(model, inputs, found, spec.faithful, mean or IMAGENET_MEAN,
                                           std or IMAGENET_STD)
                return found.threshold(spec, choices)
            return found.threshold(spec)  # copies the maps out of the method's reused buffer
    if spec.faithful is not None:
        raise ModelError(f"explain(): a faithful threshold keeps a region of an image map, not of {kind} maps")
    return found.threshold(spec)


def faithful_choices(model: nn.Module, inputs: torch.Tensor, found: Explanation, ratio: float,
                     mean: Sequence[float], std: Sequence[float]) -> list[FaithfulChoice]:
    """`threshold="faithful"` for a batch of normalised `inputs` (by `mean` / `std`): each sample's search, its
    candidates kept where its map is in the top P % and black elsewhere, scored in one batch by `model`."""
    black = (-torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1).to(inputs.device, inputs.dtype)
    frames = (inputs.detach() - black).permute(0, 2, 3, 1).float().cpu().numpy()  # black is 0 here
    search = FaithfulSearch(ratio)

    def score(batch: np.ndarray, class_id: int) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(inputs.device, inputs.dtype) + black
            return torch.softmax(model(x), 1)[:, class_id].double().cpu().numpy()

    return search.each(frames, host_array(found.maps), found.class_ids.tolist(), found.scores.tolist(), score)
