"""`camstream fleet` on a local Ray instance: every actor's report comes back; a dead source is reported and
the other streams still finish."""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from camstream.bench.clips import count_frames
from camstream.stream.streams import stream_folder_name

from .cli import camstream, one_stream
from .conftest import shared_file

pytest.importorskip("ray", reason="ray (the fleet extra, in the test extra) runs the fleet")


def test_fleet_of_two_streams_reports_both_and_survives_a_dead_source(tmp_path, dashcam_clip):
    street = shared_file("video", "street_bikes.mp4")
    missing = tmp_path / "camera-that-is-gone.mp4"
    listing = tmp_path / "sources.txt"
    listing.write_text(f"{dashcam_clip}\n{missing}\n{street}\n")
    out = tmp_path / "fleet"
    result = camstream("fleet", "--sources", listing, "--max-frames", "40", "--out", out, timeout=600)
    assert result.returncode == 3, result.stderr  # one stream failed; the others finished
    fleet = json.loads((out / "fleet.json").read_text())
    streams = {s["stream"]: s for s in fleet["streams"]}
    assert fleet["summary"]["actors"] == 3 and fleet["summary"]["failed_streams"] == [1]
    assert "no such file" in streams[1]["error"] and streams[1]["frames_out"] == 0
    for number, clip in ((0, dashcam_clip), (2, street)):
        stream = streams[number]
        assert stream["error"] is None and stream["frames_in"] == stream["frames_out"] == 40
        assert stream["fps"] > 0 and stream["latency_p95_ms"] > 0
        folder = out / stream_folder_name(number, str(clip))
        assert count_frames(str(folder / "overlay.mp4")) == 40
        assert one_stream(json.loads((folder / "report.json").read_text()))["frames_out"] == 40
        assert one_stream(fleet["reports"][str(number)])["frames_out"] == 40  # the actor's own report, whole
    assert fleet["summary"]["frames_out"] == 80
    assert fleet["summary"]["total_fps"] == pytest.approx(streams[0]["fps"] + streams[2]["fps"], rel=1e-3)
    assert "error: no such file" in result.stdout


def test_ctrl_c_stops_every_actor_in_order_and_keeps_their_output(tmp_path, dashcam_clip):
    listing = tmp_path / "sources.txt"
    listing.write_text(f"{dashcam_clip}\n{shared_file('video', 'street_bikes.mp4')}\n")
    out = tmp_path / "fleet"
    process = subprocess.Popen([sys.executable, "-m", "camstream", "fleet", "--sources", str(listing), "--out",
                                str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = out / stream_folder_name(0, str(dashcam_clip)) / "overlay.mp4"
    deadline = time.monotonic() + 240
    while not (first.exists() and first.stat().st_size > 50_000):  # frames are being written: stop mid-run
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1]
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    fleet = json.loads((out / "fleet.json").read_text())
    assert fleet["summary"]["interrupted"] is True and fleet["summary"]["failed_streams"] == []
    for stream in fleet["streams"]:
        folder = tmp_path / "fleet" / pathlib.Path(stream["out_dir"]).name
        report = one_stream(json.loads((folder / "report.json").read_text()))
        assert report["interrupted"] is True
        video = pathlib.Path(stream["out_dir"]) / "overlay.mp4"
        if report["frames_out"] == 0 and not video.exists():
            continue  # on a loaded machine an actor can be stopped before its first frame: nothing to lose
        assert count_frames(str(video)) == report["frames_out"]  # playable, nothing lost
    assert fleet["streams"][0]["frames_out"] < count_frames(str(dashcam_clip))  # it really stopped early
