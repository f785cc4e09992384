"""The hooked model: layer discovery, hook lifetime, gradients only to the layer, reused buffers."""

from __future__ import annotations

import copy

import pytest
import torch

from camstream.errors import ModelError
from camstream.explain import (
    REGISTRY,
    GradCam,
    HookedModel,
    ModelKind,
    locate_target_layer,
    make_method,
)
from camstream.explain.cnn import gaussian_cell_masks

from .conftest import random_weights_model, to_batch


@pytest.mark.parametrize("name,layer", [("resnet18", "layer4"), ("mobilenet_v2", "features"),
                                        ("vgg16", "features.29"), ("efficientnet_b0", "features")])
def test_target_layer_is_the_last_spatial_non_pooling_layer(name, layer):
    spec = random_weights_model(name)
    assert locate_target_layer(spec.module, torch.zeros(1, 3, 224, 224)) == layer


def test_default_model_targets_its_last_feature_map(effnet):
    with HookedModel(effnet.module) as hooked:
        assert hooked.layer_name == "bn2"


def test_unknown_layer_name_lists_candidates(effnet):
    with pytest.raises(ModelError, match="no layer named 'nope'; candidates: .*bn2"):
        HookedModel(effnet.module, target_layer="nope")


def test_hook_is_removed_on_exit(effnet):
    layer = dict(effnet.module.named_modules())["bn2"]
    before = len(layer._forward_hooks)
    with HookedModel(effnet.module) as hooked:
        assert len(layer._forward_hooks) == before + 1
        GradCam(hooked)(torch.zeros(1, 3, 224, 224))
    assert len(layer._forward_hooks) == before
    assert hooked.activation is None


@pytest.mark.parametrize("method", list(REGISTRY[ModelKind.CNN]))
def test_no_parameter_gets_grad_and_model_stays_in_eval(effnet, chelsea_rgb, method):
    model = copy.deepcopy(effnet.module)
    batch = to_batch(effnet, [chelsea_rgb])
    with HookedModel(model) as hooked:
        make_method(method, hooked)(batch)
    assert all(parameter.grad is None for parameter in model.parameters())
    assert not model.training


@pytest.mark.parametrize("guard", [torch.inference_mode, torch.no_grad])
def test_gradient_methods_work_under_the_callers_inference_mode(effnet, chelsea_rgb, guard):
    batch = to_batch(effnet, [chelsea_rgb])
    with HookedModel(effnet.module) as hooked:
        free = GradCam(hooked)(batch).maps.clone()
        with guard():
            guarded_input = batch.clone()
            guarded = GradCam(hooked)(guarded_input).maps.clone()
    torch.testing.assert_close(guarded, free)
    assert float(free.max()) == pytest.approx(1.0)


@pytest.mark.parametrize("method", list(REGISTRY[ModelKind.CNN]))
def test_repeated_calls_reuse_the_cam_buffer(effnet, chelsea_rgb, method):
    batch = to_batch(effnet, [chelsea_rgb, chelsea_rgb[:, ::-1].copy()])
    with HookedModel(effnet.module) as hooked:
        explainer = make_method(method, hooked)
        first = explainer(batch).maps
        pointer = first.data_ptr()
        for _ in range(3):
            again = explainer(batch)
            assert again.maps.data_ptr() == pointer
        assert len(explainer._buffers) == 1
    assert first.shape == (2, 7, 7)


def test_class_id_selects_the_explained_class(effnet, chelsea_rgb):
    batch = to_batch(effnet, [chelsea_rgb])
    with HookedModel(effnet.module) as hooked:
        top = GradCam(hooked)(batch)
        other = GradCam(hooked)(batch, 967)
        assert int(other.class_ids[0]) == 967
        assert float(other.scores[0]) < float(top.scores[0])
        with pytest.raises(ModelError, match="class id out of range"):
            GradCam(hooked)(batch, 5000)


def test_unknown_method_is_a_clear_error(effnet):
    with HookedModel(effnet.module) as hooked, pytest.raises(ModelError, match="unknown method 'x'.*gradcam"):
        make_method("x", hooked)


def test_cam_refuses_heads_that_are_not_gap_plus_linear():
    spec = random_weights_model("vgg16")
    with HookedModel(spec.module) as hooked, pytest.raises(ModelError, match="global-average-pool"):
        make_method("cam", hooked)(torch.zeros(1, 3, 224, 224))


def test_recipro_masks_are_built_once_per_feature_shape(effnet, chelsea_rgb):
    batch = to_batch(effnet, [chelsea_rgb])
    with HookedModel(effnet.module) as hooked:
        recipro = make_method("recipro", hooked)
        recipro(batch)
        masks = gaussian_cell_masks(7, 7)
        recipro(batch)
        assert gaussian_cell_masks(7, 7) is masks
    assert masks.shape == (49, 1, 7, 7)
    assert torch.all(masks.flatten(1).argmax(1) == torch.arange(49))


@pytest.mark.parametrize("method", list(REGISTRY[ModelKind.CNN]))
def test_frozen_model_gives_the_same_maps_as_eager(effnet, chelsea_rgb, method):
    batch = to_batch(effnet, [chelsea_rgb, chelsea_rgb[::-1].copy(), chelsea_rgb[:, ::-1].copy()])
    eager_model = copy.deepcopy(effnet.module)
    frozen_model = copy.deepcopy(effnet.module)
    with HookedModel(eager_model) as eager, HookedModel(frozen_model) as frozen:
        assert frozen.freeze(batch)
        expected = make_method(method, eager)(batch, torch.tensor([285, 281, 967]))
        explainer = make_method(method, frozen)
        result = explainer(batch, torch.tensor([285, 281, 967]))
        torch.testing.assert_close(result.maps, expected.maps, atol=1e-4, rtol=1e-4)
        pointer = result.maps.data_ptr()
        smaller = explainer(batch[:2].clone())  # another batch size runs through the same frozen graph
        assert smaller.maps.shape == (2, 7, 7)
        assert explainer(batch).maps.data_ptr() == pointer
    assert all(parameter.grad is None for parameter in frozen_model.parameters())


def test_freeze_keeps_explaining_models_with_python_control_flow():
    class Branchy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            features = self.conv(x)
            if float(features.mean()) > 1e9:  # data-dependent control flow: tracing bakes the branch taken
                features = -features
            return self.fc(features.mean((2, 3)))

    with HookedModel(Branchy(), (3, 16, 16)) as hooked:
        hooked.freeze(torch.rand(2, 3, 16, 16))
        result = GradCam(hooked)(torch.rand(2, 3, 16, 16))
    assert result.maps.shape == (2, 16, 16)
