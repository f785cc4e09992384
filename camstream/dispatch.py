"""`explain(model, inputs)`: one entry point for every model kind, one result type, the same thresholds.

The kind is read off the model and the inputs:

- graph: inputs are (x, edge_index) with edge_index a (2, E) integer tensor, or a PyTorch Geometric
  `Data` (anything with `.x` and `.edge_index`) → `camstream.graph`;
- temporal: clips (B, T, C, H, W) and a recurrent layer (GRU / LSTM / RNN) in the model → `camstream.temporal`;
- vit: images (B, C, H, W) and a patch embedding + token blocks (`find_token_layout`) → rollout / ViT Recipro-CAM;
- cnn: images (B, C, H, W) and a layer with a spatial feature map → Grad-CAM and the other CAM methods.

Example::

    found = explain(model, images, threshold="10")
    found.importance      # (B, h, w) for images, (B, T) for clips, (1, N) for a graph
    found.kept            # the same shape, True where the top 10 % is kept
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from camstream.errors import ModelError
from camstream.graph import GRAPH_METHODS
from camstream.kernels import ThresholdSpec, parse_threshold, threshold_value
from camstream.stream.explain import ALL_METHODS, DEFAULT_METHOD, hook_model, make_method
from camstream.stream.explain.core import spatial_layers
from camstream.stream.explain.vit import find_token_layout
from camstream.temporal import STEP_METHODS

KINDS = ("cnn", "vit", "temporal", "graph")
DEFAULT_METHODS = {**DEFAULT_METHOD, "temporal": "step-occlusion", "graph": "graph-gradient"}


@dataclass
class Attribution:
    """What decided a model's output, whatever the model kind.

    `importance` is scaled to [0, 1] per sample: (B, h, w) over image cells (cnn, vit), (B, T) over time
    steps (temporal), (1, N) over nodes (graph, with `edge_importance` (1, E)). `kept` / `kept_edges` mark
    what the threshold keeps (value > `thresholds[b]`, the rule the overlay kernels draw by).
    """

    kind: str
    method: str
    class_ids: torch.Tensor
    scores: torch.Tensor
    importance: torch.Tensor
    kept: np.ndarray
    thresholds: list[float]
    edge_importance: torch.Tensor | None = None
    kept_edges: np.ndarray | None = None


def graph_inputs(inputs) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(x, edge_index) from an (x, edge_index) pair or a PyTorch Geometric `Data`-like object, else None."""
    if hasattr(inputs, "x") and hasattr(inputs, "edge_index"):
        return inputs.x, inputs.edge_index
    if isinstance(inputs, (tuple, list)) and len(inputs) == 2:
        return inputs[0], inputs[1]
    return None


def model_kind(model: nn.Module, inputs) -> str:
    """"cnn", "vit", "temporal" or "graph" for `model` fed `inputs`; a ModelError naming what it looked for."""
    pair = graph_inputs(inputs)
    if pair is not None or isinstance(inputs, (tuple, list)):
        edge_index = None if pair is None else pair[1]
        if (isinstance(edge_index, torch.Tensor) and edge_index.dim() == 2 and edge_index.shape[0] == 2
                and not edge_index.is_floating_point()):
            return "graph"
        raise ModelError("explain(): a pair of inputs (or a graph object with .x and .edge_index) is read as a "
                         "graph (x, edge_index) with edge_index a (2, E) integer tensor; this one is not")
    if not isinstance(inputs, torch.Tensor):
        raise ModelError(f"explain(): inputs must be a tensor or an (x, edge_index) pair, got {type(inputs).__name__}")
    recurrent = any(isinstance(m, nn.RNNBase) for m in model.modules())
    if inputs.dim() == 5 and recurrent:
        return "temporal"
    if inputs.dim() == 4 and not recurrent:
        shape = tuple(inputs.shape[1:])
        if find_token_layout(model, shape) is not None:
            return "vit"
        if any(not r.pools for r in spatial_layers(model, torch.zeros(1, *shape))):
            return "cnn"
    raise ModelError(f"explain(): cannot tell what kind of model this is for inputs {tuple(inputs.shape)}: looked "
                     "for a graph ((x, edge_index) inputs), a recurrent layer (GRU/LSTM/RNN) with (B, T, C, H, W) "
                     "clips, a vision transformer (patch embedding + token blocks) or a CNN (a layer with a spatial "
                     "feature map) with (B, C, H, W) images")


def methods_for(kind: str) -> list[str]:
    """The method names that explain models of `kind`."""
    if kind == "temporal":
        return list(STEP_METHODS)
    if kind == "graph":
        return list(GRAPH_METHODS)
    return [name for name, method in ALL_METHODS.items() if method.model_kind == kind]


def explain(model: nn.Module, inputs, method: str | None = None, threshold: str | ThresholdSpec = "dynamic",
            class_ids: torch.Tensor | int | None = None, layer: str | None = None) -> Attribution:
    """Explain `model` on `inputs` with the method fitting its kind (`DEFAULT_METHODS`, or `method`),
    thresholded by `threshold` ("dynamic", "none", a keep-percentage like "10", or a ThresholdSpec)."""
    kind = model_kind(model, inputs)
    method = method or DEFAULT_METHODS[kind]
    if method not in methods_for(kind):
        raise ModelError(f"explain(): method '{method}' does not explain {kind} models; choose from "
                         f"{', '.join(methods_for(kind))}")
    spec = threshold if isinstance(threshold, ThresholdSpec) else parse_threshold(str(threshold))
    edges = None
    if kind == "graph":
        x, edge_index = graph_inputs(inputs)
        found = GRAPH_METHODS[method]()(model, x, edge_index, class_ids)
        class_ids, scores = torch.tensor([found.class_id]), torch.tensor([found.score])
        importance, edges = found.nodes[None], found.edges[None]
    elif kind == "temporal":
        found = STEP_METHODS[method]()(model, inputs, class_ids)
        class_ids, scores, importance = found.class_ids, found.scores, found.importance
    else:
        with hook_model(model, tuple(inputs.shape[1:]), layer) as hooked:
            found = make_method(method, hooked)(inputs, class_ids)
            class_ids, scores, importance = found.class_ids, found.scores, found.cams.clone()
    kept, thresholds = _keep(importance, spec)
    kept_edges = None if edges is None else _keep(edges, spec)[0]
    return Attribution(kind, method, class_ids, scores, importance, kept, thresholds, edges, kept_edges)


def _keep(importance: torch.Tensor, spec: ThresholdSpec) -> tuple[np.ndarray, list[float]]:
    maps = importance.detach().float().numpy()
    thresholds = [threshold_value(np.ascontiguousarray(one), spec) for one in maps]
    kept = np.stack([one > value for one, value in zip(maps, thresholds)])
    return kept, thresholds
