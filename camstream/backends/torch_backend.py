"""The torch backend: the hooked model (traced and frozen where it traces) and one CAM method, on the CPU."""

from __future__ import annotations

import time

import numpy as np
import torch

from camstream.backends.base import Backend
from camstream.explain import hook_model, make_method
from camstream.explain.result import Explanation
from camstream.models import load_model
from camstream.preprocess import Preprocessor


class TorchBackend(Backend):
    """Any model camstream can load (CNN or ViT), any image method; the reference the others are checked by."""

    name = "torch"

    def __init__(self, model: str, method: str | None = None, weights: str | None = None, layer: str | None = None,
                 max_batch: int = 4, freeze: bool = True, threads: int | None = None) -> None:
        super().__init__()
        if threads:
            torch.set_num_threads(threads)
        self.spec = load_model(model, weights)
        self.model_name, self.input_size, self.labels = self.spec.name, self.spec.input_size, self.spec.labels
        self.spec.module.to(memory_format=torch.channels_last)
        self.hooked = hook_model(self.spec.module, (3, *self.input_size), layer)
        try:
            self.preprocessor = Preprocessor(self.spec, max_batch)
            self.frozen = freeze and self.hooked.freeze(self.preprocessor.batch.clone())
            self._method = make_method(method, self.hooked)
        except BaseException:
            self.hooked.close()
            raise
        self.method, self.layer = self._method.name, self.hooked.layer_name
        self.provider = f"cpu, {torch.get_num_threads()} threads"
        self.last_inputs: torch.Tensor | None = None  # the normalised batch, for a clip model that shares it

    def explain(self, frames: list[np.ndarray], class_id: int | None = None) -> Explanation:
        began = time.perf_counter()
        self.last_inputs = self.preprocessor(frames)
        self.preprocess_ms = (time.perf_counter() - began) * 1e3
        explanation = self._method(self.last_inputs, class_id)
        self.forward_ms = self._method.forward_ms
        return explanation

    def close(self) -> None:
        self.hooked.close()
