"""Stress clips derived from real footage: rescaled, re-timed (every source frame becomes one output frame)
and looped, so a 25 fps 540p clip becomes a 720p or 1080p 60 fps input of any length."""

from __future__ import annotations

import os
from fractions import Fraction

import av

from camstream.storage import written_atomically


def derive_clip(source: str, destination: str, width: int, height: int, fps: int = 60, loops: int = 1,
                max_frames: int | None = None, crf: int = 23) -> int:
    """Write `destination` (H.264 MP4) from `source`; returns the number of frames written.

    Reuses an existing `destination` that already has the expected frame count.
    """
    if os.path.exists(destination):
        with av.open(destination) as existing:
            stream = existing.streams.video[0]
            if stream.frames and stream.width == width and stream.height == height:
                return stream.frames
    written = 0
    with written_atomically(destination) as partial, av.open(partial, "w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": str(crf)}
        for _ in range(loops):
            with av.open(source) as container:
                for frame in container.decode(video=0):
                    if max_frames is not None and written >= max_frames:
                        break
                    scaled = frame.reformat(width=width, height=height, format="yuv420p")
                    scaled.pts = written
                    scaled.time_base = Fraction(1, fps)
                    for packet in stream.encode(scaled):
                        output.mux(packet)
                    written += 1
        for packet in stream.encode(None):
            output.mux(packet)
    return written


def count_frames(path: str) -> int:
    """Frames in the first video stream, counted by decoding (container metadata is not trusted)."""
    with av.open(path) as container:
        return sum(1 for _ in container.decode(video=0))
