"""Sinks: where rendered frames go — an H.264 file, an MJPEG page over HTTP, a window, or nowhere."""

from __future__ import annotations

import contextlib
import html
import http.server
import os
import socketserver
import sys
import threading
import time
from fractions import Fraction

import cv2
import numpy as np

from camstream.catalog import SINKS  # noqa: F401 - the names live in the framework-free catalog
from camstream.errors import CamstreamError, InputError, OutputError
from camstream.progress import LOGGER
from camstream.stream.records import FrameMeta, SourceInfo


class Sink:
    """A destination for rendered frames. `open` once, `write` per frame (in order), `close` once."""

    name: str = "sink"
    displays = False  # paced to the target fps when True
    needs_main_thread = False  # True: `pump` must be called often from the thread that opened the sink

    def open(self, info: SourceInfo) -> None:
        """Prepare for frames like those of `info`."""

    def write(self, frame: np.ndarray, meta: FrameMeta) -> None:
        """Take one rendered BGR frame (`meta`: where it sits in the stream); it is overwritten after this
        returns."""

    def pump(self) -> None:
        """Work that must run on the opening thread (a GUI's event loop); called often while the run goes on."""

    def close(self) -> None:
        """Finish: flush and release everything; safe to call twice."""

    def describe(self) -> dict:
        """What the report says of this sink."""
        return {"type": self.name}


class NullSink(Sink):
    """Discards frames (benchmarks)."""

    name = "null"


# A fragmented MP4: the index goes first (empty) and each fragment (at a keyframe, at least every second) carries
# its own, so a file cut off by a full disk, a crash or a kill plays up to its last whole fragment.
FRAGMENTED_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "frag_duration": "1000000"}
MIN_FREE_BYTES = 256 * 1024  # less than this free where the video goes: refused before the encoder starts


class FileSink(Sink):
    """H.264 in a fragmented MP4 through PyAV, with the source's timestamps (shifted to start at zero), so frame
    count and timing match the input.

    x264 `ultrafast` keeps up with real time on small CPUs. The file plays while it grows and up to its last
    fragment if the run dies; it is finalised on close (also after Ctrl-C). A write that fails (a full disk, an
    I/O error) is an `OutputError` (exit 4) and leaves what was written playable.
    """

    name = "file"

    def __init__(self, path: str, preset: str = "ultrafast", crf: int = 23) -> None:
        self.path = path
        self.preset = preset
        self.crf = crf
        self._container = None
        self._stream = None
        self._size = (0, 0)
        self._last_pts = -1
        self._first_pts: int | None = None  # the source's first timestamp: the video starts at zero
        self._failed: BaseException | None = None
        self.frames = 0

    def open(self, info: SourceInfo) -> None:
        import shutil

        import av

        directory = os.path.dirname(os.path.abspath(self.path))
        if os.path.isdir(self.path):
            raise InputError(f"cannot write {self.path}: it is a directory")
        try:
            os.makedirs(directory, exist_ok=True)
            free = shutil.disk_usage(directory).free
            if free < MIN_FREE_BYTES:
                raise OutputError(f"cannot write {self.path}: the disk is full ({free // 1024} KiB free)")
            self._container = av.open(self.path, mode="w", options=dict(FRAGMENTED_MP4))
        except (OSError, av.error.FFmpegError) as exc:
            raise InputError(f"cannot write {self.path}: {getattr(exc, 'strerror', None) or exc}") from None
        rate = Fraction(info.fps).limit_denominator(1001) if info.fps > 0 else Fraction(25)
        stream = self._container.add_stream("libx264", rate=rate)
        # yuv420p needs even sides: an odd last row/column is cropped, and a side under 2 pixels (a 1×1 source)
        # is padded to 2 by repeating its edge
        self._size = (max(2, info.width & ~1), max(2, info.height & ~1))
        stream.width, stream.height = self._size
        stream.pix_fmt = "yuv420p"
        stream.time_base = info.time_base
        stream.codec_context.time_base = info.time_base
        stream.options = {"preset": self.preset, "crf": str(self.crf)}
        self._stream = stream
        self._time_base = info.time_base

    def write(self, frame: np.ndarray, meta: FrameMeta) -> None:
        import av

        width, height = self._size
        if frame.shape[1] != width or frame.shape[0] != height:
            frame = np.ascontiguousarray(frame[:height, :width])
            if frame.shape[1] < width or frame.shape[0] < height:
                frame = np.pad(frame, ((0, height - frame.shape[0]), (0, width - frame.shape[1]), (0, 0)), "edge")
        video_frame = av.VideoFrame.from_ndarray(frame, format="bgr24")
        pts = meta.pts if meta.pts is not None else round(meta.time_s / self._time_base)
        if self._first_pts is None:
            self._first_pts = pts
        video_frame.pts = max(pts - self._first_pts, self._last_pts + 1)  # strictly increasing, from zero
        video_frame.time_base = self._time_base
        self._last_pts = video_frame.pts
        try:
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
        except (OSError, av.error.FFmpegError) as exc:
            self._failed = exc
            raise OutputError(f"cannot write {self.path} after {self.frames} frames: {_reason(exc)}; the video "
                              "plays up to its last whole second") from None
        self.frames += 1

    def close(self) -> None:
        import av

        if self._container is None:
            return
        container, self._container = self._container, None
        try:
            if self._failed is None:  # a failed write would only fail again
                for packet in self._stream.encode(None):
                    container.mux(packet)
        except (OSError, av.error.FFmpegError) as exc:
            self._failed = exc
        finally:
            with contextlib.suppress(OSError, av.error.FFmpegError):
                container.close()
        if self._failed is not None:
            with contextlib.suppress(OSError):
                trim_to_whole_fragments(self.path)
            raise OutputError(f"cannot finish {self.path}: {_reason(self._failed)}; it plays up to its last whole "
                              "second")

    def describe(self) -> dict:
        return {"type": self.name, "path": self.path, "frames": self.frames}


def trim_to_whole_fragments(path: str) -> int:
    """Cut a fragmented MP4 that a failed write left unfinished after its last whole fragment (a `moof` box and
    the `mdat` after it, both complete), so every player reads it to its end; returns the size kept. A file cut
    inside its header is left alone."""
    size = os.path.getsize(path)
    kept, offset, previous = 0, 0, b""
    with open(path, "rb") as handle:
        while offset + 8 <= size:
            handle.seek(offset)
            header = handle.read(16)
            length, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if length == 1 and len(header) == 16:
                length = int.from_bytes(header[8:16], "big")
            if length < 8 or offset + length > size:
                break  # the box the disk cut off
            offset += length
            if kind in (b"ftyp", b"moov") or (kind == b"mdat" and previous == b"moof"):
                kept = offset
            previous = kind
    if 0 < kept < size:
        os.truncate(path, kept)
    return kept


def _reason(exc: BaseException) -> str:
    """An I/O error's reason in words ("No space left on device")."""
    return getattr(exc, "strerror", None) or str(exc)


def opencv_gui_backend() -> str | None:
    """The GUI backend the installed OpenCV was built with (QT5, GTK3, WIN32UI, COCOA…), None when it has none.

    `opencv-python-headless` (pulled in by some peer libraries) replaces the `cv2` of `opencv-python` with a build
    whose windows raise "Rebuild the library…"; this tells the two apart before a window is asked for.
    """
    for line in cv2.getBuildInformation().splitlines():
        name, _, value = line.strip().partition(":")
        if name == "GUI":
            value = value.strip()
            return None if value in ("", "NONE") else value
    return None


GUI_FIX = "pip install --force-reinstall --no-deps opencv-python"


class WindowSink(Sink):
    """An OpenCV window; closing it or pressing q / Esc stops the run.

    Every GUI call happens on the thread that opens the sink and calls `pump` (the pipeline's main thread):
    GUI toolkits serve one thread only, and a window drawn from the render thread never showed a frame and
    blocked shutdown. `write` (render thread) only hands the newest frame over.
    """

    name = "window"
    displays = True
    needs_main_thread = True

    def __init__(self, title: str = "camstream", on_quit=None) -> None:
        self.title = title
        self.on_quit = on_quit
        self._open = False
        self._lock = threading.Lock()
        self._front: np.ndarray | None = None  # newest frame handed over, not yet shown when `_fresh`
        self._back: np.ndarray | None = None  # the buffer `write` fills next
        self._fresh = False
        self._shown_any = False
        self._quit_sent = False
        self.frames_shown = 0

    def open(self, info: SourceInfo) -> None:
        check_display_available()
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise CamstreamError(f"cannot open a window: {exc.msg.strip() or exc}") from None
        self._open = True

    def write(self, frame: np.ndarray, meta: FrameMeta) -> None:
        with self._lock:
            if self._back is None or self._back.shape != frame.shape:
                self._back = np.empty_like(frame)
            np.copyto(self._back, frame)
            self._front, self._back = self._back, self._front
            self._fresh = True

    def pump(self) -> None:
        if not self._open:
            return
        with self._lock:
            if self._fresh:
                cv2.imshow(self.title, self._front)  # copies the pixels into the window
                self._fresh = False
                self._shown_any = True
                self.frames_shown += 1
        key = cv2.waitKey(1) & 0xFF  # runs the toolkit's event loop
        closed = self._shown_any and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        if (key in (ord("q"), 27) or closed) and self.on_quit is not None and not self._quit_sent:
            self._quit_sent = True
            self.on_quit()

    def close(self) -> None:
        if self._open:
            self._open = False
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)  # let the toolkit take the window down

    def describe(self) -> dict:
        return {"type": self.name, "frames_shown": self.frames_shown}


def check_display_available() -> None:
    """Raise a one-line error when no window can be shown: no display, or an OpenCV built without a GUI."""
    if os.name == "posix" and sys.platform != "darwin" and not (os.environ.get("DISPLAY")
                                                                 or os.environ.get("WAYLAND_DISPLAY")):
        raise CamstreamError("--sink window needs a display (no DISPLAY set); use --sink mjpeg or file")
    if opencv_gui_backend() is None:
        raise CamstreamError("--sink window: the installed OpenCV has no GUI (opencv-python-headless replaced "
                             f"opencv-python's cv2); run: {GUI_FIX}")


class _MjpegHandler(http.server.BaseHTTPRequestHandler):
    server: _MjpegServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args) -> None:  # no per-request noise on stderr
        pass

    def _authorised(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        from urllib.parse import parse_qs, urlsplit

        query = parse_qs(urlsplit(self.path).query)
        header = self.headers.get("Authorization", "")
        if query.get("token", [None])[0] == token or header == f"Bearer {token}":
            return True
        self.send_error(403, "token required")
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        route = self.path.split("?")[0]
        if not self._authorised():
            return
        if route == "/":
            self._send_page()
        elif route == "/stream.mjpg":
            self._send_stream()
        elif route == "/frame.jpg":
            jpeg = self.server.latest(timeout=5.0, after=-1)
            if jpeg is None:
                self.send_error(503, "no frame yet")
                return
            self._send_bytes(jpeg[1], "image/jpeg")
        else:
            self.send_error(404)

    def _send_bytes(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _send_page(self) -> None:
        query = self.path.partition("?")[2]
        source = "stream.mjpg" + (f"?{html.escape(query)}" if query else "")
        body = (f"<!doctype html><title>camstream</title><body style='margin:0;background:#111'>"
                f"<img src='{source}' style='max-width:100%;display:block;margin:auto'></body>").encode()
        self._send_bytes(body, "text/html; charset=utf-8")

    def _send_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        seen = -1
        self.server.clients += 1
        try:
            while not self.server.stopping:
                latest = self.server.latest(timeout=1.0, after=seen)
                if latest is None:
                    continue
                seen, jpeg = latest
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                 + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass
        finally:
            self.server.clients -= 1


_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _MjpegServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """One thread per connection, at most `max_clients` of them (the next is answered 503 at once, with no
    thread); a connection that sends nothing for `idle_timeout_s`, or stops reading, is dropped."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the kernel queues a burst of connections; beyond the bound each gets a quick 503

    def __init__(self, address: tuple[str, int], token: str | None, max_clients: int = 32,
                 idle_timeout_s: float = 10.0) -> None:
        handler = type("_Handler", (_MjpegHandler,), {"timeout": idle_timeout_s})  # socket timeout per connection
        super().__init__(address, handler)
        self.token = token
        self.stopping = False
        self.clients = 0  # watching /stream.mjpg
        self.max_clients = max_clients
        self._connections = threading.BoundedSemaphore(max_clients)
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._number = -1

    def publish(self, jpeg: bytes) -> None:
        with self._cond:
            self._jpeg = jpeg
            self._number += 1
            self._cond.notify_all()

    def latest(self, timeout: float, after: int) -> tuple[int, bytes] | None:
        """The newest JPEG numbered above `after`, waiting up to `timeout` s for one."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._number > after or self.stopping, timeout):
                return None
            if self._jpeg is None or self._number <= after:
                return None
            return self._number, self._jpeg

    def handle_error(self, request, client_address) -> None:  # a broken client never kills the server
        LOGGER.debug("mjpeg: a client at %s failed (%s)", client_address[0], sys.exc_info()[1])

    def process_request(self, request, client_address) -> None:
        if not self._connections.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.settimeout(1.0)
                request.sendall(_BUSY)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()


class JpegSink(Sink):
    """A sink that serves frames as JPEG: every frame while someone watches the video, 2 a second otherwise
    (enough to keep the newest frame fresh). Subclasses say who watches and where a JPEG goes."""

    displays = True
    quality = 80

    _encoded_at = 0.0

    def watching(self) -> bool:
        """True while a client is reading the video."""
        raise NotImplementedError

    def publish(self, jpeg: bytes) -> None:
        """Hand one encoded frame to the clients."""
        raise NotImplementedError

    def write(self, frame: np.ndarray, meta: FrameMeta) -> None:
        now = time.monotonic()
        if not self.watching() and now - self._encoded_at < 0.5:
            return
        self._encoded_at = now
        ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            self.publish(jpeg.tobytes())


class WebSink(JpegSink):
    """One stream's frames for the run's dashboard (`camstream.stream.dashboard`), which serves them."""

    name = "web"

    def __init__(self, dashboard, index: int) -> None:
        self.dashboard = dashboard
        self.index = index

    def watching(self) -> bool:
        return self.dashboard.watchers[self.index] > 0

    def publish(self, jpeg: bytes) -> None:
        self.dashboard.publish(self.index, jpeg)

    def describe(self) -> dict:
        return {"type": self.name, "url": self.dashboard.url, "video": f"{self.dashboard.url}stream/{self.index}.mjpg"}


class MjpegSink(JpegSink):
    """An HTTP page (`/`) with a live MJPEG stream (`/stream.mjpg`) and the newest frame (`/frame.jpg`).

    Binds 127.0.0.1 unless told otherwise; with a token, every request needs `?token=` or a Bearer header.
    """

    name = "mjpeg"

    def __init__(self, bind: str = "127.0.0.1", port: int = 8080, token: str | None = None,
                 quality: int = 80, max_clients: int = 32, idle_timeout_s: float = 10.0) -> None:
        self.bind = bind
        self.port = port
        self.token = token
        self.quality = quality
        self.max_clients = max_clients
        self.idle_timeout_s = idle_timeout_s
        self._server: _MjpegServer | None = None
        self._thread: threading.Thread | None = None

    def open(self, info: SourceInfo) -> None:
        try:
            self._server = _MjpegServer((self.bind, self.port), self.token, self.max_clients, self.idle_timeout_s)
        except OSError as exc:
            raise CamstreamError(f"cannot serve MJPEG on {self.bind}:{self.port}: {exc.strerror or exc}") from None
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="camstream-mjpeg", daemon=True)
        self._thread.start()

    def watching(self) -> bool:
        return self._server is not None and self._server.clients > 0

    def publish(self, jpeg: bytes) -> None:
        server = self._server
        if server is not None:
            server.publish(jpeg)

    def close(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        server.stopping = True
        with server._cond:
            server._cond.notify_all()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def describe(self) -> dict:
        return {"type": self.name, "url": f"http://{self.bind}:{self.port}/"}
