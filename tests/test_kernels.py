"""Each jitted kernel against its NumPy / OpenCV reference, plus edge cases and fuzzing."""

from __future__ import annotations

import math
import threading

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from camstream.errors import CamstreamError
from camstream.kernels import (
    KeptRegions,
    colormap_lut,
    dynamic_threshold,
    jit,
    overlay,
    percentile,
    simplify,
    threshold_value,
    thresholded,
    upsample_bilinear,
)
from camstream.kernels.reference import (
    dynamic_threshold_reference,
    overlay_reference,
    simplify_reference,
    upsample_reference,
)
from camstream.threshold_spec import ThresholdSpec, parse_threshold

RNG = np.random.default_rng(7)
SHAPES = [(1, 1), (7, 7), (14, 14), (3, 5), (10, 1), (64, 64)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("q", [0, 1, 5, 10, 37.5, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy_linear_interpolation(shape, q):
    cam = RNG.random(shape).astype(np.float32)
    assert percentile(cam, q) == pytest.approx(float(np.percentile(cam.astype(np.float64), q)), rel=1e-12, abs=1e-12)


def test_percentile_handles_ties_and_sorted_inputs():
    for values in (np.zeros(50), np.arange(100.0), np.arange(100.0)[::-1].copy(), np.repeat([1.0, 2.0], 30)):
        for q in (0, 10, 50, 90, 100):
            assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_percentile_rejects_empty_and_out_of_range():
    with pytest.raises(ValueError):
        percentile(np.empty(0), 50)
    with pytest.raises(ValueError):
        percentile(np.ones(3), 101)


@pytest.mark.parametrize("keep", [1, 5, 10, 20, 50, 100])
def test_simplify_keeps_the_top_percent_like_the_seed_algorithm(keep):
    cam = RNG.random((14, 14)).astype(np.float32)
    result = simplify(cam, keep)
    np.testing.assert_array_equal(result, simplify_reference(cam, keep) if keep < 100 else cam)
    kept = np.count_nonzero(result) / cam.size * 100
    assert kept <= keep + 100 / cam.size


@pytest.mark.parametrize("min_area,max_threshold,step", [(5, 0.5, 0.05), (30, 0.9, 0.1), (90, 0.5, 0.05),
                                                         (0.5, 1.0, 0.01)])
def test_dynamic_threshold_matches_seed_algorithm(min_area, max_threshold, step):
    for _ in range(20):
        cam = RNG.random((7, 7)).astype(np.float32) ** RNG.uniform(0.5, 4)
        expected = dynamic_threshold_reference(cam, min_area, max_threshold, step)
        assert dynamic_threshold(cam, min_area, max_threshold, step) == pytest.approx(expected)


def test_dynamic_threshold_keeps_minimum_coverage():
    cam = RNG.random((32, 32)).astype(np.float32)
    threshold = dynamic_threshold(cam, 20, 0.9, 0.05)
    assert np.mean(cam > threshold) >= 0.20
    assert np.mean(cam > threshold + 0.05) < 0.20 or threshold >= 0.9 - 1e-9


@pytest.mark.parametrize("src", [(7, 7), (1, 1), (2, 3), (14, 14)])
@pytest.mark.parametrize("dst", [(224, 224), (272, 640), (720, 1280), (359, 641), (5, 5)])
def test_upsample_matches_cv2_inter_linear(src, dst):
    cam = RNG.random(src).astype(np.float32)
    np.testing.assert_allclose(upsample_bilinear(cam, dst), upsample_reference(cam, dst), atol=1e-4, rtol=0)


@pytest.mark.parametrize("size", [(272, 640), (720, 1280), (359, 641)])
@pytest.mark.parametrize("threshold", [-math.inf, 0.3, 0.7])
def test_overlay_matches_opencv_chain_within_two_levels(size, threshold):
    frame = RNG.integers(0, 256, (*size, 3), dtype=np.uint8)
    cam = RNG.random((7, 7)).astype(np.float32)
    fused = overlay(frame, cam, threshold, colormap_lut("jet"), 0.45)
    expected = overlay_reference(frame, cam, threshold, cv2.COLORMAP_JET, 0.45)
    difference = np.abs(fused.astype(np.int16) - expected)
    assert difference.max() <= 2
    up = upsample_reference(cam, size)
    untouched = up <= threshold
    # where the map is under the threshold the frame passes through unchanged (away from exact ties)
    clear = untouched & (np.abs(up - threshold) > 1e-5)
    np.testing.assert_array_equal(fused[clear], frame[clear])


def test_overlay_can_write_in_place():
    frame = RNG.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    expected = overlay(frame, np.ones((7, 7), np.float32), -math.inf, colormap_lut(), 0.5)
    in_place = frame.copy()
    overlay(in_place, np.ones((7, 7), np.float32), -math.inf, colormap_lut(), 0.5, out=in_place)
    np.testing.assert_array_equal(in_place, expected)


def test_threshold_spec_parsing():
    assert parse_threshold("10") == ThresholdSpec(keep_percent=10.0)
    assert parse_threshold("5%") == ThresholdSpec(keep_percent=5.0)
    assert parse_threshold("dynamic").dynamic
    assert parse_threshold("none") == ThresholdSpec()
    for bad in ("0", "101", "lots", "-3"):
        with pytest.raises(CamstreamError):
            parse_threshold(bad)


def test_threshold_value_follows_the_spec():
    cam = RNG.random((7, 7)).astype(np.float32)
    assert threshold_value(cam, ThresholdSpec()) == -math.inf
    assert threshold_value(cam, ThresholdSpec(keep_percent=10)) == pytest.approx(np.percentile(cam, 90))
    assert threshold_value(cam, ThresholdSpec(dynamic=True)) == pytest.approx(
        dynamic_threshold_reference(cam, 5, 0.5, 0.05))


finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=32)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(0, 12), st.integers(0, 12)), elements=finite_or_not),
       st.floats(0.5, 100))
def test_threshold_kernels_never_crash_and_treat_non_finite_as_zero(cam, keep):
    """Documented behaviour: NaN and ±inf count as 0; empty maps give empty results."""
    clean = np.where(np.isfinite(cam), cam, 0).astype(np.float32)
    result = simplify(cam, keep)
    assert result.shape == cam.shape
    assert np.all(np.isfinite(result))
    if cam.size:
        np.testing.assert_array_equal(result, simplify(clean, keep))
        assert percentile(cam, 100 - keep) == pytest.approx(float(np.percentile(clean.astype(np.float64),
                                                                                100 - keep)), nan_ok=False)
        assert dynamic_threshold(cam) == dynamic_threshold(clean)
    else:
        assert dynamic_threshold(cam) == 0.0


@settings(max_examples=100, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(0, 9), st.integers(0, 9)), elements=finite_or_not),
       st.integers(1, 40), st.integers(1, 40))
def test_upsample_and_overlay_never_crash(cam, height, width):
    up = upsample_bilinear(cam, (height, width))
    assert up.shape == (height, width)
    frame = np.full((height, width, 3), 100, np.uint8)
    out = overlay(frame, cam, 0.5, colormap_lut(), 0.5)
    assert out.shape == frame.shape and out.dtype == np.uint8
    if cam.size and np.all(np.isfinite(cam)):
        tolerance = 1e-3 * max(1.0, float(np.abs(cam).max()))
        np.testing.assert_allclose(up, upsample_reference(cam, (height, width)), atol=tolerance)


def test_constant_maps_show_nothing_above_their_value():
    cam = np.full((7, 7), 0.4, np.float32)
    assert np.count_nonzero(simplify(cam, 10)) == 0  # nothing is strictly above the 90th percentile
    frame = np.full((30, 30, 3), 50, np.uint8)
    np.testing.assert_array_equal(overlay(frame, cam, percentile(cam, 90), colormap_lut()), frame)


# --- the NumPy twins: what a stream's first frames are drawn with while Numba loads ---------------------------

def _by_kernels_and_by_twins(compute):
    """`compute()` run once through the Numba kernels and once through their NumPy twins."""
    jit.load()
    assert jit._READY.is_set()  # every kernel call below is Numba's, whatever an earlier test left behind
    by_kernels = compute()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jit.Kernel, "__call__", lambda self, *args: self.numpy(*args))
        by_twins = compute()
    return by_kernels, by_twins


def test_every_kernel_has_a_numpy_twin():
    import camstream.kernels  # noqa: F401 - registers every kernel

    assert len(jit._KERNELS) == 7
    assert all(callable(each.numpy) for each in jit._KERNELS), [e.__name__ for e in jit._KERNELS if not e.numpy]


# float32 values at and beside the dynamic threshold's steps: compared in float32, 0.05f > 0.05 would be lost
near_steps = st.sampled_from([0.05, 0.1, 0.15, 0.5, 0.0, -0.0, 1.0]).map(np.float32)


@settings(max_examples=150, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 9), st.integers(1, 9)), elements=finite_or_not | near_steps),
       st.integers(1, 30), st.integers(1, 30), st.sampled_from([-math.inf, 0.0, 0.3, 0.05, 0.7]),
       st.floats(0, 100), st.integers(0, 2**31 - 1))
def test_the_twins_compute_what_the_kernels_compute(cam, height, width, threshold, q, seed):
    frame = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    lut = colormap_lut("turbo")

    def compute():
        canvas = frame.copy()
        window = canvas[height // 3:, width // 4:]  # a letterboxed frame's window: not contiguous
        overlay(window, cam, threshold, lut, 0.45, window)
        proxy = upsample_bilinear(cam, (height, width))
        kept = KeptRegions((5.0, 50.0, 100.0))(frame, cam)
        return (overlay(frame, cam, threshold, lut, 0.3), canvas, proxy, kept.copy(),
                percentile(cam, q), percentile(cam, q, np.empty(cam.size, np.float32)),
                simplify(cam, max(q, 1.0)), thresholded(cam, ThresholdSpec(keep_percent=max(q, 1.0))),
                dynamic_threshold(cam), dynamic_threshold(cam, 30.0, 0.9, 0.1),
                threshold_value(proxy, ThresholdSpec(dynamic=True)))

    by_kernels, by_twins = _by_kernels_and_by_twins(compute)
    for index, (expected, found) in enumerate(zip(by_kernels, by_twins, strict=True)):
        if isinstance(expected, np.ndarray):
            assert found.dtype == expected.dtype, index
            np.testing.assert_array_equal(found, expected, err_msg=str(index))
        else:
            assert found == expected, index
            assert math.copysign(1.0, found) == math.copysign(1.0, expected), index  # -0.0 is not 0.0 bit for bit


def test_the_twins_draw_without_numba_until_the_kernels_are_loaded():
    import subprocess
    import sys

    probe = ("import sys; from camstream.kernels import jit; from camstream.kernels.warm import warm_up; "
             "jit.use_twins_until_loaded(); warm_up(); before = 'numba' in sys.modules; "
             "jit.load_in_background(warm_up).join(); "
             "print(before, 'numba' in sys.modules, jit.ready_at() is not None, jit._KERNELS[0]._compiled is not None)")
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert ran.stdout.split() == ["False", "True", "True", "True"], ran.stderr


@pytest.fixture
def before_numba(monkeypatch):
    """The kernels' state before Numba is loaded, with no run drawing by the twins yet (restored afterwards)."""
    monkeypatch.setattr(jit, "_READY", threading.Event())
    monkeypatch.setattr(jit, "_twin_users", 0)
    monkeypatch.setattr(jit, "_loader_thread", None)


def test_a_twin_never_waits_for_a_parallel_kernel_compiling_on_the_loader(before_numba):
    # The loader thread holds the parallel-calls lock while it compiles (or loads) the overlay kernel: a frame drawn
    # by the twin meanwhile must not wait for it (it did, 0.7-2 s, when the lock was taken around the twin too).
    jit.use_twins_until_loaded()
    frame = np.zeros((48, 64, 3), np.uint8)
    drawn = threading.Event()
    with jit._PARALLEL_CALLS:
        painter = threading.Thread(target=lambda: (overlay(frame, np.ones((7, 7), np.float32), 0.2, colormap_lut()),
                                                   drawn.set()))
        painter.start()
        finished = drawn.wait(30)
    painter.join()
    jit.stop_using_twins()
    assert finished, "the twin waited for the lock a compiling kernel held"


def test_a_transposed_map_is_thresholded_as_its_contiguous_copy():
    cam = RNG.random((6, 9)).astype(np.float32).T  # Fortran order: the kernel's out.ravel() was a copy
    expected = simplify(np.ascontiguousarray(cam), 20)
    assert np.count_nonzero(expected) > 0
    np.testing.assert_array_equal(simplify(cam, 20), expected)
    out = np.empty(cam.shape, np.float32, order="F")
    np.testing.assert_array_equal(thresholded(cam, ThresholdSpec(keep_percent=20), out), expected)


def test_a_kernel_load_that_fails_says_so_and_the_twins_draw_on(before_numba, caplog):
    def failing_warm_up() -> None:
        raise RuntimeError("no LLVM here")

    cam = RNG.random((7, 7)).astype(np.float32)
    jit.use_twins_until_loaded()
    with caplog.at_level("WARNING", logger="camstream"):
        jit.load_in_background(failing_warm_up).join()
    assert "Numba could not load the kernels (RuntimeError: no LLVM here)" in caplog.text
    assert not jit._READY.is_set() and jit._loader_thread is None  # a later run tries again
    np.testing.assert_array_equal(simplify(cam, 20), simplify_reference(cam.astype(np.float64), 20))
    jit.stop_using_twins()


def test_the_twins_draw_until_the_last_run_that_asked_for_them_stops(before_numba, monkeypatch):
    upsample = next(each for each in jit._KERNELS if each.__name__ == "_upsample")
    drawn_by_twin = []
    monkeypatch.setattr(upsample, "numpy", lambda *args: drawn_by_twin.append(args) or upsample.loops(*args))
    jit.use_twins_until_loaded()  # two runs in threads of one process
    jit.use_twins_until_loaded()
    jit.stop_using_twins()  # the first stops before its first frame
    upsample_bilinear(np.ones((3, 3), np.float32), (5, 5))
    assert len(drawn_by_twin) == 1  # the other still draws by the twins, and loads no Numba on its render thread
    jit.stop_using_twins()
    assert jit._twin_users == 0
