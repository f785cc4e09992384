"""Render stage: composite heatmaps over frames (`HeatmapPainter`, fused kernel), draw the HUD, pace, hand to the
sinks."""

from __future__ import annotations

import collections
import functools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from camstream.catalog import HUD_PLACES
from camstream.explain.drawing import FONT, LEGIBLE_SCALE, HeatmapPainter
from camstream.explain.faithful import FaithfulChoice
from camstream.explain.result import Explanation
from camstream.kernels import threshold_value
from camstream.model.preprocess import Placement
from camstream.stream.records import END_OF_STREAM, FrameDetections, FrameSlot
from camstream.stream.ring import FrameRing
from camstream.stream.sinks import Sink
from camstream.stream.telemetry import Telemetry
from camstream.stream.timeline_strip import draw_timeline
from camstream.threshold_spec import ThresholdSpec


class PauseGate:
    """Where the render thread waits while the dashboard has paused the run; `step()` lets one frame through.
    Upstream stages then wait on the full ring (lossless) or drop frames (live), so nothing runs ahead."""

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        self._steps = 0
        self._paused = False
        self._lock = threading.Lock()

    @property
    def paused(self) -> bool:
        """Whether the run is paused (a step in progress included)."""
        return self._paused

    def pause(self, paused: bool) -> None:
        with self._lock:
            self._steps = 0
            self._paused = paused
            if paused:
                self._open.clear()
            else:
                self._open.set()

    def step(self) -> None:
        """While paused, let the next frame through (nothing when not paused)."""
        with self._lock:
            if self._paused:
                self._steps += 1
                self._open.set()

    def release(self) -> None:
        """Open for good (the run ends)."""
        self.pause(False)

    def wait(self) -> None:
        self._open.wait()
        with self._lock:
            if self._steps:
                self._steps -= 1
                if not self._steps:
                    self._open.clear()


class RenderStage(threading.Thread):
    """Composites each frame with the newest heatmap, draws the HUD, paces display sinks, writes the sinks.

    Every frame is released back to the ring after the sinks have taken it.
    """

    def __init__(self, results: queue.Queue, ring: FrameRing, sinks: list[Sink], painter: HeatmapPainter,
                 telemetry: Telemetry, label: Callable[[int], str], method: str, target_fps: float = 60.0,
                 hud: str = "top") -> None:
        super().__init__(name="camstream-render", daemon=True)
        self.results = results
        self.ring = ring
        self.sinks = sinks
        self.painter = painter
        self.telemetry = telemetry
        self.label = label
        self.method = method
        self.frame_interval = 1.0 / target_fps if target_fps > 0 and any(s.displays for s in sinks) else 0.0
        if hud not in HUD_PLACES:
            raise ValueError(f"hud must be one of {', '.join(HUD_PLACES)}")
        self.hud = hud
        self.error: BaseException | None = None
        self.last_seq = -1  # order check: sequence numbers must only grow, by one in lossless mode
        self.seq_gaps = 0
        self.out_of_order = 0
        self._cam: np.ndarray | None = None
        self._cam_meta = (-1, 0.0, -1, 0.0)  # class id, score, seq, made at
        self.class_frames: collections.Counter[int] = collections.Counter()  # explained frames per class id
        self.recent_classes: collections.deque[tuple[int, int, float]] = collections.deque(maxlen=24)  # seq, id, score
        self._steps: Explanation | None = None  # the clip model's newest reading, when one runs
        self._step_map = np.empty(0, np.float32)  # its step importance (T,), read once per reading
        self._steps_threshold = 0.0  # its threshold under the painter's spec
        self._detections: FrameDetections | None = None  # a detector's newest boxes and maps
        self._kept: FaithfulChoice | None = None  # --threshold faithful: the newest choice (shown until the next)
        self._frame_size: tuple[int, int] = (0, 0)  # (height, width) of the newest frame
        self.last_threshold = float("-inf")  # the map value the newest frame was drawn above (-inf: everywhere)
        self.gate = PauseGate()  # the dashboard's pause and single step: frames wait here while paused
        self.keep_original = False  # the dashboard shows the frame before the overlay beside it (`original_jpeg`)
        self._original: np.ndarray | None = None
        self._original_lock = threading.Lock()

    def run(self) -> None:
        next_due = 0.0
        try:
            while True:
                slot = self.results.get()
                if slot is END_OF_STREAM:
                    break
                self.gate.wait()
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
            self._detections = slot.explained.detections
            if self._detections is None:
                self.class_frames[slot.explained.class_id] += 1
            else:
                self.class_frames.update({int(label) for label in self._detections.labels})  # frames, not boxes
            if slot.explained.class_id >= 0:
                self.recent_classes.append((slot.meta.seq, slot.explained.class_id, slot.explained.score))
            self._cam_meta = (slot.explained.class_id, slot.explained.score, slot.meta.seq, slot.meta.time_s)
            self._kept = slot.explained.kept
        if slot.explained.steps is not None and slot.explained.steps is not self._steps:
            self._steps = slot.explained.steps
            self._step_map = np.asarray(slot.explained.steps.maps[0], dtype=np.float32)
            # the steps are cut by the painter's spec; under a faithful one, at the image's newest kept percentage
            spec = self.painter.spec if self.painter.spec.faithful is None or self._kept is None else (
                _kept_spec(self._kept.keep_percent))
            self._steps_threshold = threshold_value(self._step_map, spec)
        if self.keep_original:
            self._keep(slot.image)
        if self._detections is not None:
            self._frame_size = slot.image.shape[:2]
            self.painter.paint_boxes(slot.image, self._detections, slot.image, self.label)
        elif self._cam is not None:
            self.last_threshold = self.painter.paint(slot.image, self._cam, slot.image, self._faithful_cut())
        if self.hud != "off":
            self._draw_hud(slot.image, slot)
        return slot.image

    def _faithful_cut(self) -> float | None:
        """Under --threshold faithful, the map value its newest search cut at (all of the map before the first);
        None: the painter's own threshold."""
        if self.painter.spec.faithful is None:
            return None
        return float("-inf") if self._kept is None else self._kept.threshold

    def faithful_text(self) -> str:
        """The HUD's word on a faithful threshold's newest choice: `faithful:0.95 10% keeps 97%`, flagged `(< R)`
        when the largest candidate did not reach R; the spec alone otherwise."""
        spec = self.painter.spec
        if spec.faithful is None or self._kept is None:
            return str(spec)
        kept = self._kept
        return f"{spec} {kept.keep_percent:g}% keeps {kept.retained:.0%}" + ("" if kept.reached else " (< R)")

    def _keep(self, image: np.ndarray) -> None:
        """Copy the frame before the overlay is painted into it in place (one copy per frame, dashboard only)."""
        with self._original_lock:
            if self._original is None or self._original.shape != image.shape:
                self._original = np.empty_like(image)
            np.copyto(self._original, image)

    def original_jpeg(self) -> bytes | None:
        """The newest frame as it came, before the overlay, as a JPEG (None before the first, or when not kept)."""
        with self._original_lock:
            frame = None if self._original is None else self._original.copy()
        if frame is None:
            return None
        ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
        return encoded.tobytes() if ok else None

    @property
    def threshold_value(self) -> float | None:
        """The map value the newest frame was drawn above, rounded; None when it was drawn everywhere."""
        return None if self.last_threshold == float("-inf") else round(self.last_threshold, 4)

    def snapshot(self) -> dict:
        """The newest explained frame's facts (`/snapshot/N.json`) and its raw map (None before the first)."""
        class_id, score, seq, time_s = self._cam_meta
        facts = {"seq": seq, "time_s": round(time_s, 3), "class_id": class_id,
                 "label": self.label(class_id) if class_id >= 0 else None, "score": round(float(score), 4),
                 "method": self.method, "threshold": str(self.painter.spec),
                 "threshold_value": self.threshold_value,
                 "boxes": self.latest_boxes()}
        return {"facts": facts, "map": None if self._cam is None else self._cam.copy()}

    def latest_boxes(self) -> list[dict] | None:
        """A detector's newest boxes at the frame's scale (label, score, x1 y1 x2 y2), best first; None for a
        classifier."""
        found = self._detections
        if found is None or not self._frame_size[0]:
            return None
        size = self.painter.model_size or self._frame_size
        on_frame = Placement.of(self._frame_size, tuple(size), self.painter.resize).boxes_to_frame(found.boxes)
        return [{"class_id": int(label), "label": self.label(int(label)), "score": round(float(score), 3),
                 "box": [round(float(v)) for v in box]}
                for label, score, box in zip(found.labels, found.scores, on_frame, strict=True)]

    def top_classes(self, count: int = 5) -> list[dict]:
        """The classes explained most often, with their names and frame counts (most first)."""
        return [{"class_id": int(class_id), "label": self.label(class_id), "frames": frames}
                for class_id, frames in self.class_frames.most_common(count)]

    def hud_lines(self, slot: FrameSlot) -> tuple[str, str]:
        """The HUD's two lines for `slot`: class, score, method, threshold and fps; per-stage ms, heatmap age,
        memory, and reconnects / the clip model's reading when there are any."""
        class_id, score, cam_seq, cam_time = self._cam_meta
        stages = self.telemetry.stages
        label = self.label(class_id) if class_id >= 0 else "..."
        age_ms = (slot.meta.time_s - cam_time) * 1e3 if cam_seq >= 0 else 0.0
        if self._detections is not None:
            label = self.boxes_text(self._detections)
        top = f"{label} {'' if self._detections is not None else f'{score:.2f} '}| {self.method} " \
              f"{self.faithful_text()} | {self.telemetry.fps():.1f} fps"
        shown = ("decode", "inference", "cam", "boxes", "render", "sink") if self._detections is not None else (
            "decode", "inference", "cam", *(("faithful",) if self._kept is not None else ()), "render", "sink")
        timing = " ".join(f"{name} {stages[name].recent_ms:.1f}" for name in shown)
        bottom = f"ms: {timing} | cam age {age_ms:.0f} ms | rss {self.telemetry.rss_latest_mb:.0f} MB"
        if self.telemetry.reconnects:
            bottom += f" | reconnects {self.telemetry.reconnects} ({self.telemetry.outage_s:.1f} s out)"
        if self._steps is not None:
            steps = self._steps
            bottom += (f" | clip class {int(steps.class_ids[0])} {float(steps.scores[0]):.2f} over "
                       f"{len(self._step_map)} steps")
        return top, bottom

    def boxes_text(self, found: FrameDetections, shown: int = 3) -> str:
        """'2 boxes: face 0.93, face 0.81' (the best `shown`, then '+N'), or 'no detections'."""
        count = len(found.scores)
        if not count:
            return "no detections"
        named = ", ".join(f"{self.label(int(found.labels[i]))} {float(found.scores[i]):.2f}"
                          for i in range(min(count, shown)))
        more = f" +{count - shown}" if count > shown else ""
        return f"{count} box{'es' if count > 1 else ''}: {named}{more}"

    def _draw_hud(self, canvas: np.ndarray, slot: FrameSlot) -> None:
        if self._steps is not None:
            draw_timeline(canvas, self._step_map, self._steps_threshold, self.painter.lut)
        height, width = canvas.shape[:2]
        layout = hud_layout(self.hud_lines(slot), width, height)
        band = layout.band
        first = 0 if self.hud == "top" else height - band
        cv2.rectangle(canvas, (0, first), (width - 1, first + band - 1), (0, 0, 0), thickness=-1)
        for row, text in enumerate(layout.texts):
            baseline = first + HUD_PAD + layout.line * (row + 1) - layout.descent
            cv2.putText(canvas, text, (HUD_PAD, baseline), FONT, layout.scale, (255, 255, 255), 1, cv2.LINE_AA)


HUD_PAD = 2  # pixels around the text
HUD_SHARE = 0.10  # the most of the picture's height the HUD may cover


@dataclass(frozen=True)
class HudLayout:
    """How the HUD is drawn on one frame size: font scale, line height and descent (px), the band's height and
    the lines that fit."""

    scale: float
    line: int
    descent: int
    band: int
    texts: tuple[str, ...]


def hud_layout(lines: tuple[str, ...], width: int, height: int) -> HudLayout:
    """The largest font (up to 0.8, about width/1600) at which the HUD stays within a tenth of the picture's
    height; the second line goes first when two do not fit at a legible size, and each line is shortened ('..')
    to the frame's width, so nothing is cut off."""
    scale, line, descent, count = _hud_font(width, height, len(lines))
    texts = tuple(_fit(text, width - 2 * HUD_PAD - 2, scale) for text in lines[:count])
    return HudLayout(scale, line, descent, count * line + 2 * HUD_PAD, texts)


@functools.lru_cache(maxsize=16)
def _hud_font(width: int, height: int, lines: int) -> tuple[float, int, int, int]:
    """(scale, line height, descent, lines drawn) for a frame size: worked out once per size, not per frame."""
    budget = HUD_SHARE * height
    for count in (lines, 1):
        scale = max(LEGIBLE_SCALE, min(width / 1600.0, 0.8))
        while scale >= LEGIBLE_SCALE:
            (_, ascent), descent = cv2.getTextSize("Ag", FONT, scale, 1)
            if count * (ascent + descent + 1) + 2 * HUD_PAD <= budget:
                return scale, ascent + descent + 1, descent + 1, count
            scale = round(scale - 0.05, 2)
    (_, ascent), descent = cv2.getTextSize("Ag", FONT, LEGIBLE_SCALE, 1)  # a tiny frame: one legible line
    return LEGIBLE_SCALE, ascent + descent + 1, descent + 1, 1


def _fit(text: str, room: int, scale: float) -> str:
    """`text`, shortened with '..' until it is at most `room` pixels wide at `scale` (binary search on length)."""
    def width(candidate: str) -> int:
        return cv2.getTextSize(candidate, FONT, scale, 1)[0][0]

    if width(text) <= room:
        return text
    low, high = 0, len(text)  # text[:low] + ".." fits; text[:high] + ".." does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if width(text[:middle] + "..") <= room else (low, middle)
    return text[:low].rstrip() + ".."


@functools.lru_cache(maxsize=16)
def _kept_spec(keep_percent: float) -> ThresholdSpec:
    """The spec of a faithful choice (one per candidate, made once)."""
    return ThresholdSpec(keep_percent=keep_percent)
