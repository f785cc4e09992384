"""`make_backend`: the backend a run asks for, built (and a torch model exported once for a runtime backend)."""

from __future__ import annotations

import hashlib
import os

from camstream.backends.base import Backend, read_labels
from camstream.catalog import BACKENDS, EXPORT_FORMAT
from camstream.errors import CamstreamError


def make_backend(backend: str | None, model: str, method: str | None = None, weights: str | None = None,
                 layer: str | None = None, max_batch: int = 4, freeze: bool = True,
                 threads: int | None = None, device: str = "auto", labels: str | None = None) -> Backend:
    """The backend called `backend` for `model`: a model name or file, or an exported .onnx file (which runs on
    ONNX Runtime unless told otherwise). A runtime backend given a torch model exports it once to a cache.
    `device` (auto, cpu, cuda) is resolved by each runtime (`camstream.backends.devices`); `labels` (a file, one
    class name per line) replaces the model's own class names."""
    names = read_labels(labels) if labels else None  # a bad file is said before the model loads
    backend_made = _make(backend, model, method, weights, layer, max_batch, freeze, threads, device)
    if names is not None:
        backend_made.labels = names
    return backend_made


def _make(backend: str | None, model: str, method: str | None, weights: str | None, layer: str | None,
          max_batch: int, freeze: bool, threads: int | None, device: str) -> Backend:
    is_graph = model.endswith(".onnx")
    backend = backend or ("onnxruntime" if is_graph else "torch")
    if backend not in BACKENDS:
        raise CamstreamError(f"unknown backend '{backend}' (choose from {', '.join(BACKENDS)})")
    if backend == "torch":
        if is_graph:
            raise CamstreamError(f"{model} is an exported graph: run it with --backend onnxruntime or openvino")
        from camstream.backends.torch_backend import TorchBackend

        return TorchBackend(model, method, weights, layer, max_batch, freeze, threads, device)
    from camstream.backends.devices import openvino_device
    from camstream.backends.graph import GRAPH_BACKENDS

    if backend == "openvino":
        openvino_device(device)  # a device OpenVINO cannot use is said before any export
    path = model if is_graph else exported_copy(model, method, weights, layer)
    graph_backend = GRAPH_BACKENDS[backend](path, threads, device)
    if method is not None and method != graph_backend.method:
        raise CamstreamError(f"{path} explains with {graph_backend.method}, not {method}: export it again with "
                             f"--method {method}")
    return graph_backend


def cache_folder() -> str:
    """Where exported graphs are kept between runs ($CAMSTREAM_CACHE, else ~/.cache/camstream)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get("CAMSTREAM_CACHE") or os.path.join(base, "camstream")


def exported_copy(model: str, method: str | None, weights: str | None, layer: str | None) -> str:
    """The graph of `model` + `method` exported once and kept in `cache_folder()`, keyed by what makes it."""
    from camstream.export import export_model

    method = method or "gradcam"
    key = [model, method, layer or "", str(weights and os.path.getmtime(weights)), weights or "", str(EXPORT_FORMAT)]
    if os.path.isfile(model):
        key.append(str(os.path.getmtime(model)))
    digest = hashlib.sha256("|".join(key).encode()).hexdigest()[:16]
    stem = os.path.splitext(os.path.basename(model))[0]
    path = os.path.join(cache_folder(), "exports", f"{stem}-{method}-{digest}.onnx")
    if not os.path.exists(path):
        export_model(path, model, method, weights, layer)
    return path
