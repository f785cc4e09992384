"""One input per fault class, made into a folder on demand with real tools (PyAV for videos, OpenCV for images,
plain bytes for damage): small and quick to make, nothing committed. `make(name, folder)` returns the path (or
URL, or folder) to give camstream. `FAULTS` names every class, `GOOD` the whole inputs a fault of the output
side (a folder that cannot be written) is run with. To grow the corpus: add a maker here and its rows to the
table in `tests/test_fault_corpus.py`."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from urllib.parse import quote, unquote

import av
import cv2
import numpy as np

from tests.test_bad_input import file_with, truncated, write_audio_only, write_video
from tests.test_redaction import _spellings

# Passwords that a URL or a printer treats specially; each is written into a source URL as it stands (FFmpeg and
# camstream read the user-info up to the last @) and must never appear, in any spelling, in what camstream writes.
SECRETS = {
    "percent_encoded_at": "p%40ssw0rd",
    "at_colon_slash": "p@ss:w/rd?#x",
    "quotes_and_space": "sp ace's \"q\"",
    "several_at": "@@s3cr3t@@",
}
UNREACHABLE = "127.0.0.1:1"  # a closed port on this machine: refused at once, no waiting on a timeout


def secret_url(secret: str) -> str:
    return f"rtsp://admin:{secret}@{UNREACHABLE}/live"


def spellings(secret: str) -> set[str]:
    """Every way `secret` could be printed: as written and decoded, percent-encoded, JSON- and repr-escaped."""
    found = set()
    for plain in (secret, unquote(secret)):
        found |= _spellings(plain) | {repr(plain)[1:-1], quote(plain, safe="")}
    return found


def photo(size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """A BGR picture with structure (a white disc on colour ramps), `size` (height, width)."""
    height, width = size
    ramp = ((np.arange(width)[None, :] * 2 + np.arange(height)[:, None]) % 256).astype(np.uint8)
    image = np.dstack([ramp, 255 - ramp, ramp // 2])
    cv2.circle(image, (width // 2, height // 2), max(1, min(size) // 4), (255, 255, 255), -1)
    return image


def write_image(path: Path, image: np.ndarray) -> str:
    if not cv2.imwrite(str(path), image):
        raise RuntimeError(f"OpenCV could not write {path}")
    return str(path)


def corrupt_jpeg_header(folder: Path, name: str = "bad-header.jpg") -> str:
    """A JPEG whose header (the marker segments after its start marker: tables, frame header) is overwritten with
    garbage; its start and end markers are intact."""
    data = bytearray(Path(write_image(folder / f"whole-{name}", photo())).read_bytes())
    data[2:200] = bytes((index * 37 + 11) % 256 for index in range(198))
    return file_with(folder / name, bytes(data))


def truncated_image(folder: Path, name: str) -> str:
    """An image cut in half (a download that stopped); its whole original is kept beside it as whole-NAME."""
    return truncated(folder / name, write_image(folder / f"whole-{name}", photo()))


def timestamps_from(path: Path, first: int) -> str:
    """20 frames at 25 fps whose first timestamp is frame `first` (the container's format from the name)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(20):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 * index, np.uint8), format="rgb24")
            frame.pts = first + index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return str(path)


MPEG_TS_WRAP_S = 2 ** 33 / 90_000  # an MPEG-TS clock (33 bits of 90 kHz) starts again after 26.5 hours


def a_folder(folder: Path, name: str, files: dict[str, Callable[[Path, str], object]]) -> str:
    """`folder/name` holding only the files `files` makes (file name → maker(inside, file name))."""
    inside = folder / name
    inside.mkdir()
    for file_name, maker in files.items():
        maker(inside, file_name)
    for left in inside.glob("whole-*"):  # the originals the damaged files were cut from
        left.unlink()
    return str(inside)


def _photo(inside: Path, name: str) -> None:
    write_image(inside / name, photo())


DAMAGED_IMAGES: dict[str, Callable[[Path, str], object]] = {
    "cut.jpg": truncated_image,
    "cut.png": truncated_image,
    "bad-header.jpg": corrupt_jpeg_header,
    "zero.jpg": lambda inside, name: file_with(inside / name, b""),
    "noise.png": lambda inside, name: file_with(inside / name, np.random.default_rng(4).bytes(4096)),
}


def url_sources_file(folder: Path) -> str:
    """A --sources file: a whole clip, then one unreachable camera per nasty password."""
    listing = folder / "cameras.txt"
    lines = [write_video(folder / "good.mkv", "ffv1", "yuv444p", (64, 48), 6)]
    lines += [secret_url(secret) for secret in SECRETS.values()]
    listing.write_text("\n".join(lines) + "\n")
    return str(listing)


FAULTS: dict[str, Callable[[Path], str]] = {
    "empty_file": lambda d: file_with(d / "empty.mp4", b""),
    "random_bytes": lambda d: file_with(d / "noise.mp4", np.random.default_rng(3).bytes(65536)),
    "truncated_video": lambda d: truncated(d / "cut.mp4", write_video(d / "whole.mp4", "libx264", "yuv420p",
                                                                        (160, 120), 20)),
    "audio_only": lambda d: write_audio_only(d / "audio.m4a"),
    "truncated_jpeg": lambda d: truncated_image(d, "cut.jpg"),
    "truncated_png": lambda d: truncated_image(d, "cut.png"),
    "corrupt_jpeg_header": corrupt_jpeg_header,
    "zero_byte_image": lambda d: file_with(d / "zero.jpg", b""),
    "random_bytes_image": lambda d: file_with(d / "noise.png", np.random.default_rng(4).bytes(4096)),
    "image_1x1": lambda d: write_image(d / "one.png", photo((1, 1))),
    "image_2x3": lambda d: write_image(d / "two-by-three.png", photo((3, 2))),
    "video_1x1": lambda d: write_video(d / "one.mkv", "ffv1", "yuv444p", (1, 1), 4),
    "video_2x3": lambda d: write_video(d / "two-by-three.mkv", "ffv1", "yuv444p", (2, 3), 4),
    "late_timestamps": lambda d: timestamps_from(d / "late.mp4", 25 * 3600 * 5),  # five hours in
    "timestamps_wrapping": lambda d: timestamps_from(d / "wrap.ts", round((MPEG_TS_WRAP_S - 0.4) * 25)),
    "folder_with_one_damaged_file": lambda d: a_folder(d, "photos", {"a.jpg": _photo, "b.jpg": truncated_image,
                                                                     "c.png": _photo}),
    "folder_of_damaged_files": lambda d: a_folder(d, "damaged", DAMAGED_IMAGES),
    "folder_of_1x1_and_2x3_images": lambda d: a_folder(d, "tiny", {
        "one.png": lambda inside, name: write_image(inside / name, photo((1, 1))),
        "two-by-three.png": lambda inside, name: write_image(inside / name, photo((3, 2)))}),
    "url_passwords_among_good_sources": url_sources_file,
    **{f"url_password_{label}": (lambda _d, _s=secret: secret_url(_s)) for label, secret in SECRETS.items()},
}

GOOD: dict[str, Callable[[Path], str]] = {
    "video": lambda d: write_video(d / "good.mkv", "ffv1", "yuv444p", (64, 48), 6),
    "image": lambda d: write_image(d / "good.png", photo()),
    "photos": lambda d: a_folder(d, "good-photos", {"a.png": _photo}),
}


def make(name: str, folder: Path) -> str:
    """The input of fault class `name` (or of a `GOOD` kind), made in `folder` (a fresh one per input)."""
    return (FAULTS.get(name) or GOOD[name])(folder)


def secrets_in(name: str) -> list[str]:
    """The passwords that input `name` carries."""
    if name == "url_passwords_among_good_sources":
        return list(SECRETS.values())
    label = name.removeprefix("url_password_")
    return [SECRETS[label]] if label in SECRETS else []
