"""Explanation methods: the hooked models (CNN, ViT), the CAM base class and its subclasses."""

from camstream.stream.explain.core import CamMethod, Explanation, HookedModel, locate_target_layer
from camstream.stream.explain.methods import Cam, GradCam, GradCamPlusPlus, ReciproCam
from camstream.stream.explain.registry import (
    ALL_METHODS,
    DEFAULT_METHOD,
    METHODS,
    VIT_METHODS,
    hook_model,
    make_method,
)
from camstream.stream.explain.vit import TokenHookedModel, VitReciproCam, VitRollout

__all__ = ["ALL_METHODS", "DEFAULT_METHOD", "METHODS", "VIT_METHODS", "Cam", "CamMethod", "Explanation", "GradCam",
           "GradCamPlusPlus", "HookedModel", "ReciproCam", "TokenHookedModel", "VitReciproCam", "VitRollout",
           "hook_model", "locate_target_layer", "make_method"]
