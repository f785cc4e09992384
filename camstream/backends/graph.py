"""The backend that runs an exported graph (`camstream export`), and the runtimes it runs on: ONNX Runtime and
OpenVINO, one `GraphSession` class each.

The graph takes the uint8 frames as they come from the decoder and returns logits, class, score and the CAM,
so a batch is one call into the runtime, with no framework in between.
"""

from __future__ import annotations

import json
import os
import time
from typing import ClassVar

import numpy as np

from camstream.backends.base import Backend
from camstream.backends.devices import check_device_name, onnxruntime_providers, openvino_device
from camstream.catalog import BACKENDS, EXPORT_METADATA_PREFIX, missing_extra_message
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


class GraphSession:
    """One exported graph compiled by one runtime: called with the graph's inputs in order, it returns the
    graph's outputs in order. A runtime is one subclass, registered with `register_runtime`: the stream's
    `GraphBackend`, `camstream eval`'s exported scorer and methods, and `camstream bench` all open it here.

    `threads` None: the runtime's default (all cores); `device` (cpu, cuda or auto) is checked by `check_device`
    before any export; eval and bench open their graphs on the CPU."""

    name: ClassVar[str]  # the --backend / --runtime name
    module: ClassVar[str]  # the Python package the runtime needs
    extra: ClassVar[str]  # the camstream extra that installs it

    def __init__(self, path: str, threads: int | None = None, device: str = "cpu") -> None:
        self.path = path
        self.device = "cpu"  # where it runs, as resolved
        self.provider = ""  # what the report says of the runtime's set-up

    @classmethod
    def check_device(cls, device: str) -> None:
        """A CamstreamError when this runtime cannot run on `device` (auto, cpu, cuda), said before any export."""
        check_device_name(device)

    @classmethod
    def load(cls):
        """The runtime's Python package; a CamstreamError naming the extra when it is not installed."""
        return _require(cls.module, cls.extra)

    @classmethod
    def read_settings(cls, path: str) -> dict | None:
        """camstream's settings read from the file before the runtime opens it, so that a damaged or foreign file
        is said in camstream's words (`read_metadata`); None where the runtime reads them itself once open
        (`settings`)."""
        return read_metadata(path)

    def settings(self) -> dict:
        """camstream's settings stored in the graph (`settings_of`)."""
        return read_metadata(self.path)

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError


RUNTIMES: dict[str, type[GraphSession]] = {}  # by name, the fastest first (what auto picks when installed)


def register_runtime(session: type[GraphSession]) -> type[GraphSession]:
    """Make `session` a runtime that `make_backend` (a run's config, `camstream explain`'s function, the Python
    pipeline) and eval can name (a class decorator). The CLI's `--backend` choices are the built-in ones
    (`camstream.catalog.BACKENDS`, which a test holds equal to the built-in runtimes)."""
    taken = RUNTIMES.get(session.name)
    if session.name == "torch" or (taken is not None and taken is not session):
        raise ValueError(f"a backend called '{session.name}' exists already")
    RUNTIMES[session.name] = session
    return session


def backend_names() -> tuple[str, ...]:
    """Every backend a run can ask for: torch and each registered runtime, the built-in ones in the catalog's
    order (`camstream.catalog.BACKENDS`)."""
    order = {name: index for index, name in enumerate(BACKENDS)}
    return ("torch", *sorted(RUNTIMES, key=lambda name: order.get(name, len(order))))


def runtime_named(name: str) -> type[GraphSession]:
    """The registered runtime called `name`; a CamstreamError listing them when there is none."""
    if name not in RUNTIMES:
        raise CamstreamError(f"unknown runtime '{name}' (choose from {', '.join(backend_names()[1:])})")
    return RUNTIMES[name]


@register_runtime
class OpenVinoSession(GraphSession):
    """OpenVINO on the CPU, precision pinned to f32 (its default may compute in lower precision). The fastest
    here: 7.5 ms per 224×224 EfficientNet-Lite0 image against ONNX Runtime's 9.9 and frozen torch's 17."""

    name, module, extra = "openvino", "openvino", "openvino"

    def __init__(self, path: str, threads: int | None = None, device: str = "cpu") -> None:
        super().__init__(path, threads, device)
        openvino = self.load()
        config = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        try:
            self._compiled = openvino.Core().compile_model(path, openvino_device(device), config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError kinds with long texts
            raise ModelError(f"OpenVINO cannot load {path}: {str(exc).splitlines()[0]}") from None
        self._request = self._compiled.create_infer_request()
        self.provider = f"CPU f32, {threads or 'default'} threads"

    @classmethod
    def check_device(cls, device: str) -> None:
        openvino_device(device)

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(output) for output in self._request.infer(list(inputs)).to_tuple()]


@register_runtime
class OnnxRuntimeSession(GraphSession):
    """ONNX Runtime, all graph optimisations on, on the execution providers `device` resolves to
    (`onnxruntime_providers`).

    ORT's memory arena stays on: turning it off saved 19 MB of peak RSS on the demo clip but made a batch
    1.4× (batch 1) to 2× (batch 8) slower here."""

    name, module, extra = "onnxruntime", "onnxruntime", "onnx"

    def __init__(self, path: str, threads: int | None = None, device: str = "cpu") -> None:
        super().__init__(path, threads, device)
        ort = self.load()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # idle worker threads sleep instead of spinning: they left less CPU to decode and render (720p → null,
        # every frame: 41.3 and 43.8 fps without spinning, 39.2 and 43.0 with it) and skewed interleaved benches
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            providers = onnxruntime_providers(device, ort.get_available_providers())
            self._session = ort.InferenceSession(path, options, providers=providers)
        except CamstreamError:
            raise
        except Exception as exc:  # noqa: BLE001 - ORT raises its own Fail / InvalidGraph kinds
            raise ModelError(f"{path} is not a readable ONNX graph for ONNX Runtime: "
                             f"{str(exc).splitlines()[0][:200]}") from None
        self._names = [entry.name for entry in self._session.get_inputs()]
        self.provider = f"{self._session.get_providers()[0]}, {threads or 'default'} threads"
        self.device = "cuda" if self.provider.startswith("CUDA") else "cpu"

    @classmethod
    def check_device(cls, device: str) -> None:
        onnxruntime_providers(device, cls.load().get_available_providers())

    @classmethod
    def read_settings(cls, path: str) -> dict | None:
        return None  # read from ORT's own reading of the file once open: no onnx package in memory

    def settings(self) -> dict:
        return settings_of(self.path, dict(self._session.get_modelmeta().custom_metadata_map))

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        return self._session.run(None, dict(zip(self._names, inputs, strict=True)))


class GraphBackend(Backend):
    """An exported graph (`camstream export`) on one runtime (`RUNTIMES`): the backend of every runtime."""

    def __init__(self, path: str, runtime: str, threads: int | None = None, device: str = "auto") -> None:
        super().__init__()
        if not os.path.isfile(path):
            raise ModelError(f"no such file: {path}")
        self.name = runtime
        self.path = path
        session = runtime_named(runtime)
        metadata = session.read_settings(path)
        self.session = session(path, threads, device)
        metadata = metadata or self.session.settings()
        self.provider, self.device = self.session.provider, self.session.device
        self.model_name, self.method, self.layer = metadata["model"], metadata["method"], metadata["layer"]
        self.input_size = tuple(metadata["input_size"])
        self.labels = tuple(metadata["labels"])
        self.mean = tuple(metadata["mean"]) if "mean" in metadata else None  # baked into the graph at export
        self.std = tuple(metadata["std"]) if "std" in metadata else None
        self.resize = metadata.get("resize", "stretch")
        self.classes = metadata.get("classes") or len(self.labels) or None

    def explain(self, frames: list[np.ndarray], class_id: int | list[int] | None = None) -> Explanation:
        began = time.perf_counter()
        batch = np.stack(frames)
        targets = np.broadcast_to(np.asarray(-1 if class_id is None else class_id, np.int64), len(frames)).copy()
        self.preprocess_ms = (time.perf_counter() - began) * 1e3
        began = time.perf_counter()
        logits, class_ids, scores, cams = self.session(batch, targets)
        self.forward_ms = (time.perf_counter() - began) * 1e3
        if class_id is not None and not (targets.min() >= 0 and targets.max() < logits.shape[1]):
            raise ModelError(f"class id out of range 0..{logits.shape[1] - 1}")
        return Explanation(ModelKind.CNN, self.method, np.asarray(class_ids), np.asarray(scores), np.asarray(cams),
                           np.asarray(logits))

    def describe(self) -> dict:
        return {**super().describe(), "graph": self.path}


def resolve_runtime(requested: str) -> str:
    """`requested` (auto, torch, or a registered runtime) as a runtime that is installed: auto is the first
    installed of `RUNTIMES` (OpenVINO, then ONNX Runtime), else torch. A CamstreamError naming the extra when an
    asked-for one is missing."""
    import importlib.util

    if requested == "torch":
        return requested
    if requested == "auto":
        return next((name for name, session in RUNTIMES.items() if importlib.util.find_spec(session.module)),
                    "torch")
    if requested not in RUNTIMES:
        raise CamstreamError(f"unknown runtime '{requested}' (choose from auto, torch, {', '.join(RUNTIMES)})")
    runtime_named(requested).load()
    return requested
