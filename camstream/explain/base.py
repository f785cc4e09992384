"""The hooked model and the base class every CAM method derives from.

`HookedModel` owns the hard, shared parts: finding the target layer, the forward hook that keeps its
activation, cutting the autograd graph there (so gradients stop at the target layer and parameters never
get `.grad`), running the head alone on other feature maps, and removing the hook when done.
`CamMethod` owns the preallocated CAM buffers; subclasses only say how a map is made from the activation.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import torch
from torch import nn

from camstream.errors import ModelError
from camstream.explain import freezing
from camstream.explain.head import GapLinearHead
from camstream.explain.result import Explanation, ModelKind, evaluation_mode

SCRIPTED_MODEL = ("a TorchScript model cannot be explained: its layers cannot be hooked. Give the nn.Module "
                  "itself (torch.save(model) → --model FILE; in Python, the module object), or a torchvision name "
                  "with --weights STATE_DICT")

_POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.LPPool2d)


@dataclass(frozen=True)
class LayerRecord:
    """One module call seen while probing a model: its name, output shape and whether it pools."""

    order: int
    name: str
    shape: tuple[int, ...]
    pools: bool


def spatial_layers(model: nn.Module, example: torch.Tensor) -> list[LayerRecord]:
    """Module calls whose output is a 4-D map with more than one cell, in execution order.

    Modules that return the very tensor of a later, outer module (a block ending in its activation)
    are folded into the outermost one, which is the name a user would pick.
    """
    calls: list[tuple[str, torch.Tensor]] = []
    probe_forward(model, example, lambda name, _module, output: calls.append((name, output)))
    modules = dict(model.named_modules())
    records: list[LayerRecord] = []
    for order, (_, output) in enumerate(calls):
        if output.dim() != 4 or output.shape[2] * output.shape[3] <= 1:
            continue
        # outermost module returning this same tensor object (calls stay referenced, so ids are unique)
        same = [n for n, o in calls if o is output]
        outer = min(same, key=lambda n: (n.count("."), -same.index(n)))
        pools = any(isinstance(modules[n], _POOLING) for n in same)
        records.append(LayerRecord(order, outer, tuple(output.shape), pools))
    unique: dict[str, LayerRecord] = {}
    for rec in records:
        unique[rec.name] = rec
    return sorted(unique.values(), key=lambda r: r.order)


def probe_forward(model: nn.Module, example: torch.Tensor,
                  record: Callable[[str, nn.Module, torch.Tensor], object]) -> None:
    """Run `model` once on `example`, calling `record(name, module, output)` for every named module that
    returns a tensor, in execution order; the hooks are gone afterwards, and a failing model is a ModelError."""

    def hook_for(name: str, module: nn.Module):
        def hook(_module, _inputs, output):
            if isinstance(output, torch.Tensor):
                record(name, module, output)

        return hook

    handles = [m.register_forward_hook(hook_for(n, m)) for n, m in model.named_modules() if n]
    try:
        with torch.inference_mode():
            model(example)
    except Exception as exc:
        raise ModelError(f"the model failed on a {tuple(example.shape)} probe input: {exc}") from exc
    finally:
        for handle in handles:
            handle.remove()


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (the CPU for a model that has neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def locate_target_layer(model: nn.Module, example: torch.Tensor) -> str:
    """Name of the last layer producing a spatial (H×W > 1) feature map that is not a pooling layer."""
    candidates = [r for r in spatial_layers(model, example) if not r.pools]
    if not candidates:
        raise ModelError("the model has no layer with a spatial feature map: CAM methods need a CNN backbone")
    return candidates[-1].name


REFERENCE_SIDE = 224  # the input side at which a classifier's usual target layer still has a spatial map


def _warn_if_the_size_moved_the_layer(model: nn.Module, example: torch.Tensor, located: str) -> None:
    """A warning when an input smaller than 224×224 made `located` the last layer with a spatial map where the
    model at 224×224 has a later one (its later maps shrank to 1×1): the map then comes from an earlier layer."""
    height, width = example.shape[2:]
    if min(height, width) >= REFERENCE_SIDE:
        return
    reference = example.new_zeros(1, example.shape[1], max(height, REFERENCE_SIDE), max(width, REFERENCE_SIDE))
    try:
        usual = locate_target_layer(model, reference)
    except (ModelError, RuntimeError):  # a model that only takes its own size: nothing to compare with
        return
    if usual != located:
        warnings.warn(f"at {height}×{width} the last layer with a spatial map is '{located}', not '{usual}' as at "
                      f"{reference.shape[2]}×{reference.shape[3]}: the maps come from an earlier layer; give a larger "
                      "--input-size, or choose the layer with --layer", stacklevel=3)


_Hooked = TypeVar("_Hooked", bound="HookedNetwork")


class HookedNetwork:
    """What every hooked model shares: the model held in eval mode, one forward hook, and a lifetime.

    Use as a context manager (or call `close()`): the hook is removed deterministically and the model goes
    back to the mode it came in (training stays training); its parameters are never touched.
    """

    kind: ClassVar[ModelKind]

    def __init__(self, model: nn.Module, input_shape: tuple[int, int, int]) -> None:
        self._restore = contextlib.ExitStack()
        self.model = self._restore.enter_context(evaluation_mode(model))
        self.input_shape = input_shape
        self.layer_name = ""
        self.activation: torch.Tensor | None = None
        self._handle: torch.utils.hooks.RemovableHandle | None = None

    def hook(self, module: nn.Module) -> None:
        """Keep `module`'s output as `activation` on every forward (`_hook` decides how)."""
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        raise NotImplementedError

    def timed_forward(self, x: torch.Tensor, open_graph: bool = False) -> tuple[object, torch.Tensor, float]:
        """`forward`'s output, the kept target activation and the forward's time (ms)."""
        began = time.perf_counter()
        output = self.forward(x, open_graph=open_graph)  # type: ignore[attr-defined]
        elapsed_ms = (time.perf_counter() - began) * 1e3
        assert self.activation is not None
        return output, self.activation, elapsed_ms

    def close(self) -> None:
        """Remove the hook, drop the kept activation and give the model back its own mode."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.activation = None
        self._restore.close()

    def __enter__(self: _Hooked) -> _Hooked:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class HookedModel(HookedNetwork):
    """A CNN with a forward hook on its target layer (see `HookedNetwork` for its lifetime)."""

    kind = ModelKind.CNN  # the model kind its methods must be made for (see `CamMethod.model_kind`)

    def __init__(self, model: nn.Module, input_shape: tuple[int, int, int] = (3, 224, 224),
                 target_layer: str | None = None) -> None:
        if isinstance(model, torch.jit.ScriptModule):
            raise ModelError(SCRIPTED_MODEL)
        example = torch.zeros(1, *input_shape, device=model_device(model))
        if target_layer is None:
            target_layer = locate_target_layer(model, example)
            _warn_if_the_size_moved_the_layer(model, example, target_layer)
        modules = dict(model.named_modules())
        if target_layer not in modules or not target_layer:
            names = [r.name for r in spatial_layers(model, example) if not r.pools][-8:]
            raise ModelError(f"no layer named '{target_layer}'; candidates: {', '.join(names)}")
        super().__init__(model, input_shape)
        self.layer_name = target_layer
        self._open_graph = False
        self._replacement: torch.Tensor | None = None
        self._calls = 0
        self._probe: torch.Tensor | None = None
        self._frozen: freezing.FrozenGraphs | None = None
        self.hook(modules[target_layer])

    def _hook(self, _module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        self._calls += 1
        if self._replacement is not None:
            output = self._replacement
        if self._open_graph:
            # Cut the graph here: the backbone ran under no_grad, only the head is recorded, so
            # autograd.grad(score, activation) walks the head alone and no parameter gets .grad.
            self.activation = output.detach().requires_grad_(True)
            torch.set_grad_enabled(True)
            return self.activation.clone()  # the head may work in place; the leaf must stay intact
        self.activation = output
        return output if self._replacement is not None else None

    def freeze(self, example: torch.Tensor, cache: str | None = None) -> bool:
        """Trace and freeze the model (logits and target activation) for inputs shaped like `example`
        (`camstream.explain.freezing`).

        Later forwards of that shape run the frozen graph (about 1.3× faster on CPU); gradient methods
        then differentiate the head graph on the frozen activation. Returns False, staying eager, when the
        model cannot be traced. With `cache` (a path stem that names this model, its weights, layer, input
        shape, device and torch version), the frozen graphs are read from there when present and written there
        after tracing.
        """
        graphs = freezing.load(example, cache) if cache is not None else None
        if graphs is None:
            graphs = freezing.trace(self, example)
            if graphs is None:
                return False
            if cache is not None:
                freezing.save(graphs, cache)
        self._frozen = graphs
        self.activation = None
        return True

    def forward(self, x: torch.Tensor, open_graph: bool = False) -> torch.Tensor:
        """Logits for `x`; the target activation is kept in `self.activation`.

        With `open_graph`, the activation is a leaf that requires grad and the head is recorded, even
        when the caller runs under `torch.inference_mode()` or `no_grad`.
        """
        if self._frozen is not None and tuple(x.shape[1:]) == self._frozen.input_shape:
            with torch.inference_mode():
                logits, activation = self._frozen.logits(x)
            if not open_graph:
                self.activation = activation
                return logits
            return self.head(activation, open_graph=True)
        self._calls = 0
        self._open_graph = open_graph
        if open_graph:
            with torch.inference_mode(False), torch.no_grad():
                logits = self.model(x)
        else:
            with torch.inference_mode():
                logits = self.model(x)
        self._open_graph = False
        if self._calls != 1:
            raise ModelError(f"layer '{self.layer_name}' ran {self._calls} times in one forward; pick a layer "
                             "that runs exactly once")
        return logits

    def head(self, features: torch.Tensor, open_graph: bool = False) -> torch.Tensor:
        """Logits of the part of the model after the target layer, fed with `features` (N, C, h, w).

        The model runs on a small cached probe input whose target activation is swapped for `features`,
        so only the head does real work. With `open_graph`, `self.activation` becomes a leaf made from
        `features` and the head is recorded for autograd, as in `forward`.
        """
        if self._frozen is not None and tuple(features.shape[1:]) == self._frozen.activation_shape:
            with torch.inference_mode(not open_graph), torch.set_grad_enabled(open_graph):
                if open_graph:
                    self.activation = features.clone().requires_grad_(True)
                    features = self.activation
                return self._frozen.head(features)
        if self._probe is None:
            self._probe = self._find_probe(features[:1])
        self._replacement = features
        self._open_graph = open_graph
        try:
            if open_graph:
                with torch.inference_mode(False), torch.no_grad():
                    self._replacement = features.clone() if features.is_inference() else features
                    return self.model(self._probe)
            with torch.inference_mode():
                return self.model(self._probe)
        finally:
            self._replacement = None
            self._open_graph = False

    def _find_probe(self, features: torch.Tensor) -> torch.Tensor:
        channels, height, width = self.input_shape
        for side in (32, 64, 128, None):
            probe = torch.zeros(1, channels, side or height, side or width, device=features.device)
            self._replacement = features
            try:
                with torch.inference_mode():
                    self.model(probe)
                return probe
            except RuntimeError:
                continue
            finally:
                self._replacement = None
        raise ModelError(f"the layers after '{self.layer_name}' do not take its output alone (a skip "
                         "connection crosses it); pick a later target layer")

    def map_shape(self, activation: torch.Tensor) -> tuple[int, int]:
        """(h, w) of the maps made from `activation` (B, C, h, w)."""
        return activation.shape[2], activation.shape[3]


class CamMethod:
    """Base class: a map per sample from the target activation A (B, C, h, w).

    The default map is relu(sum_k w_k A_k) / max with channel weights w (B, C) from
    `channel_weights`; subclasses override that, or `compute_maps` for maps of another kind.
    `model_kind` names the hooked model the method works on (CNN: `HookedModel`, VIT: the
    token-hooked model of `camstream.explain.vit`).

    The formula is written once: the torch path hands it the autograd gradient, an exported graph
    (`camstream.backends.export`) the analytic one of `analytic_head`, which it also sets here.
    """

    name: ClassVar[str]
    needs_gradient: ClassVar[bool] = False
    model_kind: ClassVar[ModelKind] = ModelKind.CNN

    def __init__(self, hooked: HookedModel) -> None:
        self.hooked = hooked
        self.analytic_head: GapLinearHead | None = None  # the head in closed form, inside an exported graph
        self._buffers: dict[tuple[int, ...], torch.Tensor] = {}
        self.forward_ms = 0.0  # time of the last call's forward pass

    def buffer(self, batch: int, height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
        """The preallocated (batch, height, width) map buffer on `device` (the model's), made on first use of
        that shape."""
        key = (batch, height, width)
        if key not in self._buffers:
            self._buffers[key] = torch.empty(key, dtype=torch.float32, device=device)
        return self._buffers[key]

    def __call__(self, x: torch.Tensor, class_ids: torch.Tensor | int | None = None) -> Explanation:
        """Explain a batch: one target per sample, the top-1 class unless `class_ids` says otherwise."""
        # Buffers and gathered indices must be normal tensors even under the caller's inference_mode.
        with torch.inference_mode(False):
            logits, activation, forward_ms = self.hooked.timed_forward(x, open_graph=self.needs_gradient)
            if class_ids is None:
                targets = logits.detach().argmax(1).clone()
            else:
                targets = torch.as_tensor(class_ids, dtype=torch.long, device=logits.device).clone().expand(
                    x.shape[0])
                if int(targets.max()) >= logits.shape[1] or int(targets.min()) < 0:
                    raise ModelError(f"class id out of range 0..{logits.shape[1] - 1}")
            gradient = None
            if self.needs_gradient:
                with torch.enable_grad():
                    score = logits.gather(1, targets[:, None]).sum()
                    (gradient,) = torch.autograd.grad(score, activation)
                activation = activation.detach()
            out = self.buffer(activation.shape[0], *self.hooked.map_shape(activation), device=activation.device)
            with torch.no_grad():
                self.compute_maps(activation, gradient, targets, out)
                logits = logits.detach()
                scores = torch.softmax(logits, 1).gather(1, targets[:, None])[:, 0]
        self.forward_ms = forward_ms
        return Explanation(self.model_kind, self.name, targets, scores, out, logits)

    def channel_weights(self, activation: torch.Tensor, gradient: torch.Tensor | None,
                        targets: torch.Tensor) -> torch.Tensor:
        """Weights w (B, C) of the feature channels."""
        raise NotImplementedError

    def compute_maps(self, activation: torch.Tensor, gradient: torch.Tensor | None, targets: torch.Tensor,
                     out: torch.Tensor | None = None) -> torch.Tensor:
        """relu(sum_k w_k A_k), scaled to max 1: the maps (B, h, w), written into `out` when given."""
        weights = self.channel_weights(activation, gradient, targets).to(torch.float32)
        batch, channels = weights.shape
        height, width = activation.shape[2:]
        maps = torch.matmul(weights.view(batch, 1, channels), activation.float().flatten(2),
                            out=None if out is None else out.view(batch, 1, -1)).view(batch, height, width)
        maps.relu_()
        scale_to_unit_max(maps)
        return maps


def scale_to_unit_max(maps: torch.Tensor) -> None:
    """In place: maps[b] /= max(maps[b]) where that max is positive (maps are non-negative)."""
    peak = maps.flatten(1).amax(1).clamp_min_(1e-12)
    maps.div_(peak.view(-1, 1, 1))


def scale_to_unit_range(maps: torch.Tensor) -> None:
    """In place: maps[b] = (maps[b] - min) / (max - min), or zeros where the map is flat."""
    flat = maps.flatten(1)
    low = flat.amin(1)
    span = (flat.amax(1) - low).clamp_min_(1e-12)
    maps.sub_(low.view(-1, 1, 1)).div_(span.view(-1, 1, 1))
