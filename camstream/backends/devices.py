"""Which device a backend runs on: `--device auto|cpu|cuda` resolved per runtime, or one clear error."""

from __future__ import annotations

from camstream.catalog import DEVICES
from camstream.errors import CamstreamError


def check_device_name(requested: str) -> None:
    """A CamstreamError when `requested` is not one of `DEVICES`."""
    if requested not in DEVICES:
        raise CamstreamError(f"unknown device '{requested}' (choose from {', '.join(DEVICES)})")


def torch_device(requested: str = "auto") -> str:
    """'cuda' or 'cpu' for torch: auto takes the GPU when torch sees one; cuda without one is an error."""
    import torch

    check_device_name(requested)
    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        raise CamstreamError("--device cuda: torch sees no CUDA device here (a CPU build of torch, no NVIDIA "
                             "driver, or CUDA_VISIBLE_DEVICES empty); use --device cpu or auto")
    return "cuda" if requested == "cuda" or (requested == "auto" and available) else "cpu"


def onnxruntime_providers(requested: str, available: list[str]) -> list[str]:
    """ONNX Runtime's execution providers for `requested`, given the `available` ones: CUDA first (CPU after it
    for the nodes CUDA lacks) where asked for or, with auto, where installed."""
    check_device_name(requested)
    has_cuda = "CUDAExecutionProvider" in available
    if requested == "cuda" and not has_cuda:
        raise CamstreamError("--device cuda: this ONNX Runtime has no CUDAExecutionProvider (pip install "
                             "onnxruntime-gpu in place of onnxruntime); use --device cpu or auto")
    if requested == "cuda" or (requested == "auto" and has_cuda):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def openvino_device(requested: str) -> str:
    """OpenVINO's device name: the CPU (its GPU plugin targets Intel GPUs, not CUDA)."""
    check_device_name(requested)
    if requested == "cuda":
        raise CamstreamError("--device cuda: OpenVINO does not run on NVIDIA GPUs; use --backend torch or "
                             "onnxruntime (with onnxruntime-gpu) for CUDA, or --device cpu")
    return "CPU"
