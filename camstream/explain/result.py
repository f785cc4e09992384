"""What every explanation method returns, and the model kinds methods are made for.

One result type for every kind: image cells (CNN, ViT), time steps (temporal) and graph nodes (graph) are all
`maps`, scaled to [0, 1] per sample; a graph also has `edge_maps`. `threshold` adds what a threshold keeps,
by the rule the overlay kernels draw with (value > threshold).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

from camstream.kernels import threshold_value, upsample_bilinear
from camstream.threshold_spec import ThresholdSpec

if TYPE_CHECKING:  # no framework at import: a run on an exported graph loads no torch
    import torch
    from torch import nn

    Array = torch.Tensor | np.ndarray


class ModelKind(str, Enum):
    """The kinds of model camstream explains; each method is made for exactly one."""

    CNN = "cnn"
    VIT = "vit"
    TEMPORAL = "temporal"
    GRAPH = "graph"
    DETECTOR = "detector"

    def __str__(self) -> str:
        return self.value


@dataclass
class Explanation:
    """A batch explained: the target class of each sample, its softmax score and a map per sample.

    `maps` is (B, h, w) over image cells (cnn, vit), (B, T) over time steps (temporal), (1, N) over nodes
    (graph, with `edge_maps` (1, E)); each scaled to [0, 1]. A detector's batch has one row per detected box,
    N in all: `maps` (N, h, w), `class_ids` its labels, `scores` its detection scores, `boxes` (N, 4) x1 y1 x2 y2
    in model-input pixels and `box_frames` (N,) the sample each box was found in (best box first per sample).
    For CNN and ViT methods `maps` is a view of the method's reused buffer: the next call of the same shape
    overwrites it (`clone()` to keep it). `kept` / `kept_edges` / `thresholds` are set by `threshold`. Torch
    methods give tensors; the runtime backends (ONNX Runtime, OpenVINO) give NumPy arrays of the same shapes
    (`np.asarray` reads either).
    """

    kind: ModelKind
    method: str
    class_ids: Array  # (B,) int64
    scores: Array  # (B,) float32
    maps: Array
    logits: Array | None = None  # (B, classes)
    edge_maps: Array | None = None
    kept: np.ndarray | None = None
    thresholds: list[float] | None = None
    kept_edges: np.ndarray | None = None
    boxes: Array | None = None  # detector: (N, 4) float32 x1 y1 x2 y2, model-input pixels
    box_frames: Array | None = None  # detector: (N,) int64, the sample each box belongs to
    faithful: list | None = None  # threshold faithful: each sample's `FaithfulChoice` (explain.faithful)

    def frame_detections(self, sample: int) -> FrameDetections:
        """The boxes of `sample`, copied out as NumPy arrays (best first); a detector's only. Only that sample's rows
        are copied."""
        rows = self.frame_boxes(sample)
        boxes, labels, scores, maps = (np.asarray(host_array(field))[rows]
                                       for field in (self.boxes, self.class_ids, self.scores, self.maps))
        return FrameDetections(boxes, labels, scores, maps)

    def frame_boxes(self, sample: int) -> np.ndarray:
        """Indices of the boxes (rows of `maps`, `boxes`, ...) found in `sample`; a detector's only."""
        if self.kind != ModelKind.DETECTOR or self.box_frames is None:
            raise ValueError(f"frame_boxes(): {self.kind} explanations have no boxes")
        return np.flatnonzero(np.asarray(host_array(self.box_frames)) == sample)

    def upsampled(self, size: tuple[int, int]) -> np.ndarray:
        """The image maps (cnn, vit) bilinearly resized to `size` (height, width): (B, H, W) float32 NumPy, by the
        kernel the stream draws with (`camstream.kernels.upsample_bilinear`, as cv2.resize INTER_LINEAR)."""
        if self.kind not in (ModelKind.CNN, ModelKind.VIT, ModelKind.DETECTOR):
            cells = "time steps" if self.kind == ModelKind.TEMPORAL else "graph nodes"
            raise ValueError(f"upsampled(): {self.kind} maps are over {cells}, not image cells")
        maps = np.asarray(host_array(self.maps), dtype=np.float32)
        out = np.empty((maps.shape[0], *size), np.float32)
        for index, one in enumerate(maps):
            upsample_bilinear(one, size, out[index])
        return out

    def to_numpy(self) -> Explanation:
        """A copy whose every array field is a NumPy array (torch methods give tensors, runtimes arrays)."""
        return replace(self, **{name: None if getattr(self, name) is None else np.array(host_array(getattr(self, name)))
                                for name in ("class_ids", "scores", "maps", "logits", "edge_maps", "boxes",
                                             "box_frames")})

    def threshold(self, spec: ThresholdSpec, faithful: list | None = None) -> Explanation:
        """A copy whose maps are detached and whose `kept` marks what `spec` keeps of each map; under a faithful
        spec, each map's top P % that its search chose (`faithful`, one `FaithfulChoice` per sample)."""
        maps = _owned(self.maps)
        if spec.faithful is not None:
            if faithful is None:
                raise ValueError("threshold(): a faithful threshold needs each sample's search (explain() runs it)")
            values = np.asarray(host_array(maps), dtype=np.float32)  # each map cut at the value its search cut it at
            kept = np.stack([one > choice.threshold for one, choice in zip(values, faithful, strict=True)])
            return replace(self, maps=maps, kept=kept, thresholds=[c.threshold for c in faithful], faithful=faithful)
        kept, thresholds = _keep(maps, spec)
        edges = None if self.edge_maps is None else _owned(self.edge_maps)
        kept_edges = None if edges is None else _keep(edges, spec)[0]
        return replace(self, maps=maps, edge_maps=edges, kept=kept, thresholds=thresholds, kept_edges=kept_edges)


@dataclass
class FrameDetections:
    """A detector's reading of one frame (in a stream: written by inference, read by render), best box first:
    `boxes` (K, 4) x1 y1 x2 y2 in model-input pixels, `labels` (K,), `scores` (K,), each box's own map `cams`
    (K, h, w)."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    cams: np.ndarray


def host_array(values: Any) -> np.ndarray:
    """A tensor as a NumPy array (detached, on the CPU), or the array as it is."""
    return values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)


def _owned(values: Any) -> Any:
    """A copy of a tensor (detached) or an array, that no later call overwrites."""
    return values.detach().clone() if hasattr(values, "detach") else np.array(values)


def _keep(maps: Any, spec: ThresholdSpec) -> tuple[np.ndarray, list[float]]:
    return _keep_each(maps, [spec] * len(maps))


def _keep_each(maps: Any, specs: list[ThresholdSpec]) -> tuple[np.ndarray, list[float]]:
    """What each map keeps under its own spec, and the threshold value each was cut at."""
    values = np.asarray(host_array(maps), dtype=np.float32)
    thresholds = [threshold_value(np.ascontiguousarray(one), spec) for one, spec in zip(values, specs, strict=True)]
    if not len(values):  # a detector that found nothing
        return np.zeros(values.shape, bool), thresholds
    kept = np.stack([one > value for one, value in zip(values, thresholds, strict=True)])
    return kept, thresholds


@contextlib.contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode inside the block; every submodule's own mode restored after it, even on error.

    A library never leaves a user's model changed: a model that came in training goes back training.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
