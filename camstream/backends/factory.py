"""`make_backend`: the backend a run asks for, built (and a torch model exported once for a runtime backend)."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING

from camstream.backends.base import Backend, BackendRequest
from camstream.catalog import EXPORT_FORMAT
from camstream.errors import CamstreamError, ModelError
from camstream.model.card import ModelCard, files_card, read_labels
from camstream.storage import cache_folder

if TYPE_CHECKING:
    from camstream.backends.graph import GraphSession
    from camstream.model.load import ModelSpec


def make_backend(request: BackendRequest) -> Backend:
    """The backend `request` asks for, for its model: a model name or file, or an exported .onnx file (which runs
    on ONNX Runtime unless told otherwise). A runtime backend given a torch model exports it once to a cache.
    The device (auto, cpu, cuda) is resolved by each runtime (`camstream.backends.devices`). The request's card
    (the options' model facts) and labels (a file, one class name per line) win over the model's own card
    (`camstream.model.card`): sidecar files, the checkpoint's, the built-in defaults."""
    model, method, weights, layer = request.model, request.method, request.weights, request.layer
    given = request.card or ModelCard()
    if request.labels:
        given = replace(given, labels=read_labels(request.labels))
    beside = files_card(model, weights)  # a bad file or sidecar is said before the model loads
    _warn_if_insane(model, method or given.over(beside).method, weights)
    is_graph = model.endswith(".onnx")
    backend = request.backend or ("onnxruntime" if is_graph else "torch")
    from camstream.backends.graph import GraphBackend, backend_names, runtime_named

    if backend not in backend_names():
        raise CamstreamError(f"unknown backend '{backend}' (choose from {', '.join(backend_names())})")
    if backend == "torch":
        if is_graph:
            raise CamstreamError(f"{model} is an exported graph: run it with --backend onnxruntime or openvino")
        from camstream.backends.torch_backend import TorchBackend

        return TorchBackend(model, method, weights, layer, request.max_batch, request.freeze, request.threads,
                            request.device, given)
    from camstream.catalog import DETECTOR_MODELS

    if model in DETECTOR_MODELS:  # said before anything loads (a detector file is refused by the export)
        from camstream.backends.export import DETECTORS_STAY_ON_TORCH

        raise ModelError(DETECTORS_STAY_ON_TORCH.format(name=model))

    runtime_named(backend).check_device(request.device)  # a device the runtime cannot use is said before any export
    path = model if is_graph else exported_copy(model, method, weights, layer, given)
    graph_backend = GraphBackend(path, backend, request.threads, request.device)
    if method is not None and method != graph_backend.method:
        raise CamstreamError(f"{path} explains with {graph_backend.method}, not {method}: export it again with "
                             f"--method {method}")
    _adopt_card(graph_backend, given.over(beside) if is_graph else given)
    return graph_backend


def _warn_if_insane(model: str, method: str | None, weights: str | None = None) -> None:
    """One warning when `camstream sanity` found the method failing on this model (`camstream.sanity_record`)."""
    from camstream.sanity_record import failed_sanity

    said = failed_sanity(model, method or "gradcam", weights)
    if said:
        warnings.warn(said, stacklevel=3)


def _adopt_card(graph_backend: Backend, card: ModelCard) -> None:
    """Labels and resize mode from `card`; the facts baked into the graph at export must agree with it."""
    for key, fixed in (("input_size", graph_backend.input_size), ("mean", graph_backend.mean),
                       ("std", graph_backend.std)):
        wanted = getattr(card, key)
        if wanted is not None and fixed is not None and tuple(wanted) != tuple(fixed):
            raise ModelError(f"{graph_backend.path} was exported with {key} {list(fixed)}, not {list(wanted)}: "
                             "export it again with that model card")
    if card.labels is not None:
        graph_backend.labels = card.labels
    if card.resize is not None:
        graph_backend.resize = card.resize


def exported_path(model: str, method: str | None, weights: str | None, layer: str | None,
                  card: ModelCard | None = None) -> str:
    """Where `exported_copy` keeps the graph of `model` + `method`: in `cache_folder()`, named by a digest of
    what makes it (the files and their times, their model cards and the options')."""
    card = card or ModelCard()
    said = {**files_card(model, weights).said(), **card.said()}
    key = [model, method or "", layer or "", str(weights and os.path.getmtime(weights)), weights or "",
           str(EXPORT_FORMAT), json.dumps(said, sort_keys=True)]
    if os.path.isfile(model):
        key.append(str(os.path.getmtime(model)))
    digest = hashlib.sha256("|".join(key).encode()).hexdigest()[:16]
    stem = os.path.splitext(os.path.basename(model))[0]
    return os.path.join(cache_folder(), "exports", f"{stem}-{method or card.method or 'default'}-{digest}.onnx")


def exported_copy(model: str, method: str | None, weights: str | None, layer: str | None,
                  card: ModelCard | None = None) -> str:
    """The graph of `model` + `method`, exported once to `exported_path`. Torch is imported only when the graph
    must be made: a run on a cached graph loads no torch."""
    path = exported_path(model, method, weights, layer, card)
    if not os.path.exists(path):
        from camstream.backends.export import export_model

        export_model(path, model, method, weights, layer, card=card)
    return path


def pixels_graph(spec: ModelSpec, method: str | None, runtime: str) -> GraphSession:
    """`spec`'s model as `camstream eval` runs it on `runtime`: the float pixels graph
    (`camstream.backends.export.export_pixels_graph`; plain when `method` is None), exported once to
    `cache_folder()` and opened on all cores (`GraphSession`). The file is named by a digest of the weights
    themselves and of what else the graph bakes in, so a model with fresh random weights never meets another's
    graph. A ModelError when its head cannot be exported."""
    from camstream.backends.graph import runtime_named

    digest = hashlib.sha256()
    for name, tensor in spec.module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(json.dumps([method, spec.layer, list(spec.input_size), list(spec.mean), list(spec.std),
                              EXPORT_FORMAT]).encode())
    path = os.path.join(cache_folder(), "exports", f"eval-{method or 'plain'}-{digest.hexdigest()[:16]}.onnx")
    if not os.path.exists(path):
        from camstream.backends.export import export_pixels_graph

        export_pixels_graph(path, spec, method)
    return runtime_named(runtime)(path)
