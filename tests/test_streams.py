"""Several sources in one process: every stream lossless and in order, batched together, fairly."""

from __future__ import annotations

import json

import pytest

from camstream.bench.clips import count_frames, derive_clip
from camstream.stream.config import read_sources_file
from camstream.stream.streams import stream_folder_name

from .cli import assert_one_line_error, camstream
from .conftest import shared_file
from .test_pipeline import frame_times


def test_three_streams_in_one_process_are_lossless_and_fairly_batched(tmp_path, dashcam_clip):
    small = tmp_path / "small.mp4"
    derive_clip(str(dashcam_clip), str(small), 320, 180, fps=30, max_frames=90)
    clips = [dashcam_clip, shared_file("video", "street_bikes.mp4"), small]
    listing = tmp_path / "sources.txt"
    listing.write_text("# three clips\n" + "\n".join(str(c) for c in clips[1:]) + "\n\n")
    out = tmp_path / "out"
    result = camstream("run", "--source", clips[0], "--sources", listing, "--sink", "file", "--out", out,
                       "--max-batch", "4", "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    streams = report["streams"]
    assert len(streams) == 3 and report["total"]["streams"] == 3
    for index, (clip, stream) in enumerate(zip(clips, streams, strict=True)):
        expected = count_frames(str(clip))
        assert stream["frames_in"] == stream["frames_out"] == stream["frames_explained"] == expected
        assert stream["dropped"] == 0 and stream["out_of_order"] == 0 and stream["sequence_gaps"] == 0
        video = out / stream_folder_name(index, str(clip)) / "overlay.mp4"
        assert stream["out_dir"] == str(video.parent)
        assert count_frames(str(video)) == expected
        # fair: with a batch of 4 and 3 streams, a stream with a frame ready is never left out of a batch
        assert stream["max_batches_skipped_while_ready"] == 0
    assert frame_times(out / stream_folder_name(2, str(small)) / "overlay.mp4") == pytest.approx(
        frame_times(small), abs=1e-3)
    total = report["total"]
    assert total["frames_out"] == sum(count_frames(str(c)) for c in clips) and total["failed_streams"] == []
    assert total["mean_batch"] > 1.5  # frames of different streams really share batches
    assert "3 streams:" in result.stdout
    assert f"→ {out / stream_folder_name(0, str(clips[0]))}" in result.stdout  # where each stream's video is


def test_streams_to_null_sinks_name_no_folder_they_never_made(tmp_path, demo_clip):
    out = tmp_path / "out"
    result = camstream("run", "--source", demo_clip, "--source", demo_clip, "--sink", "null", "--max-frames", "6",
                       "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("stream ")]
    assert len(lines) == 2 and not any("→" in line for line in lines), result.stdout
    assert sorted(path.name for path in out.iterdir()) == [".camstream.lock", "report.json"]  # no stream folders


def test_sources_file_errors_and_window_with_several_streams(tmp_path, demo_clip):
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    assert_one_line_error(camstream("run", "--sources", empty, "--out", tmp_path), "lists no source")
    assert_one_line_error(camstream("run", "--sources", tmp_path / "missing.txt", "--out", tmp_path),
                          "cannot read sources file")
    assert_one_line_error(camstream("run", "--source", demo_clip, "--source", demo_clip, "--sink", "window",
                                    "--out", tmp_path), "the window sink shows one stream")
    # one missing file among several sources fails alone (exit 3), the others run
    partly = camstream("run", "--source", demo_clip, "--source", tmp_path / "nope.mp4", "--out", tmp_path / "out",
                       "--max-frames", "5", "--quiet")
    assert partly.returncode == 3 and "1 of 2 streams failed: stream 1" in partly.stderr, partly.stderr
    assert "nope.mp4" in partly.stderr and "Traceback" not in partly.stderr


def test_sources_file_skips_comments_and_blank_lines(tmp_path):
    listing = tmp_path / "s.txt"
    listing.write_text("# cameras\n\nrtsp://a/1\n  b.mp4  \n# off: c.mp4\n")
    assert read_sources_file(str(listing)) == ("rtsp://a/1", "b.mp4")


def test_stream_folder_names_are_safe_and_never_carry_credentials():
    assert stream_folder_name(0, "/data/clips/cam one.mp4") == "0-cam_one"
    name = stream_folder_name(3, "rtsp://admin:secret@10.0.0.7:554/live?token=abc")
    assert name.startswith("3-") and "secret" not in name and "admin" not in name and "abc" not in name


def test_a_dead_camera_at_start_ends_alone_and_the_other_streams_run(tmp_path, demo_clip):
    """Issue 16, defect 6: a sources file with a dead camera and a good file used to stop at start (rc 2) and
    the good stream never ran. Now the dead one is reported failed, the good one runs to its end, exit 3."""
    listing = tmp_path / "sources.txt"
    listing.write_text(f"41\n{demo_clip}\n")
    result = camstream("run", "--sources", listing, "--out", tmp_path / "out", "--max-frames", "12", "--quiet")
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("camstream: error:")]
    assert len(errors) == 1 and "1 of 2 streams failed" in errors[0] and "camera 41" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    dead, good = report["streams"]
    assert "camera 41 cannot be opened" in dead["error"] and dead["frames_in"] == 0
    assert good["error"] is None and good["frames_out"] == 12
    assert report["total"]["failed_streams"] == [0]
    assert count_frames(str(tmp_path / "out" / "1-street_bikes" / "overlay.mp4")) == 12


def test_when_every_stream_fails_at_start_it_is_one_line_and_exit_2(tmp_path):
    listing = tmp_path / "sources.txt"
    listing.write_text("41\n42\n")
    assert_one_line_error(camstream("run", "--sources", listing, "--out", tmp_path / "out"), "camera 41")
