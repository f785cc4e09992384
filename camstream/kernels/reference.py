"""Plain NumPy / OpenCV versions of the kernels: the oracles the tests and benchmarks compare against."""

from __future__ import annotations

import cv2
import numpy as np


def simplify_reference(cam: np.ndarray, keep_percent: float) -> np.ndarray:
    """Seed 3.4.1 as written: zero every value not above np.percentile(cam, 100 - P)."""
    threshold = np.percentile(cam, 100.0 - keep_percent)
    return np.where(cam > threshold, cam, 0).astype(cam.dtype)


def dynamic_threshold_reference(cam: np.ndarray, min_area_percent: float, max_threshold: float,
                                step: float) -> float:
    """Seed 3.4.2 as written, returning the threshold it settles on."""
    best = 0.0
    for index in range(int(np.floor(max_threshold / step + 1e-9)) + 1):
        threshold = index * step
        if np.count_nonzero(cam > threshold) / cam.size < min_area_percent / 100.0:
            break
        best = threshold
    return best


def upsample_reference(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """cv2.resize with INTER_LINEAR to (height, width)."""
    return cv2.resize(cam.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def overlay_reference(frame: np.ndarray, cam: np.ndarray, threshold: float, colormap: int = cv2.COLORMAP_JET,
                      alpha: float = 0.45) -> np.ndarray:
    """The OpenCV chain: resize → applyColorMap → addWeighted, then keep the frame where cam ≤ threshold."""
    up = cv2.resize(cam.astype(np.float32), (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_LINEAR)
    levels = np.clip(np.rint(up * 255.0), 0, 255).astype(np.uint8)
    heat = cv2.applyColorMap(levels, colormap)
    blend = cv2.addWeighted(frame, 1.0 - alpha, heat, alpha, 0.0)
    mask = (up > threshold).view(np.uint8)
    out = frame.copy()
    cv2.copyTo(blend, mask, out)
    return out


def kept_regions_reference(frame: np.ndarray, cam: np.ndarray, keep_percents: tuple[float, ...]) -> np.ndarray:
    """The faithful threshold's masked batch in NumPy: the frame where cv2's bilinear upsample of `cam` is above
    its np.percentile(100 − P), else 0, for each P."""
    upsampled = upsample_reference(cam, frame.shape[:2])
    batch = []
    for keep in keep_percents:
        threshold = -np.inf if keep >= 100 else np.percentile(upsampled, 100.0 - keep)
        batch.append(np.where((upsampled > threshold)[..., None], frame, 0).astype(frame.dtype))
    return np.stack(batch)
