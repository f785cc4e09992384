"""Backends that run an exported graph (`camstream export`): ONNX Runtime and OpenVINO.

The graph takes the uint8 frames as they come from the decoder and returns logits, class, score and the CAM,
so a batch is one call into the runtime, with no framework in between.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from camstream.backends.base import Backend
from camstream.backends.devices import onnxruntime_providers, openvino_device
from camstream.catalog import EXPORT_METADATA_PREFIX, missing_extra_message
from camstream.errors import CamstreamError, ModelError
from camstream.explain.result import Explanation, ModelKind


def _require(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise CamstreamError(missing_extra_message(module) or f"this needs {module} (camstream[{extra}])") from None


def read_metadata(path: str) -> dict:
    """The settings `camstream export` stored in the graph (read with the onnx package); a ModelError when it
    is not such a graph."""
    onnx = _require("onnx", "onnx")
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several kinds on a damaged file
        raise ModelError(f"{path} is not a readable ONNX file ({type(exc).__name__})") from None
    return settings_of(path, {entry.key: entry.value for entry in model.metadata_props})


def settings_of(path: str, properties: dict[str, str]) -> dict:
    """camstream's settings among a graph's metadata `properties`; a ModelError naming what is missing."""
    found = {key[len(EXPORT_METADATA_PREFIX):]: json.loads(value) for key, value in properties.items()
             if key.startswith(EXPORT_METADATA_PREFIX)}
    missing = {"model", "method", "layer", "input_size", "labels"} - set(found)
    if missing:
        raise ModelError(f"{path} was not written by camstream export (no {', '.join(sorted(missing))}): "
                         "export the model with camstream export")
    return found


def onnxruntime_session(path: str, threads: int | None = None, device: str = "cpu"):
    """An ONNX Runtime session on `path` (all graph optimisations on), on the execution providers `device`
    resolves to (`onnxruntime_providers`); a ModelError for a bad file.

    ORT's memory arena stays on: turning it off saved 19 MB of peak RSS on the demo clip but made a batch
    1.4× (batch 1) to 2× (batch 8) slower here."""
    ort = _require("onnxruntime", "onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    # idle worker threads sleep instead of spinning: they left less CPU to decode and render (720p → null,
    # every frame: 41.3 and 43.8 fps without spinning, 39.2 and 43.0 with it) and skewed interleaved benches
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        providers = onnxruntime_providers(device, ort.get_available_providers())
        return ort.InferenceSession(path, options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail / InvalidGraph kinds
        raise ModelError(f"{path} is not a readable ONNX graph for ONNX Runtime: "
                         f"{str(exc).splitlines()[0][:200]}") from None


def openvino_model(path: str, threads: int | None = None, device: str = "cpu"):
    """`path` compiled by OpenVINO for the CPU, precision pinned to f32; a ModelError for a bad file."""
    openvino = _require("openvino", "openvino")
    target = openvino_device(device)
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    try:
        return openvino.Core().compile_model(path, target, config)
    except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError kinds with long texts
        raise ModelError(f"OpenVINO cannot load {path}: {str(exc).splitlines()[0]}") from None


class GraphBackend(Backend):
    """An exported graph on a runtime; subclasses say how the runtime opens and runs it."""

    def __init__(self, path: str, threads: int | None = None, device: str = "auto") -> None:
        super().__init__()
        if not os.path.isfile(path):
            raise ModelError(f"no such file: {path}")
        self.path = path
        metadata = self.open(path, threads, device)
        self.model_name, self.method, self.layer = metadata["model"], metadata["method"], metadata["layer"]
        self.input_size = tuple(metadata["input_size"])
        self.labels = tuple(metadata["labels"])
        self.mean = tuple(metadata["mean"]) if "mean" in metadata else None  # baked into the graph at export
        self.std = tuple(metadata["std"]) if "std" in metadata else None
        self.resize = metadata.get("resize", "stretch")
        self.classes = metadata.get("classes") or len(self.labels) or None

    def open(self, path: str, threads: int | None, device: str) -> dict:
        """Load the graph on the runtime and `device`; returns camstream's settings stored in it (`settings_of`)."""
        raise NotImplementedError

    def run(self, frames: np.ndarray, class_ids: np.ndarray) -> list[np.ndarray]:
        """logits, class_id, score, cam for the batch."""
        raise NotImplementedError

    def explain(self, frames: list[np.ndarray], class_id: int | list[int] | None = None) -> Explanation:
        began = time.perf_counter()
        batch = np.stack(frames)
        targets = np.broadcast_to(np.asarray(-1 if class_id is None else class_id, np.int64), len(frames)).copy()
        self.preprocess_ms = (time.perf_counter() - began) * 1e3
        began = time.perf_counter()
        logits, class_ids, scores, cams = self.run(batch, targets)
        self.forward_ms = (time.perf_counter() - began) * 1e3
        if class_id is not None and not (targets.min() >= 0 and targets.max() < logits.shape[1]):
            raise ModelError(f"class id out of range 0..{logits.shape[1] - 1}")
        return Explanation(ModelKind.CNN, self.method, np.asarray(class_ids), np.asarray(scores), np.asarray(cams),
                           np.asarray(logits))

    def describe(self) -> dict:
        return {**super().describe(), "graph": self.path}


class OnnxRuntimeBackend(GraphBackend):
    """ONNX Runtime's CPU execution provider (all graph optimisations on)."""

    name = "onnxruntime"

    def open(self, path: str, threads: int | None, device: str) -> dict:
        self._session = onnxruntime_session(path, threads, device)
        self.provider = f"{self._session.get_providers()[0]}, {threads or 'default'} threads"
        self.device = "cuda" if self.provider.startswith("CUDA") else "cpu"
        # the settings from ORT's own reading of the file: no second parse, no onnx package in memory
        return settings_of(path, dict(self._session.get_modelmeta().custom_metadata_map))

    def run(self, frames: np.ndarray, class_ids: np.ndarray) -> list[np.ndarray]:
        return self._session.run(None, {"frames": frames, "class_ids": class_ids})


class OpenVinoBackend(GraphBackend):
    """OpenVINO on the CPU, precision pinned to f32 (its default may compute in lower precision)."""

    name = "openvino"

    def open(self, path: str, threads: int | None, device: str) -> dict:
        settings = read_metadata(path)
        self._compiled = openvino_model(path, threads, device)
        self._request = self._compiled.create_infer_request()
        self.provider = f"CPU f32, {threads or 'default'} threads"
        return settings

    def run(self, frames: np.ndarray, class_ids: np.ndarray) -> list[np.ndarray]:
        results = self._request.infer({"frames": frames, "class_ids": class_ids})
        return [results[output] for output in self._compiled.outputs]


def resolve_runtime(requested: str) -> str:
    """`requested` (auto, torch, openvino, onnxruntime) as a runtime that is installed: auto is OpenVINO (the
    fastest here: 7.5 ms per 224×224 EfficientNet-Lite0 image against ONNX Runtime's 9.9 and frozen torch's
    17), else ONNX Runtime, else torch. A CamstreamError naming the extra when an asked-for one is missing."""
    import importlib.util

    if requested == "torch":
        return requested
    if requested == "auto":
        return next((name for name in CompiledGraph.RUNTIMES if importlib.util.find_spec(name)), "torch")
    if requested not in CompiledGraph.RUNTIMES:
        raise CamstreamError(f"unknown runtime '{requested}' (choose from auto, torch, "
                             f"{', '.join(CompiledGraph.RUNTIMES)})")
    _require(requested, "onnx" if requested == "onnxruntime" else "openvino")
    return requested


class CompiledGraph:
    """Any exported graph compiled by ONNX Runtime or OpenVINO (all cores, f32), called with its inputs in order
    and returning its outputs in order: how `camstream eval` runs its scorer and the methods it reproduces."""

    RUNTIMES = ("openvino", "onnxruntime")

    def __init__(self, path: str, runtime: str) -> None:
        if runtime not in self.RUNTIMES:
            raise CamstreamError(f"unknown runtime '{runtime}' (choose from {', '.join(self.RUNTIMES)})")
        self.runtime = runtime
        if runtime == "openvino":
            compiled = openvino_model(path)
            request = compiled.create_infer_request()
            self._run = lambda inputs: request.infer(list(inputs)).to_tuple()
        else:
            session = onnxruntime_session(path)
            names = [entry.name for entry in session.get_inputs()]
            self._run = lambda inputs: session.run(None, dict(zip(names, inputs, strict=True)))

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(output) for output in self._run(inputs)]


GRAPH_BACKENDS: dict[str, type[GraphBackend]] = {b.name: b for b in (OnnxRuntimeBackend, OpenVinoBackend)}
