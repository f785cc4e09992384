"""Render stage: composite heatmaps over frames (fused kernel), draw the HUD, pace, hand to the sinks."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from camstream.explain.result import Explanation
from camstream.kernels import (
    ThresholdSpec,
    colormap_lut,
    overlay,
    threshold_value,
    upsample_bilinear,
)
from camstream.stream.records import END_OF_STREAM, FrameSlot
from camstream.stream.ring import FrameRing
from camstream.stream.sinks import Sink
from camstream.stream.telemetry import Telemetry
from camstream.stream.timeline_strip import draw_timeline

PROXY_SIDE = 64  # percentiles are taken on a 64×64 bilinear upsample: same distribution, far fewer pixels


class HeatmapPainter:
    """Threshold a CAM by `spec` and blend it over a frame; owns its lookup table and scratch buffers."""

    def __init__(self, spec: ThresholdSpec, colormap: str = "jet", alpha: float = 0.45) -> None:
        self.spec = spec
        self.alpha = alpha
        self.lut = colormap_lut(colormap)
        self._proxy = np.empty((PROXY_SIDE, PROXY_SIDE), dtype=np.float32)
        self._scratch = np.empty(PROXY_SIDE * PROXY_SIDE, dtype=np.float64)

    def threshold(self, cam: np.ndarray) -> float:
        """The map value above which the heatmap is drawn (-inf: everywhere)."""
        if self.spec.keep_percent is None and not self.spec.dynamic:
            return -np.inf
        upsample_bilinear(cam, self._proxy.shape, self._proxy)
        return threshold_value(self._proxy, self.spec, self._scratch)

    def paint(self, frame: np.ndarray, cam: np.ndarray, out: np.ndarray) -> float:
        """Write frame + heatmap into `out`; returns the threshold used."""
        threshold = self.threshold(cam)
        overlay(frame, cam, threshold, self.lut, self.alpha, out)
        return threshold


class RenderStage(threading.Thread):
    """Composites each frame with the newest heatmap, draws the HUD, paces display sinks, writes the sinks.

    Every frame is released back to the ring after the sinks have taken it.
    """

    def __init__(self, results: queue.Queue, ring: FrameRing, sinks: list[Sink], painter: HeatmapPainter,
                 telemetry: Telemetry, label: Callable[[int], str], method: str, target_fps: float = 60.0,
                 hud: bool = True) -> None:
        super().__init__(name="camstream-render", daemon=True)
        self.results = results
        self.ring = ring
        self.sinks = sinks
        self.painter = painter
        self.telemetry = telemetry
        self.label = label
        self.method = method
        self.frame_interval = 1.0 / target_fps if target_fps > 0 and any(s.displays for s in sinks) else 0.0
        self.hud = hud
        self.error: BaseException | None = None
        self.last_seq = -1  # order check: sequence numbers must only grow, by one in lossless mode
        self.seq_gaps = 0
        self.out_of_order = 0
        self._cam: np.ndarray | None = None
        self._cam_meta = (-1, 0.0, -1, 0.0)  # class id, score, seq, made at
        self._steps: Explanation | None = None  # the clip model's newest reading, when one runs
        self._step_map = np.empty(0, np.float32)  # its step importance (T,), read once per reading
        self._steps_threshold = 0.0  # its threshold under the painter's spec

    def run(self) -> None:
        next_due = 0.0
        try:
            while True:
                slot = self.results.get()
                if slot is END_OF_STREAM:
                    break
                began = time.perf_counter()
                canvas = self._render(slot)
                self.telemetry.stages["render"].add((time.perf_counter() - began) * 1e3)
                if self.frame_interval:
                    now = time.perf_counter()
                    if next_due > now:
                        time.sleep(next_due - now)
                    next_due = max(next_due, now) + self.frame_interval
                began = time.perf_counter()
                for sink in self.sinks:
                    sink.write(canvas, slot.meta)
                done = time.perf_counter()
                self.telemetry.stages["sink"].add((done - began) * 1e3)
                self.telemetry.latency.add((done - slot.meta.captured) * 1e3)
                self.telemetry.frame_out()
                if slot.meta.seq <= self.last_seq:
                    self.out_of_order += 1
                elif slot.meta.seq != self.last_seq + 1:
                    self.seq_gaps += 1  # frames missing before this one (live drops, or a stop)
                self.last_seq = slot.meta.seq
                self.ring.release(slot)
        except BaseException as exc:  # reported by the pipeline
            self.error = exc
            self.ring.abort()
            while self.results.get() is not END_OF_STREAM:  # let the inference thread finish its puts
                pass

    def _render(self, slot: FrameSlot) -> np.ndarray:
        """Composite in place into the slot's own image: it is released once the sinks have it, and pixels
        under the threshold are then never touched."""
        if slot.explained.has_cam:
            if self._cam is None or self._cam.shape != slot.explained.cam.shape:
                self._cam = np.empty_like(slot.explained.cam)
            np.copyto(self._cam, slot.explained.cam)
            self._cam_meta = (slot.explained.class_id, slot.explained.score, slot.meta.seq, slot.meta.time_s)
        if slot.explained.steps is not None and slot.explained.steps is not self._steps:
            self._steps = slot.explained.steps
            self._step_map = np.asarray(slot.explained.steps.maps[0], dtype=np.float32)
            self._steps_threshold = threshold_value(self._step_map, self.painter.spec)
        if self._cam is not None:
            self.painter.paint(slot.image, self._cam, slot.image)
        if self.hud:
            self._draw_hud(slot.image, slot)
        return slot.image

    def hud_lines(self, slot: FrameSlot) -> tuple[str, str]:
        """The HUD's two lines for `slot`: class, score, method, threshold and fps; per-stage ms, heatmap age,
        memory, and reconnects / the clip model's reading when there are any."""
        class_id, score, cam_seq, cam_time = self._cam_meta
        stages = self.telemetry.stages
        label = self.label(class_id) if class_id >= 0 else "..."
        age_ms = (slot.meta.time_s - cam_time) * 1e3 if cam_seq >= 0 else 0.0
        top = f"{label} {score:.2f} | {self.method} {self.painter.spec} | {self.telemetry.fps():.1f} fps"
        timing = " ".join(f"{name} {stages[name].recent_ms:.1f}" for name in ("decode", "inference", "cam",
                                                                                "render", "sink"))
        bottom = f"ms: {timing} | cam age {age_ms:.0f} ms | rss {self.telemetry.rss_latest_mb:.0f} MB"
        if self.telemetry.reconnects:
            bottom += f" | reconnects {self.telemetry.reconnects} ({self.telemetry.outage_s:.1f} s out)"
        if self._steps is not None:
            steps = self._steps
            bottom += (f" | clip class {int(steps.class_ids[0])} {float(steps.scores[0]):.2f} over "
                       f"{len(self._step_map)} steps")
        return top, bottom

    def _draw_hud(self, canvas: np.ndarray, slot: FrameSlot) -> None:
        top, bottom = self.hud_lines(slot)
        if self._steps is not None:
            draw_timeline(canvas, self._step_map, self._steps_threshold, self.painter.lut)
        scale = max(0.35, min(canvas.shape[1] / 1600.0, 0.8))
        line = int(22 * scale / 0.5)
        cv2.rectangle(canvas, (0, 0), (canvas.shape[1], 2 * line + 6), (0, 0, 0), thickness=-1)
        for row, text in enumerate((top, bottom)):
            cv2.putText(canvas, text, (6, line * (row + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                        1, cv2.LINE_AA)
