"""Every explanation method, for every model kind, in one place: one result type (`Explanation`), one registry
keyed by `ModelKind`, and `explain(model, inputs)` that picks the method by architecture.

- `result.py`: `Explanation`, `ModelKind`, `evaluation_mode` (a user's model goes back to its own mode)
- `base.py`: the hooked models' shared lifetime, the CNN hooked model, the CAM method base class
- `cnn.py`, `vit.py`, `temporal.py`, `graph.py`: the methods of each kind, each a short subclass
- `registry.py`: which methods exist, each kind's default, `hook_model` / `make_method`
- `api.py`: `explain()`; `baselines.py`: the peer methods eval compares against (RISE, Score-CAM, …)

The package is itself callable, so `camstream.explain(model, inputs)` works as it always has.
"""

import sys
import types

from camstream.explain.api import explain, model_kind
from camstream.explain.base import (
    CamMethod,
    HookedModel,
    HookedNetwork,
    locate_target_layer,
)
from camstream.explain.cnn import Cam, GradCam, GradCamPlusPlus, ReciproCam
from camstream.explain.registry import (
    CAM_METHODS,
    DEFAULT_METHOD,
    REGISTRY,
    hook_model,
    make_method,
    methods_for,
)
from camstream.explain.result import Explanation, ModelKind, evaluation_mode
from camstream.explain.vit import TokenHookedModel, VitReciproCam, VitRollout

__all__ = ["CAM_METHODS", "DEFAULT_METHOD", "REGISTRY", "Cam", "CamMethod", "Explanation", "GradCam",
           "GradCamPlusPlus", "HookedModel", "HookedNetwork", "ModelKind", "ReciproCam", "TokenHookedModel",
           "VitReciproCam", "VitRollout", "evaluation_mode", "explain", "hook_model", "locate_target_layer",
           "make_method", "methods_for", "model_kind"]


class _CallableModule(types.ModuleType):
    """`camstream.explain` is both this package and the function `explain`: calling the package calls it."""

    def __call__(self, *args, **kwargs) -> Explanation:
        return explain(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
