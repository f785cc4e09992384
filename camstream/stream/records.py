"""The typed contracts between the stages: what each stage writes, what the next may read.

    capture ──► FrameSlot.image, .model_input, .meta (FrameMeta) ──► inference ──► FrameSlot.explained
    (FrameExplanation) ──► render (composites into .image) ──► sinks get (image, FrameMeta) only

A stage writes only its own fields; a slot is handed on through the ring (capture → inference) and the
per-stream result queue (inference → render), which ends with `END_OF_STREAM`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from camstream.explain.result import Explanation
    from camstream.stream.ring import FrameRing, FrameSlot


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

    def cam_buffer(self, shape: tuple[int, ...]) -> np.ndarray:
        """The CAM buffer, allocated once for the model's map shape."""
        if self.cam.shape != shape:
            self.cam = np.empty(shape, np.float32)
        return self.cam

    def clear(self) -> None:
        """Forget this frame's results (the slot is about to hold another frame)."""
        self.has_cam = False
        self.steps = None


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


class FrameReader(Protocol):
    """What inference reads from: one stream's `FrameRing` or a `FairReader` over several."""

    @property
    def rings(self) -> list[FrameRing]:
        """The rings read, stream i at index i."""
        ...

    def take(self, max_count: int, max_wait_s: float = 0.0) -> list[FrameSlot]:
        """Up to `max_count` ready slots; [] once the input has ended or was aborted."""
        ...
