"""Explanation methods: the hooked model, the CAM base class and its subclasses."""

from camstream.stream.explain.core import CamMethod, Explanation, HookedModel, locate_target_layer
from camstream.stream.explain.methods import METHODS, Cam, GradCam, GradCamPlusPlus, ReciproCam, make_method

__all__ = ["METHODS", "Cam", "CamMethod", "Explanation", "GradCam", "GradCamPlusPlus", "HookedModel",
           "ReciproCam", "locate_target_layer", "make_method"]
