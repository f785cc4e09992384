"""Capture stage: decode a file, URL or camera into FrameRing slots, stamping sequence numbers and times.

Files and RTSP/HTTP streams go through PyAV, which also rescales each frame straight to the model's
input size (far cheaper than resizing the full-resolution BGR frame). Local cameras go through OpenCV.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from camstream.errors import InputError
from camstream.model.preprocess import Placement, image_damage, resize_to_rgb
from camstream.redaction import redact, remember_secrets
from camstream.stream.records import SourceInfo
from camstream.stream.ring import FrameRing
from camstream.stream.telemetry import Telemetry

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass
class DecodedFrame:
    """One frame as decoded: display image (BGR), model input (RGB at model size) and timing."""

    image: np.ndarray
    model_input: np.ndarray
    pts: int | None
    time_s: float


class _ForwardClock:
    """Timestamps that only move forward across reconnects: a reopened stream's clock starts again, so its frames
    are shifted to follow the last frame before the drop, by the time no frame came (measured from that
    frame's arrival), which leaves the outage as a gap in the output's timeline."""

    def __init__(self, time_base: Fraction) -> None:
        self.time_base = time_base
        self.offset = 0.0  # added to the current connection's timestamps
        self.last_time = -1.0
        self.last_arrival = 0.0  # monotonic time the last frame came
        self._first = True

    def reconnected(self) -> None:
        """The next frame is the first of a new connection."""
        self._first = True

    def stamp(self, decoded: DecodedFrame) -> None:
        """Shift `decoded`'s time (and pts, once shifted) onto the continuous timeline."""
        if self._first:
            self._first = False
            if self.last_time >= 0:
                self.offset = self.last_time + (time.monotonic() - self.last_arrival) - decoded.time_s
        decoded.time_s += self.offset
        if self.offset:
            decoded.pts = round(decoded.time_s / self.time_base)
        self.last_time = decoded.time_s
        self.last_arrival = time.monotonic()


class SourceLost(InputError):
    """A live source stayed away longer than allowed; the run ends in order."""

    exit_code = 3


class Source:
    """A video source; iterate `frames()`; `interrupt()` ends a wait for it; `close()` releases it."""

    info: SourceInfo
    reconnects = 0
    outage_s = 0.0
    undecodable_packets = 0  # packets the decoder refused: skipped, the frames around them kept
    rotation = 0  # degrees clockwise the frames are turned to be shown upright (the file's display matrix)
    size_changes = 0  # times the decoded frame size changed mid-stream (later sizes are scaled to the first)
    ended_early: dict | None = None  # a file that ended before the frames it declares: {"frames", "declared"}

    def input_facts(self) -> dict:
        """What the report says of the input beyond its frames."""
        return {"undecodable_packets": self.undecodable_packets, "rotation": self.rotation,
                "size_changes": self.size_changes, "ended_early": self.ended_early}

    def interrupt(self) -> None:
        """Stop waiting (reconnect back-off); callable from any thread."""

    def frames(self) -> Iterator[DecodedFrame]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


READ_TIMEOUT_S = 5.0  # a network source that answers nothing for this long is taken as stalled


class UnavailableSource(Source):
    """A source of a several-stream run that could not be opened: it delivers nothing, and its capture stops at
    once on the error, so that stream is reported failed while the others run."""

    def __init__(self, location: str, error: InputError) -> None:
        self.info = SourceInfo(redact(location), 0, 0, 25.0, Fraction(1, 25), None, True)
        self.error = error

    def frames(self) -> Iterator[DecodedFrame]:
        raise self.error
        yield  # a generator, like every source's frames()

    def close(self) -> None:
        pass


class PyAVSource(Source):
    """Video files and RTSP/HTTP URLs decoded by PyAV (FFmpeg).

    An HTTP(S) URL whose container has a duration (a file served over the net) is finite: its end is the end.
    A live stream that drops, or stalls for `READ_TIMEOUT_S`, is reopened with capped exponential back-off
    (0.25 s doubling to 5 s; it starts again from 0.25 s only once frames have flowed for `STEADY_S`) for as
    long as `max_outage_s` allows (None: forever), counted from the last frame that came. Timestamps keep
    increasing across the gap, so a file written from it stays continuous and playable.
    """

    STEADY_S = 5.0

    def __init__(self, location: str, model_size: tuple[int, int], open_timeout_s: float = 10.0,
                 max_outage_s: float | None = None, resize: str = "stretch", loop: bool = False) -> None:
        self._location = location
        self._model_size = model_size
        self._resize = resize
        self._max_outage_s = max_outage_s
        self._timeout_s = open_timeout_s if max_outage_s is None else max(0.5, min(open_timeout_s, max_outage_s))
        self._stopping = threading.Event()
        self._delay = 0.25  # the next reconnect's back-off
        self._outage_began: float | None = None  # monotonic time of the last frame before a drop
        self._outage_done = 0.0  # seconds of outages that have ended
        self._connected_at = time.monotonic()
        self._last_frame_at = time.monotonic()
        url = bool(_URL.match(location))
        name = redact(location)
        problem = None if url else local_file_problem(location, read_header=False)  # `_connect` reads it next
        if problem:
            raise InputError(problem)
        self.info = SourceInfo(name, 0, 0, 25.0, Fraction(1, 25), None, url)
        self._container = self._connect(self._timeout_s)
        self._stream = self._container.streams.video[0]
        context = self._stream.codec_context
        rate = self._stream.average_rate or self._stream.guessed_rate or Fraction(25)
        time_base = self._stream.time_base or Fraction(1, int(round(rate)) or 25)
        # a file served over HTTP(S) has a duration and ends; RTSP is live even when its server gives a range
        served_file = location.startswith(("http://", "https://")) and self._container.duration is not None
        live = url and not served_file
        # the first frame says how frames are shown: its size, and the display matrix's quarter turns
        self._pending = self._raw_frames(self._container, self._stream)
        self._first = self._peek_first_frame()
        stored = (self._first.width, self._first.height) if self._first is not None else (context.width,
                                                                                           context.height)
        self._quarter_turns = (self._first.rotation // 90) % 4 if self._first is not None else 0  # counter-clockwise
        self.rotation = (-90 * self._quarter_turns) % 360
        self._stored_size = self._last_size = stored
        shown = stored[::-1] if self._quarter_turns % 2 else stored
        self._loop = loop and not live  # a file (or a file served over HTTP) starts again at its end
        self._looped_at = 0  # frames decoded when the last pass began again
        declared = None if self._loop else self._stream.frames or None  # looping: no end, so no total
        self.info = SourceInfo(name, shown[0], shown[1], float(rate), time_base, declared, live)
        self.reconnects = 0
        self._closed = False

    def _peek_first_frame(self):
        import av

        try:
            return next(self._pending, None)
        except av.error.FFmpegError as exc:
            self._container.close()
            stalled = isinstance(exc, av.error.ExitError)  # the read timeout ran out
            reason = f"no frame within {min(self._timeout_s, READ_TIMEOUT_S):g} s" if stalled else _ffmpeg_reason(exc)
            raise InputError(f"{self.info.name}: cannot decode a first frame: {reason}") from None

    @property
    def outage_s(self) -> float:  # type: ignore[override]
        """Seconds without frames so far: ended outages, and the one going on (from the last frame), if any."""
        ongoing = 0.0 if self._outage_began is None else time.monotonic() - self._outage_began
        return self._outage_done + ongoing

    def _connect(self, timeout_s: float):
        options = {"rtsp_transport": "tcp"} if self._location.startswith(("rtsp://", "rtsps://")) else {}
        container = open_video(self._location, self.info.name, options, timeout_s)
        container.streams.video[0].thread_type = "AUTO"
        return container

    def frames(self) -> Iterator[DecodedFrame]:
        import av

        clock = _ForwardClock(self.info.time_base)
        total = 0
        first_connection = True
        while True:
            clock.reconnected()
            try:
                if first_connection:  # the frame peeked at open, then the rest of that connection
                    first_connection = False
                    raw = itertools.chain([self._first] if self._first is not None else [], self._pending)
                else:
                    raw = self._raw_frames(self._container, self._stream)
                for decoded in self._decode(raw):
                    clock.stamp(decoded)
                    total += 1
                    self._frame_came()
                    yield decoded
                reason = "the stream ended"
            except av.error.FFmpegError as exc:
                if self._closed:
                    return
                if not self.info.live:
                    raise InputError(f"{self.info.name}: decoding stopped after {total} frames: "
                                     f"{_ffmpeg_reason(exc)}") from None
                stalled = isinstance(exc, av.error.ExitError)
                reason = f"no data for {READ_TIMEOUT_S:g} s" if stalled else _ffmpeg_reason(exc)
            if self._closed:
                return
            if not self.info.live:
                if self._ended(total):
                    return
                continue
            self._reconnect(reason)

    def _ended(self, total: int) -> bool:
        """At a file's end: True when it is the end, False when `--loop` starts it again (the clock carries the
        timeline on); an InputError when no frame came at all."""
        if total == 0:
            raise InputError(f"{self.info.name}: no video frame could be decoded")
        if self._loop and total > self._looped_at:  # a pass that gave nothing would loop on nothing forever
            self._looped_at = total
            with contextlib.suppress(Exception):
                self._container.close()
            # opened again rather than seeked: an image demuxer (a JPEG played as a one-frame video) does not
            # seek back to its start, and opening a local file costs a few ms once per pass
            self._container = self._connect(self._timeout_s)
            self._stream = self._container.streams.video[0]
            return False
        self._check_declared(total)
        return True

    def _check_declared(self, total: int) -> None:
        """A file that ends before the frames its container declares (truncated) is said, not passed over."""
        declared = self.info.frames
        if declared and total + self.undecodable_packets < declared:
            self.ended_early = {"frames": total, "declared": declared}
            print(f"camstream: warning: {self.info.name} ended after {total} of the {declared} frames it declares "
                  "(truncated?)", file=sys.stderr, flush=True)

    def _frame_came(self) -> None:
        """Book a frame's arrival: it ends an outage, and once frames have flowed steadily the back-off is reset."""
        now = time.monotonic()
        if self._outage_began is not None:
            self._outage_done += now - self._outage_began
            self._outage_began = None
        if now - self._connected_at >= self.STEADY_S:
            self._delay = 0.25
        self._last_frame_at = now

    def _reconnect(self, reason: str) -> None:
        if self._outage_began is None:
            self._outage_began = self._last_frame_at  # the outage runs from the last frame, not from noticing it
        with contextlib.suppress(Exception):  # a broken connection may fail to close; it is dropped anyway
            self._container.close()
        print(f"camstream: {self.info.name}: {reason}; reconnecting", file=sys.stderr, flush=True)
        while True:
            if self._stopping.wait(min(self._delay, self._time_left())):
                raise SourceLost("stopped while reconnecting")
            self._delay = min(self._delay * 2, 5.0)
            try:
                self._container = self._connect(max(0.2, min(self._timeout_s, self._time_left())))
            except InputError:
                continue
            self._stream = self._container.streams.video[0]
            self.reconnects += 1
            self._connected_at = time.monotonic()
            return

    def _time_left(self) -> float:
        """Seconds the outage may still last (--max-outage); a SourceLost once none is left."""
        if self._max_outage_s is None:
            return float("inf")
        without = time.monotonic() - (self._outage_began or time.monotonic())
        if without >= self._max_outage_s:
            raise SourceLost(f"no frames from {self.info.name} for {without:.1f} s "
                             f"(--max-outage {self._max_outage_s:g}): stopping")
        return self._max_outage_s - without

    def _raw_frames(self, container, stream):
        """The decoded frames of one connection; a damaged packet is skipped and counted."""
        import av

        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:  # one damaged packet: skip it, keep decoding the rest
                self.undecodable_packets += 1
                continue
            yield from frames

    def _decode(self, raw) -> Iterator[DecodedFrame]:
        """Display image (BGR, at the first frame's size, turned upright) and model input of each raw frame
        (scaled by area and placed by the resize mode: `Placement`)."""
        turns = self._quarter_turns
        stored_w, stored_h = self._stored_size
        upright = (stored_w, stored_h) if turns % 2 else (stored_h, stored_w)  # (height, width) as shown
        placement = Placement.of(upright, self._model_size, self._resize)
        scaled_h, scaled_w = placement.scaled
        scaled_w, scaled_h = (scaled_h, scaled_w) if turns % 2 else (scaled_w, scaled_h)  # before turning
        for index, frame in enumerate(raw):
            self._note_size(frame)
            image = frame.to_ndarray(width=stored_w, height=stored_h, format="bgr24")  # scaled if it changed size
            small = frame.reformat(width=scaled_w, height=scaled_h, format="rgb24", interpolation="AREA").to_ndarray()
            if turns:
                image = np.ascontiguousarray(np.rot90(image, turns))
                small = np.ascontiguousarray(np.rot90(small, turns))
            small = placement.model_input(small)
            if frame.pts is not None and frame.time_base is not None:
                time_s = float(frame.pts * frame.time_base)
            else:
                time_s = index / self.info.fps
            yield DecodedFrame(image, small, frame.pts, time_s)

    def _note_size(self, frame) -> None:
        size = (frame.width, frame.height)
        if size != self._last_size:
            self.size_changes += 1
            if self.size_changes == 1:
                print(f"camstream: warning: {self.info.name} changed size from {self._last_size[0]}×"
                      f"{self._last_size[1]} to {size[0]}×{size[1]} mid-stream; frames are scaled to "
                      f"{self._stored_size[0]}×{self._stored_size[1]}, the output's size", file=sys.stderr, flush=True)
            self._last_size = size

    def interrupt(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        self._closed = True
        self._stopping.set()
        self._container.close()


class CameraSource(Source):
    """A local camera by index, through OpenCV."""

    def __init__(self, index: int, model_size: tuple[int, int], resize: str = "stretch") -> None:
        import cv2

        self._cv2 = cv2
        self._model_size = model_size
        self._resize = resize
        missing = InputError(f"camera {index} cannot be opened (no such device, or it is busy)")
        if sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{index}"):
            raise missing
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # we say it in one line ourselves
        try:
            self._capture = cv2.VideoCapture(index)
        finally:
            cv2.utils.logging.setLogLevel(previous)
        if not self._capture.isOpened():
            raise missing
        width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = self._capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.info = SourceInfo(f"camera {index}", width, height, fps, Fraction(1, 1000), None, True)
        self._closed = False

    def frames(self) -> Iterator[DecodedFrame]:
        start = time.perf_counter()
        while not self._closed:
            ok, image = self._capture.read()
            if not ok:
                if not self._closed:
                    raise InputError(f"{self.info.name} stopped delivering frames")
                return
            small = resize_to_rgb(image, self._model_size, self._resize)
            elapsed = time.perf_counter() - start
            yield DecodedFrame(image, small, int(elapsed * 1000), elapsed)

    def close(self) -> None:
        self._closed = True
        self._capture.release()


def open_video(location: str, name: str, options: dict[str, str] | None = None, timeout_s: float = 30.0):
    """`location` opened by PyAV, with a video stream of known frame size, or an InputError that says why not
    (`name` is how the error calls it: a URL without its credentials)."""
    import av

    try:
        container = av.open(location, options=options or {}, timeout=(timeout_s, min(timeout_s, READ_TIMEOUT_S)))
    except av.error.ExitError:  # FFmpeg's interrupt: our timeout ran out before the server answered
        raise InputError(f"cannot open {name}: no answer within {timeout_s:g} s") from None
    except av.error.FFmpegError as exc:
        raise InputError(f"cannot open {name}: {_ffmpeg_reason(exc)}") from None
    except OSError as exc:
        raise InputError(f"cannot open {name}: {exc.strerror or exc}") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{name} has no video stream")
    context = container.streams.video[0].codec_context
    if not context.width or not context.height:
        container.close()
        raise InputError(f"{name}: the video stream has no frame size (corrupt or unsupported)")
    return container


def _ffmpeg_reason(exc: Exception) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(":")[0].strip() if text else exc.__class__.__name__


def local_file_problem(location: str, read_header: bool = True) -> str | None:
    """What is wrong with a local video path (missing, a directory, empty, damaged, and with `read_header` no
    video in it), or None; a URL or a camera index is not a local path (None)."""
    if _URL.match(location) or location.isdigit():
        return None
    if not os.path.exists(location):
        return f"no such file: {location}"
    if os.path.isdir(location):
        return f"{location} is a directory, not a video"
    if os.path.getsize(location) == 0:
        return f"{location} is empty (0 bytes)"
    damage = still_image_damage(location)
    if damage:
        return f"{location} is damaged: {damage}; give a whole copy of it"
    if read_header:  # milliseconds: a file that holds no video is said before the model loads
        try:
            open_video(location, location).close()
        except InputError as exc:
            return str(exc)
    return None


_STILL_IMAGE_STARTS = (b"\xff\xd8", b"\x89PNG\r\n\x1a\n")  # JPEG, PNG: FFmpeg plays either as a one-frame video
_LARGEST_STILL_CHECKED = 64 << 20


def still_image_damage(path: str) -> str | None:
    """Why a JPEG or PNG file given as a video source is damaged (`image_damage`: FFmpeg would decode a truncated
    one as a half-grey frame and say nothing), or None: for any other file, or one that cannot be read here."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if not head.startswith(_STILL_IMAGE_STARTS) or os.path.getsize(path) > _LARGEST_STILL_CHECKED:
                return None
            return image_damage(head + handle.read())
    except OSError:  # said when FFmpeg opens it
        return None


def open_source(location: str, model_size: tuple[int, int], max_outage_s: float | None = None,
                resize: str = "stretch", loop: bool = False) -> Source:
    """A camera for an integer (`0`), else a file path or URL for PyAV (its credentials remembered first, so that
    nothing camstream writes shows them: `camstream.redaction`)."""
    remember_secrets(location)
    if location.isdigit():
        return CameraSource(int(location), model_size, resize)
    return PyAVSource(location, model_size, max_outage_s=max_outage_s, resize=resize, loop=loop)


class CaptureStage(threading.Thread):
    """Reads the source into the ring until it ends or `stop()` is called; then closes the ring."""

    def __init__(self, source: Source, ring: FrameRing, telemetry: Telemetry, realtime: bool = False,
                 max_frames: int | None = None) -> None:
        super().__init__(name="camstream-capture", daemon=True)
        self.source = source
        self.ring = ring
        self.telemetry = telemetry
        self.realtime = realtime
        self.max_frames = max_frames
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def stop(self) -> None:
        """Ask the thread to end after the frame in hand."""
        self._stop_event.set()

    def run(self) -> None:
        decode = self.telemetry.stages["decode"]
        start_wall: float | None = None
        start_media = 0.0
        seq = 0
        try:
            frames = self.source.frames()
            while not self._stop_event.is_set():
                if self.max_frames is not None and seq >= self.max_frames:
                    break
                began = time.perf_counter()
                decoded = next(frames, None)
                if decoded is None:
                    break
                available = time.perf_counter()
                decode.add((available - began) * 1e3)
                if self.realtime:  # a file played as a camera: hand frames on at source speed
                    if start_wall is None:
                        start_wall, start_media = available, decoded.time_s
                    delay = (decoded.time_s - start_media) - (time.perf_counter() - start_wall)
                    if delay > 0 and self._stop_event.wait(delay):
                        break
                    available = time.perf_counter()
                slot = self.ring.acquire()
                if slot is None:
                    break
                slot.shape_to(decoded.image.shape, decoded.model_input.shape)
                np.copyto(slot.image, decoded.image)
                np.copyto(slot.model_input, decoded.model_input)
                slot.meta.seq, slot.meta.pts, slot.meta.time_s = seq, decoded.pts, decoded.time_s
                slot.meta.captured = available
                self.telemetry.reconnects = self.source.reconnects
                self.telemetry.outage_s = self.source.outage_s
                self.ring.publish(slot)
                self.telemetry.frames_in += 1
                seq += 1
        except BaseException as exc:  # reported by the pipeline; the ring still closes
            self.error = exc
        finally:
            self.telemetry.reconnects = self.source.reconnects
            self.telemetry.outage_s = self.source.outage_s
            self.ring.close()
