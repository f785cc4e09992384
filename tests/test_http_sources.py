"""Sources over HTTP, served here by real servers on loopback: a file served over HTTP ends with the file; a camera
that hangs up after a few frames is retried with a back-off that keeps growing; a server that accepts and never
answers is named as such (issue 16, defects 4 and 9)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time

import cv2
import numpy as np
import pytest

from camstream.stream.pipeline import Pipeline, PipelineConfig

from .cli import assert_one_line_error, camstream, one_stream
from .test_bad_input import write_video


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type, **state) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.state = {"connections": 0, **state}
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FileHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.state["connections"] += 1
        data = self.server.state["data"]
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args) -> None:
        pass


class _HangUpCamera(_FileHandler):
    """An MJPEG camera (multipart/x-mixed-replace, no length) that sends three frames, then hangs up."""

    def do_GET(self) -> None:
        self.server.state["connections"] += 1
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for shade in (40, 120, 200):
            jpeg = cv2.imencode(".jpg", np.full((120, 160, 3), shade, np.uint8))[1].tobytes()
            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                             % (len(jpeg), jpeg))


@pytest.fixture
def served_file(tmp_path):
    clip = write_video(tmp_path / "clip.mp4", "libx264", "yuv420p", (320, 240), 12)
    server = _Server(_FileHandler, data=(tmp_path / "clip.mp4").read_bytes())
    yield server, clip
    server.shutdown()


def test_a_file_served_over_http_ends_with_the_file(tmp_path, served_file):
    """It used to reconnect about 3 times a second after the end, growing the output without end."""
    server, _clip = served_file
    result = camstream("run", "--source", f"{server.url}/clip.mp4", "--out", tmp_path / "out", "--max-outage", "3",
                       timeout=120)
    assert result.returncode == 0, result.stderr
    report = one_stream(json.loads((tmp_path / "out" / "report.json").read_text()))
    assert report["frames_in"] == report["frames_out"] == 12 and report["reconnects"] == 0
    assert report["source"]["live"] is False and report["policy"] == "lossless"  # every frame, like a file
    assert server.state["connections"] == 1


def test_a_camera_that_keeps_hanging_up_is_retried_with_a_growing_back_off(tmp_path):
    """Back-off resets only after frames flowed for a while: three frames per connection do not reset it (it used
    to start again at 0.25 s after every hang-up: a new connection every ~0.3 s)."""
    server = _Server(_HangUpCamera)
    pipeline = Pipeline(PipelineConfig(source=f"{server.url}/cam", sinks=("null",), out_dir=str(tmp_path)))
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    try:
        time.sleep(7.0)  # the span the back-off is measured over: 0.25 + 0.5 + 1 + 2 + 4 s ≥ 7 s
    finally:
        pipeline.request_stop()
        runner.join(30)
        server.shutdown()
    assert not runner.is_alive()
    report = one_stream(pipeline.report)
    assert report["frames_in"] >= 3 and report["reconnects"] >= 2
    assert server.state["connections"] <= 6, server.state  # 1 + at most 5 retries in 7 s


def test_a_server_that_accepts_and_never_answers_is_named_as_such(tmp_path):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        began = time.monotonic()
        result = camstream("run", "--source", f"http://127.0.0.1:{port}/live", "--out", tmp_path / "out",
                           "--max-outage", "2", timeout=120)
        waited = time.monotonic() - began
    assert_one_line_error(result, f"cannot open http://127.0.0.1:{port}/live: no answer within 2 s")
    assert "Immediate exit" not in result.stderr
    assert waited < 60  # bounded by the timeout, not by the kernel's
