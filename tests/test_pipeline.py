"""`camstream run` end to end on real footage: frame counts, report, live drops, MJPEG, shutdown, soak."""

from __future__ import annotations

import http.client
import json
import threading
import time

import av
import cv2
import numpy as np
import pytest

from camstream.bench.clips import count_frames, derive_clip
from camstream.stream.pipeline import Pipeline, PipelineConfig

from .cli import camstream, one_stream

STAGE_KEYS = {"decode", "preprocess", "inference", "cam", "boxes", "faithful", "clip", "render", "sink"}


def frame_times(path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(video=0)]


def test_file_run_keeps_every_frame_with_source_timing(tmp_path, dashcam_clip):
    out = tmp_path / "run"
    result = camstream("run", "--source", dashcam_clip, "--sink", "file", "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    video = out / "overlay.mp4"
    assert count_frames(str(video)) == count_frames(str(dashcam_clip)) == 221
    assert frame_times(video) == pytest.approx(frame_times(dashcam_clip), abs=1e-3)
    report = one_stream(json.loads((out / "report.json").read_text()))
    assert report["frames_in"] == report["frames_out"] == 221 and report["dropped"] == 0
    assert report["out_of_order"] == 0 and report["sequence_gaps"] == 0  # checked by sequence number
    assert report["interrupted"] is False and report["error"] is None
    assert report["fps"] > 0 and report["rss_peak_mb"] > 0
    assert set(report["stages"]) == STAGE_KEYS
    assert report["stages"].pop("clip")["count"] == 0 and report["clip"] is None  # no clip model in this run
    assert report["stages"].pop("boxes")["count"] == 0 and report["boxes_explained"] == 0  # not a detector
    assert report["stages"].pop("faithful")["count"] == 0 and "faithful" not in report  # not --threshold faithful
    for stage in report["stages"].values():
        assert stage["count"] > 0 and 0 < stage["p50_ms"] <= stage["p95_ms"] <= stage["p99_ms"]
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p95"]
    assert "frames out" in result.stdout and str(video) in result.stdout


def test_default_command_runs_the_bundled_demo_clip(tmp_path):
    result = camstream(cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert count_frames(str(tmp_path / "camstream-out" / "overlay.mp4")) == 250
    report = one_stream(json.loads((tmp_path / "camstream-out" / "report.json").read_text()))
    assert report["model"] == "efficientnet_lite0" and report["method"] == "gradcam"
    assert report["frames_out"] == 250


def test_overlay_changes_frames_only_where_heat_is_drawn(tmp_path, demo_clip):
    out = tmp_path / "o"
    result = camstream("run", "--source", demo_clip, "--out", out, "--no-hud", "--max-frames", "20", "--quiet",
                       "--threshold", "10")
    assert result.returncode == 0, result.stderr
    with av.open(str(out / "overlay.mp4")) as rendered, av.open(str(demo_clip)) as original:
        pairs = zip(rendered.decode(video=0), original.decode(video=0), strict=False)
        for ours, theirs in list(pairs)[5:8]:
            difference = np.abs(ours.to_ndarray(format="bgr24").astype(int) - theirs.to_ndarray(format="bgr24"))
            changed = (difference.max(axis=2) > 40).mean()
            assert 0.03 < changed < 0.2  # about the top 10 % of the map is coloured; codec noise stays small


def test_live_policy_drops_when_behind_and_keeps_order(tmp_path, dashcam_clip):
    config = PipelineConfig(source=str(dashcam_clip), sinks=("null",), out_dir=str(tmp_path), policy="live",
                            realtime=False, max_batch=2)
    pipeline = Pipeline(config)
    report = one_stream(pipeline.run())
    assert report["frames_in"] == 221
    assert report["dropped"] > 0  # decoding runs far ahead of inference
    assert report["frames_out"] + report["dropped"] == report["frames_in"]
    assert report["out_of_order"] == 0 and report["sequence_gaps"] > 0  # drops show up as gaps
    assert report["queue_max_depth"] <= len(pipeline.ring.slots)


def test_reuse_cam_renders_every_frame_and_explains_fewer(tmp_path, demo_clip):
    config = PipelineConfig(source=str(demo_clip), sinks=("null",), out_dir=str(tmp_path), reuse_cam=True,
                            max_batch=4, max_frames=80)
    report = one_stream(Pipeline(config).run())
    assert report["frames_out"] == report["frames_in"] == 80
    assert 0 < report["frames_explained"] < 80


def read_multipart_jpeg(response) -> np.ndarray:
    """Read parts of a multipart/x-mixed-replace body until one JPEG is complete; decode it."""
    line = response.readline()
    while line == b"\r\n":  # the CRLF that ends the previous part
        line = response.readline()
    assert line.strip() == b"--frame", line
    headers = {}
    while (line := response.readline().strip()):
        key, _, value = line.decode().partition(":")
        headers[key.lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    body = response.read(int(headers["content-length"]))
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_mjpeg_endpoint_serves_decodable_frames_over_loopback(tmp_path, demo_clip):
    config = PipelineConfig(source=str(demo_clip), sinks=("mjpeg",), out_dir=str(tmp_path), port=0,
                            target_fps=0, token="s3cret")
    pipeline = Pipeline(config)
    sink = pipeline.sinks[0]
    assert sink.bind == "127.0.0.1"
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=10)
        connection.request("GET", "/stream.mjpg")
        denied = connection.getresponse()
        assert denied.status == 403
        denied.read()
        connection.close()
        connection = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=10)
        connection.request("GET", "/stream.mjpg?token=s3cret")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type").startswith("multipart/x-mixed-replace")
        first = read_multipart_jpeg(response)
        second = read_multipart_jpeg(response)
        assert first.shape == second.shape == (272, 640, 3)
        connection.close()
    finally:
        pipeline.request_stop()
        runner.join(5)
    assert not runner.is_alive()
    assert one_stream(pipeline.report)["frames_out"] >= 2


def test_mjpeg_server_survives_malformed_requests(tmp_path, demo_clip):
    import socket

    config = PipelineConfig(source=str(demo_clip), sinks=("mjpeg",), out_dir=str(tmp_path), port=0, target_fps=0,
                            max_frames=400)
    pipeline = Pipeline(config)
    port = pipeline.sinks[0].port
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    try:
        for garbage in (b"\x00\xff garbage\r\n\r\n", b"GET\r\n\r\n", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                raw.sendall(garbage)
                raw.recv(1024)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/frame.jpg")
        response = connection.getresponse()
        assert response.status == 200
        image = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (272, 640, 3)
    finally:
        pipeline.request_stop()
        runner.join(5)


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory, dashcam_clip):
    path = tmp_path_factory.mktemp("clips") / "dashcam_320x180_x10.mp4"
    frames = derive_clip(str(dashcam_clip), str(path), 320, 180, fps=60, loops=10)
    assert frames == 2210
    return path


def test_soak_2000_frames_rss_growth_below_2_percent(tmp_path, long_clip):
    out = tmp_path / "soak"
    result = camstream("run", "--source", long_clip, "--sink", "null", "--out", out, "--quiet", timeout=600)
    assert result.returncode == 0, result.stderr
    report = one_stream(json.loads((out / "report.json").read_text()))
    assert report["frames_out"] == 2210
    assert report["rss_growth_after_warmup_pct"] < 2.0, report
    assert report["threads_end"] <= report["threads_start"]  # every stage thread is gone
    assert report["fds_end"] <= report["fds_start"] + 2  # no descriptor leak (the report file may be open)


def test_mjpeg_server_bounds_its_clients_and_drops_idle_ones(tmp_path):
    """Issue 16, defect 8: 200 slow clients held 215 threads and +68 MB. Now at most `max_clients` are served at
    once (the next gets 503 at once, no thread), and a client that sends nothing is dropped after the idle
    timeout; a real client is served again afterwards."""
    import socket
    from fractions import Fraction

    from camstream.stream.records import FrameMeta, SourceInfo
    from camstream.stream.sinks import MjpegSink

    sink = MjpegSink(port=0, max_clients=8, idle_timeout_s=1.0)
    sink.open(SourceInfo("test", 64, 48, 25.0, Fraction(1, 25), None, False))
    threads_before = threading.active_count()
    idle = []
    try:
        sink.write(np.zeros((48, 64, 3), np.uint8), FrameMeta())
        for _ in range(40):
            idle.append(socket.create_connection(("127.0.0.1", sink.port), timeout=5))
        refused = idle[-1].recv(200)  # beyond the bound: answered at once
        assert refused.startswith(b"HTTP/1.1 503"), refused
        assert threading.active_count() <= threads_before + 8 + 1
        for client in idle[:8]:  # the served ones sent nothing: dropped after the idle timeout
            assert client.recv(200) == b""
        deadline = time.monotonic() + 10
        while threading.active_count() > threads_before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= threads_before
        connection = http.client.HTTPConnection("127.0.0.1", sink.port, timeout=10)
        connection.request("GET", "/frame.jpg")
        assert connection.getresponse().status == 200
    finally:
        for client in idle:
            client.close()
        sink.close()
