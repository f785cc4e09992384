"""The fault corpus, run through the real commands: every input of `tests/faults/corpus.py` given to `camstream
run`, `explain` and `eval` where it applies. For each: the exit code; on an error one line, `camstream: error: …`,
naming what went wrong, and no traceback; no spelling of a URL's password in stdout, stderr or any file written;
and every output that is there is whole (each video decodes, to as many frames as its report says, more than 0;
report.json, eval.json parse; an overlay PNG reads back at its image's size).

Run it alone with `pytest tests/test_fault_corpus.py`. To add a fault: a maker in the corpus, a row here."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import pytest

from camstream.bench.clips import count_frames
from tests.cli import assert_one_line_error, camstream
from tests.conftest import mounted_tmpfs
from tests.faults.corpus import make, secrets_in, spellings

SMALL_RUN = ("--max-frames", "4", "--input-size", "64", "64", "--max-outage", "1", "--quiet")
SMALL_MODEL = ("--input-size", "64", "64")
SMALL_EVAL = ("--methods", "gradcam", "--thresholds", "10", "--steps", "2", "--runtime", "torch", "--no-plots",
              *SMALL_MODEL)


@dataclass(frozen=True)
class Case:
    """One row: `fault` (a corpus name) given to `command` as its input, or a whole input (`GOOD`) with the fault
    on the output side (`out`: inside a read-only filesystem, or under a file); what must come of it."""

    fault: str
    command: str  # run, explain, eval (the input as --data), eval-video (as --video), eval-detector (centerface)
    exit: int
    says: str | None = None  # a fragment of the one error line (None: exit 0, no error line)
    writes: tuple[str, ...] = ()  # outputs that must be there: video, report, overlay, eval
    out: str = "fresh"  # fresh (a folder not yet made), read-only-new, read-only-existing, under-a-file
    good: str | None = None  # the whole input (GOOD) the output-side faults are run with

    @property
    def id(self) -> str:
        return f"{self.command}-{self.fault}" + (f"-{self.out}" if self.out != "fresh" else "")


READ_ONLY = "Read-only file system"
URL_SAID = "rtsp://***@127.0.0.1:1/live"

TABLE = [
    # camstream run: the input as --source
    Case("empty_file", "run", 2, "is empty (0 bytes)"),
    Case("random_bytes", "run", 2, "cannot open"),
    Case("truncated_video", "run", 2, "cannot open"),
    Case("audio_only", "run", 2, "has no video stream"),
    Case("truncated_jpeg", "run", 2, "is damaged: a truncated JPEG"),
    Case("truncated_png", "run", 2, "is damaged: a truncated PNG"),
    Case("corrupt_jpeg_header", "run", 2, "is damaged: a corrupt JPEG"),
    Case("zero_byte_image", "run", 2, "is empty (0 bytes)"),
    Case("image_1x1", "run", 0, writes=("video", "report")),
    Case("image_2x3", "run", 0, writes=("video", "report")),
    Case("video_1x1", "run", 0, writes=("video", "report")),
    Case("video_2x3", "run", 0, writes=("video", "report")),
    Case("late_timestamps", "run", 0, writes=("video", "report")),
    Case("timestamps_wrapping", "run", 0, writes=("video", "report")),
    Case("url_password_percent_encoded_at", "run", 2, f"cannot open {URL_SAID}"),
    Case("url_passwords_among_good_sources", "run", 3, "4 of 5 streams failed", writes=("video", "report")),
    Case("output", "run", 2, "it is a file, not a folder", out="under-a-file", good="video"),
    Case("output", "run", 2, READ_ONLY, out="read-only-new", good="video"),
    Case("output", "run", 2, READ_ONLY, out="read-only-existing", good="video"),
    # camstream explain: the input as the image
    Case("empty_file", "explain", 2, "is empty (0 bytes)"),
    Case("random_bytes", "explain", 2, "as an image"),
    Case("truncated_jpeg", "explain", 2, "is damaged: a truncated JPEG"),
    Case("truncated_png", "explain", 2, "is damaged: a truncated PNG"),
    Case("corrupt_jpeg_header", "explain", 2, "is damaged: a corrupt JPEG"),
    Case("zero_byte_image", "explain", 2, "is empty (0 bytes)"),
    Case("random_bytes_image", "explain", 2, "as an image"),
    Case("image_1x1", "explain", 0, writes=("overlay",)),
    Case("image_2x3", "explain", 0, writes=("overlay",)),
    *[Case(f"url_password_{label}", "explain", 2, f"no such file: {URL_SAID}")
      for label in ("percent_encoded_at", "at_colon_slash", "quotes_and_space", "several_at")],
    Case("output", "explain", 2, "is a file", out="under-a-file", good="image"),
    Case("output", "explain", 2, READ_ONLY, out="read-only-new", good="image"),
    Case("output", "explain", 2, READ_ONLY, out="read-only-existing", good="image"),
    # camstream eval: the input as --data, or as --video
    Case("folder_with_one_damaged_file", "eval", 0, writes=("eval",)),
    Case("folder_of_damaged_files", "eval", 2, "(5 skipped: bad-header.jpg: a corrupt JPEG"),
    Case("folder_of_1x1_and_2x3_images", "eval", 0, writes=("eval",)),
    Case("image_2x3", "eval", 2, "is a file, not a folder: --data takes a folder of images"),
    Case("url_password_quotes_and_space", "eval", 2, f"no such folder: {URL_SAID}"),
    Case("output", "eval", 2, "it is a file, not a folder", out="under-a-file", good="photos"),
    Case("output", "eval", 2, READ_ONLY, out="read-only-new", good="photos"),
    Case("output", "eval", 2, READ_ONLY, out="read-only-existing", good="photos"),
    Case("output", "eval-detector", 2, "it is a file, not a folder", out="under-a-file", good="photos"),
    Case("empty_file", "eval-video", 2, "cannot decode"),
    Case("truncated_video", "eval-video", 2, "cannot decode"),
    Case("audio_only", "eval-video", 2, "has no video stream"),
    Case("video_1x1", "eval-video", 0, writes=("eval",)),
    Case("url_password_several_at", "eval-video", 2, f"no such video: {URL_SAID}"),
]
SLOW = {"eval-folder_with_one_damaged_file", "eval-folder_of_1x1_and_2x3_images", "eval-video-video_1x1"}
NOT_YET_FIXED: dict[str, str] = {}  # row id → why it fails today (strict xfail: a fix shows as XPASS)


def _param(case: Case):
    marks = [pytest.mark.slow] if case.id in SLOW else []
    if case.id in NOT_YET_FIXED:
        marks.append(pytest.mark.xfail(strict=True, reason=NOT_YET_FIXED[case.id]))
    return pytest.param(case, id=case.id, marks=marks)


@pytest.fixture(autouse=True)
def one_thread_each(monkeypatch):
    """torch on one thread in each command: the rows run side by side (pytest -n 2), and on a busy 2-core machine
    torch's spinning worker threads tripled an eval's CPU time."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def read_only_dir(tmp_path_factory):
    """A read-only 1 MiB tmpfs: root ignores file modes, not a read-only mount. A skip with the reason where
    mounting is refused."""
    yield from mounted_tmpfs(tmp_path_factory.mktemp("read-only") / "disk", "ro,size=1m", "the read-only output rows")


def _output(case: Case, tmp_path: Path, request) -> Path:
    """Where the command writes: a folder (run, eval) or the overlay PNG (explain)."""
    if case.out == "under-a-file":
        (tmp_path / "a-file").write_text("not a folder")
        base = tmp_path / "a-file"
    elif case.out.startswith("read-only"):
        base = request.getfixturevalue("read_only_dir")
        assert subprocess.run(["touch", str(base / "probe")], capture_output=True).returncode != 0  # really r/o
        if case.out == "read-only-new":
            base = base / "new"
    else:
        base = tmp_path / "out"
    return base / "overlay.png" if case.command == "explain" else base


def _command(case: Case, source: str, out: Path, tmp_path: Path) -> list:
    if case.command == "run":
        given = ["--sources", source] if source.endswith(".txt") else ["--source", source]
        return ["run", *given, "--out", out, *SMALL_RUN]
    if case.command == "explain":
        return ["explain", source, "--out", out, "--json", *SMALL_MODEL]
    if case.command == "eval":
        return ["eval", "--data", source, "--video", "none", "--out", out, *SMALL_EVAL]
    if case.command == "eval-detector":
        return ["eval", "--model", "centerface", "--methods", "eigencam", "--data", source, "--video", "none",
                "--drise-masks", "1", "--steps", "2", "--out", out]
    photos = make("photos", tmp_path)
    return ["eval", "--data", photos, "--video", source, "--video-frames", "4", "--out", out, *SMALL_EVAL]


@pytest.mark.parametrize("case", [_param(case) for case in TABLE])
def test_fault_corpus(case: Case, tmp_path, request):
    inputs = tmp_path / "in"
    inputs.mkdir()
    source = make(case.good or case.fault, inputs)
    out = _output(case, tmp_path, request)
    existed = out.exists()
    result = camstream(*_command(case, source, out, tmp_path), timeout=240)
    _check_exit_and_message(case, result)
    written = _check_outputs(case, out, source, result)
    if case.exit == 2 and not existed:
        assert not out.exists(), f"{out} was made for a refused input"
    for secret in secrets_in(case.fault):
        everything = result.stdout + result.stderr + written
        assert URL_SAID in everything  # the URL is still named, its user-info hidden
        leaked = [spelling for spelling in spellings(secret) if spelling in everything]
        assert not leaked, f"a spelling of the password was written: {len(leaked)} of them"


def _check_exit_and_message(case: Case, result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    if case.says is None:
        assert result.returncode == case.exit, result.stderr
        assert "camstream: error:" not in result.stderr, result.stderr
    else:
        assert_one_line_error(result, case.says, exit_code=case.exit)


def _check_outputs(case: Case, out: Path, source: str, result: subprocess.CompletedProcess) -> str:
    """Every output there is whole, and the ones the row expects are there; returns the text of those written (for
    the secret check)."""
    files = sorted(p for p in (out.rglob("*") if out.is_dir() else [out]) if p.is_file())
    text = "".join(p.read_text(errors="replace") for p in files if p.suffix in (".json", ".md", ".txt"))
    reports = [json.loads(p.read_text()) for p in files if p.name == "report.json"]
    for report in reports:
        for stream in report["streams"]:
            for sink in stream["sinks"]:
                if sink["type"] == "file" and stream["frames_out"]:
                    assert count_frames(sink["path"]) == stream["frames_out"], sink
    videos = [p for p in files if p.suffix == ".mp4"]
    for video in videos:
        assert count_frames(str(video)) > 0, video
    evals = [json.loads(p.read_text()) for p in files if p.name == "eval.json"]
    overlays = [p for p in files if p.suffix == ".png" and case.command == "explain"]
    for overlay in overlays:
        shown = cv2.imread(str(overlay))
        assert shown is not None and shown.shape == cv2.imread(source).shape, overlay
    found = {"video": videos, "report": reports, "eval": evals, "overlay": overlays}
    for kind in case.writes:
        assert found[kind], f"no {kind} in {out}"
    _check_what_the_row_is_about(case, videos, reports, evals)
    if case.command == "explain" and case.exit == 0:  # --json: one object, naming the class and the overlay
        summary = json.loads(result.stdout)
        assert summary["out"] == str(out) and summary["class_id"] >= 0
    return text


def _check_what_the_row_is_about(case: Case, videos: list[Path], reports: list[dict], evals: list[dict]) -> None:
    if case.fault in ("late_timestamps", "timestamps_wrapping"):  # the output starts at zero, and goes on
        with av.open(str(videos[0])) as container:
            times = [float(frame.time) for frame in container.decode(video=0)]
        steps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
        assert len(times) == 4 and times[0] < 0.1 and all(0 < step < 0.1 for step in steps), times
    if case.fault in ("video_1x1", "image_1x1") and case.command == "run":  # padded to H.264's smallest frame
        with av.open(str(videos[0])) as container:
            assert (container.streams.video[0].width, container.streams.video[0].height) == (2, 2)
    if case.fault == "url_passwords_among_good_sources":
        assert reports[0]["total"]["failed_streams"] == [1, 2, 3, 4] and reports[0]["total"]["frames_out"] == 4
    if case.fault == "folder_with_one_damaged_file":
        assert evals[0]["images"] == 2 and [s["file"] for s in evals[0]["skipped_files"]] == ["b.jpg"]
        assert "truncated JPEG" in evals[0]["skipped_files"][0]["reason"]
    if case.fault == "folder_of_1x1_and_2x3_images":
        assert evals[0]["images"] == 2 and evals[0]["skipped_files"] == []
    if case.command == "eval-video" and case.exit == 0:
        assert evals[0]["video"]["frames"] == 4
