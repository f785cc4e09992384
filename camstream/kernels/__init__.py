"""Numba-jitted kernels for the render path: thresholding, bilinear upsampling, colormap + alpha blend, the
faithful threshold's masked batch; and the maps' temporal smoothing (NumPy) that the stream and eval share.

Each kernel has a plain NumPy / OpenCV reference in `camstream.kernels.reference`, which the tests
compare it against, and a NumPy twin of the same values that runs while Numba loads (`camstream.kernels.jit`):
importing this package does not import Numba.
"""

from camstream.kernels.colormap import colormap_lut
from camstream.kernels.masking import KeptRegions
from camstream.kernels.overlay import overlay
from camstream.kernels.smoothing import CamSmoother
from camstream.kernels.threshold import dynamic_threshold, percentile, simplify, threshold_value, thresholded
from camstream.kernels.upsample import resize_tables, upsample_bilinear

__all__ = ["CamSmoother", "KeptRegions", "colormap_lut", "dynamic_threshold", "overlay", "percentile",
           "resize_tables", "simplify", "threshold_value", "thresholded", "upsample_bilinear"]
