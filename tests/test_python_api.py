"""The Python API at the level of pytorch-grad-cam and torchcam (issue 17): NumPy and PIL pictures in, maps at
feature resolution and at any size out, an overlay by the stream's own kernel, typed public names, and the
documented examples run as they are written."""

from __future__ import annotations

import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import camstream
from camstream.kernels import colormap_lut
from camstream.kernels import overlay as overlay_kernel

from .conftest import REPO


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=5).eval()


def _normalised(rgb: np.ndarray) -> torch.Tensor:
    pixels = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    return (pixels - mean) / torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)


def test_numpy_and_pil_pictures_give_the_maps_of_the_same_normalised_tensor(resnet, chelsea_rgb):
    rgb = np.ascontiguousarray(cv2.resize(chelsea_rgb, (224, 224), interpolation=cv2.INTER_AREA))
    expected = camstream.explain(resnet, _normalised(rgb), threshold="none")
    for pictures in (rgb, Image.fromarray(rgb), [rgb, rgb], np.stack([rgb, rgb])):
        found = camstream.explain(resnet, pictures, threshold="none")
        assert torch.allclose(found.maps[0], expected.maps[0], atol=1e-5)
        assert int(found.class_ids[0]) == int(expected.class_ids[0])
    resized = camstream.explain(resnet, chelsea_rgb, input_size=(224, 224), threshold="none")
    assert torch.allclose(resized.maps[0], expected.maps[0], atol=1e-5)  # resized by area, as the stream does


def test_pictures_of_different_sizes_without_an_input_size_are_refused(resnet, chelsea_rgb):
    with pytest.raises(Exception, match="different sizes.*input_size"):
        camstream.explain(resnet, [chelsea_rgb, chelsea_rgb[:100]])


def test_upsampled_maps_equal_opencvs_bilinear_resize(resnet, chelsea_rgb):
    found = camstream.explain(resnet, chelsea_rgb, input_size=(224, 224), class_ids=[2])
    heat = found.upsampled((300, 451))
    assert heat.shape == (1, 300, 451) and heat.dtype == np.float32
    reference = cv2.resize(found.maps[0].numpy(), (451, 300), interpolation=cv2.INTER_LINEAR)
    assert np.abs(heat[0] - reference).max() < 1e-5
    assert int(found.class_ids[0]) == 2 and isinstance(found.to_numpy().class_ids, np.ndarray)


def test_overlay_is_the_streams_kernel_on_rgb_pixels(resnet, chelsea_rgb):
    found = camstream.explain(resnet, chelsea_rgb, input_size=(224, 224), threshold="20")
    drawn = camstream.overlay(Image.fromarray(chelsea_rgb), found, alpha=0.5)
    bgr = np.ascontiguousarray(chelsea_rgb[..., ::-1])
    stream = overlay_kernel(bgr, found.maps[0].numpy(), found.thresholds[0], colormap_lut("jet"), 0.5)
    assert drawn.shape == chelsea_rgb.shape and (drawn == stream[..., ::-1]).all()
    share = (drawn != chelsea_rgb).any(axis=2).mean()
    assert 0.1 < share < 0.35  # the top 20 % of the map, upsampled, is what is drawn


def test_the_documented_examples_run_as_written(tmp_path, monkeypatch):
    page = (REPO / "docs" / "python-api.md").read_text()
    examples = re.findall(r"```python\n(.*?)```", page, re.S)
    assert len(examples) == 5
    monkeypatch.chdir(tmp_path)
    for number, source in enumerate(examples, 1):
        exec(compile(source, f"docs/python-api.md example {number}", "exec"), {"__name__": f"example{number}"})
    written = np.asarray(Image.open(tmp_path / "overlay.png"))
    assert written.ndim == 3 and written.shape[2] == 3


def test_the_public_api_passes_mypy_strict(tmp_path):
    usage = tmp_path / "usage.py"
    usage.write_text('''"""A user's code: mypy --strict must accept it, and must refuse the wrong calls below it."""
from __future__ import annotations

import numpy as np
import torch

import camstream


def heat(model: torch.nn.Module, frame: np.ndarray) -> np.ndarray:
    result: camstream.Explanation = camstream.explain(model, frame, input_size=(224, 224), class_ids=[3])
    maps: np.ndarray = result.upsampled((224, 224))
    drawn: np.ndarray = camstream.overlay(frame, result, alpha=0.5)
    card = camstream.ModelCard(labels=("a", "b"), resize="letterbox")
    print(card, result.kind, camstream.__version__)
    return maps if maps.size else drawn
''')
    wrong = tmp_path / "wrong.py"
    wrong.write_text('''import numpy as np
import camstream

def use(model: object, frame: np.ndarray) -> None:
    result = camstream.explain(model, frame, input_size="big")
    camstream.overlay(frame, result, alpha="half")
''')
    command = [sys.executable, "-m", "mypy", "--strict", "--config-file", str(REPO / "pyproject.toml"),
               "--cache-dir", str(tmp_path / "cache")]
    passed = subprocess.run([*command, str(REPO / "camstream" / "__init__.py"), str(usage)], capture_output=True,
                            text=True, cwd=REPO)
    assert passed.returncode == 0, passed.stdout
    refused = subprocess.run([*command, str(wrong)], capture_output=True, text=True, cwd=REPO)
    assert refused.returncode == 1 and refused.stdout.count("incompatible type") == 2, refused.stdout


def test_explain_overlay_and_explanation_show_their_real_signatures_and_help():
    """`help(camstream.explain)` showed the package's docstring and the signature `(*args, **kwargs)`."""
    import inspect
    import pydoc

    import camstream

    parameters = list(inspect.signature(camstream.explain).parameters)
    assert parameters[:5] == ["model", "inputs", "method", "threshold", "class_ids"]
    assert inspect.signature(camstream.explain).return_annotation in ("Explanation", camstream.Explanation)
    assert list(inspect.signature(camstream.overlay).parameters)[:3] == ["image", "result", "index"]
    assert "boxes" in inspect.signature(camstream.Explanation).parameters
    text = pydoc.render_doc(camstream.explain, renderer=pydoc.plaintext)
    assert "returns an Explanation" in text and "explain(model: " in text
    assert "Explain `model` on `inputs` with the method fitting its kind" in text
    for public in (camstream.overlay, camstream.Explanation):
        assert inspect.getdoc(public) and len(inspect.getdoc(public)) > 100
