"""`--device auto|cpu|cuda`: each backend resolves it or says in one line why it cannot; results always come
back in host memory. The CUDA path itself runs where a GPU is at hand (skipped here, said so)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from camstream.backends.devices import onnxruntime_providers, openvino_device, torch_device
from camstream.backends.torch_backend import to_host
from camstream.errors import CamstreamError
from camstream.explain.result import Explanation, ModelKind

from .cli import assert_one_line_error, camstream

HAS_CUDA = torch.cuda.is_available()


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a CUDA GPU: --device cuda is valid here")
@pytest.mark.parametrize("command", ["run", "explain"])
def test_cuda_without_a_gpu_is_one_line_and_writes_nothing(tmp_path, command, chelsea_rgb):
    import cv2

    cv2.imwrite(str(tmp_path / "x.png"), chelsea_rgb[..., ::-1])
    where = ["--out", tmp_path / "out"] if command == "run" else [tmp_path / "x.png", "--out", tmp_path / "o.png"]
    result = camstream(command, *where, "--device", "cuda")
    assert_one_line_error(result, "torch sees no CUDA device")
    assert not (tmp_path / "out").exists() and not (tmp_path / "o.png").exists()


def test_openvino_on_cuda_is_refused_before_any_export(tmp_path, monkeypatch):
    monkeypatch.setenv("CAMSTREAM_CACHE", str(tmp_path / "cache"))
    result = camstream("run", "--backend", "openvino", "--device", "cuda", "--out", tmp_path / "out", timeout=120)
    assert_one_line_error(result, "OpenVINO does not run on NVIDIA GPUs")
    assert not (tmp_path / "cache").exists()


def test_auto_runs_where_torch_sees_a_device_and_the_report_says_which(tmp_path):
    result = camstream("run", "--max-frames", "6", "--out", tmp_path, "--quiet")
    assert result.returncode == 0, result.stderr
    backend = json.loads((tmp_path / "report.json").read_text())["backend"]
    assert backend["device"] == ("cuda" if HAS_CUDA else "cpu") == torch_device("auto")
    assert backend["provider"].startswith(backend["device"])


def test_each_runtime_resolves_the_device_or_names_what_is_missing():
    cpu_only = ["CPUExecutionProvider"]
    with_cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnxruntime_providers("auto", cpu_only) == onnxruntime_providers("cpu", with_cuda) == cpu_only
    assert onnxruntime_providers("auto", with_cuda) == onnxruntime_providers("cuda", with_cuda) == with_cuda
    with pytest.raises(CamstreamError, match="onnxruntime-gpu"):
        onnxruntime_providers("cuda", cpu_only)
    assert openvino_device("auto") == openvino_device("cpu") == "CPU"
    with pytest.raises(CamstreamError, match="unknown device 'tpu'"):
        torch_device("tpu")


def test_results_come_to_the_host_in_one_packed_copy_with_their_types():
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(3, 7, 7, generator=generator)
    explanation = Explanation(ModelKind.CNN, "gradcam", torch.tensor([5, 999, 0]), torch.rand(3, generator=generator),
                              maps, torch.randn(3, 1000, generator=generator))
    host = to_host(explanation, always=True)
    assert to_host(explanation) is explanation  # already on the host: nothing copied
    assert host.class_ids.dtype == torch.long and host.class_ids.tolist() == [5, 999, 0]
    for name in ("maps", "scores", "logits"):
        assert getattr(host, name).shape == getattr(explanation, name).shape
        assert torch.equal(getattr(host, name), getattr(explanation, name)), name


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU on this machine: the GPU path is checked where one is")
@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "cam", "recipro"])
@pytest.mark.parametrize(("tf32", "tolerance"), [(False, 1e-4), (True, 5e-3)])
def test_gpu_maps_equal_cpu_maps(method, tf32, tolerance, chelsea_rgb, monkeypatch):
    """The same classes, and maps within 1e-4 in full float32. PyTorch's default on Ampere and later GPUs
    convolves in TF32 (10-bit mantissa); on an H200 that moved EfficientNet-Lite0's maps by 1.3e-3 and its
    scores by 3e-4, so with the default the maps are held to 5e-3."""
    from camstream.backends.torch_backend import TorchBackend
    from camstream.model.preprocess import resize_to_rgb

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", tf32)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", tf32)
    results = {}
    for device in ("cpu", "cuda"):
        backend = TorchBackend("efficientnet_lite0", method, max_batch=2, device=device)
        frame = resize_to_rgb(np.ascontiguousarray(chelsea_rgb[..., ::-1]), backend.input_size)
        results[device] = backend.explain([frame, frame[:, ::-1].copy()])
        backend.close()
    assert results["cuda"].maps.device.type == "cpu"
    assert results["cuda"].class_ids.tolist() == results["cpu"].class_ids.tolist()
    assert float((results["cuda"].maps - results["cpu"].maps).abs().max()) < tolerance
