"""Everything a run can be told, its defaults and its validation, in one place.

`camstream run`'s options are built to match these fields (`tests/test_config.py` holds them together), and
the CLI makes a `PipelineConfig` from its parsed options by field name (`config_from_options`). Errors name the
field (`ConfigError.field`); the CLI turns that into the option's flag.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields
from importlib import resources

from camstream.backends.base import BackendRequest
from camstream.backends.graph import backend_names
from camstream.catalog import DEFAULT_MODEL, DEVICES, HUD_PLACES
from camstream.errors import CamstreamError
from camstream.model.card import RESIZE_MODES, ModelCard, detection_problem, number_problem, options_card
from camstream.redaction import remember_secrets
from camstream.stream.ring import POLICIES
from camstream.stream.sinks import SINKS
from camstream.threshold_spec import ThresholdSpec


def demo_clip() -> str:
    """Path of the bundled demo clip (street_bikes.mp4, BSD-3-Clause, see NOTICE.street_bikes.txt)."""
    return str(resources.files("camstream.assets") / "street_bikes.mp4")


class ConfigError(CamstreamError):
    """A setting out of its range; `field` names it (the CLI shows the matching flag)."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"{field_name} {problem}")
        self.field = field_name
        self.problem = problem


@dataclass
class PipelineConfig:
    """Everything `camstream run` can be told; the defaults are the README's first command."""

    source: str = field(default_factory=demo_clip)
    sources: tuple[str, ...] = ()  # several streams in one process (overrides `source` when given)
    sinks: tuple[str, ...] = ("file",)
    out_dir: str = "camstream-out"
    model: str = DEFAULT_MODEL  # a model name or file, or an exported .onnx graph
    backend: str | None = None  # torch, onnxruntime or openvino; None: torch, or onnxruntime for a .onnx model
    device: str = "auto"  # auto, cpu or cuda: where the backend runs (auto: a CUDA GPU where the backend sees one)
    weights: str | None = None
    labels: str | None = None  # a file of class names, one per line, in place of the model's own
    input_size: tuple[int, int] | None = None  # (height, width); None: the model card's, else 224×224
    mean: tuple[float, float, float] | None = None  # None: the model card's (ImageNet's for most models)
    std: tuple[float, float, float] | None = None
    resize: str | None = None  # stretch, letterbox or crop; None: the model card's, else stretch
    score_threshold: float | None = None  # detectors: boxes kept at or above it; None: the model card's (0.5)
    max_boxes: int | None = None  # detectors: the best boxes explained per frame; None: the model card's (5)
    layer: str | None = None
    method: str | None = None  # None: the default of the model's kind (gradcam for CNNs, vit-recipro for ViTs)
    threshold: ThresholdSpec = field(default_factory=lambda: ThresholdSpec(dynamic=True))
    class_id: int | None = None
    faithful_every: int = 8  # --threshold faithful: search every N-th explained frame of a stream, reuse between
    policy: str | None = None  # None: lossless for files, live for cameras and streams
    realtime: bool | None = None  # None: pace a file at source speed only under the live policy
    max_batch: int = 4
    max_wait_ms: float = 20.0
    slots: int | None = None  # None: 2 · max_batch + 4 per stream
    smooth: float = 0.0
    reuse_cam: bool = False
    target_fps: float = 60.0
    max_frames: int | None = None
    loop: bool = False  # a file starts again at its end (until Ctrl-C or max_frames); live sources are unaffected
    max_outage_s: float | None = None  # live sources: give up after this long without frames (None: never)
    bind: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    keep_serving: bool = False  # --sink web: the dashboard stays up with the last state after the run, until Ctrl-C
    threads: int | None = None
    alpha: float = 0.45
    colormap: str = "jet"
    hud: str = "top"  # where the HUD is drawn: top, bottom or off
    freeze: bool = True  # trace + freeze the model (≈1.3× faster on CPU); eager when tracing fails
    clip_model: str | None = None  # a temporal model file: its step importance is drawn as the HUD's timeline
    clip_steps: int = 16
    clip_method: str = "step-occlusion"

    @property
    def model_card(self) -> ModelCard:
        """The model facts the options give (they win over the model's own card)."""
        return options_card(self.input_size, self.mean, self.std, self.resize, self.score_threshold, self.max_boxes)

    def backend_request(self, max_batch: int) -> BackendRequest:
        """What this run asks of `make_backend`, explaining up to `max_batch` frames a call."""
        return BackendRequest(self.backend, self.model, self.method, self.weights, self.layer, max_batch, self.freeze,
                              self.threads, self.device, self.labels, self.model_card)

    @property
    def all_sources(self) -> tuple[str, ...]:
        """The sources to run, in stream order."""
        return self.sources or (self.source,)

    def validate(self) -> None:
        """Raise a `ConfigError` naming the first setting out of its range."""
        at_least_one = ("max_batch", "clip_steps", "slots", "threads", "faithful_every")
        for name in at_least_one:
            value = getattr(self, name)
            if value is not None and value < (2 if name in ("clip_steps", "slots") else 1):
                raise ConfigError(name, f"must be at least {2 if name in ('clip_steps', 'slots') else 1}")
        checks = (
            ("smooth", 0.0 <= self.smooth < 1.0, "must be in [0, 1)"),
            ("alpha", 0.0 <= self.alpha <= 1.0, "must be in [0, 1]"),
            ("max_wait_ms", self.max_wait_ms >= 0, "must be ≥ 0"),
            ("target_fps", self.target_fps >= 0, "must be ≥ 0 (0: unpaced)"),
            ("max_frames", self.max_frames is None or self.max_frames >= 1, "must be at least 1"),
            ("max_outage_s", self.max_outage_s is None or self.max_outage_s > 0, "must be > 0"),
            ("port", 0 <= self.port <= 65535, "must be in 0..65535 (0: any free port)"),
            ("policy", self.policy is None or self.policy in POLICIES, f"must be one of {', '.join(POLICIES)}"),
            ("hud", self.hud in HUD_PLACES, f"must be one of {', '.join(HUD_PLACES)}"),
        )
        for name, ok, problem in checks:
            if not ok:
                raise ConfigError(name, problem)
        self._validate_model_facts()
        unknown = [name for name in self.sinks if name not in SINKS]
        if unknown:
            raise ConfigError("sinks", f"has unknown '{unknown[0]}' (choose from {', '.join(SINKS)})")
        if self.keep_serving and "web" not in self.sinks:
            raise ConfigError("keep_serving", "keeps the dashboard up: it needs --sink web")
        if self.backend is not None and self.backend not in backend_names():
            raise ConfigError("backend", f"must be one of {', '.join(backend_names())}")
        if self.device not in DEVICES:
            raise ConfigError("device", f"must be one of {', '.join(DEVICES)}")
        if self.clip_model is not None and (self.backend or "torch") != "torch":
            raise CamstreamError("a clip model runs on the torch backend only (it shares torch's preprocessed frames)")
        self._validate_sink_mix()

    def _validate_sink_mix(self) -> None:
        if "web" in self.sinks and "mjpeg" in self.sinks:
            raise CamstreamError("the web sink already serves each stream's MJPEG video (/stream/N.mjpg): give "
                                 "--sink web or --sink mjpeg, not both")
        if len(self.all_sources) > 1 and "window" in self.sinks:
            raise CamstreamError("the window sink shows one stream; use the web sink (one page for all) or file")


    def _validate_model_facts(self) -> None:
        problem = detection_problem(self.score_threshold, self.max_boxes)
        if problem:
            raise ConfigError("score_threshold" if problem.startswith("score") else "max_boxes",
                              problem.split(" ", 1)[1])
        if self.resize is not None and self.resize not in RESIZE_MODES:
            raise ConfigError("resize", f"must be one of {', '.join(RESIZE_MODES)}")
        for name in ("input_size", "std"):
            problem = None if getattr(self, name) is None else number_problem(name, tuple(getattr(self, name)))
            if problem:
                raise ConfigError(name, problem)


# The fields `camstream run` sets through an option of another name; every other option is named as its field.
DEST_OF_FIELD = {"out_dir": "out", "max_outage_s": "max_outage", "sinks": "sink"}
OPTION_OF_FIELD = {**DEST_OF_FIELD, "freeze": "no_freeze", "policy": "lossless/--live", "max_boxes": "boxes"}
NOT_OPTIONS = ("realtime", "slots")  # library-only settings: the policy decides them for the CLI


def flag(field_name: str) -> str:
    """The `camstream run` flag that sets `field_name`."""
    return "--" + OPTION_OF_FIELD.get(field_name, field_name).replace("_", "-")


def config_from_options(options: argparse.Namespace, sources: tuple[str, ...]) -> PipelineConfig:
    """A `PipelineConfig` from `camstream run`'s parsed options (dests named as the fields) and its sources."""
    values = {}
    for item in fields(PipelineConfig):
        value = getattr(options, DEST_OF_FIELD.get(item.name, item.name), None)
        if value is not None:
            values[item.name] = value
    values.pop("source", None)
    values.pop("sources", None)
    if "sinks" in values:
        values["sinks"] = tuple(values["sinks"])
    if len(sources) == 1:
        values["source"] = sources[0]
    elif sources:
        values["sources"] = sources
    config = PipelineConfig(**values)
    config.validate()
    return config


def read_sources_file(path: str) -> tuple[str, ...]:
    """Sources listed one per line; blank lines and lines starting with # are skipped."""
    try:
        with open(path) as handle:
            lines = [line.strip() for line in handle]
    except OSError as exc:
        raise CamstreamError(f"cannot read sources file {path}: {exc.strerror}") from exc
    sources = tuple(line for line in lines if line and not line.startswith("#"))
    for source in sources:
        remember_secrets(source)
    if not sources:
        raise CamstreamError(f"sources file {path} lists no source")
    return sources
