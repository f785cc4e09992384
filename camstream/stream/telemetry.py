"""Per-stage latency histograms, counters and process memory (psutil), in constant memory."""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import psutil

from camstream.runtime import run_start_time

# boxes: a detector's per-box explanation; faithful: the faithful threshold's search; clip: the clip model
STAGES = ("decode", "preprocess", "inference", "cam", "boxes", "faithful", "clip", "render", "sink")


class LatencyHistogram:
    """Latencies in log-spaced bins (1 µs … 100 s, bins 1 % wide): percentiles within ±1 %, fixed memory."""

    _LOW_MS = 1e-3
    _RATIO = 1.01
    _BINS = int(math.log(1e5 / 1e-3) / math.log(1.01)) + 2

    def __init__(self) -> None:
        self.counts = np.zeros(self._BINS, dtype=np.int64)
        self.count = 0
        self.total_ms = 0.0
        self.max_ms = 0.0
        self.recent_ms = 0.0  # exponential moving average, for live display

    def add(self, ms: float) -> None:
        """Record one latency in milliseconds."""
        ms = max(ms, 0.0)
        index = 0 if ms <= self._LOW_MS else min(int(math.log(ms / self._LOW_MS) / math.log(self._RATIO)) + 1,
                                                   self._BINS - 1)
        self.counts[index] += 1
        self.count += 1
        self.total_ms += ms
        self.max_ms = max(self.max_ms, ms)
        self.recent_ms = ms if self.count == 1 else 0.9 * self.recent_ms + 0.1 * ms

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100) in ms; 0 when empty."""
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(q / 100.0 * self.count))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        if index == 0:
            return self._LOW_MS
        # geometric centre of the bin, never beyond the largest value seen
        return min(self._LOW_MS * self._RATIO ** (index - 0.5), self.max_ms)

    def summary(self) -> dict[str, float]:
        """count, mean and p50/p95/p99/max in ms."""
        mean = self.total_ms / self.count if self.count else 0.0
        return {"count": self.count, "mean_ms": round(mean, 3), "p50_ms": round(self.percentile(50), 3),
                "p95_ms": round(self.percentile(95), 3), "p99_ms": round(self.percentile(99), 3),
                "max_ms": round(self.max_ms, 3)}


class Telemetry:
    """What every stage records: its latencies, frame counters, and the process's memory."""

    def __init__(self, warmup_frames: int = 200) -> None:
        self.stages = {name: LatencyHistogram() for name in STAGES}
        self.warmup_frames = warmup_frames
        self.rss_warm_mb: float | None = None  # RSS once `warmup_frames` frames are out: the base for growth
        self.latency = LatencyHistogram()  # capture → sink, per frame
        self.frames_in = 0
        self.frames_out = 0
        self.frames_explained = 0
        self.boxes_explained = 0  # a detector's boxes, each with its own map
        self.batches = 0
        self.reconnects = 0  # of a live source, written by the capture stage
        self.outage_s = 0.0
        self.started = time.perf_counter()
        self.finished: float | None = None
        self._process = psutil.Process(os.getpid())
        self.rss_start_mb = self.rss_mb()
        self.first_frame_s: float | None = None  # process start → first frame out (set by `frame_out`)
        self.on_first_frame: Callable[[], None] | None = None  # called by `frame_out` once that frame is counted
        self.rss_peak_mb = self.rss_start_mb  # over the run; `start()` resets it
        self.rss_latest_mb = self.rss_start_mb
        self.fds_start = self.open_files()
        self.threads_start = threading.active_count()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the clock (the run begins; model loading and tracing are not counted)."""
        self.started = time.perf_counter()
        self.rss_start_mb = self.rss_peak_mb = self.rss_mb()
        self.fds_start = self.open_files()
        self.threads_start = threading.active_count()

    def frame_out(self) -> None:
        """Count one frame delivered to the sinks; sample RSS every 32 frames and once warm-up ends."""
        self.frames_out += 1
        if self.frames_out == 1:  # seconds from the process's start (imports, model load, tracing included)
            self.first_frame_s = time.time() - run_start_time()
            if self.on_first_frame is not None:
                self.on_first_frame()
        if self.frames_out == self.warmup_frames:
            self.rss_warm_mb = self.sample_memory()
        elif self.frames_out % 32 == 0:
            self.sample_memory()

    def open_files(self) -> int | None:
        """Open file descriptors (handles on Windows) of this process."""
        try:
            return self._process.num_fds() if hasattr(self._process, "num_fds") else self._process.num_handles()
        except psutil.Error:
            return None

    def rss_mb(self) -> float:
        """Resident memory of this process now, MB."""
        return self._process.memory_info().rss / 2**20

    def sample_memory(self) -> float:
        """Read RSS and fold it into the peak; returns it."""
        rss = self.rss_mb()
        with self._lock:
            self.rss_peak_mb = max(self.rss_peak_mb, rss)
        self.rss_latest_mb = rss  # what the HUD shows: read every 32 frames, not per frame
        return rss

    @staticmethod
    def process_peak_rss_mb() -> float | None:
        """The OS's high-water mark of RSS over the whole process life (Linux/macOS), MB."""
        try:
            import resource
        except ImportError:
            return None
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (2**20 if sys.platform == "darwin" else 1024.0)

    def elapsed_s(self) -> float:
        """Seconds since start (until `finish`)."""
        return (self.finished or time.perf_counter()) - self.started

    def fps(self) -> float:
        """Frames out per second so far."""
        elapsed = self.elapsed_s()
        return self.frames_out / elapsed if elapsed > 0 else 0.0

    def finish(self) -> None:
        """Freeze the clock."""
        self.finished = time.perf_counter()
        self.sample_memory()

    def live_line(self, depth: int, dropped: int, total: int | None = None) -> str:
        """One compact status line: frames out (of `total`, with percent and ETA, when the input's length is
        known) and in, fps, drops, queue, per-stage ms and memory: `frames out 50 of 250 (20 %, ETA 0:20), in 52 |
        10.0 fps | …`."""
        parts = " ".join(f"{name} {h.recent_ms:.1f}" for name, h in self.stages.items() if h.count)
        outage = f" | reconnects {self.reconnects} ({self.outage_s:.1f} s out)" if self.reconnects else ""
        return (f"frames out {self.frames_out}{self._progress(total)}, in {self.frames_in}{outage} | "
                f"{self.fps():.1f} fps | dropped {dropped} | queue {depth} | ms: {parts} | "
                f"rss {self.sample_memory():.0f} MB")

    def _progress(self, total: int | None) -> str:
        """' of N (P %, ETA m:ss)' once the frame rate is known; '' for an input of unknown length."""
        if not total:
            return ""
        done = min(self.frames_out, total)
        fps = self.fps()
        eta = f", ETA {int((total - done) / fps) // 60}:{int((total - done) / fps) % 60:02d}" if fps > 0 else ""
        return f" of {total} ({100 * done // total} %{eta})"

    def report(self) -> dict:
        """The telemetry part of report.json."""
        rss_end = self.sample_memory()
        growth = None if self.rss_warm_mb is None else 100.0 * (rss_end - self.rss_warm_mb) / self.rss_warm_mb
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "frames_explained": self.frames_explained,
            "boxes_explained": self.boxes_explained,
            "boxes_per_frame": round(self.boxes_explained / self.frames_explained, 3) if self.frames_explained else 0,
            "batches": self.batches,
            "elapsed_s": round(self.elapsed_s(), 3),
            "fps": round(self.fps(), 3),
            "stages": {name: h.summary() for name, h in self.stages.items()},
            "latency_ms": {"p50": round(self.latency.percentile(50), 3),
                           "p95": round(self.latency.percentile(95), 3),
                           "p99": round(self.latency.percentile(99), 3),
                           "max": round(self.latency.max_ms, 3)},
            "reconnects": self.reconnects,
            "outage_s": round(self.outage_s, 3),
            "time_to_first_frame_s": None if self.first_frame_s is None else round(self.first_frame_s, 2),
            "rss_start_mb": round(self.rss_start_mb, 1),
            "rss_end_mb": round(rss_end, 1),
            "rss_peak_mb": round(self.rss_peak_mb, 1),  # sampled during the run (every 32 frames)
            "rss_peak_process_mb": self.process_peak_rss_mb(),
            "rss_warm_mb": None if self.rss_warm_mb is None else round(self.rss_warm_mb, 1),
            "rss_growth_after_warmup_pct": None if growth is None else round(growth, 3),
            "threads_start": self.threads_start,
            "threads_end": threading.active_count(),
            "fds_start": self.fds_start,
            "fds_end": self.open_files(),
        }
