"""Every explanation method, for every model kind, in one place: one result type (`Explanation`), one registry
keyed by `ModelKind`, and `explain(model, inputs)` that picks the method by architecture.

- `result.py`: `Explanation`, `ModelKind`, `evaluation_mode` (a user's model goes back to its own mode)
- `base.py`: the hooked models' shared lifetime, the CNN hooked model, the CAM method base class
- `cnn.py`, `vit.py`, `temporal.py`, `graph.py`: the methods of each kind, each a short subclass
- `detector.py`: the hooked detector and the per-box methods (the detectors' contract, `DetectorModel`, is in
  `camstream.model.detectors`; it is named here too)
- `registry.py`: which methods exist, each kind's default, `hook_model` / `make_method`
- `api.py`: `explain()`; `inputs.py`: NumPy / PIL pictures into a batch; `drawing.py`: `overlay()`

The package is itself callable, so `camstream.explain(model, inputs)` works as it always has.
"""

import importlib
import inspect
import sys
import types

_PACKAGE_DOC = __doc__

# Where each public name lives; imported on first use, so that `camstream.explain.result` (the result type a
# torch-free run on an exported graph uses) does not pull every method, and torch, in with it.
_HOMES = {
    "explain": "api", "model_kind": "api", "overlay": "drawing",
    "CamMethod": "base", "HookedModel": "base", "HookedNetwork": "base", "locate_target_layer": "base",
    "Cam": "cnn", "GradCam": "cnn", "GradCamPlusPlus": "cnn", "ReciproCam": "cnn",
    "CAM_METHODS": "registry", "DEFAULT_METHOD": "registry", "REGISTRY": "registry", "hook_model": "registry",
    "make_method": "registry", "methods_for": "registry", "register_method": "registry",
    "Explanation": "result", "ModelKind": "result", "evaluation_mode": "result",
    "DetectorModel": "detector", "Detections": "detector", "BoxGradCam": "detector", "EigenCam": "detector",
    "HookedDetector": "detector", "FRAME_METHODS": "registry",
    "TokenHookedModel": "vit", "VitReciproCam": "vit", "VitRollout": "vit",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'camstream.explain' has no attribute '{name}'")
    return getattr(importlib.import_module(f"camstream.explain.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})


class _CallableModule(types.ModuleType):
    """`camstream.explain` is both this package and the function `explain`: calling the package calls it, and
    its signature and help are the function's (read on first use, so importing the package loads no torch)."""

    def __call__(self, *args, **kwargs):
        from camstream.explain.api import explain

        return explain(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        from camstream.explain.api import explain

        return inspect.signature(explain)

    @property
    def __doc__(self) -> str:  # type: ignore[override]
        from camstream.explain.api import explain

        return (f"Explain a model's decisions: camstream.explain(model, inputs, …) returns an Explanation.\n\n"
                f"explain{inspect.signature(explain)}\n\n{inspect.getdoc(explain)}\n\nThe package "
                f"camstream.explain:\n\n{_PACKAGE_DOC}")


sys.modules[__name__].__class__ = _CallableModule
