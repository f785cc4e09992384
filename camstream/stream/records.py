"""The typed contracts between the stages: what each stage writes, what the next may read.

    capture ──► FrameSlot.image, .model_input, .meta (FrameMeta) ──► inference ──► FrameSlot.explained
    (FrameExplanation) ──► render (composites into .image) ──► sinks get (image, FrameMeta) only

A stage writes only its own fields; a slot is handed on through the ring (capture → inference) and the
per-stream result queue (inference → render), which ends with `END_OF_STREAM`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from camstream.explain.result import FrameDetections

if TYPE_CHECKING:
    from camstream.explain.faithful import FaithfulChoice
    from camstream.explain.result import Explanation

__all__ = ["END_OF_STREAM", "EndOfStream", "FrameDetections", "FrameExplanation", "FrameMeta", "FrameSlot",
           "SourceInfo"]


@dataclass
class SourceInfo:
    """What the sinks and the report need to know about a source (written by capture when it opens)."""

    name: str  # credentials redacted
    width: int
    height: int
    fps: float
    time_base: Fraction
    frames: int | None  # None when unknown (streams, cameras)
    live: bool  # a camera or network stream, not a file


@dataclass
class FrameMeta:
    """Where a frame sits in its stream (written by capture): all a sink learns about a frame."""

    seq: int = -1  # 0, 1, 2 … in decode order
    pts: int | None = None  # in the source's time base
    time_s: float = 0.0  # source timestamp, seconds
    captured: float = 0.0  # perf_counter() when decoded


@dataclass
class FrameExplanation:
    """What inference adds to a frame (read by render): its CAM, class and score, the clip model's reading."""

    cam: np.ndarray = field(default_factory=lambda: np.empty((0, 0), np.float32))
    has_cam: bool = False  # False: not explained (reuse-cam mode), render keeps the previous heatmap
    class_id: int = -1
    score: float = 0.0
    steps: Explanation | None = None  # the clip model's newest reading for this frame's stream, when one runs
    detections: FrameDetections | None = None  # a detector's boxes and their maps (then `cam` is unused)
    kept: FaithfulChoice | None = None  # --threshold faithful: the region shown and the score it keeps

    def cam_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """The CAM buffer, allocated once for the model's map shape."""
        if self.cam.shape != shape:
            self.cam = np.empty(shape, np.float32)
        return self.cam

    def clear(self) -> None:
        """Forget this frame's results (the slot is about to hold another frame)."""
        self.has_cam = False
        self.steps = None
        self.detections = None
        self.kept = None


class EndOfStream:
    """The typed stop token inference puts on each stream's result queue after its last frame."""

    _instance: EndOfStream | None = None

    def __new__(cls) -> EndOfStream:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "END_OF_STREAM"


END_OF_STREAM = EndOfStream()


@dataclass
class FrameSlot:
    """One preallocated frame. Capture writes `image`, `model_input` and `meta`; inference writes `explained`;
    render composites into `image` and hands (`image`, `meta`) to the sinks (see `records`)."""

    index: int
    stream: int = 0  # which source the ring belongs to (several rings feed one inference stage)
    image: np.ndarray = field(default_factory=lambda: np.empty((0, 0, 3), np.uint8))  # display frame, BGR
    model_input: np.ndarray = field(default_factory=lambda: np.empty((0, 0, 3), np.uint8))  # RGB, model size
    meta: FrameMeta = field(default_factory=FrameMeta)
    explained: FrameExplanation = field(default_factory=FrameExplanation)

    def shape_to(self, image_shape: tuple[int, ...], input_shape: tuple[int, ...]) -> None:
        """Make sure the buffers have these shapes (reallocated only when a source changes size)."""
        if self.image.shape != image_shape:
            self.image = np.empty(image_shape, np.uint8)
        if self.model_input.shape != input_shape:
            self.model_input = np.empty(input_shape, np.uint8)
