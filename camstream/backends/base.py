"""The backend interface: frames in, one `Explanation` out, whichever runtime runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from camstream.catalog import DEFAULT_MODEL
from camstream.explain.result import Explanation, host_array
from camstream.model.card import ModelCard


@dataclass(frozen=True)
class BackendRequest:
    """What a caller asks `make_backend` for (a run's config, `camstream explain`, eval and bench build one)."""

    backend: str | None = None  # torch or a runtime (`backend_names`); None: torch, or onnxruntime for a .onnx
    model: str = DEFAULT_MODEL  # a model name or file, or an exported .onnx graph
    method: str | None = None  # None: the model card's, else the model kind's default
    weights: str | None = None  # a state dict or checkpoint for `model`
    layer: str | None = None  # the target layer (None: the card's, else the last spatial one)
    max_batch: int = 4  # the most frames one call explains (torch preallocates for it)
    freeze: bool = True  # torch: trace and freeze the model where it traces
    threads: int | None = None  # None: the runtime's default
    device: str = "auto"  # auto, cpu or cuda, resolved by each runtime
    labels: str | None = None  # a file of class names, one per line, over the model's own
    card: ModelCard | None = None  # the options' model facts, over the files' own


class Backend:
    """Explains batches of frames: (B, H, W, 3) uint8 RGB at `input_size` in, one `Explanation` out.

    Subclasses set the description attributes when they open and implement `explain`; `forward_ms` and
    `preprocess_ms` are the last call's times, for the telemetry. Everything a caller reads is declared here.
    """

    name: str  # torch, or the runtime a graph runs on
    model_name: str
    method: str
    layer: str
    input_size: tuple[int, int]
    labels: tuple[str, ...]
    provider: str = "cpu"
    device: str = "cpu"  # cpu or cuda: where the model runs (frames come in, and results go out, in host memory)
    frozen: bool = False  # torch only: the traced + frozen model runs
    resize: str = "stretch"  # how a frame becomes the model input (camstream.model.preprocess.Placement)
    classes: int | None = None  # the model's outputs (None: not known)
    path: str | None = None  # the exported graph that runs (None on torch)
    mean: tuple[float, ...] | None = None  # a graph's normalisation, baked in at export (None on torch)
    std: tuple[float, ...] | None = None
    last_inputs: object | None = None  # torch: the last normalised batch, which a clip model shares (else None)

    def __init__(self) -> None:
        self.forward_ms = 0.0
        self.preprocess_ms = 0.0
        self.boxes_ms = 0.0  # a detector's per-box explanation (part of the call, after its forward)

    def explain(self, frames: list[np.ndarray], class_id: int | list[int] | None = None) -> Explanation:
        """The explanation of `frames` for `class_id`: one class for all, one per frame, or None (each frame's
        top-1)."""
        raise NotImplementedError

    def class_scores(self, frames: np.ndarray, class_id: int) -> np.ndarray:
        """The model's probability of `class_id` for each frame of `frames` (K, H, W, 3), as float64 in host
        memory: one batch through `explain` (the faithful threshold's candidates)."""
        return host_array(self.explain(list(frames), [class_id] * len(frames)).scores).astype(np.float64)

    def methods(self) -> list[str]:
        """The methods this backend can switch to while it runs (`set_method`)."""
        return [self.method]

    def set_method(self, name: str) -> None:
        """Explain the next batches with `name`; a ValueError when this backend cannot."""
        if name != self.method:
            raise ValueError(f"the {self.name} backend explains with {self.method} only: the method is part of "
                             "the exported graph (export another, or run on torch)")

    def label(self, class_id: int) -> str:
        """Human-readable name of `class_id`, or `class <id>` when the model has no label for it."""
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else f"class {class_id}"

    def describe(self) -> dict:
        """What the report says of the backend."""
        return {"name": self.name, "device": self.device, "provider": self.provider}

    def close(self) -> None:
        """Release the model (and give a user's model back its own mode)."""
