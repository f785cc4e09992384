"""A disk that is full, or fills during the run (issue 27), on a real small tmpfs mounted for the test: one line,
exit 4, no segfault, no traceback, and a video that plays every frame it kept (counted by decoding)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import av
import pytest

from tests.cli import camstream
from tests.conftest import mounted_tmpfs


@pytest.fixture
def small_disk(tmp_path):
    """A 1.5 MiB tmpfs at tmp_path/disk, unmounted afterwards; a skip with the reason where mounting is refused."""
    yield from mounted_tmpfs(tmp_path / "disk", "size=1536k", "the full-disk tests")


def _fill(disk: Path) -> None:
    """Write until the disk says it is full."""
    with open(disk / "ballast", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass


def _decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def _assert_one_error_line(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr and "Segmentation" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("camstream: error:")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr


def test_a_disk_full_at_the_start_is_one_line_and_no_segfault(small_disk):
    _fill(small_disk)
    result = camstream("run", "--max-frames", "8", "--out", small_disk / "out")
    _assert_one_error_line(result, "the disk is full")


@pytest.fixture(scope="module")
def clip_720p(tmp_path_factory, demo_clip):
    from camstream.bench.clips import derive_clip

    path = tmp_path_factory.mktemp("clips") / "demo_720p.mp4"
    derive_clip(str(demo_clip), str(path), 1280, 720, fps=25, max_frames=120)
    return path


def test_a_disk_that_fills_mid_run_keeps_a_playable_video_and_the_figures(small_disk, clip_720p):
    out = small_disk / "out"
    result = camstream("run", "--source", clip_720p, "--out", out, "--model", "mobilenet_v2", "--input-size", "96",
                       "96")
    _assert_one_error_line(result, "No space left on device")
    kept = _decoded_frames(out / "overlay.mp4")  # every box of the file decodes: cut after its last fragment
    assert 0 < kept < 120, kept
    if (out / "report.json").exists():  # the report fitted once the video's torn end was cut off
        report = json.loads((out / "report.json").read_text())
    else:  # else its figures are on stderr, as one JSON line
        report = json.loads([line for line in result.stderr.splitlines() if line.startswith("{")][-1])
    assert report["streams"][0]["frames_out"] >= kept
