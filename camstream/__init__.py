"""camstream: live class-activation heatmaps over video, and `explain(model, inputs)` for CNNs, vision
transformers, temporal (CNN + GRU/LSTM) and graph models."""

from __future__ import annotations

import time as _time
from typing import TYPE_CHECKING

IMPORTED_AT = _time.time()  # when camstream was first imported (`camstream.runtime.run_start_time`)
__version__ = "0.1.0"
__all__ = ["Explanation", "ModelCard", "ModelKind", "__version__", "explain", "overlay"]

if TYPE_CHECKING:  # for type checkers; at run time these load on first use, so the CLI starts without torch
    from camstream.explain.api import explain
    from camstream.explain.drawing import overlay
    from camstream.explain.result import Explanation, ModelKind
    from camstream.model.card import ModelCard


def __getattr__(name: str) -> object:
    if name in ("explain", "overlay", "Explanation", "ModelKind"):
        import camstream.explain as package

        return package if name == "explain" else getattr(package, name)
    if name == "ModelCard":
        from camstream.model.card import ModelCard

        return ModelCard
    raise AttributeError(f"module 'camstream' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
