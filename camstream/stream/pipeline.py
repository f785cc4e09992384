"""The pipeline: wires capture → ring → infer → render → sinks, runs it, stops it in order, reports."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import TYPE_CHECKING

from camstream.backends import make_backend
from camstream.catalog import DETECTOR_METHODS
from camstream.errors import CamstreamError, InputError
from camstream.explain.faithful import CANDIDATES, NOT_FOR_DETECTORS, FaithfulSearch
from camstream.kernels import jit
from camstream.kernels.warm import warm_up
from camstream.storage import write_json_atomic
from camstream.stream.capture import UnavailableSource, local_file_problem
from camstream.stream.config import PipelineConfig
from camstream.stream.controls import LiveControls
from camstream.stream.infer import InferenceStage
from camstream.stream.output_lock import OutputLock
from camstream.stream.report import RunFacts, run_report, stream_report
from camstream.stream.ring import FairReader, FrameReader
from camstream.stream.sinks import check_display_available
from camstream.stream.streams import Stream, stream_folder_name
from camstream.threshold_spec import ThresholdSpec

if TYPE_CHECKING:
    from camstream.stream.dashboard import Dashboard
    from camstream.stream.timeline import ClipTracker

__all__ = ["Pipeline", "PipelineConfig"]

JOIN_TIMEOUT_S = 2.0  # every stage is expected to stop within this after a stop request
RENDER_GRACE_S = 10.0  # beyond that, still wait this long before giving up on finalising the sinks
PUMP_INTERVAL_S = 0.005  # how often a GUI sink's event loop runs on the main thread


def preflight(config: PipelineConfig) -> None:
    """The outputs a run needs, checked in a moment before the model loads (seconds): a window needs a display
    and a GUI-capable OpenCV, the dashboard's and MJPEG ports must be free, the video path must not be a
    directory, and a local source file must be there (several: at least one)."""
    if "window" in config.sinks:
        check_display_available()
    if "web" in config.sinks and config.port:
        _check_port_free(config.bind, config.port, "the dashboard")
    if "mjpeg" in config.sinks and config.port:
        for index in range(len(config.all_sources)):
            _check_port_free(config.bind, config.port + index, "MJPEG")
    if "file" in config.sinks and len(config.all_sources) == 1:
        video = os.path.join(config.out_dir, "overlay.mp4")
        if os.path.isdir(video):
            raise InputError(f"cannot write {video}: it is a directory")
    problems = [local_file_problem(source) for source in config.all_sources]
    if problems[0] and (len(problems) == 1 or all(problems)):  # nothing at all to run: said before the model loads
        raise InputError(problems[0])


def _check_port_free(bind: str, port: int, what: str) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((bind, port))
        except OSError as exc:
            raise CamstreamError(f"cannot serve {what} on {bind}:{port}: {exc.strerror or exc}") from None


def faithful_search(spec: ThresholdSpec) -> FaithfulSearch | None:
    """The inference stage's faithful threshold search under `spec` (None: another threshold)."""
    return None if spec.faithful is None else FaithfulSearch(spec.faithful)


def _check_detector_settings(config: PipelineConfig, backend) -> None:
    """A detector's class filter must name one of its classes."""
    if backend.method not in DETECTOR_METHODS:
        return
    if config.threshold.faithful is not None:
        raise InputError(f"--threshold faithful {NOT_FOR_DETECTORS}")
    if config.class_id is not None and backend.labels and not 0 <= config.class_id < len(backend.labels):
        named = ", ".join(backend.labels[:5]) + (", …" if len(backend.labels) > 5 else "")
        raise InputError(f"--class-id {config.class_id}: {backend.model_name} detects classes "
                         f"0..{len(backend.labels) - 1} ({named})")


def _dashboard_for(config: PipelineConfig) -> Dashboard | None:
    """The `--sink web` server of a run (bound when the pipeline is ready), or None."""
    if "web" not in config.sinks:
        return None
    from camstream.stream.dashboard import Dashboard

    return Dashboard(config.bind, config.port, config.token, len(config.all_sources))


class Pipeline:
    """Build with a config (opens the sources and model, so bad input fails here), then `run()` once.

    One source: OUT/overlay.mp4 and OUT/report.json. Several: one inference thread batches frames of all of
    them fairly (`FairReader`), each stream renders into OUT/<n>-<name>/, and OUT/report.json holds every
    stream's report and the totals. A stream whose source fails ends alone; the others go on.
    """

    def __init__(self, config: PipelineConfig, preflighted: bool = False) -> None:
        """`preflighted`: the caller ran `preflight(config)` already (the CLI, before it says the model loads)."""
        config.validate()
        if not preflighted:
            preflight(config)  # what can be checked without the model is checked before it loads
        self.output_lock = OutputLock(config.out_dir)  # one run per output folder, taken before the model loads
        self.config = config
        sources = config.all_sources
        self.streams: list[Stream] = []
        self.clip_tracker: ClipTracker | None = None  # a temporal model over each stream's frames (torch)
        self.dashboard = _dashboard_for(config)  # `--sink web`: one page for every stream
        # the model is ready before any source opens: a live source's frames are not left waiting on it
        try:
            # the faithful search sends its candidates as one batch: the backend's batch buffers must hold them
            batch = max(config.max_batch, len(CANDIDATES)) if config.threshold.faithful is not None else (
                config.max_batch)
            self.backend = make_backend(config.backend_request(batch))
        except BaseException:
            self.output_lock.release(wrote=False)
            raise
        self.method_name = self.backend.method  # the name the model kind resolved to, for the HUD and the report
        try:
            _check_detector_settings(config, self.backend)
            if config.clip_model is not None:
                from camstream.model.load import load_module
                from camstream.stream.timeline import ClipTracker

                clip_model = load_module(config.clip_model).to(self.backend.device)
                self.clip_tracker = ClipTracker(clip_model, config.clip_steps, config.clip_method, len(sources))
            self._open_streams(sources, threading.Condition())
            rings = [stream.ring for stream in self.streams]
            self.reader: FrameReader = rings[0] if len(rings) == 1 else FairReader(rings)
            self.infer = InferenceStage(self.reader, [s.results for s in self.streams], self.backend,
                                        [s.telemetry for s in self.streams], config.max_batch, config.max_wait_ms,
                                        config.smooth, config.reuse_cam, config.class_id, self.clip_tracker,
                                        faithful_search(config.threshold), config.faithful_every)
            self.controls = LiveControls(self.streams, self.infer, self.backend)
            if self.dashboard is not None:
                self.dashboard.start(self.controls.stats, self.controls.apply, self.controls.snapshot,
                                     self.controls.labels, self.controls.original)
        except BaseException:
            for stream in self.streams:
                stream.close_sinks()
                stream.source.close()
            self._close_models()
            self.output_lock.release(wrote=False)
            raise
        self.interrupted = False
        self._stop_requested = threading.Event()
        self.report: dict = {}
        self.report_path: str | None = None
        self.report_error: str | None = None  # why report.json could not be written (then the CLI prints it)
        self.sink_errors: list[str] = []  # sinks that failed to finish (a full disk at the end)

    def _open_streams(self, sources: tuple[str, ...], condition: threading.Condition) -> None:
        """Open every source's stream and its sinks; several sources that all fail are one error."""
        for index, name in enumerate(sources):
            out_dir = self.config.out_dir if len(sources) == 1 else os.path.join(self.config.out_dir,
                                                                                  stream_folder_name(index, name))
            self.streams.append(self._open_stream(index, name, out_dir, condition))
        unavailable = [s.source.error for s in self.streams if isinstance(s.source, UnavailableSource)]
        if len(unavailable) == len(self.streams) > 1:
            raise unavailable[0]  # nothing at all to run: one line, exit 2, as for one source
        for stream in self.streams:
            stream.open_sinks()

    def _open_stream(self, index: int, name: str, out_dir: str, condition: threading.Condition) -> Stream:
        """One source's stream; with several sources, one that cannot be opened becomes a failed stream of its
        own (an `UnavailableSource`) and the others run."""
        try:
            return Stream(index, name, self.config, self.backend, out_dir, condition, self.request_stop,
                          dashboard=self.dashboard)
        except InputError as exc:
            if len(self.config.all_sources) == 1:
                raise
            return Stream(index, name, self.config, self.backend, out_dir, condition, self.request_stop,
                          UnavailableSource(name, exc), self.dashboard)

    # The single-stream view, as `camstream run` with one source has always had it.
    source = property(lambda self: self.streams[0].source)
    ring = property(lambda self: self.streams[0].ring)
    telemetry = property(lambda self: self.streams[0].telemetry)
    sinks = property(lambda self: self.streams[0].sinks)
    capture = property(lambda self: self.streams[0].capture)
    render = property(lambda self: self.streams[0].render)
    policy = property(lambda self: self.streams[0].policy)

    @property
    def stages(self) -> list[threading.Thread]:
        return [*(s.capture for s in self.streams), self.infer, *(s.render for s in self.streams)]

    def request_stop(self) -> None:
        """Stop soon, keeping what has been rendered: capture ends, unread frames are discarded."""
        for stream in self.streams:
            stream.stop()
            stream.ring.abort()
            stream.render.gate.release()  # a run paused from the dashboard still stops

    def interrupt(self) -> None:
        """Ask for an orderly stop from anywhere, a signal handler included: the run loop acts on it."""
        self.interrupted = True
        self._stop_requested.set()

    def run(self, on_progress=None, progress_every_s: float = 1.0) -> dict:
        """Run to the end of input (or `interrupt()` / Ctrl-C / `request_stop`); returns the report (also
        written to disk)."""
        started = time.perf_counter()
        jit.use_twins_until_loaded()  # Numba loads after the first frame is out (`camstream.kernels.jit`)
        for stream in self.streams:
            stream.telemetry.start()
            stream.telemetry.on_first_frame = self._load_kernels
        for stage in self.stages:
            stage.start()
        last = time.perf_counter()
        stop_deadline = None  # once stopping, the stages get this long before the report is written anyway
        self.started = started
        # GUI sinks (the window) run their event loop here, on the thread that opened them
        pumped = [sink for stream in self.streams for sink in stream.sinks if sink.needs_main_thread]
        tick_s = PUMP_INTERVAL_S if pumped else 0.1
        try:
            while any(stream.render.is_alive() for stream in self.streams):
                # wait on the event, not on a join: a signal must never interrupt Thread.join
                self._stop_requested.wait(tick_s)
                for sink in pumped:
                    sink.pump()
                # a capture that fails closes its ring: the frames it delivered are still explained and written
                if self._stop_requested.is_set() or self.infer.error is not None:
                    if stop_deadline is None:
                        stop_deadline = time.perf_counter() + JOIN_TIMEOUT_S
                        self.request_stop()
                    elif time.perf_counter() > stop_deadline:
                        break  # a stage ignores the stop: `_shutdown` waits its grace, reports it, writes the report
                if on_progress is not None and time.perf_counter() - last >= progress_every_s:
                    last = time.perf_counter()
                    on_progress(self.status_line())
        except KeyboardInterrupt:
            self.interrupted = True
            self.request_stop()
        finally:
            self._shutdown()
        return self.report

    @staticmethod
    def _load_kernels() -> None:
        """Called on a stream's first frame out: Numba's import and first calls (~0.7 s) load on a thread of their
        own from then on; the twins draw till they are done."""
        jit.load_in_background(warm_up)

    def progress(self) -> tuple[int, int | None]:
        """Frames written so far (all streams) and how many there will be (one file, or --max-frames), or None."""
        done = sum(stream.telemetry.frames_out for stream in self.streams)
        if len(self.streams) != 1:
            return done, None
        info, limit = self.source.info, self.config.max_frames
        return done, min(n for n in (info.frames, limit) if n) if (info.frames and not info.live) or limit else None

    def status_line(self) -> str:
        """The one-line status of the run: frames, fps, drops, queue, per-stage ms and memory."""
        if len(self.streams) == 1:
            return self.telemetry.live_line(self.ring.depth, self.ring.dropped, self.progress()[1])
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        parts = " ".join(f"#{s.index} {s.telemetry.frames_out}" for s in self.streams)
        total = sum(s.telemetry.frames_out for s in self.streams)
        return (f"{len(self.streams)} streams | frames out {parts} | total {total / elapsed:.1f} fps | "
                f"rss {self.telemetry.sample_memory():.0f} MB")

    def _shutdown(self) -> None:
        deadline = time.perf_counter() + JOIN_TIMEOUT_S
        for stage in self.stages:
            stage.join(max(0.0, deadline - time.perf_counter()))
        stuck = [stage.name for stage in self.stages if stage.is_alive()]
        stream_reports = []
        self.sink_errors: list[str] = []
        for stream in self.streams:
            # the sinks belong to the render thread: never close them under it (a late batch may still come)
            stream.render.join(RENDER_GRACE_S)
            if stream.render.is_alive():
                errors = ["the render thread did not stop: sinks left open"]
            else:
                errors = stream.close_sinks()
            self.sink_errors += errors
            if not stream.capture.is_alive():
                stream.source.close()
            stream.telemetry.finish()
            stream_reports.append(stream_report(stream, stuck, errors))
            if self.infer.faithful is not None:  # --threshold faithful: its searches and what they kept
                stream_reports[-1]["faithful"] = self.infer.faithful_tally[stream.index].summary(
                    self.infer.faithful.ratio, self.infer.faithful_every)
        self._close_models()
        jit.stop_using_twins()
        error = self.error()
        facts = RunFacts(self.config, self.backend, self.method_name,
                         self.clip_tracker, self.interrupted, None if error is None else str(error),
                         self.infer.batches, list(getattr(self.reader, "max_skipped", [0] * len(self.streams))),
                         jit.ready_at())
        self.report = run_report(facts, stream_reports)
        path = os.path.join(self.config.out_dir, "report.json")
        try:
            self.report_path = write_json_atomic(path, self.report)
        except OSError as exc:  # a full disk: the figures must not be lost with the file (the CLI prints them)
            self.report_path = None
            self.report_error = f"cannot write {path}: {exc.strerror or exc}"
        finally:
            self.output_lock.release()
        self.controls.running = False
        if self.dashboard is not None and not self.config.keep_serving:
            self.dashboard.stop()  # the page gets the end and the last figures; its last frame stays shown

    def stop_serving(self) -> None:
        """End the dashboard that `keep_serving` kept up after the run (nothing when there is none)."""
        if self.dashboard is not None:
            self.dashboard.stop()

    def _close_models(self) -> None:
        """Release the backend's model and give it and the clip model back their own modes."""
        self.backend.close()
        if self.clip_tracker is not None:
            self.clip_tracker.close()

    def error(self) -> BaseException | None:
        """The first error a stage stopped on, if any."""
        for stage in self.stages:
            if stage.error is not None:
                return stage.error
        return None
