"""Model input: an image file read whole (`read_image`: a damaged one is said, not guessed at) → a BGR image →
uint8 RGB at the model's size, stretched, letterboxed or centre-cropped (`Placement`, `resize_to_rgb`) →
normalised (`Normaliser` for [0, 1] tensors, `Preprocessor` for a preallocated, channels-last batch of uint8
frames). The one home of all three."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from camstream.model.card import RESIZE_MODES

if TYPE_CHECKING:  # torch is imported by the classes that use it: resize_to_rgb serves torch-free runs too
    import torch


class Normalisation(Protocol):
    """What preprocessing reads of a model: a `ModelSpec`, or a `ModelCard` that gives all three."""

    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def image_damage(data: bytes) -> str | None:
    """Why an image file's bytes are damaged, or None: a JPEG whose image ends before its end-of-image marker
    (the file was cut off), a PNG without its closing IEND chunk after its last image data. Decoders fill what is
    missing with grey and say nothing, so these are read from the file's own structure; data after the end (a
    phone's appended video, metadata) is allowed."""
    if data[:2] == b"\xff\xd8":
        return _jpeg_damage(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data.rfind(b"IEND") < data.rfind(b"IDAT"):
        return "a truncated PNG (no IEND chunk after its image data)"
    return None


_IN_SCAN = frozenset((0x00, 0xFF, *range(0xD0, 0xD8)))  # after 0xFF inside a scan: stuffing, fill, restarts


def _jpeg_damage(data: bytes) -> str | None:
    """None when the JPEG's marker segments (each skipped by its length, so an embedded thumbnail is not read),
    its scans (entropy-coded data up to the next real marker) and its end-of-image marker are all there; else
    why not: the file ends first (truncated), or a marker is missing where one must be (corrupt)."""
    position = 2
    while position + 2 <= len(data):
        if data[position] != 0xFF:
            return f"a corrupt JPEG (no marker where one must be, at byte {position}: its header or data is broken)"
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xD9:  # end of image
            return None
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # restart markers and TEM carry no length
            position += 2
            continue
        if position + 4 > len(data):
            break
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            position = _scan_end(data, position)
    return "a truncated JPEG (it ends before its image does)"


def _scan_end(data: bytes, position: int) -> int:
    """Where the entropy-coded data from `position` ends: the next 0xFF that is not stuffing, fill or a restart
    marker (len(data) when the file ends first)."""
    while True:
        position = data.find(b"\xff", position)
        if position < 0 or position + 1 >= len(data):
            return len(data)
        if data[position + 1] not in _IN_SCAN:
            return position
        position += 1


def read_image(path: str) -> np.ndarray:
    """The image at `path` as H×W×3 uint8 BGR (grey and alpha images converted); an InputError when it is
    missing, a folder, unreadable or damaged (`image_damage`)."""
    import os

    from camstream.errors import InputError

    if not os.path.exists(path):
        raise InputError(f"no such file: {path}")
    if os.path.isdir(path):
        raise InputError(f"{path} is a directory, not an image")
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not data:
        raise InputError(f"{path} is empty (0 bytes)")
    damage = image_damage(data)
    if damage:
        raise InputError(f"{path} is damaged: {damage}")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise InputError(f"cannot read {path} as an image")
    return image


def read_images(folder: str, names: list[str], limit: int | None = None
                ) -> tuple[list[tuple[str, np.ndarray]], list[dict[str, str]]]:
    """The images `names` of `folder` (BGR, at most `limit`), and those skipped as unreadable or damaged, with
    the reason ({file, reason})."""
    import os

    from camstream.errors import InputError

    images, skipped = [], []
    for name in names:
        if limit is not None and len(images) == limit:
            break
        try:
            images.append((name, read_image(os.path.join(folder, name))))
        except InputError as exc:
            skipped.append({"file": name, "reason": str(exc).split(": ", 1)[-1]})
    return images, skipped


@dataclass(frozen=True)
class Placement:
    """How a frame of `frame_size` becomes a model input of `model_size` (both (height, width)) under `mode`.

    The frame is scaled to `scaled` (height, width) and put at `offset` (top, left) in the model input:
    stretch scales each axis to fit; letterbox scales by min(H/h, W/w), keeping the aspect ratio, and pads with
    black (a positive offset); crop scales by max(H/h, W/w) and keeps the centre (a negative offset).
    `frame_window` is the part of the frame the model sees, `model_window` the part of the model input that
    shows the frame: a map over the model input is drawn over the frame through them.
    """

    frame_size: tuple[int, int]
    model_size: tuple[int, int]
    mode: str
    scaled: tuple[int, int]
    offset: tuple[int, int]

    @staticmethod
    @lru_cache(maxsize=64)
    def of(frame_size: tuple[int, int], model_size: tuple[int, int], mode: str = "stretch") -> Placement:
        """The placement of a `frame_size` frame into a `model_size` input by `mode` (see the class)."""
        if mode not in RESIZE_MODES:
            raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, not {mode!r}")
        (frame_h, frame_w), (model_h, model_w) = frame_size, model_size
        if mode == "stretch" or (frame_h * model_w == frame_w * model_h):
            return Placement(frame_size, model_size, mode, model_size, (0, 0))
        pick = min if mode == "letterbox" else max
        scale = pick(model_h / frame_h, model_w / frame_w)
        scaled_h, scaled_w = (max(1, round(frame_h * scale)), max(1, round(frame_w * scale)))
        if mode == "letterbox":
            scaled_h, scaled_w = min(scaled_h, model_h), min(scaled_w, model_w)
        else:
            scaled_h, scaled_w = max(scaled_h, model_h), max(scaled_w, model_w)
        offset = ((model_h - scaled_h) // 2, (model_w - scaled_w) // 2) if mode == "letterbox" else (
            -((scaled_h - model_h) // 2), -((scaled_w - model_w) // 2))
        return Placement(frame_size, model_size, mode, (scaled_h, scaled_w), offset)

    @property
    def whole(self) -> bool:
        """True when the whole frame fills the whole model input (stretch, or equal aspect ratios)."""
        return self.offset == (0, 0) and self.scaled == self.model_size

    def model_input(self, scaled: np.ndarray) -> np.ndarray:
        """The model input made of `scaled` (the frame already scaled to `self.scaled`, H×W×C): padded with
        black (letterbox) or centre-cropped (crop); `scaled` itself when it already is the model input."""
        if self.whole:
            return scaled
        (model_h, model_w), (top, left) = self.model_size, self.offset
        if top >= 0 and left >= 0:
            canvas = np.zeros((model_h, model_w, *scaled.shape[2:]), dtype=scaled.dtype)
            canvas[top:top + scaled.shape[0], left:left + scaled.shape[1]] = scaled
            return canvas
        return np.ascontiguousarray(scaled[-top:-top + model_h, -left:-left + model_w])

    def model_window(self) -> tuple[slice, slice]:
        """Rows and columns of the model input that show the frame."""
        top, left = max(self.offset[0], 0), max(self.offset[1], 0)
        return (slice(top, top + min(self.scaled[0], self.model_size[0])),
                slice(left, left + min(self.scaled[1], self.model_size[1])))

    def visible_boxes(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes (K, 4) x1 y1 x2 y2 in model-input pixels, clipped to the part of the input that shows the frame
        (a box reaching into letterbox padding loses what lies there)."""
        rows, cols = self.model_window()
        found = np.array(boxes, dtype=np.float32).reshape(-1, 4)
        found[:, 0::2] = np.clip(found[:, 0::2], cols.start, cols.stop)
        found[:, 1::2] = np.clip(found[:, 1::2], rows.start, rows.stop)
        return found

    def boxes_to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """Boxes (K, 4) x1 y1 x2 y2 in model-input pixels as frame pixels (float32): their visible part
        (`visible_boxes`), clipped to the frame. A box wholly in the padding comes out empty (x1 = x2 or y1 = y2)."""
        (frame_h, frame_w), (scaled_h, scaled_w), (top, left) = self.frame_size, self.scaled, self.offset
        found = self.visible_boxes(boxes)
        frame = np.empty_like(found)
        frame[:, 0::2] = np.clip((found[:, 0::2] - left) * (frame_w / scaled_w), 0, frame_w)
        frame[:, 1::2] = np.clip((found[:, 1::2] - top) * (frame_h / scaled_h), 0, frame_h)
        return frame

    def frame_point(self, row: int, column: int) -> tuple[int, int] | None:
        """The frame pixel under model-input pixel (`row`, `column`) (centre to centre), or None where the input
        shows no frame there (letterbox padding)."""
        point = []
        for place, frame, scaled, offset in zip((row, column), self.frame_size, self.scaled, self.offset,
                                                strict=True):
            inside = place - offset  # its place in the scaled frame
            if not 0 <= inside < scaled:
                return None
            point.append(min(frame - 1, max(0, int((inside + 0.5) * frame / scaled))))
        return point[0], point[1]

    def frame_window(self) -> tuple[slice, slice]:
        """Rows and columns of the frame that the model sees."""
        windows = []
        for frame, model, scaled, offset in zip(self.frame_size, self.model_size, self.scaled, self.offset,
                                                strict=True):
            if offset >= 0:
                windows.append(slice(0, frame))
            else:
                windows.append(slice(round(-offset * frame / scaled), round((model - offset) * frame / scaled)))
        return windows[0], windows[1]


def resize_to_rgb(image_bgr: np.ndarray, size: tuple[int, int], mode: str = "stretch") -> np.ndarray:
    """`image_bgr` (H×W×3 uint8) resized by area to the model input `size` (height, width) by `mode`
    (stretch, letterbox or crop: `Placement`) and turned RGB, as models take it."""
    placement = Placement.of(image_bgr.shape[:2], tuple(size), mode)
    height, width = placement.scaled
    scaled = cv2.cvtColor(cv2.resize(image_bgr, (width, height), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    return placement.model_input(scaled)


def resize_mask(mask: np.ndarray, size: tuple[int, int], mode: str = "stretch") -> np.ndarray:
    """A bool mask over a frame (H×W) placed on the model input of `size` exactly as `resize_to_rgb` places the
    frame (nearest neighbour; letterbox padding is False, what crop cuts off is gone)."""
    placement = Placement.of(mask.shape[:2], tuple(size), mode)
    height, width = placement.scaled
    scaled = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    return placement.model_input(scaled).astype(bool)


class Normaliser:
    """x = (pixels − mean) / std for (B, 3, H, W) pixels in [0, 1], with the mean and std of `spec` (a model's
    spec, or a `ModelCard` that gives both)."""

    def __init__(self, spec: Normalisation) -> None:
        import torch

        self.mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.mean) / self.std


class Preprocessor:
    """Holds one (max_batch, 3, H, W) float32 channels-last tensor on the model's device and fills it in place.

    x = (pixel / 255 - mean) / std, done as one fused multiply-add per channel. On a GPU the uint8 frames are
    gathered in one pinned host buffer and go to the device in one copy per batch.
    """

    def __init__(self, spec: Normalisation, max_batch: int, device: str | torch.device = "cpu") -> None:
        import torch

        height, width = spec.input_size
        self.size = (height, width)
        self.device = torch.device(device)
        self.batch = torch.empty(max_batch, 3, height, width, device=self.device).to(
            memory_format=torch.channels_last)
        self._nhwc = self.batch.permute(0, 2, 3, 1)  # a view: channels-last storage seen as NHWC
        self._staging = None
        if self.device.type != "cpu":
            self._staging = torch.empty(max_batch, height, width, 3, dtype=torch.uint8, pin_memory=True)
        std = torch.tensor(spec.std, dtype=torch.float32, device=self.device)
        self._scale = 1.0 / (255.0 * std)
        self._shift = -torch.tensor(spec.mean, dtype=torch.float32, device=self.device) / std

    def __call__(self, frames: list[np.ndarray]) -> torch.Tensor:
        """Normalise `frames` (each H×W×3 uint8 RGB at the model's size) into the batch; return its view."""
        import torch

        count = len(frames)
        if count > self.batch.shape[0]:
            raise ValueError(f"{count} frames exceed the preallocated batch of {self.batch.shape[0]}")
        with torch.inference_mode(False), torch.no_grad():
            filled = self._nhwc if self._staging is None else self._staging
            for index, frame in enumerate(frames):
                filled[index].copy_(torch.from_numpy(frame))
            if self._staging is not None:  # one host-to-device copy for the batch
                self._nhwc[:count].copy_(self._staging[:count], non_blocking=True)
            view = self._nhwc[:count]
            view.mul_(self._scale).add_(self._shift)
        return self.batch[:count]
