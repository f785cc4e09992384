"""`camstream explain`: one image in, one overlay PNG and a summary out."""

from __future__ import annotations

import os
import time

import cv2
import numpy as np

from camstream.backends import BackendRequest, make_backend
from camstream.errors import InputError, OutputError
from camstream.explain.drawing import HeatmapPainter
from camstream.explain.faithful import CANDIDATES, NOT_FOR_DETECTORS, FaithfulSearch
from camstream.model.card import ModelCard
from camstream.model.preprocess import Placement, read_image, resize_to_rgb
from camstream.storage import check_writable_folder
from camstream.threshold_spec import ThresholdSpec


def box_summaries(found, image_size: tuple[int, int], explainer) -> list[dict]:
    """Each box as the image's pixels (x1 y1 x2 y2), with its class id, label and score, best first."""
    placement = Placement.of(image_size, tuple(explainer.input_size), explainer.resize)
    on_image = placement.boxes_to_frame(found.boxes)
    return [{"class_id": int(label), "label": explainer.label(int(label)), "score": round(float(score), 6),
             "box": [round(float(v), 1) for v in box]}
            for label, score, box in zip(found.labels, found.scores, on_image, strict=True)]


def explain_image(path: str, out: str, model: str = "efficientnet_lite0", method: str | None = None,
                  threshold: ThresholdSpec | None = None, class_id: int | None = None, weights: str | None = None,
                  layer: str | None = None, backend: str | None = None, device: str = "auto",
                  card: ModelCard | None = None) -> dict:
    """Explain the image at `path`, write the overlay (at the image's size) to `out`, return the summary.
    `card` holds the model facts the options give (`camstream.model.card`)."""
    image = read_image(path)
    if os.path.splitext(out)[1].lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".webp"):
        raise InputError(f"cannot write {out}: use a .png or .jpg name")
    check_writable_folder(os.path.dirname(os.path.abspath(out)))  # before the model loads, not after it ran
    spec = threshold or ThresholdSpec(dynamic=True)
    batch = len(CANDIDATES) if spec.faithful is not None else 1  # the faithful search's candidates are one batch
    explainer = make_backend(BackendRequest(backend, model, method, weights, layer, max_batch=batch, freeze=False,
                                            device=device, card=card))
    painter = HeatmapPainter(spec, model_size=explainer.input_size, resize=explainer.resize)
    kept = None
    try:
        rgb = resize_to_rgb(image, explainer.input_size, explainer.resize)
        start = time.perf_counter()
        result = explainer.explain([rgb], class_id)
        elapsed_ms = (time.perf_counter() - start) * 1e3
        cam = np.array(result.maps[0], dtype=np.float32) if result.boxes is None else np.empty((0, 0), np.float32)
        if spec.faithful is not None:
            if result.boxes is not None:
                raise InputError(f"--threshold faithful {NOT_FOR_DETECTORS}")
            kept = FaithfulSearch(spec.faithful)(rgb, cam, int(result.class_ids[0]), float(result.scores[0]),
                                                 explainer.class_scores)
    finally:
        explainer.close()
    overlaid = np.empty_like(image)
    found = None if result.boxes is None else result.frame_detections(0)
    if found is not None:
        painter.paint_boxes(image, found, overlaid, explainer.label)
    else:
        painter.paint(image, cam, overlaid, None if kept is None else kept.threshold)
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    if not cv2.imwrite(out, overlaid):
        raise OutputError(f"cannot write {out}")
    common = {"method": explainer.method, "layer": explainer.layer, "backend": explainer.name,
              "input_size": list(explainer.input_size), "resize": explainer.resize, "threshold": str(painter.spec),
              "ms": round(elapsed_ms, 3), "out": out}
    if found is not None:
        return {"boxes": box_summaries(found, image.shape[:2], explainer), "cam_shape": list(found.cams.shape[1:]),
                **common}
    target = int(result.class_ids[0])
    return {"class_id": target, "label": explainer.label(target), "score": round(float(result.scores[0]), 6),
            "method": explainer.method, "layer": explainer.layer, "backend": explainer.name,
            "cam_shape": list(cam.shape), "input_size": list(explainer.input_size), "resize": explainer.resize,
            "threshold": str(painter.spec), "ms": round(elapsed_ms, 3), "out": out,
            **({} if kept is None else {"faithful": {"keep_percent": kept.keep_percent, "retained": kept.retained,
                                                     "reached": kept.reached}})}
