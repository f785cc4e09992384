"""Which methods exist, which model kind each explains, and the hooked model that fits a network."""

from __future__ import annotations

import torch
from torch import nn

from camstream.errors import ModelError
from camstream.stream.explain.core import CamMethod, HookedModel
from camstream.stream.explain.methods import Cam, GradCam, GradCamPlusPlus, ReciproCam
from camstream.stream.explain.vit import TokenHookedModel, VitReciproCam, VitRollout, find_token_layout

METHODS: dict[str, type[CamMethod]] = {m.name: m for m in (Cam, GradCam, GradCamPlusPlus, ReciproCam)}
VIT_METHODS: dict[str, type[CamMethod]] = {m.name: m for m in (VitReciproCam, VitRollout)}
ALL_METHODS: dict[str, type[CamMethod]] = {**METHODS, **VIT_METHODS}
DEFAULT_METHOD = {"cnn": "gradcam", "vit": "vit-recipro"}

HookedNetwork = HookedModel | TokenHookedModel


def hook_model(model: nn.Module, input_shape: tuple[int, int, int] = (3, 224, 224),
               target_layer: str | None = None) -> HookedNetwork:
    """A `TokenHookedModel` for a vision transformer, else a `HookedModel` (CNN)."""
    if isinstance(model, torch.jit.ScriptModule):
        return HookedModel(model, input_shape, target_layer)  # raises its own clear error
    layout = find_token_layout(model, input_shape)
    if layout is not None:
        return TokenHookedModel(model, input_shape, target_layer, layout)
    return HookedModel(model, input_shape, target_layer)


def make_method(name: str | None, hooked: HookedNetwork) -> CamMethod:
    """The method called `name` (see `ALL_METHODS`) on `hooked`; None: the default for the model's kind."""
    name = name or DEFAULT_METHOD[hooked.kind]
    if name not in ALL_METHODS:
        raise ModelError(f"unknown method '{name}' (choose from {', '.join(ALL_METHODS)})")
    method = ALL_METHODS[name]
    if method.model_kind != hooked.kind:
        fitting = [n for n, m in ALL_METHODS.items() if m.model_kind == hooked.kind]
        raise ModelError(f"method '{name}' explains {method.model_kind.upper()} models and this model is a "
                         f"{hooked.kind.upper()}: choose from {', '.join(fitting)}")
    return method(hooked)
