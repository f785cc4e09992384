"""camstream: live class-activation heatmaps over video, and `explain(model, inputs)` for CNNs, vision
transformers, temporal (CNN + GRU/LSTM) and graph models."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Explanation", "ModelKind", "__version__", "explain"]

if TYPE_CHECKING:  # for type checkers; at run time these load on first use, so the CLI starts without torch
    from camstream.explain import explain
    from camstream.explain.result import Explanation, ModelKind


def __getattr__(name: str):
    if name in ("explain", "Explanation", "ModelKind"):
        import camstream.explain as package

        return package if name == "explain" else getattr(package, name)
    raise AttributeError(f"module 'camstream' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
