"""One source's share of a run: its source, ring, capture and render threads, sinks and telemetry.

The model and the inference thread belong to the pipeline, shared by every stream.
"""

from __future__ import annotations

import os
import queue
import threading

from camstream.backends import Backend
from camstream.stream.capture import CaptureStage, Source, UnavailableSource, open_source
from camstream.stream.config import PipelineConfig
from camstream.stream.records import FrameSlot
from camstream.stream.render import HeatmapPainter, RenderStage
from camstream.stream.ring import FrameRing
from camstream.stream.sinks import FileSink, MjpegSink, NullSink, Sink, WebSink, WindowSink
from camstream.stream.telemetry import Telemetry


def stream_folder_name(index: int, source: str) -> str:
    """`<index>-<file or host name>`, safe as a folder name; passwords in URLs never reach it."""
    tail = source.rstrip("/").split("@")[-1].split("?")[0]
    stem = os.path.splitext(os.path.basename(tail))[0] or tail
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:40]
    return f"{index}-{safe or 'stream'}"


class Stream:
    """What belongs to one source: the source, its ring, capture and render threads, sinks and telemetry.
    The model and the inference thread are the pipeline's, shared by every stream."""

    def __init__(self, index: int, source_name: str, config: PipelineConfig, backend: Backend, out_dir: str,
                 condition: threading.Condition, on_quit, source: Source | None = None, dashboard=None) -> None:
        self.index = index
        self.out_dir = out_dir
        self.config = config
        self.dashboard = dashboard  # the run's `--sink web` server, shared by every stream
        self.source = source or open_source(source_name, backend.input_size, config.max_outage_s,
                                                    backend.resize, config.loop)
        info = self.source.info
        self.policy = config.policy or ("live" if info.live else "lossless")
        self.realtime = config.realtime if config.realtime is not None else (self.policy == "live" and not info.live)
        self.telemetry = Telemetry()
        self.ring = FrameRing(config.slots or 2 * config.max_batch + 4, self.policy, index, condition)
        self.results: queue.Queue[FrameSlot] = queue.Queue()
        self.painter = HeatmapPainter(config.threshold, config.colormap, config.alpha, backend.input_size,
                                      backend.resize)
        try:
            self.sinks = self._make_sinks(on_quit)
        except BaseException:
            self.source.close()
            raise
        self._opened = 0  # sinks are opened in order by `open_sinks`
        self.capture = CaptureStage(self.source, self.ring, self.telemetry, self.realtime, config.max_frames)
        self.render = RenderStage(self.results, self.ring, self.sinks, self.painter, self.telemetry, backend.label,
                                  backend.method, config.target_fps, config.hud)
        self.render.keep_original = dashboard is not None  # the page can show the frame before the overlay

    def _make_sinks(self, on_quit) -> list[Sink]:
        config = self.config
        sinks: list[Sink] = []
        if isinstance(self.source, UnavailableSource):  # nothing will come: nothing to write
            return [NullSink()]
        for name in dict.fromkeys(config.sinks):
            if name == "file":
                sinks.append(FileSink(os.path.join(self.out_dir, "overlay.mp4")))
            elif name == "web":
                sinks.append(WebSink(self.dashboard, self.index))
            elif name == "mjpeg":
                port = config.port + self.index if config.port else 0
                sinks.append(MjpegSink(config.bind, port, config.token))
            elif name == "window":
                sinks.append(WindowSink(on_quit=on_quit))
            else:  # the config's validation admits only `sinks.SINKS`
                sinks.append(NullSink())
        return sinks

    def open_sinks(self) -> None:
        """Open the sinks (once the model is ready, so a bad model leaves no empty files behind)."""
        for sink in self.sinks[self._opened:]:
            sink.open(self.source.info)
            self._opened += 1

    def stop(self) -> None:
        """End capture now; frames already read still go through."""
        self.capture.stop()
        self.source.interrupt()

    def close_sinks(self) -> list[str]:
        """Finalise the sinks (the render thread must have ended); returns their errors."""
        errors = []
        for sink in self.sinks[:self._opened]:
            try:
                sink.close()
            except Exception as exc:  # one sink's failure must not lose the others' output
                errors.append(f"{sink.name} sink: {exc}")
        self._opened = 0
        return errors
