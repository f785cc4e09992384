"""Shared fixtures: real images, the shared footage folder, and models loaded once per session."""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CAMSTREAM_SHARED", REPO.parent / "shared"))
SHARED_VIDEO = SHARED / "data" / "video"


def shared_file(*parts: str) -> Path:
    """A file of ../shared/data, or a skip with the reason when the folder is absent (a plain clone)."""
    path = SHARED.joinpath("data", *parts)
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data folder beside the repo; CI always has it)")
    return path


@pytest.fixture(scope="session")
def dashcam_clip() -> Path:
    return shared_file("video", "dashcam_solidWhiteRight.mp4")


@pytest.fixture(scope="session")
def demo_clip() -> Path:
    from camstream.stream.config import demo_clip

    return Path(demo_clip())


def skimage_rgb(name: str) -> np.ndarray:
    data = pytest.importorskip("skimage.data", reason="scikit-image (test extra) provides the sample photos")
    return getattr(data, name)()


@pytest.fixture(scope="session")
def chelsea_rgb() -> np.ndarray:
    return skimage_rgb("chelsea")


@pytest.fixture(scope="session")
def cat_on_canvas(chelsea_rgb) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The cat photo pasted into the lower-right of a plain grey canvas twice its size, and its box.

    Returns (BGR image, (left, top, right, bottom)): a heatmap that is right must sit inside that box.
    """
    cat = cv2.cvtColor(chelsea_rgb, cv2.COLOR_RGB2BGR)
    height, width = cat.shape[:2]
    canvas = np.full((2 * height, 2 * width, 3), 127, np.uint8)
    canvas[height:, width:] = cat
    return canvas, (width, height, 2 * width, 2 * height)


@pytest.fixture(scope="session")
def effnet():
    from camstream.model.load import load_model

    return load_model()


def random_weights_model(name: str):
    from camstream.model.load import load_model

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(name)


def to_batch(spec, images_rgb: list[np.ndarray]) -> torch.Tensor:
    """Resize (area) and normalise RGB images for `spec` into a fresh batch tensor."""
    from camstream.model.preprocess import Preprocessor

    height, width = spec.input_size
    small = [cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA) for image in images_rgb]
    return Preprocessor(spec, len(small))(small).clone()


def mounted_tmpfs(disk: Path, options: str, needed_by: str) -> Iterator[Path]:
    """A real tmpfs mounted at `disk` with `options` (e.g. "size=1536k", "ro,size=1m") for the length of a
    fixture, unmounted afterwards; a skip naming `needed_by` where mounting is refused (it needs root in a machine
    that allows mounts, as CI is)."""
    disk.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'mount refused'}): {needed_by} need "
                    "root in a machine that allows mounts (CI runs them)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
