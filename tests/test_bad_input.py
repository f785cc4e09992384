"""A corpus of awkward inputs, each made here with PyAV: every one is either processed correctly or
refused with one line and exit code 2 — never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from camstream.bench.clips import count_frames

from .cli import assert_one_line_error, camstream, one_stream


def write_video(path, codec: str, pix_fmt: str, size: tuple[int, int], frames: int, grey: bool = False) -> str:
    """A synthetic moving-gradient clip: `size` is (width, height)."""
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for index in range(frames):
            ramp = ((np.arange(width)[None, :] + np.arange(height)[:, None] + 7 * index) % 256).astype(np.uint8)
            if grey:
                frame = av.VideoFrame.from_ndarray(ramp, format="gray")
            else:
                frame = av.VideoFrame.from_ndarray(np.dstack([ramp, ramp[::-1], 255 - ramp]), format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return str(path)


def write_audio_only(path) -> str:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        samples = np.zeros((1, 1024), np.float32)
        for index in range(20):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 44100
            frame.pts = index * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return str(path)


def file_with(path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


def truncated(path, source: str) -> str:
    with open(source, "rb") as handle:
        data = handle.read()
    path.write_bytes(data[: len(data) // 2])
    return str(path)


VALID = {
    "grayscale": lambda d: write_video(d / "grey.mkv", "ffv1", "gray", (320, 240), 12, grey=True),
    "odd_size_641x359": lambda d: write_video(d / "odd.mkv", "ffv1", "yuv444p", (641, 359), 12),
    "one_frame": lambda d: write_video(d / "one.mp4", "libx264", "yuv420p", (320, 240), 1),
    "yuv444p_h264": lambda d: write_video(d / "444.mp4", "libx264", "yuv444p", (320, 240), 12),
    "rgb_ffv1_bgr0": lambda d: write_video(d / "bgr0.mkv", "ffv1", "bgr0", (200, 150), 12),
    "16_bit_ffv1": lambda d: write_video(d / "deep.mkv", "ffv1", "yuv420p16le", (160, 120), 12),
    "tiny_8x8_mjpeg": lambda d: write_video(d / "tiny.avi", "mjpeg", "yuvj420p", (8, 8), 5),
}


@pytest.mark.parametrize("name", list(VALID))
def test_awkward_but_valid_videos_are_processed_frame_for_frame(tmp_path, name):
    source = VALID[name](tmp_path)
    frames = count_frames(source)
    result = camstream("run", "--source", source, "--out", tmp_path / "out", "--quiet")
    assert result.returncode == 0, result.stderr
    report = one_stream(json.loads((tmp_path / "out" / "report.json").read_text()))
    assert report["frames_in"] == report["frames_out"] == frames
    assert count_frames(str(tmp_path / "out" / "overlay.mp4")) == frames


INVALID = {
    "missing": (lambda d: str(d / "nothing.mp4"), "no such file"),
    "directory": (lambda d: str(d), "is a directory"),
    "zero_bytes": (lambda d: file_with(d / "zero.mp4", b""), "is empty"),
    "random_bytes_named_mp4": (lambda d: file_with(d / "r.mp4", np.random.default_rng(3).bytes(65536)),
                               "cannot open"),
    "truncated_mp4": (lambda d: truncated(d / "cut.mp4", write_video(d / "whole.mp4", "libx264", "yuv420p",
                                                                       (320, 240), 30)), "cannot open"),
    "audio_only": (lambda d: write_audio_only(d / "audio.m4a"), "has no video stream"),
    "missing_camera": (lambda d: "41", "camera 41"),
    "unreachable_url": (lambda d: "rtsp://127.0.0.1:9/none", "cannot open rtsp://127.0.0.1:9/none"),
    "unknown_scheme": (lambda d: "nosuchproto://x/y", "cannot open"),
}


@pytest.mark.parametrize("name", list(INVALID))
def test_bad_inputs_give_one_line_and_exit_code_2(tmp_path, name):
    make, fragment = INVALID[name]
    result = camstream("run", "--source", make(tmp_path), "--out", tmp_path / "out", "--quiet")
    assert_one_line_error(result, fragment)


OUT_OF_RANGE = {  # settings a run used to accept silently or end in a traceback on (issue 16, defect 9)
    "negative threads": (["--threads", "-2"], "--threads must be at least 1"),
    "port beyond 65535": (["--port", "70000"], "--port must be in 0..65535"),
    "opacity above 1": (["--alpha", "5"], "--alpha must be in [0, 1]"),
    "negative batch wait": (["--max-wait-ms", "-5"], "--max-wait-ms must be ≥ 0"),
    "zero frames": (["--max-frames", "0"], "--max-frames must be at least 1"),
    "smoothing of 1": (["--smooth", "1"], "--smooth must be in [0, 1)"),
}


@pytest.mark.parametrize("name", list(OUT_OF_RANGE))
def test_settings_out_of_range_are_one_line_before_anything_is_written(tmp_path, name):
    options, message = OUT_OF_RANGE[name]
    assert_one_line_error(camstream("run", "--out", tmp_path / "out", *options), message)
    assert not (tmp_path / "out").exists()


def test_explain_to_a_name_without_an_image_extension_is_one_line(tmp_path, chelsea_rgb):
    import cv2

    image = tmp_path / "cat.png"
    cv2.imwrite(str(image), chelsea_rgb[..., ::-1])
    assert_one_line_error(camstream("explain", image, "--out", tmp_path / "overlay"), "use a .png or .jpg name")


def test_an_output_file_that_is_a_directory_is_one_line(tmp_path):
    (tmp_path / "overlay.mp4").mkdir()
    assert_one_line_error(camstream("run", "--out", tmp_path, "--max-frames", "5"), "it is a directory")


def test_a_write_that_fails_mid_run_is_one_line_exit_4_and_keeps_what_was_written(tmp_path, monkeypatch, capsys):
    """Disk full while writing (ENOSPC injected into the file sink's 6th frame): one line, exit code 4, the
    video finalised with the 5 frames that fitted, and the report written and saying so."""
    import errno

    from camstream.cli import main
    from camstream.stream.sinks import FileSink

    write = FileSink.write

    def fill_up(self, frame, meta):
        if self.frames == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, frame, meta)

    monkeypatch.setattr(FileSink, "write", fill_up)
    monkeypatch.setattr("signal.signal", lambda *_args: None)  # in-process: leave pytest's own handlers alone
    code = main(["run", "--out", str(tmp_path), "--max-frames", "40", "--quiet"])
    stderr = capsys.readouterr().err
    assert code == 4, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("camstream: error: writing the output failed: No space left")
    report = one_stream(json.loads((tmp_path / "report.json").read_text()))
    assert "No space left on device" in report["error"]
    assert count_frames(str(tmp_path / "overlay.mp4")) == 5


def test_a_reader_that_leaves_early_costs_no_traceback_and_no_output(tmp_path):
    """`camstream run | head -1`: the summary's second line meets a closed pipe. The run's files are written
    first; the process ends with 141 (as a shell reports SIGPIPE), without a traceback."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "camstream", "run", "--max-frames", "4", "--out",
                                str(tmp_path), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader is gone before the summary is printed
    stderr = process.stderr.read()
    assert process.wait(timeout=300) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert one_stream(json.loads((tmp_path / "report.json").read_text()))["frames_out"] == 4
    assert count_frames(str(tmp_path / "overlay.mp4")) == 4


def damaged_in_the_middle(path) -> tuple[str, int, int]:
    """An H.264 MP4 of 20 frames whose 11th packet is overwritten with garbage; returns it with the frames and
    the damaged packets PyAV finds when it skips what it cannot decode (the expected figures, read here)."""
    source = write_video(path.with_name("whole.mp4"), "libx264", "yuv420p", (320, 240), 20)
    with av.open(source) as container:
        positions = [packet.pos for packet in container.demux(video=0) if packet.size]
    data = bytearray(path.with_name("whole.mp4").read_bytes())
    for offset in range(positions[10] + 40, positions[10] + 400):
        data[offset] = (data[offset] * 7 + 13) % 256
    path.write_bytes(bytes(data))
    frames = damaged = 0
    with av.open(str(path)) as container:
        for packet in container.demux(video=0):
            try:
                frames += len(packet.decode())
            except av.error.InvalidDataError:
                damaged += 1
    return str(path), frames, damaged


def test_a_damaged_packet_is_skipped_counted_and_every_decoded_frame_kept(tmp_path):
    """Issue 16, defect 5: decoding used to stop at the first bad packet and drop frames already decoded
    (frames_in 8, frames_out 4, dropped 0, exit 2)."""
    source, frames, damaged = damaged_in_the_middle(tmp_path / "damaged.mp4")
    assert damaged >= 1 and frames >= 12  # the damage is real, and most of the clip decodes around it
    result = camstream("run", "--source", source, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    report = one_stream(json.loads((tmp_path / "out" / "report.json").read_text()))
    assert report["frames_in"] == report["frames_out"] == frames and report["dropped"] == 0
    assert report["input"]["undecodable_packets"] == damaged
    assert f"{damaged} damaged packet" in result.stdout
    assert count_frames(str(tmp_path / "out" / "overlay.mp4")) == frames


def _halves_video(path, segments: list[tuple[int, int, int]], fmt: str = "mpegts") -> str:
    """A clip whose left half is black and right half white; `segments` of (width, height, frames) are
    concatenated, so the frame size may change mid-stream (MPEG-TS allows it)."""
    data = b""
    start = 0
    for index, (width, height, frames) in enumerate(segments):
        part = path.with_name(f"{path.stem}-{index}.ts")
        with av.open(str(part), "w", format=fmt) as container:
            stream = container.add_stream("libx264", rate=Fraction(25))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            image = np.zeros((height, width, 3), np.uint8)
            image[:, width // 2:] = 255
            for number in range(frames):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = start + number
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        start += frames
        data += part.read_bytes()
    path.write_bytes(data)
    return str(path)


def _output_frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="gray") for frame in container.decode(video=0)]


def test_a_size_change_mid_stream_is_followed_not_cropped(tmp_path):
    """Issue 16, defect 3: 320×240 → 640×480 mid-stream used to crop every later frame to its top-left corner.
    Now later frames are scaled to the output's size (the video keeps one size), and the report counts it."""
    source = _halves_video(tmp_path / "sizes.ts", [(320, 240, 10), (640, 480, 10)])
    result = camstream("run", "--source", source, "--out", tmp_path / "out", "--alpha", "0", "--no-hud")
    assert result.returncode == 0, result.stderr
    report = one_stream(json.loads((tmp_path / "out" / "report.json").read_text()))
    assert report["frames_out"] == 20 and report["input"]["size_changes"] == 1
    assert "changed size" in result.stderr
    frames = _output_frames(tmp_path / "out" / "overlay.mp4")
    assert len(frames) == 20 and all(frame.shape == (240, 320) for frame in frames)
    for frame in frames:  # black left, white right, in every frame (a crop of the 640×480 ones is all black)
        assert frame[:, :140].mean() < 40 and frame[:, 180:].mean() > 215


def test_a_rotated_video_is_shown_and_explained_upright(tmp_path):
    """A display matrix (a phone held upright) used to be ignored: the model saw the video sideways."""
    import struct

    with av.open(str(tmp_path / "flat.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        image = np.zeros((240, 320, 3), np.uint8)
        image[:, 160:] = 255  # stored: right half white
        for number in range(6):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = number
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    identity = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    turned = struct.pack(">9I", 0, 0x10000, 0, 0xFFFF0000, 0, 0, 0, 0, 0x40000000)  # display 90° clockwise
    raw = bytearray((tmp_path / "flat.mp4").read_bytes())
    at = raw.find(identity, raw.find(b"tkhd"))
    raw[at:at + 36] = turned
    (tmp_path / "upright.mp4").write_bytes(bytes(raw))
    with av.open(str(tmp_path / "upright.mp4")) as container:
        assert next(container.decode(video=0)).rotation == -90  # the file really says: turn it
    result = camstream("run", "--source", tmp_path / "upright.mp4", "--out", tmp_path / "out", "--alpha", "0",
                       "--no-hud")
    assert result.returncode == 0, result.stderr
    report = one_stream(json.loads((tmp_path / "out" / "report.json").read_text()))
    assert (report["source"]["width"], report["source"]["height"]) == (240, 320)
    assert report["input"]["rotation"] == 90
    for frame in _output_frames(tmp_path / "out" / "overlay.mp4"):  # right half turned clockwise: the bottom
        assert frame.shape == (320, 240) and frame[:140].mean() < 40 and frame[180:].mean() > 215


def test_a_file_that_ends_before_its_declared_frames_says_so(tmp_path):
    """A file truncated at 40 % with its index at the front used to process a few frames and say nothing."""
    source = tmp_path / "whole.mp4"
    with av.open(str(source), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        generator = np.random.default_rng(0)
        for number in range(38):
            frame = av.VideoFrame.from_ndarray(generator.integers(0, 255, (240, 320, 3), np.uint8), format="rgb24")
            frame.pts = number
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    data = source.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.4)])
    result = camstream("run", "--source", cut, "--out", tmp_path / "out")
    report = one_stream(json.loads((tmp_path / "out" / "report.json").read_text()))
    ended = report["input"]["ended_early"]
    assert ended is not None and ended["declared"] == 38 and 0 < ended["frames"] < 38
    assert report["frames_out"] == ended["frames"]
    assert f"input ended early: {ended['frames']} of the 38 frames" in result.stdout


PREFLIGHT_RUN = """
import json, sys
from camstream.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "torch": "torch" in sys.modules}))
"""


def test_outputs_that_cannot_work_are_said_before_the_model_loads(tmp_path, monkeypatch):
    """Issue 18: a missing display was reported only after the model had loaded (seconds). The window's display,
    a busy MJPEG port and a video path that is a directory are checked first: torch is never even imported."""
    import socket
    import subprocess
    import sys

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    (tmp_path / "taken" / "overlay.mp4").mkdir(parents=True)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        cases = {"needs a display": ["--sink", "window"],
                 f"cannot serve MJPEG on 127.0.0.1:{port}": ["--sink", "mjpeg", "--port", str(port)],
                 f"cannot serve the dashboard on 127.0.0.1:{port}": ["--sink", "web", "--port", str(port)],
                 "not both": ["--sink", "web", "--sink", "mjpeg"],
                 "it is a directory": ["--out", str(tmp_path / "taken")]}
        for message, options in cases.items():
            result = subprocess.run([sys.executable, "-c", PREFLIGHT_RUN, "run", "--out", str(tmp_path / "o"),
                                     *options], capture_output=True, text=True, timeout=120)
            assert json.loads(result.stdout.strip().splitlines()[-1]) == {"rc": 2, "torch": False}, result.stderr
            assert message in result.stderr and "Traceback" not in result.stderr


def test_a_second_run_on_a_folder_in_use_is_refused_before_the_model_loads(tmp_path):
    """Issue 27: two runs on one --out both said where their video was and one run's output was silently lost.
    A run holds OUT/.camstream.lock (flock) from before its model loads; a second is one line, exit 2."""
    from camstream.stream.output_lock import OutputLock

    out = tmp_path / "shared-out"
    held = OutputLock(str(out))  # a run in progress, as far as the folder can tell
    refused = camstream("run", "--max-frames", "4", "--out", out)
    assert_one_line_error(refused, "being written by another camstream run")
    assert f"pid {os.getpid()}" in refused.stderr and not (out / "overlay.mp4").exists()
    held.release()
    done = camstream("run", "--max-frames", "4", "--out", out, "--sink", "null")
    assert done.returncode == 0, done.stderr


def test_a_run_that_was_killed_leaves_no_stuck_lock(tmp_path):
    import signal

    out = tmp_path / "out"
    code = (f"from camstream.stream.output_lock import OutputLock; import os, sys; lock = OutputLock({str(out)!r}); "
            "print('locked', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    assert_one_line_error(camstream("run", "--max-frames", "2", "--out", out, "--sink", "null"), "another")
    holder.send_signal(signal.SIGKILL)
    holder.wait(30)
    assert camstream("run", "--max-frames", "2", "--out", out, "--sink", "null").returncode == 0


def test_an_output_path_that_is_a_file_is_one_line(tmp_path):
    taken = tmp_path / "a-file"
    taken.write_text("not a folder")
    assert_one_line_error(camstream("run", "--max-frames", "2", "--out", taken), "not a folder")


def _truncated_jpeg(path, source) -> None:
    data = source.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # cut off mid-scan, as a download that stopped


def test_explain_on_a_truncated_jpeg_says_so_in_one_line(tmp_path, chelsea_rgb):
    """Issue 27: explain explained a half-grey picture of a truncated JPEG and said nothing."""
    import cv2

    whole = tmp_path / "cat.jpg"
    cv2.imwrite(str(whole), cv2.cvtColor(chelsea_rgb, cv2.COLOR_RGB2BGR))
    cut = tmp_path / "cut.jpg"
    _truncated_jpeg(cut, whole)
    assert cv2.imread(str(cut)) is not None  # OpenCV decodes it (grey where the data stops): why it went unseen
    assert_one_line_error(camstream("explain", cut, "--out", tmp_path / "o.png"), "truncated JPEG")
    assert not (tmp_path / "o.png").exists()


def test_eval_skips_and_counts_damaged_files_and_fails_only_when_none_is_left(tmp_path, chelsea_rgb):
    import cv2

    from camstream.errors import InputError
    from camstream.eval.datasets import load_samples

    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), cv2.cvtColor(chelsea_rgb, cv2.COLOR_RGB2BGR))
    _truncated_jpeg(folder / "b.jpg", folder / "a.jpg")
    (folder / "c.png").write_bytes(b"not a picture at all")
    cv2.imwrite(str(folder / "d.png"), chelsea_rgb)
    (folder / "e.png").write_bytes((folder / "d.png").read_bytes()[:-200])  # no IEND: cut short
    (folder / "f.jpg").write_bytes((folder / "a.jpg").read_bytes() + b"\xff\xda\x00\x08appended video")
    (folder / "g.png").write_bytes((folder / "d.png").read_bytes() + bytes(100))  # data after the end is allowed
    samples, skipped = load_samples(str(folder))
    assert [s.name for s in samples] == ["a.jpg", "d.png", "f.jpg", "g.png"]
    assert {s["file"]: s["reason"] for s in skipped}.keys() == {"b.jpg", "c.png", "e.png"}
    assert "truncated JPEG" in skipped[0]["reason"]
    for name in ("a.jpg", "d.png", "f.jpg", "g.png"):
        (folder / name).unlink()
    with pytest.raises(InputError, match="no readable image .*3 skipped"):
        load_samples(str(folder))


def test_a_source_whose_timestamps_start_hours_in_starts_the_output_at_zero(tmp_path):
    """Issue 27: a source whose timestamps start far from zero gave an output whose header claimed hours."""
    from .faults.corpus import timestamps_from

    source = tmp_path / "late.mp4"
    timestamps_from(source, 25 * 3600 * 5)  # five hours in, at 25 fps
    with av.open(str(source)) as check:
        assert float(next(check.decode(video=0)).time) > 3600  # the source really starts hours in
    result = camstream("run", "--source", source, "--out", tmp_path / "out", "--sink", "file", "--no-hud")
    assert result.returncode == 0, result.stderr
    with av.open(str(tmp_path / "out" / "overlay.mp4")) as container:
        times = [float(frame.time) for frame in container.decode(video=0)]
    assert len(times) == 20 and times[0] < 0.1 and times[-1] < 1.0  # 20 frames at 25 fps: under a second


def test_a_missing_source_file_is_said_before_the_model_loads(tmp_path):
    """Issue 28: `--source nope.mp4` loaded the model for 9.5 s before saying there was no such file. The weights
    file named here is missing too, and is only looked at when the model loads: the source must be said first."""
    result = camstream("run", "--source", tmp_path / "nope.mp4", "--model", "resnet18", "--weights",
                       tmp_path / "missing-weights.pt", "--out", tmp_path / "out")
    assert_one_line_error(result, "no such file")
    assert "nope.mp4" in result.stderr and "weights" not in result.stderr


@pytest.mark.parametrize(("content", "message"), [(b"hello, not a video\n", "Invalid data found"),
                                                 (None, "has no video stream")])
def test_a_file_without_video_is_said_before_the_model_loads(tmp_path, content, message):
    """A text file named .mp4 (or a clip of sound alone) was refused only after the model had loaded (8 s in a
    new-user trial): its header is read with the other checks, before the line that says the model loads."""
    source = tmp_path / "clip.mp4"
    if content is None:
        write_audio_only(source)
    else:
        source.write_bytes(content)
    result = camstream("run", "--source", source, "--model", "resnet18", "--weights", tmp_path / "missing-weights.pt",
                       "--out", tmp_path / "out")
    assert_one_line_error(result, message)
    assert "loading" not in result.stderr and "weights" not in result.stderr and not (tmp_path / "out").exists()


def test_loop_plays_a_file_again_with_its_timeline_running_on(tmp_path):
    """--loop: a 10-frame clip run for 25 frames gives 25 frames in order, the output's timestamps rising
    across each restart (lossless: every frame of every pass)."""
    clip = tmp_path / "ten.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=10, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(10):
            image = np.full((48, 64, 3), index * 20, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode(None))
    result = camstream("run", "--source", clip, "--loop", "--max-frames", "25", "--input-size", "64", "64",
                       "--out", tmp_path / "out", "-q")
    assert result.returncode == 0, result.stderr
    report = one_stream(json.loads((tmp_path / "out" / "report.json").read_text()))
    assert report["frames_in"] == report["frames_out"] == 25 and report["dropped"] == 0
    with av.open(str(tmp_path / "out" / "overlay.mp4")) as video:
        times = [frame.time for frame in video.decode(video=0)]
    assert len(times) == 25 and all(b > a for a, b in zip(times, times[1:], strict=False))


def test_loop_plays_a_still_image_again_too(tmp_path):
    """--loop on a JPEG (FFmpeg plays it as a one-frame video) hung after its first frame: seeking an image
    demuxer back to the start gives nothing, so the source looped on no frames. It is opened again instead."""
    import cv2

    cv2.imwrite(str(tmp_path / "still.jpg"), np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8))
    result = camstream("run", "--source", tmp_path / "still.jpg", "--loop", "--max-frames", "3", "--sink", "null",
                       "--input-size", "64", "64", "--out", tmp_path / "out", "-q", timeout=60)
    assert result.returncode == 0, result.stderr
    report = one_stream(json.loads((tmp_path / "out" / "report.json").read_text()))
    assert report["frames_out"] == 3 and not report["interrupted"]
