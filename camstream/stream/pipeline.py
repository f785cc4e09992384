"""The pipeline: wires capture → ring → infer → render → sinks, runs it, stops it in order, reports."""

from __future__ import annotations

import json
import os
import platform
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import torch

from camstream.errors import CamstreamError
from camstream.kernels import ThresholdSpec
from camstream.stream.capture import CaptureStage, open_source
from camstream.stream.explain import HookedModel, make_method
from camstream.stream.infer import InferenceStage
from camstream.stream.models import DEFAULT_MODEL, load_model
from camstream.stream.preprocess import Preprocessor
from camstream.stream.render import HeatmapPainter, RenderStage
from camstream.stream.ring import FrameRing
from camstream.stream.sinks import FileSink, MjpegSink, NullSink, Sink, WindowSink
from camstream.stream.telemetry import Telemetry

JOIN_TIMEOUT_S = 2.0  # every stage is expected to stop within this after a stop request
RENDER_GRACE_S = 10.0  # beyond that, still wait this long before giving up on finalising the sinks


def demo_clip() -> str:
    """Path of the bundled demo clip (street_bikes.mp4, BSD-3-Clause, see NOTICE.street_bikes.txt)."""
    return str(resources.files("camstream.assets") / "street_bikes.mp4")


@dataclass
class PipelineConfig:
    """Everything `camstream run` can be told; the defaults are the README's first command."""

    source: str = field(default_factory=demo_clip)
    sinks: tuple[str, ...] = ("file",)
    out_dir: str = "camstream-out"
    model: str = DEFAULT_MODEL
    weights: str | None = None
    layer: str | None = None
    method: str = "gradcam"
    threshold: ThresholdSpec = field(default_factory=lambda: ThresholdSpec(dynamic=True))
    class_id: int | None = None
    policy: str | None = None  # None: lossless for files, live for cameras and streams
    realtime: bool | None = None  # None: pace a file at source speed only under the live policy
    max_batch: int = 4
    max_wait_ms: float = 20.0
    slots: int | None = None
    smooth: float = 0.0
    reuse_cam: bool = False
    target_fps: float = 60.0
    max_frames: int | None = None
    max_outage_s: float | None = None  # live sources: give up after this long without frames (None: never)
    bind: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    threads: int | None = None
    alpha: float = 0.45
    colormap: str = "jet"
    hud: bool = True
    freeze: bool = True  # trace + freeze the model (≈1.3× faster on CPU); eager when tracing fails


class Pipeline:
    """Build with a config (opens the source and model, so bad input fails here), then `run()` once."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        if config.max_batch < 1:
            raise CamstreamError("--max-batch must be at least 1")
        if config.threads:
            torch.set_num_threads(config.threads)
        self.spec = load_model(config.model, config.weights)
        height, width = self.spec.input_size
        self.source = open_source(config.source, (height, width), config.max_outage_s)
        info = self.source.info
        self.policy = config.policy or ("live" if info.live else "lossless")
        realtime = config.realtime if config.realtime is not None else (self.policy == "live" and not info.live)
        self.telemetry = Telemetry()
        self.ring = FrameRing(config.slots or 2 * config.max_batch + 4, self.policy)
        self.results: queue.Queue = queue.Queue()
        try:
            self.spec.module.to(memory_format=torch.channels_last)
            self.hooked = HookedModel(self.spec.module, (3, height, width), config.layer)
            preprocessor = Preprocessor(self.spec, config.max_batch)
            self.frozen = config.freeze and self.hooked.freeze(preprocessor.batch.clone())
            method = make_method(config.method, self.hooked)
            painter = HeatmapPainter(config.threshold, config.colormap, config.alpha)
            painter.paint(np.zeros((8, 8, 3), np.uint8), np.zeros((2, 2), np.float32),
                          np.zeros((8, 8, 3), np.uint8))  # compile / load the jitted kernels now
            self.sinks = self._make_sinks()
            for sink in self.sinks:
                sink.open(info)
        except BaseException:
            self.source.close()
            raise
        self.capture = CaptureStage(self.source, self.ring, self.telemetry, realtime, config.max_frames)
        self.infer = InferenceStage(self.ring, self.results, method, preprocessor,
                                    self.telemetry, config.max_batch, config.max_wait_ms, config.smooth,
                                    config.reuse_cam, config.class_id)
        self.render = RenderStage(self.results, self.ring, self.sinks, painter, self.telemetry, self.spec,
                                  config.method, config.target_fps, config.hud)
        self.interrupted = False
        self._stop_requested = threading.Event()
        self.report: dict = {}

    def _make_sinks(self) -> list[Sink]:
        config = self.config
        sinks: list[Sink] = []
        for name in dict.fromkeys(config.sinks):
            if name == "file":
                sinks.append(FileSink(os.path.join(config.out_dir, "overlay.mp4")))
            elif name == "mjpeg":
                sinks.append(MjpegSink(config.bind, config.port, config.token))
            elif name == "window":
                sinks.append(WindowSink(on_quit=self.request_stop))
            elif name == "null":
                sinks.append(NullSink())
            else:
                raise CamstreamError(f"unknown sink '{name}' (choose from file, mjpeg, window, null)")
        return sinks

    @property
    def stages(self) -> tuple:
        return self.capture, self.infer, self.render

    def request_stop(self) -> None:
        """Stop soon, keeping what has been rendered: capture ends, unread frames are discarded."""
        self.capture.stop()
        self.source.interrupt()
        self.ring.abort()

    def interrupt(self) -> None:
        """Ask for an orderly stop from anywhere, a signal handler included: the run loop acts on it."""
        self.interrupted = True
        self._stop_requested.set()

    def run(self, on_progress=None, progress_every_s: float = 1.0) -> dict:
        """Run to the end of input (or `interrupt()` / Ctrl-C / `request_stop`); returns the report (also
        written to disk)."""
        self.telemetry.start()
        for stage in self.stages:
            stage.start()
        last = time.perf_counter()
        stopping = False
        try:
            while self.render.is_alive():
                # wait on the event, not on a join: a signal must never interrupt Thread.join
                self._stop_requested.wait(0.1)
                failed = self.capture.error is not None or self.infer.error is not None
                if (self._stop_requested.is_set() or failed) and not stopping:
                    stopping = True
                    self.request_stop()
                if on_progress is not None and time.perf_counter() - last >= progress_every_s:
                    last = time.perf_counter()
                    on_progress(self.telemetry.live_line(self.ring.depth, self.ring.dropped))
        except KeyboardInterrupt:
            self.interrupted = True
            self.request_stop()
        finally:
            self._shutdown()
        return self.report

    def _shutdown(self) -> None:
        deadline = time.perf_counter() + JOIN_TIMEOUT_S
        for stage in self.stages:
            stage.join(max(0.0, deadline - time.perf_counter()))
        stuck = [stage.name for stage in self.stages if stage.is_alive()]
        # the sinks belong to the render thread: never close them under it (a late batch may still come)
        self.render.join(RENDER_GRACE_S)
        errors = []
        if self.render.is_alive():
            errors.append("the render thread did not stop: sinks left open")
        else:
            for sink in self.sinks:
                try:
                    sink.close()
                except Exception as exc:  # one sink's failure must not lose the others' output
                    errors.append(f"{sink.name} sink: {exc}")
        if not self.capture.is_alive():
            self.source.close()
        self.hooked.close()
        self.telemetry.finish()
        self.report = self._build_report(stuck, errors)
        os.makedirs(self.config.out_dir, exist_ok=True)
        path = os.path.join(self.config.out_dir, "report.json")
        with open(path + ".tmp", "w") as handle:
            json.dump(self.report, handle, indent=2)
        os.replace(path + ".tmp", path)
        self.report_path = path

    def error(self) -> BaseException | None:
        """The first error a stage stopped on, if any."""
        for stage in self.stages:
            if stage.error is not None:
                return stage.error
        return None

    def _build_report(self, stuck: list[str], errors: list[str]) -> dict:
        config, info = self.config, self.source.info
        error = self.error()
        report = {
            "source": {"name": info.name, "width": info.width, "height": info.height, "fps": info.fps,
                       "frames": info.frames, "live": info.live},
            "model": self.spec.name, "layer": self.hooked.layer_name, "method": config.method, "frozen": self.frozen,
            "threshold": str(config.threshold), "policy": self.policy, "max_batch": config.max_batch,
            "smooth": config.smooth, "reuse_cam": config.reuse_cam,
            "sinks": [sink.describe() for sink in self.sinks],
            **self.telemetry.report(),
            "dropped": self.ring.dropped,
            "queue_max_depth": self.ring.max_depth,
            "out_of_order": self.render.out_of_order,
            "sequence_gaps": self.render.seq_gaps,
            "interrupted": self.interrupted,
            "error": None if error is None else str(error),
            "sink_errors": errors,
            "stuck_threads": stuck,
            "system": {"python": platform.python_version(), "torch": torch.__version__,
                       "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
                       "cores": os.cpu_count(), "platform": sys.platform},
        }
        return report
