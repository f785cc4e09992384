"""Model loading: bundled weights, torchvision by name with a weights file, user model files, errors."""

from __future__ import annotations

import pytest
import torch

from camstream.errors import ModelError
from camstream.explain import HookedModel, make_method
from camstream.model.load import load_model

from .conftest import random_weights_model, to_batch


def test_default_model_is_pretrained_efficientnet_lite0(effnet, chelsea_rgb):
    assert effnet.name == "efficientnet_lite0"
    assert effnet.mean == effnet.std == (0.5, 0.5, 0.5) and effnet.input_size == (224, 224)
    assert not effnet.module.training
    logits = effnet.module(to_batch(effnet, [chelsea_rgb]))
    top3 = logits.topk(3).indices[0].tolist()
    assert all(281 <= index <= 285 for index in top3)
    assert effnet.label(285) == "Egyptian cat"


def test_torchvision_model_loads_a_weights_file(tmp_path):
    original = random_weights_model("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(original.module.state_dict(), path)
    loaded = load_model("resnet18", str(path))
    for a, b in zip(original.module.state_dict().values(), loaded.module.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_weights_that_do_not_fit_are_a_clear_error(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save(random_weights_model("resnet18").module.state_dict(), path)
    with pytest.raises(ModelError, match="does not fit the model"):
        load_model("mobilenet_v2", str(path))
    with pytest.raises(ModelError, match="weights file not found"):
        load_model("mobilenet_v2", str(tmp_path / "none.pth"))


def test_random_weights_are_announced():
    with pytest.warns(UserWarning, match="random weights"):
        load_model("mobilenet_v2")


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ModelError, match="unknown model 'nonet'.*efficientnet_lite0"):
        load_model("nonet")


def small_cnn() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, 2, 1),
                               torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(16, 5)).eval()


def test_user_model_file_is_loaded_and_explained(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(small_cnn(), path)
    spec = load_model(str(path))
    with HookedModel(spec.module) as hooked:
        assert hooked.layer_name in ("2", "3")
        result = make_method("gradcam", hooked)(torch.rand(2, 3, 224, 224))
    assert result.maps.shape == (2, 112, 112)
    assert torch.all(result.class_ids < 5)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_file_loads_but_cannot_be_hooked(tmp_path):
    path = tmp_path / "model.ts"
    torch.jit.save(torch.jit.script(small_cnn()), str(path))
    spec = load_model(str(path))
    assert spec.module(torch.rand(1, 3, 224, 224)).shape == (1, 5)
    with pytest.raises(ModelError, match="a TorchScript model cannot be explained"):
        HookedModel(spec.module)


def test_a_file_that_is_not_a_model_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.pt"
    torch.save({"a": 1}, path)
    with pytest.raises(ModelError, match="not an nn.Module"):
        load_model(str(path))
