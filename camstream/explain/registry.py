"""The one registry: every method by model kind, each kind's default, and the hooked model that fits a network."""

from __future__ import annotations

import torch
from torch import nn

from camstream.errors import ModelError
from camstream.explain.base import CamMethod, HookedModel, HookedNetwork
from camstream.explain.cnn import Cam, GradCam, GradCamPlusPlus, ReciproCam
from camstream.explain.detector import BoxGradCam, BoxMethod, EigenCam, HookedDetector
from camstream.explain.graph import GraphGradient, GraphMethod
from camstream.explain.result import ModelKind
from camstream.explain.temporal import StepGradient, StepMethod, StepOcclusion
from camstream.explain.vit import (
    TokenHookedModel,
    VitReciproCam,
    VitRollout,
    find_token_layout,
)
from camstream.model.detectors import DetectorModel

Method = type[CamMethod] | type[StepMethod] | type[GraphMethod] | type[BoxMethod]

REGISTRY: dict[ModelKind, dict[str, Method]] = {
    ModelKind.CNN: {m.name: m for m in (GradCam, GradCamPlusPlus, Cam, ReciproCam)},
    ModelKind.VIT: {m.name: m for m in (VitReciproCam, VitRollout)},
    ModelKind.TEMPORAL: {m.name: m for m in (StepOcclusion, StepGradient)},
    ModelKind.GRAPH: {m.name: m for m in (GraphGradient,)},
    ModelKind.DETECTOR: {m.name: m for m in (BoxGradCam, EigenCam)},
}
DEFAULT_METHOD: dict[ModelKind, str] = {kind: next(iter(methods)) for kind, methods in REGISTRY.items()}

# The image methods: the ones a hooked model (CNN or ViT) runs, and so the ones a video stream can use.
CAM_METHODS: dict[str, type[CamMethod]] = {**REGISTRY[ModelKind.CNN], **REGISTRY[ModelKind.VIT]}  # type: ignore[dict-item]
# What a stream can explain with: the image methods and the detectors' per-box methods.
FRAME_METHODS: dict[str, type[CamMethod] | type[BoxMethod]] = {
    **CAM_METHODS, **REGISTRY[ModelKind.DETECTOR]}  # type: ignore[dict-item]


def register_method(method: Method) -> Method:
    """Make `method` one that `make_method`, `explain()` and a run's config can name (a class decorator): the
    registry of its `model_kind`, and the image and frame methods where its kind explains frames. A CNN
    `CamMethod` is also exportable: the exported graph runs the same class (`camstream.backends.export`). The
    CLI's `--method` choices are the built-in ones (`camstream.catalog`)."""
    taken = next((kind for kind, methods in REGISTRY.items() if methods.get(method.name) not in (None, method)), None)
    if taken is not None:
        raise ModelError(f"a {taken.value} method called '{method.name}' exists already")
    REGISTRY[method.model_kind][method.name] = method
    if method.model_kind in (ModelKind.CNN, ModelKind.VIT):
        CAM_METHODS[method.name] = method  # type: ignore[assignment]
    if method.model_kind in (ModelKind.CNN, ModelKind.VIT, ModelKind.DETECTOR):
        FRAME_METHODS[method.name] = method  # type: ignore[assignment]
    return method


def methods_for(kind: ModelKind) -> list[str]:
    """The names of the methods that explain models of `kind`, the default first."""
    return list(REGISTRY[ModelKind(kind)])


def hook_model(model: nn.Module, input_shape: tuple[int, int, int] = (3, 224, 224),
               target_layer: str | None = None) -> HookedNetwork:
    """A `HookedDetector` for a detector, a `TokenHookedModel` for a vision transformer, else a `HookedModel`
    (CNN)."""
    if isinstance(model, DetectorModel):
        return HookedDetector(model, input_shape, target_layer)
    if isinstance(model, torch.jit.ScriptModule):
        return HookedModel(model, input_shape, target_layer)  # raises its own clear error
    layout = find_token_layout(model, input_shape)
    if layout is not None:
        return TokenHookedModel(model, input_shape, target_layer, layout)
    return HookedModel(model, input_shape, target_layer)


def make_method(name: str | None, hooked: HookedNetwork) -> CamMethod | BoxMethod:
    """The frame method called `name` (see `FRAME_METHODS`) on `hooked`; None: the default for its kind."""
    name = name or DEFAULT_METHOD[hooked.kind]
    if name not in FRAME_METHODS:
        raise ModelError(f"unknown method '{name}' (choose from {', '.join(FRAME_METHODS)})")
    method = FRAME_METHODS[name]
    if method.model_kind != hooked.kind:
        raise ModelError(f"method '{name}' explains {method.model_kind.value.upper()} models and this model is a "
                         f"{hooked.kind.value.upper()}: choose from {', '.join(methods_for(hooked.kind))}")
    return method(hooked)  # type: ignore[arg-type]
