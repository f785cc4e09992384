"""A hooked CNN opened from its cached frozen graphs alone, before (and usually without) building the model.

`HookedModel.freeze` traces the model into two TorchScript graphs (logits + target activation, and the head
after the target layer) and caches them. A later start that finds them needs nothing else for the forwards
and gradients of every frame: building the network means importing the model zoo (timm and torchvision,
about 1.6 s here) and making and loading it. `FrozenHookedModel` runs on the graphs and builds the model only
when something asks for the model itself (an input of another shape, CAM reading the classifier's weights).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from camstream.explain import freezing
from camstream.explain.base import HookedModel
from camstream.explain.result import evaluation_mode


class FrozenHookedModel(HookedModel):
    """A `HookedModel` whose frozen graphs come from `cache`; its `model` is built by `build` on first use
    (then hooked on `layer_name` as `HookedModel` hooks it)."""

    def __init__(self, cache: str, example: torch.Tensor, layer_name: str, build: Callable[[], nn.Module]) -> None:
        # HookedModel.__init__ needs the model to find and hook the layer: here that waits for `model`
        self._restore = contextlib.ExitStack()
        self._handle = None
        self._built: nn.Module | None = None
        self._build = build
        self.input_shape = tuple(example.shape[1:])
        self.layer_name = layer_name
        self.activation = None
        self._open_graph = False
        self._replacement = None
        self._calls = 0
        self._probe = None
        self._frozen = freezing.load(example, cache)
        if self._frozen is None:
            raise FileNotFoundError(f"no usable frozen graphs at {cache}")

    @property
    def model(self) -> nn.Module:  # type: ignore[override]
        """The model, built, put in eval mode and hooked on first use."""
        if self._built is None:
            module = self._build()
            self._built = self._restore.enter_context(evaluation_mode(module))
            self.hook(dict(module.named_modules())[self.layer_name])
        return self._built

    @property
    def built(self) -> bool:
        """Whether the model itself has been built (False while only the frozen graphs ran)."""
        return self._built is not None
