"""Ground truth readers: VIA polygon JSON, `label left top right bottom` box files, or mask PNGs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from camstream.errors import InputError
from camstream.model.preprocess import read_images, resize_to_rgb

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass
class Sample:
    """One image (BGR), its ground-truth mask (bool, same size; None when there is none) and, for box files, its
    labelled boxes (label, left, top, right, bottom) in pixels."""

    name: str
    image: np.ndarray
    truth: np.ndarray | None
    boxes: list[tuple[str, int, int, int, int]] = field(default_factory=list)


def _via_masks(folder: str) -> dict[str, list[tuple[list[int], list[int]]]]:
    """filename → polygons, from every VIA JSON file in `folder`."""
    polygons: dict[str, list] = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(folder, name)) as handle:
            entries = json.load(handle)
        for entry in entries.values():
            regions = entry.get("regions") or {}
            regions = regions.values() if isinstance(regions, dict) else regions
            polygons.setdefault(entry["filename"], []).extend(
                (r["shape_attributes"]["all_points_x"], r["shape_attributes"]["all_points_y"]) for r in regions
                if r.get("shape_attributes", {}).get("name") == "polygon")
    return polygons


def check_data_folder(folder: str) -> None:
    """An InputError unless `folder` is a folder (said before any model loads)."""
    if os.path.isfile(folder):
        raise InputError(f"{folder} is a file, not a folder: --data takes a folder of images")
    if not os.path.isdir(folder):
        raise InputError(f"no such folder: {folder}")


def load_samples(folder: str, limit: int | None = None) -> tuple[list[Sample], list[dict[str, str]]]:
    """Images of `folder` with ground truth from a VIA JSON beside them, from `ground-truth/<name>.txt` boxes
    (images in `images/`), or from `<name>_mask.png`; images without any of these get `truth=None`. Files that
    cannot be read or are damaged are skipped and returned with the reason ({file, reason}); an InputError when
    none is left."""
    check_data_folder(folder)
    image_dir = os.path.join(folder, "images") if os.path.isdir(os.path.join(folder, "images")) else folder
    names = sorted(n for n in os.listdir(image_dir) if n.lower().endswith(IMAGE_SUFFIXES) and "_mask." not in n)
    if not names:
        raise InputError(f"no images in {image_dir}")
    polygons = _via_masks(folder)
    samples = []
    images, skipped = read_images(image_dir, names, limit)
    for name, image in images:
        truth, labelled = _ground_truth(folder, image_dir, name, image.shape[:2], polygons)
        samples.append(Sample(name, image, None if truth is None else truth.astype(bool), labelled))
    if not samples:
        reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:3])
        raise InputError(f"no readable image in {image_dir} ({len(skipped)} skipped: {reasons})")
    return samples, skipped


def _ground_truth(folder: str, image_dir: str, name: str, shape: tuple[int, int],
                  polygons: dict[str, list]) -> tuple[np.ndarray | None, list[tuple[str, int, int, int, int]]]:
    """The truth mask of image `name` (VIA polygons, a box file or a mask PNG; None without any) and its labelled
    boxes."""
    truth = None
    labelled: list[tuple[str, int, int, int, int]] = []
    stem = os.path.splitext(name)[0]
    boxes = os.path.join(folder, "ground-truth", stem + ".txt")
    mask_png = os.path.join(image_dir, stem + "_mask.png")
    if name in polygons:
        truth = np.zeros(shape, np.uint8)
        for xs, ys in polygons[name]:
            cv2.fillPoly(truth, [np.stack([xs, ys], 1).astype(np.int32)], 1)
    elif os.path.exists(boxes):
        truth = np.zeros(shape, np.uint8)
        with open(boxes) as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 5:
                    left, top, right, bottom = (int(float(v)) for v in parts[-4:])
                    truth[top:bottom + 1, left:right + 1] = 1
                    labelled.append((" ".join(parts[:-4]), left, top, right, bottom))
    elif os.path.exists(mask_png):
        mask = cv2.imread(mask_png, cv2.IMREAD_GRAYSCALE)
        truth = None if mask is None else (mask > 0).astype(np.uint8)
    return truth, labelled


def load_clip_frames(path: str, count: int, size: tuple[int, int], resize: str = "stretch") -> np.ndarray:
    """The first `count` frames of a video, decoded by PyAV and placed on the model input of `size` (H, W) by
    `resize` as a stream places them (`resize_to_rgb`): (T, H, W, 3) RGB."""
    import av

    frames = []
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise InputError(f"{path} has no video stream (give --video a video clip, or --video none)")
            for frame in container.decode(video=0):
                frames.append(resize_to_rgb(frame.to_ndarray(format="bgr24"), size, resize))
                if len(frames) == count:
                    break
    except (av.error.FFmpegError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise InputError(f"cannot decode {path}: {reason} (give --video a playable clip, or --video none)") from exc
    if len(frames) < 2:
        raise InputError(f"{path} has {len(frames)} frame(s); temporal stability needs at least 2")
    return np.stack(frames)
