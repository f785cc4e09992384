"""Painting an explanation over its picture, the one home for the stream, `camstream explain` and the API:
`HeatmapPainter` (a thresholded map, or each detected box's own map inside its box, blended by the fused kernel)
and `overlay(image, result)` for the Python API (pytorch-grad-cam's `show_cam_on_image`, torchcam's
`overlay_mask`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from camstream.explain.result import Explanation, FrameDetections, ModelKind
from camstream.kernels import colormap_lut, threshold_value, upsample_bilinear
from camstream.kernels import overlay as overlay_kernel
from camstream.model.preprocess import Placement
from camstream.threshold_spec import ThresholdSpec

FONT = cv2.FONT_HERSHEY_SIMPLEX
LEGIBLE_SCALE = 0.3  # below this Hershey text is not readable


PROXY_SIDE = 64  # percentiles are taken on a 64×64 bilinear upsample: same distribution, far fewer pixels


class HeatmapPainter:
    """Threshold a CAM by `spec` and blend it over a frame; owns its lookup table and scratch buffers.

    A map over a `model_size` input that was letterboxed or cropped from the frame (`resize`) is drawn through
    the frame's `Placement`: over the part of the frame the model saw, from the part of the map that shows it.
    `fixed_threshold` (a map value) replaces the spec's search when given.
    """

    def __init__(self, spec: ThresholdSpec, colormap: str = "jet", alpha: float = 0.45,
                 model_size: tuple[int, int] | None = None, resize: str = "stretch",
                 fixed_threshold: float | None = None) -> None:
        self.spec = spec
        self.fixed_threshold = fixed_threshold
        self.alpha = alpha
        self.lut = colormap_lut(colormap)
        self.model_size = model_size
        self.resize = resize
        self._proxy = np.empty((PROXY_SIDE, PROXY_SIDE), dtype=np.float32)
        self._scratch = np.empty(PROXY_SIDE * PROXY_SIDE, dtype=np.float64)
        self._model_map: np.ndarray | None = None

    def threshold(self, cam: np.ndarray) -> float:
        """The map value above which the heatmap is drawn (-inf: everywhere)."""
        spec = self.spec
        if self.fixed_threshold is not None:
            return float(self.fixed_threshold)
        if spec.keep_percent is None and not spec.dynamic:
            return -np.inf
        upsample_bilinear(cam, self._proxy.shape, self._proxy)
        return threshold_value(self._proxy, spec, self._scratch)

    def paint(self, frame: np.ndarray, cam: np.ndarray, out: np.ndarray, at: float | None = None) -> float:
        """Write frame + heatmap into `out`, shown where the map is above `at` (a map value: a faithful
        threshold's cut) or else above the painter's own threshold; returns the threshold used."""
        placement = None
        if self.resize != "stretch" and self.model_size is not None:
            placement = Placement.of(frame.shape[:2], self.model_size, self.resize)
        if placement is None or placement.whole:
            threshold = self.threshold(cam) if at is None else at
            overlay_kernel(frame, cam, threshold, self.lut, self.alpha, out)
            return threshold
        if self._model_map is None or self._model_map.shape != placement.model_size:
            self._model_map = np.empty(placement.model_size, np.float32)
        seen = upsample_bilinear(cam, placement.model_size, self._model_map)[placement.model_window()]
        if out is not frame:
            np.copyto(out, frame)
        window = out[placement.frame_window()]
        threshold = self.threshold(seen) if at is None else at
        overlay_kernel(window, seen, threshold, self.lut, self.alpha, window)
        return threshold


    def paint_boxes(self, frame: np.ndarray, found: FrameDetections, out: np.ndarray,
                    label: Callable[[int], str]) -> None:
        """Write frame + each box's own heatmap, inside that box, into `out`; then each box's outline and its
        label and score. The best box is painted last, so it is whole where boxes overlap. A frame with no box
        is copied plain."""
        if out is not frame:
            np.copyto(out, frame)
        model_size = self.model_size or frame.shape[:2]
        placement = Placement.of(frame.shape[:2], tuple(model_size), self.resize)
        visible = placement.visible_boxes(found.boxes)  # the map is sliced from the part that shows the frame
        on_frame = placement.boxes_to_frame(found.boxes)
        if self._model_map is None or self._model_map.shape != tuple(model_size):
            self._model_map = np.empty(tuple(model_size), np.float32)
        for index in reversed(range(len(found.scores))):
            x1, y1, x2, y2 = _pixels(on_frame[index])
            mx1, my1, mx2, my2 = _pixels(visible[index], model_size)
            if x2 <= x1 or y2 <= y1 or mx2 <= mx1 or my2 <= my1:
                continue
            upsample_bilinear(found.cams[index], tuple(model_size), self._model_map)
            seen = cv2.resize(self._model_map[my1:my2, mx1:mx2], (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
            window = out[y1:y2, x1:x2]
            overlay_kernel(window, seen, self.threshold(seen), self.lut, self.alpha, window)
        for index in range(len(found.scores)):
            box = _pixels(on_frame[index])
            if box[2] > box[0] and box[3] > box[1]:  # a box wholly in the padding is not on the frame
                draw_box(out, box, f"{label(int(found.labels[index]))} {float(found.scores[index]):.2f}",
                         BOX_COLOURS[index % len(BOX_COLOURS)])


BOX_COLOURS = ((255, 255, 255), (0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 255, 0))  # BGR, best box first


def _pixels(box: np.ndarray, size: tuple[int, int] | None = None) -> tuple[int, int, int, int]:
    """A box's x1 y1 x2 y2 as whole pixels (outward), clipped to `size` (height, width) when given."""
    x1, y1, x2, y2 = (int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])), int(np.ceil(box[3])))
    if size is not None:
        x1, x2 = max(0, x1), min(size[1], x2)
        y1, y2 = max(0, y1), min(size[0], y2)
    return x1, y1, x2, y2


def draw_box(canvas: np.ndarray, box: tuple[int, int, int, int], text: str, colour: tuple[int, int, int]) -> None:
    """A box's outline and, above it (inside when it touches the top), its label on a black band."""
    x1, y1, x2, y2 = box
    cv2.rectangle(canvas, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), colour, 1)
    scale = max(LEGIBLE_SCALE, min(canvas.shape[1] / 1600.0, 0.6))
    (width, ascent), descent = cv2.getTextSize(text, FONT, scale, 1)
    top = y1 - ascent - descent - 2 if y1 - ascent - descent - 2 >= 0 else y1
    cv2.rectangle(canvas, (x1, top), (x1 + width + 3, top + ascent + descent + 2), (0, 0, 0), thickness=-1)
    cv2.putText(canvas, text, (x1 + 2, top + ascent + 1), FONT, scale, colour, 1, cv2.LINE_AA)


@lru_cache(maxsize=8)
def _rgb_lut(colormap: str) -> np.ndarray:
    lut = np.ascontiguousarray(colormap_lut(colormap)[:, ::-1])  # the kernels' tables are BGR, as OpenCV's
    lut.setflags(write=False)
    return lut


def overlay(image: Any, result: Explanation, index: int = 0, alpha: float = 0.45, colormap: str = "jet",
            threshold: float | None = None, input_size: tuple[int, int] | None = None,
            labels: tuple[str, ...] = ()) -> np.ndarray:
    """`result`'s map `index` blended over `image` (H×W×3 uint8 RGB NumPy array or PIL image; returns an RGB
    array of the same size): upsampled, coloured by `colormap` and drawn with opacity `alpha` where the map is
    above `threshold` (default: the result's own threshold where it was thresholded, else everywhere).

    out = ((256 − a) · image + a · colormap(v) + 128) >> 8 with a = round(256 · alpha), as the stream draws.

    A detector's result: every box of image `index`, each with its own map inside it (dynamic threshold unless
    `threshold` is given), its outline and `labels[class]` (else "class N") with its score; the boxes are at
    `input_size` (height, width: what `explain` resized to; default the image's own), stretched onto the image.
    """
    pixels = np.ascontiguousarray(np.asarray(image.convert("RGB") if hasattr(image, "convert") else image))
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"overlay(): image must be H×W×3 uint8 RGB, got {pixels.shape} {pixels.dtype}")
    if result.kind == ModelKind.DETECTOR:
        painter = HeatmapPainter(ThresholdSpec(dynamic=True), colormap, alpha,
                                 model_size=input_size or pixels.shape[:2], fixed_threshold=threshold)
        painter.lut = _rgb_lut(colormap)
        out = np.empty_like(pixels)
        painter.paint_boxes(pixels, result.frame_detections(index), out,
                            lambda class_id: labels[class_id] if 0 <= class_id < len(labels) else f"class {class_id}")
        return out
    cam = np.ascontiguousarray(result.to_numpy().maps[index], dtype=np.float32)
    if threshold is None:
        threshold = result.thresholds[index] if result.thresholds is not None else -np.inf
    return overlay_kernel(pixels, cam, float(threshold), _rgb_lut(colormap), alpha)
