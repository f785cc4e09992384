"""Threshold-based simplification (seed paper 3.4.1 SimplifyGradCAM, 3.4.2 DynamicThreshold): the one place a
`ThresholdSpec` becomes a value (`threshold_value`) and a kept map (`thresholded`).

A spec is applied on the grid of the values it is given, and each caller says which: the map's own cells
(`Explanation.threshold`), the painter's 64×64 bilinear proxy of the map (`HeatmapPainter`, what a frame shows),
the model input (`camstream eval`, where the metrics perturb pixels), the clip's steps (the render's strip). The
faithful threshold's keep-percentage is chosen per map elsewhere (`camstream.explain.faithful`) and applied
here as a plain percentage.

Non-finite CAM values (NaN, ±inf) count as 0 everywhere here, so a broken map never crashes the render
path: it simply shows nothing.
"""

from __future__ import annotations

import math

import numpy as np

from camstream.kernels.jit import kernel
from camstream.threshold_spec import ThresholdSpec


@kernel(nogil=True)
def _finite_copy(values, scratch):
    flat = values.ravel()
    for i in range(flat.size):
        v = flat[i]
        scratch[i] = v if math.isfinite(v) else 0.0


@_finite_copy.twin
def _finite_copy_numpy(values, scratch):
    flat = values.ravel()
    scratch[:flat.size] = np.where(np.isfinite(flat), flat, 0.0)


@kernel(nogil=True)
def _select(a, k):
    """k-th smallest of `a` (0-based) by Hoare-partition quickselect; reorders `a` in place.

    Afterwards a[:k] <= a[k] <= a[k+1:], so the next order statistic is min(a[k+1:]).
    """
    lo = 0
    hi = a.size - 1
    while hi > lo:
        mid = (lo + hi) // 2
        x, y, z = a[lo], a[mid], a[hi]
        pivot = max(min(x, y), min(max(x, y), z))  # median of three
        i = lo
        j = hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return a[k]
    return a[k]


@_select.twin
def _select_numpy(a, k):
    a.partition(k)  # the same order statistic, and the same a[:k] <= a[k] <= a[k+1:] afterwards
    return a[k]


def _percentile(values: np.ndarray, q: float, scratch: np.ndarray) -> float:
    n = values.size
    _finite_copy(values, scratch)
    rank = q / 100.0 * (n - 1)
    low = int(math.floor(rank))
    frac = rank - low
    # + 0.0 turns -0.0 into 0.0: kernel and twin may select different zeros of equal value
    below = float(_select(scratch[:n], low)) + 0.0
    if frac == 0.0 or low + 1 >= n:
        return below
    above = float(scratch[low + 1:n].min()) + 0.0
    # numpy's lerp: exact at both ends
    if frac >= 0.5:
        return above - (above - below) * (1.0 - frac)
    return below + (above - below) * frac


def percentile(values: np.ndarray, q: float, scratch: np.ndarray | None = None) -> float:
    """The q-th percentile of `values` with `np.percentile`'s linear interpolation, by selection (no sort).

    `scratch` (same size, float32/64) avoids an allocation; it is overwritten.
    """
    if values.size == 0:
        raise ValueError("percentile of an empty array")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q={q} outside 0..100")
    if scratch is None:
        scratch = np.empty(values.size, dtype=np.float64)
    return _percentile(np.ascontiguousarray(values), float(q), scratch)


@kernel(nogil=True)
def _simplify(cam, threshold, out):
    src = cam.ravel()
    dst = out.ravel()
    for i in range(src.size):
        v = src[i]
        dst[i] = v if (math.isfinite(v) and v > threshold) else 0.0


@_simplify.twin
def _simplify_numpy(cam, threshold, out):
    # compared in float64, as the kernel does (a float64 scalar alone compares in float32 under NumPy 1.x's rules)
    kept = np.isfinite(cam) & (cam.astype(np.float64) > threshold)
    out[...] = np.where(kept, cam, 0.0)


def simplify(cam: np.ndarray, keep_percent: float, out: np.ndarray | None = None) -> np.ndarray:
    """SimplifyGradCAM: out = cam where cam > percentile(cam, 100 - P), else 0 (keeps the top P %)."""
    return thresholded(cam, ThresholdSpec(keep_percent=keep_percent), out)


def thresholded(cam: np.ndarray, spec: ThresholdSpec, out: np.ndarray | None = None) -> np.ndarray:
    """out = cam where cam > `threshold_value(cam, spec)`, else 0, on the grid `cam` is on."""
    if out is None:
        out = np.empty(cam.shape, cam.dtype)  # C order (empty_like would keep a transposed map's order)
    if cam.size == 0:
        return out
    kept = out if out.flags.c_contiguous else np.empty(cam.shape, out.dtype)  # the kernel writes through ravel
    _simplify(np.ascontiguousarray(cam), threshold_value(cam, spec), kept)
    if kept is not out:
        out[...] = kept
    return out


@kernel(nogil=True)
def _dynamic_threshold(cam, min_area, max_threshold, step):
    flat = cam.ravel()
    n = flat.size
    best = 0.0
    steps = int(math.floor(max_threshold / step + 1e-9))
    for s in range(steps + 1):
        t = s * step
        kept = 0
        for i in range(n):
            v = flat[i]
            if math.isfinite(v) and v > t:
                kept += 1
        if kept < min_area * n:
            break
        best = t
    return best


@_dynamic_threshold.twin
def _dynamic_threshold_numpy(cam, min_area, max_threshold, step):
    flat = cam.ravel().astype(np.float64)  # compared in float64, as the kernel does
    flat[~np.isfinite(flat)] = -np.inf
    best = 0.0
    for s in range(int(math.floor(max_threshold / step + 1e-9)) + 1):
        t = s * step
        if np.count_nonzero(flat > t) < min_area * flat.size:
            break
        best = t
    return best


def dynamic_threshold(cam: np.ndarray, min_area_percent: float = 5.0, max_threshold: float = 0.5,
                      step: float = 0.05) -> float:
    """DynamicThreshold: the largest t in {0, step, 2·step, … ≤ max_threshold} whose coverage
    |{cam > t}| / |cam| stays ≥ min_area_percent / 100, stopping at the first t that falls below.
    """
    if step <= 0:
        raise ValueError("dynamic threshold step must be > 0")
    if cam.size == 0:
        return 0.0
    return float(_dynamic_threshold(np.ascontiguousarray(cam), min_area_percent / 100.0, max_threshold, step))


def threshold_value(cam: np.ndarray, spec: ThresholdSpec, scratch: np.ndarray | None = None) -> float:
    """The map value above which pixels are shown under `spec` (-inf: show all)."""
    if cam.size == 0:
        return -math.inf
    if spec.dynamic:
        return dynamic_threshold(cam, spec.min_area_percent, spec.max_threshold, spec.step)
    if spec.keep_percent is None or spec.keep_percent >= 100:
        return -math.inf
    return percentile(cam, 100.0 - spec.keep_percent, scratch)
