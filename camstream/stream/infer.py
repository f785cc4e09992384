"""Inference stage: batch ready frames, run the hooked model once per batch, write CAMs into the slots."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from camstream.backends import Backend
from camstream.explain.faithful import FaithfulChoice, FaithfulSearch
from camstream.explain.result import Explanation
from camstream.kernels import CamSmoother
from camstream.stream.records import END_OF_STREAM, FrameSlot
from camstream.stream.ring import FrameReader
from camstream.stream.telemetry import Telemetry

if TYPE_CHECKING:
    from camstream.stream.timeline import ClipTracker


def hand_out_boxes(explanation: Explanation, slots: list[FrameSlot], smoothers: list[CamSmoother]) -> None:
    """A detector's boxes, labels, scores and per-box maps, each frame's own (`Explanation.frame_boxes`), each box's
    map smoothed with the box it continues in its stream (`CamSmoother.smooth_boxes`); its best box's class and
    score stand for the frame (-1 and 0 when it has none)."""
    for index, slot in enumerate(slots):
        detections = explanation.frame_detections(index)
        smoothers[slot.stream].smooth_boxes(detections.boxes, detections.labels, detections.cams)
        slot.explained.detections = detections
        slot.explained.has_cam = True
        slot.explained.class_id = int(detections.labels[0]) if len(detections.scores) else -1
        slot.explained.score = float(detections.scores[0]) if len(detections.scores) else 0.0


@dataclass
class FaithfulTally:
    """One stream's faithful-threshold searches: how many explained frames it has seen, the searches, their sums
    (for the report) and the newest choice (shown until the next)."""

    explained: int = 0
    searching: bool = True  # False while the dashboard shows this stream by another threshold
    searches: int = 0
    reached: int = 0
    kept_percent_sum: float = 0.0
    retained_sum: float = 0.0
    newest: FaithfulChoice | None = None

    def add(self, choice: FaithfulChoice) -> None:
        self.searches += 1
        self.reached += choice.reached
        self.kept_percent_sum += choice.keep_percent
        self.retained_sum += choice.retained
        self.newest = choice

    def summary(self, ratio: float, every: int) -> dict:
        """What the report says of the stream's faithful threshold."""
        searches = max(self.searches, 1)
        return {"ratio": ratio, "every": every, "searches": self.searches, "reached": self.reached,
                "kept_percent_mean": round(self.kept_percent_sum / searches, 2),
                "retained_mean": round(self.retained_sum / searches, 4)}


class InferenceStage(threading.Thread):
    """Takes up to `max_batch` frames (waiting at most `max_wait_ms` for a full batch) and explains them.

    `reader` is one stream's `FrameRing`, or a `FairReader` over several streams' rings; a frame's CAM,
    result and timings go to its own stream (`slot.stream` indexes `results`, `telemetries`), and each
    stream is smoothed on its own. With `reuse_cam`, only the newest frame of each stream in a batch is
    explained; the others go on to be rendered with the latest heatmap, so display keeps the source rate
    while heatmaps refresh at inference rate. A `clip_tracker` (temporal model) also sees every explained
    frame and gives each stream's frames the step importance of its newest window.
    """

    def __init__(self, reader: FrameReader, results: list[queue.Queue[FrameSlot]], backend: Backend,
                 telemetries: list[Telemetry], max_batch: int = 4,
                 max_wait_ms: float = 20.0, smooth: float = 0.0, reuse_cam: bool = False,
                 class_id: int | None = None, clip_tracker: ClipTracker | None = None,
                 faithful: FaithfulSearch | None = None, faithful_every: int = 8) -> None:
        super().__init__(name="camstream-infer", daemon=True)
        if len(results) != len(telemetries):
            raise ValueError("one result queue and one telemetry per stream")
        self.reader = reader
        self.results = results
        self.backend = backend
        self.telemetries = telemetries
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1e3
        self.smoothers = [CamSmoother(smooth) for _ in results]
        self.reuse_cam = reuse_cam
        self.class_ids: list[int | None] = [class_id] * len(results)  # per stream: the class explained (None: top-1)
        self.clip_tracker = clip_tracker
        self.faithful = faithful  # --threshold faithful: the search, run on every `faithful_every`-th explained frame
        self.faithful_every = faithful_every
        self.faithful_tally = [FaithfulTally() for _ in results]  # per stream: its searches and its newest choice
        self.batches = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while True:
                batch = self.reader.take(self.max_batch, self.max_wait_s)
                if not batch:
                    break
                if self.reuse_cam:
                    newest = {slot.stream: slot for slot in batch}
                    self._explain(list(newest.values()))
                else:
                    self._explain(batch)
                for slot in batch:
                    self.results[slot.stream].put(slot)
        except BaseException as exc:  # reported by the pipeline
            self.error = exc
            for ring in self.reader.rings:
                ring.abort()
        finally:
            for results in self.results:
                results.put(END_OF_STREAM)

    def _hand_out_maps(self, explanation: Explanation, slots: list[FrameSlot]) -> None:
        """Each slot's map (smoothed per stream), class and score, copied into its reused CAM buffer."""
        cams = np.asarray(explanation.maps)
        class_ids = explanation.class_ids.tolist()
        scores = explanation.scores.tolist()
        for index, slot in enumerate(slots):
            cam = slot.explained.cam_buffer(cams.shape[1:])
            np.copyto(cam, cams[index])
            self.smoothers[slot.stream](cam)
            slot.explained.has_cam = True
            slot.explained.class_id = class_ids[index]
            slot.explained.score = scores[index]

    def _choose_kept(self, slots: list[FrameSlot]) -> float:
        """--threshold faithful: search on each slot whose stream is due (every `faithful_every`-th explained
        frame), the others reuse their stream's newest choice; returns the time taken (ms). Runs after everything
        else that reads the backend's last batch: the search's own batch replaces it."""
        began = time.perf_counter()
        assert self.faithful is not None
        for slot in slots:
            tally, explained = self.faithful_tally[slot.stream], slot.explained
            if not tally.searching:
                continue
            if tally.explained % self.faithful_every == 0 and explained.class_id >= 0:
                tally.add(self.faithful(slot.model_input, explained.cam, explained.class_id, explained.score,
                                        self.backend.class_scores))
            tally.explained += 1
            explained.kept = tally.newest
        return (time.perf_counter() - began) * 1e3

    def _explain(self, slots: list[FrameSlot]) -> None:
        """Explain `slots` in one batch, or in one per class where the dashboard set streams' classes apart."""
        groups: dict[int | None, list[FrameSlot]] = {}
        for slot in slots:
            groups.setdefault(self.class_ids[slot.stream], []).append(slot)
        for class_id, group in groups.items():
            self._explain_batch(group, class_id)
        self.batches += 1  # one batch taken, however many class groups it was explained in

    def _explain_batch(self, slots: list[FrameSlot], class_id: int | None) -> None:
        began = time.perf_counter()
        explanation = self.backend.explain([slot.model_input for slot in slots], class_id)
        if explanation.boxes is not None:
            hand_out_boxes(explanation, slots, self.smoothers)
        else:
            self._hand_out_maps(explanation, slots)
        per_frame = 1.0 / len(slots)
        preprocess_ms = self.backend.preprocess_ms * per_frame
        inference_ms = self.backend.forward_ms * per_frame
        elapsed_ms = (time.perf_counter() - began) * 1e3
        boxes_ms = self.backend.boxes_ms * per_frame
        cam_ms = (elapsed_ms - self.backend.forward_ms - self.backend.preprocess_ms) * per_frame - boxes_ms
        clip_ms = 0.0
        if self.clip_tracker is not None:
            began = time.perf_counter()
            readings = self.clip_tracker(self.backend.last_inputs, [slot.stream for slot in slots])
            for slot in slots:
                slot.explained.steps = readings[slot.stream]
            clip_ms = (time.perf_counter() - began) * 1e3 * per_frame
        faithful_ms = self._choose_kept(slots) * per_frame if self.faithful is not None else 0.0
        for stream in {slot.stream for slot in slots}:
            telemetry = self.telemetries[stream]
            frames = sum(slot.stream == stream for slot in slots)
            for _ in range(frames):
                telemetry.stages["preprocess"].add(preprocess_ms)
                telemetry.stages["inference"].add(inference_ms)
                telemetry.stages["cam"].add(cam_ms)
                if explanation.boxes is not None:
                    telemetry.stages["boxes"].add(boxes_ms)
                if self.clip_tracker is not None:
                    telemetry.stages["clip"].add(clip_ms)
                if self.faithful is not None:
                    telemetry.stages["faithful"].add(faithful_ms)
            telemetry.frames_explained += frames
            telemetry.boxes_explained += sum(len(slot.explained.detections.scores) for slot in slots
                                             if slot.stream == stream and slot.explained.detections is not None)
            telemetry.batches += 1
