"""Detectors: what made the model find each box (`ModelKind.DETECTOR`).

The detector itself is a `DetectorModel` (`camstream.model.detectors`: one contract, one adapter per family);
`HookedDetector` hooks its target layer, and its scores stay differentiable, so the layer can be asked, box by
box, what raised each score.

The methods (`BoxMethod`) return one `Explanation` with one map per box:

- `BoxGradCam` — per-box Grad-CAM in the ODAM form (Zhao et al., "ODAM: Gradient-based instance-specific visual
  explanations for object detection", ICLR 2023): M_n = relu(Σ_k ∂s_n/∂A_k ⊙ A_k), the element-wise product
  keeping the map on the instance rather than every object of its class. All boxes of a batch take one batched
  backward (`torch.autograd.grad(..., is_grads_batched=True)`); `box_gradients_one_by_one` is the reference.
- `EigenCam` — the first principal component of the target activation (Muhammad & Yeasin, "Eigen-CAM", IJCNN
  2020): class-agnostic, gradient-free, one map per frame shared by its boxes; the cheapest live mode.
"""

from __future__ import annotations

import time
from typing import ClassVar

import torch

from camstream.explain.base import HookedModel, scale_to_unit_max
from camstream.explain.result import Explanation, ModelKind
from camstream.model.detectors import Detections, DetectorModel


class HookedDetector(HookedModel):
    """A `DetectorModel` with a forward hook on its target layer; `forward` returns its detections.

    The hook cuts the graph at the layer exactly as for a CNN (`HookedModel`), so the per-box scores are
    differentiated through the detector's head alone and no parameter gets `.grad`. Never traced: the number of
    boxes changes from frame to frame.
    """

    kind = ModelKind.DETECTOR

    def __init__(self, model: DetectorModel, input_shape: tuple[int, int, int],
                 target_layer: str | None = None) -> None:
        names = dict(model.named_modules())
        if target_layer and target_layer not in names and f"network.{target_layer}" in names:
            target_layer = f"network.{target_layer}"  # named as in the user's own model, inside the adapter
        super().__init__(model, input_shape, target_layer or model.default_layer)

    def freeze(self, example: torch.Tensor, cache: str | None = None) -> bool:
        return False

    def forward(self, x: torch.Tensor, open_graph: bool = False) -> list[Detections]:  # type: ignore[override]
        return super().forward(x, open_graph)


def box_frames_and_ranks(found: list[Detections], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For the boxes of `found` in order: the image each came from, and its place among that image's boxes."""
    frames = [torch.full((len(one.scores),), index, dtype=torch.int64) for index, one in enumerate(found)]
    ranks = [torch.arange(len(one.scores)) for one in found]
    return torch.cat(frames).to(device), torch.cat(ranks).to(device)


def box_gradients(scores: torch.Tensor, frames: torch.Tensor, ranks: torch.Tensor,
                  activation: torch.Tensor) -> torch.Tensor:
    """∂s_n/∂A of every box n, (N, C, h, w), in one batched backward.

    Row r of the batched backward differentiates the sum of the r-th box of every image: images of a batch do not
    mix in a detector in eval mode, so image b's slice of that gradient is its r-th box's own.
    """
    if scores.numel() == 0:
        return activation.new_zeros((0, *activation.shape[1:]))
    rows = int(ranks.max()) + 1
    seeds = torch.zeros(rows, scores.shape[0], dtype=scores.dtype, device=scores.device)
    seeds[ranks, torch.arange(scores.shape[0], device=scores.device)] = 1.0
    (gradients,) = torch.autograd.grad(scores, activation, grad_outputs=seeds, is_grads_batched=True)
    return gradients[ranks, frames]


def box_gradients_one_by_one(scores: torch.Tensor, frames: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
    """The reference for `box_gradients`: one backward per box."""
    rows = [torch.autograd.grad(scores[n], activation, retain_graph=True)[0][frames[n]]
            for n in range(scores.shape[0])]
    return torch.stack(rows) if rows else activation.new_zeros((0, *activation.shape[1:]))


class BoxMethod:
    """Base class of the detector methods: detect, then one map per box (`box_maps`), scaled to max 1."""

    name: ClassVar[str]
    needs_gradient: ClassVar[bool] = False
    model_kind: ClassVar[ModelKind] = ModelKind.DETECTOR

    def __init__(self, hooked: HookedDetector) -> None:
        self.hooked = hooked
        self.forward_ms = 0.0
        self.boxes_ms = 0.0  # time of the last call's per-box explanation

    def __call__(self, x: torch.Tensor, class_ids: torch.Tensor | int | None = None) -> Explanation:
        """Detect in each image of `x` and explain each box kept; `class_ids` (one class) keeps only that class."""
        detector: DetectorModel = self.hooked.model  # type: ignore[assignment]
        detector.class_id = None if class_ids is None else int(torch.as_tensor(class_ids).reshape(-1)[0])
        with torch.inference_mode(False):
            found, activation, self.forward_ms = self.hooked.timed_forward(x, open_graph=self.needs_gradient)
            began = time.perf_counter()
            frames, ranks = box_frames_and_ranks(found, activation.device)
            scores = torch.cat([one.scores for one in found])
            maps = self.box_maps(activation, scores, frames, ranks)
            scale_to_unit_max(maps)
        self.boxes_ms = (time.perf_counter() - began) * 1e3
        return Explanation(ModelKind.DETECTOR, self.name, torch.cat([one.labels for one in found]),
                           scores.detach(), maps, boxes=torch.cat([one.boxes for one in found]).detach(),
                           box_frames=frames)

    def box_maps(self, activation: torch.Tensor, scores: torch.Tensor, frames: torch.Tensor,
                 ranks: torch.Tensor) -> torch.Tensor:
        """One non-negative map (N, h, w) per box."""
        raise NotImplementedError


class BoxGradCam(BoxMethod):
    """Per-box Grad-CAM, ODAM form: M_n = relu(Σ_k ∂s_n/∂A_k ⊙ A_k) (module docstring)."""

    name = "box-gradcam"
    needs_gradient = True

    def box_maps(self, activation: torch.Tensor, scores: torch.Tensor, frames: torch.Tensor,
                 ranks: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            gradients = box_gradients(scores, frames, ranks, activation)
        return odam_maps(gradients, activation.detach(), frames)


def odam_maps(gradients: torch.Tensor, activation: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """relu(Σ_k G_n,k ⊙ A_frame(n),k): (N, h, w) from per-box gradients (N, C, h, w) and activations (B, C, h, w)."""
    with torch.no_grad():
        return (gradients * activation[frames]).sum(1).float().relu_()


class EigenCam(BoxMethod):
    """Eigen-CAM: A (C, hw) projected on its first principal component (centred over positions, the sign chosen to
    agree with the mean activation), relu; one map per frame, given to each of its boxes."""

    name = "eigencam"

    def box_maps(self, activation: torch.Tensor, scores: torch.Tensor, frames: torch.Tensor,
                 ranks: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return eigen_maps(activation.detach().float())[frames].clone()


def eigen_maps(activation: torch.Tensor) -> torch.Tensor:
    """(B, h, w) first-principal-component projections of activations (B, C, h, w), relu'd."""
    batch, channels, height, width = activation.shape
    cells = activation.flatten(2).transpose(1, 2)  # (B, hw, C)
    centred = cells - cells.mean(1, keepdim=True)
    _, _, right = torch.linalg.svd(centred, full_matrices=False)
    projection = (centred @ right[:, 0, :, None])[..., 0]  # (B, hw)
    agreement = (projection * cells.mean(2)).sum(1, keepdim=True)
    projection = projection * torch.where(agreement < 0, -1.0, 1.0)
    return projection.relu_().view(batch, height, width)


BOX_METHODS: dict[str, type[BoxMethod]] = {m.name: m for m in (BoxGradCam, EigenCam)}
