"""`camstream export`: one ONNX graph per (model, method, layer, input size) that explains as it infers.

Inputs: `frames` (B, H, W, 3) uint8 RGB at the model's size (normalisation is inside the graph) and
`class_ids` (B,) int64, −1 for each frame's top-1. Outputs: `logits` (B, K), `class_id` (B,), `score` (B,)
(softmax of the explained class) and `cam` (B, h, w) in [0, 1], the explanation computed inside the graph.

The gradient methods need ∂y_c/∂A in the graph. For a head that is an elementwise activation φ (identity,
ReLU or ReLU6), global average pooling and a linear layer W it is analytic (`camstream.explain.head`), so the
graph needs no backward pass; the method's own class computes the map from it. A head that is not of that
form is refused with a message naming the layer. The graph's maps equal the torch methods' on the frozen
model (`HookedModel.freeze`, what `camstream run` uses).

The labels, input size and settings travel inside the file (ONNX metadata), so a run on the file needs
nothing else.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import numpy as np
import torch
from torch import nn

from camstream.catalog import EXPORT_METADATA_PREFIX
from camstream.errors import CamstreamError, ModelError
from camstream.explain.base import CamMethod, HookedModel
from camstream.explain.head import ACTIVATIONS, GapLinearHead
from camstream.explain.registry import REGISTRY, make_method
from camstream.explain.result import ModelKind
from camstream.model.card import ModelCard
from camstream.model.load import ModelSpec, load_model
from camstream.storage import written_atomically


def analyse_head(hooked: HookedModel) -> GapLinearHead:
    """The head after the hooked layer as φ → GAP → linear, checked numerically on activations that cross
    every activation's kinks; a ModelError naming the layer when the head has another form."""
    with torch.inference_mode():
        hooked.forward(torch.zeros(1, *hooked.input_shape))
        shape = hooked.activation.shape[1:]
    generator = torch.Generator().manual_seed(0)
    features = torch.rand(2, *shape, generator=generator) * 12.0 - 3.0  # values in [-3, 9)
    expected = hooked.head(features).float()
    linears = [m for m in hooked.model.modules() if isinstance(m, nn.Linear) and m.in_features == shape[0]]
    for linear in reversed(linears):
        bias = linear.bias if linear.bias is not None else torch.zeros(linear.out_features)
        for name, (phi, _) in ACTIVATIONS.items():
            pooled = phi(features).mean((2, 3))
            if torch.allclose(nn.functional.linear(pooled, linear.weight, bias), expected, atol=1e-4, rtol=1e-4):
                return GapLinearHead(name, linear.weight.detach().clone(), bias.detach().clone())
    raise ModelError(f"the layers after '{hooked.layer_name}' are not an activation + global average pool + "
                     "linear head: camstream export needs that form for an analytic gradient; pick such a layer "
                     "(--layer) or run this model on --backend torch")


PIXEL_LAYOUTS = ("frames", "pixels", "normalised")
# frames: uint8 (B, H, W, 3) RGB as decoded; pixels: float (B, 3, H, W) in [0, 1]; normalised: float (B, 3, H, W)
# already (x − mean) / std, the model alone (the baseline `camstream bench` sets the frames graph beside)


class PlainGraph(nn.Module):
    """The model and its preprocessing alone, as the explained graph has them: the baseline a runtime's
    explanation is measured against (`camstream bench`), and the scorer of `camstream eval`.

    `layout` "frames" takes the uint8 frames a stream decodes; "pixels" takes float (B, 3, H, W) images in
    [0, 1], as `camstream eval` perturbs them. Both normalise as (x − mean) / std inside the graph;
    "normalised" takes that already done (the model alone)."""

    def __init__(self, spec: ModelSpec, layout: str = "frames") -> None:
        super().__init__()
        if layout not in PIXEL_LAYOUTS:
            raise CamstreamError(f"unknown input layout '{layout}' (choose from {', '.join(PIXEL_LAYOUTS)})")
        self.model = spec.module
        self.layout = layout
        std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", std)
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", -self.mean / std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.layout == "frames":
            return self.model(images.permute(0, 3, 1, 2).float() * self.scale + self.shift)
        if self.layout == "normalised":
            return self.model(images)
        return self.model((images - self.mean) / self.std)  # as camstream.model.preprocess.Normaliser


class ExplainedGraph(nn.Module):
    """The model, its preprocessing and one CAM method as one traceable module (see the module docstring).

    The method is the class the torch path runs (`camstream.explain.registry.make_method`), handed the head in
    closed form (`CamMethod.analytic_head`): its formula is written once, in `camstream.explain`."""

    def __init__(self, spec: ModelSpec, hooked: HookedModel, head: GapLinearHead, method: str,
                 layout: str = "frames") -> None:
        super().__init__()
        if method not in REGISTRY[ModelKind.CNN]:  # the CNN methods make their maps from the layer's activation
            raise CamstreamError(f"method '{method}' cannot be exported (choose from "
                                 f"{', '.join(REGISTRY[ModelKind.CNN])})")
        explainer = make_method(method, hooked)
        assert isinstance(explainer, CamMethod)
        explainer.analytic_head = head
        self.plain = PlainGraph(spec, layout)  # preprocessing and the model, as the plain graph has them
        self.hooked = hooked
        self.head = head
        self.method = explainer
        # the head's tensors as buffers, so that the export stores the classifier as the model's own (once for the
        # gradient methods), not as one more constant: without them Grad-CAM's graph grew by 5 MB
        self.register_buffer("weight", head.weight)
        self.register_buffer("bias", head.bias)

    def forward(self, frames: torch.Tensor, class_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.plain(frames)  # frames, or pixels (see PlainGraph)
        activation = self.hooked.activation  # what the head sees (after any in-place activation)
        top = logits.argmax(1)
        target = torch.where(class_ids >= 0, class_ids, top)
        score = torch.softmax(logits, 1).gather(1, target[:, None])[:, 0]
        gradient = self.head.gradient(activation, target) if self.method.needs_gradient else None
        return logits, target, score, self.method.compute_maps(activation, gradient, target)


def export_plain(out: str, model: str = "efficientnet_lite0", weights: str | None = None,
                 layout: str = "frames") -> str:
    """Write the plain graph of `model` to `out` (`logits` out; in: uint8 `frames`, or float `pixels` /
    `normalised` by `layout`, see PlainGraph); returns `out`."""
    spec = load_model(model, weights)
    height, width = spec.input_size
    example = (torch.zeros(1, height, width, 3, dtype=torch.uint8) if layout == "frames"
               else torch.zeros(1, 3, height, width))
    _export(PlainGraph(spec, layout).eval(), (example,), out, ["frames" if layout == "frames" else "pixels"],
            ["logits"])
    return out


def export_pixels_graph(out: str, spec: ModelSpec, method: str | None = None) -> str:
    """Write `spec`'s model as `camstream eval` runs it on a runtime to `out`: float `pixels` (B, 3, H, W) in
    [0, 1] in; with `method` None the plain graph (`logits` out), else the explained graph (`class_ids` in too,
    −1 for top-1; `logits`, `class_id`, `score`, `cam` out) on the model card's target layer. Returns `out`;
    a ModelError when the head cannot be exported (`analyse_head`)."""
    height, width = spec.input_size
    pixels = torch.zeros(1, 3, height, width)
    with written_atomically(out) as partial:  # two evals sharing a cache never mix their files
        if method is None:
            _export(PlainGraph(spec, "pixels").eval(), (pixels,), partial, ["pixels"], ["logits"])
        else:
            with HookedModel(spec.module, (3, height, width), spec.layer) as hooked:
                graph = ExplainedGraph(spec, hooked, analyse_head(hooked), method, "pixels").eval()
                _export(graph, (pixels, torch.full((1,), -1, dtype=torch.int64)), partial, ["pixels", "class_ids"],
                        ["logits", "class_id", "score", "cam"])
    return out


def _export(module: nn.Module, example: tuple[torch.Tensor, ...], out: str, inputs: list[str],
            outputs: list[str]) -> None:
    """`module` traced to ONNX at `out` (opset 17, every tensor's first axis the batch; 'same' padding made
    static for the example's size, `static_same_padding`)."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings(), static_same_padding(module, example):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, out, dynamo=False, opset_version=17, input_names=inputs,
                          output_names=outputs, dynamic_axes={name: {0: "batch"} for name in inputs + outputs})


def _same_padding_convolutions(module: nn.Module) -> list[nn.Conv2d]:
    """The convolutions of `module` that pad TF-style ('same') by their input's size at run time: timm's
    `Conv2dSame` (EfficientNet-Lite0 and the other tf_ models)."""
    try:
        from timm.layers import Conv2dSame
    except ImportError:  # pragma: no cover - timm is a dependency; without it there is no such layer
        return []
    return [layer for layer in module.modules() if isinstance(layer, Conv2dSame)]


def _statically_padded(conv: nn.Conv2d, pads: tuple[int, int, int, int], x: torch.Tensor) -> torch.Tensor:
    return nn.functional.conv2d(nn.functional.pad(x, pads), conv.weight, conv.bias, conv.stride, 0, conv.dilation,
                                conv.groups)


@contextmanager
def static_same_padding(module: nn.Module, example: tuple[torch.Tensor, ...]) -> Iterator[int]:
    """Inside the block, each 'same' convolution of `module` pads by constants: those it pads inputs shaped as
    in `module(*example)` by (pad = max((⌈i/s⌉ − 1)·s + (k − 1)·d + 1 − i, 0), split low/high as TF does).

    Traced as it is, such a layer reads its input's size at run time: in ONNX, about 40 shape operations and a
    Pad per layer that the runtime cannot fold into the convolution. An exported graph's height and width are
    fixed, so constants compute the same numbers: EfficientNet-Lite0 on ONNX Runtime (1 thread, batch 1) went
    from 14.5 to 11.1 ms a frame here (`camstream bench`, backends). Yields how many layers it pinned."""
    convolutions = _same_padding_convolutions(module)
    sizes: dict[nn.Module, tuple[int, int]] = {}

    def note_size(layer: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        sizes.setdefault(layer, tuple(inputs[0].shape[-2:]))

    probes = [conv.register_forward_pre_hook(note_size) for conv in convolutions]
    try:
        with torch.no_grad():
            module(*example)
    finally:
        for probe in probes:
            probe.remove()
    pinned = [conv for conv in convolutions if conv in sizes]
    for conv in pinned:
        (pad_h, pad_w) = (max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
                          for size, kernel, stride, dilation in zip(sizes[conv], conv.kernel_size, conv.stride,
                                                                    conv.dilation, strict=True))
        conv.forward = partial(_statically_padded, conv, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2,
                                                         pad_h - pad_h // 2))
    try:
        yield len(pinned)
    finally:
        for conv in pinned:
            del conv.forward


DETECTORS_STAY_ON_TORCH = ("{name} is a detector: its boxes and per-box maps are not exported into a graph yet, "
                           "so it runs on the torch backend (leave out --backend, or give --backend torch)")


def refuse_detector(module: object, name: str) -> None:
    """A ModelError when `module` is a detector (`DETECTORS_STAY_ON_TORCH`)."""
    from camstream.model.detectors import DetectorModel

    if isinstance(module, DetectorModel):
        raise ModelError(DETECTORS_STAY_ON_TORCH.format(name=name))


def export_model(out: str, model: str = "efficientnet_lite0", method: str | None = "gradcam",
                 weights: str | None = None, layer: str | None = None, input_size: tuple[int, int] | None = None,
                 card: ModelCard | None = None) -> dict:
    """Write the explained graph of `model` + `method` (None: the model card's, else gradcam) to `out` (.onnx);
    returns what it wrote. The input size, mean and std of the model card are baked into the graph; its labels
    and resize mode are stored with it."""
    if not out.endswith(".onnx"):
        raise CamstreamError(f"the exported file must end in .onnx: {out}")
    spec = load_model(model, weights, card)
    refuse_detector(spec.module, spec.name)
    if input_size is not None:
        spec.input_size = input_size
    method = method or spec.method or "gradcam"
    height, width = spec.input_size
    with written_atomically(out) as partial:  # two exports of one graph (a shared cache) never mix
        with HookedModel(spec.module, (3, height, width), layer or spec.layer) as hooked:
            graph = ExplainedGraph(spec, hooked, analyse_head(hooked), method).eval()
            frames = torch.zeros(1, height, width, 3, dtype=torch.uint8)
            class_ids = torch.full((1,), -1, dtype=torch.int64)
            _export(graph, (frames, class_ids), partial, ["frames", "class_ids"],
                    ["logits", "class_id", "score", "cam"])
            metadata = {"model": spec.name, "method": method, "layer": hooked.layer_name,
                        "input_size": [height, width], "labels": list(spec.labels), "mean": list(spec.mean),
                        "std": list(spec.std), "resize": spec.resize, "classes": spec.classes}
        _write_metadata(partial, metadata)
    return {"out": out, **{k: v for k, v in metadata.items() if k != "labels"}, "bytes": os.path.getsize(out)}


def _write_metadata(path: str, metadata: dict) -> None:
    import onnx

    graph = onnx.load(path)
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = EXPORT_METADATA_PREFIX + key, json.dumps(value)
    onnx.save(graph, path)


def quantise_int8(graph: str, out: str, calibration: list[np.ndarray], check: list[np.ndarray]) -> dict:
    """Static int8 quantisation (ONNX Runtime's quantiser, QDQ, per-channel) of the convolutions of an exported
    `graph`, calibrated on `calibration` frames (uint8 RGB at the model's size); the head and the CAM arithmetic
    stay float. Returns what it wrote and how the int8 graph agrees with the float one on the `check` frames:
    top-1 agreement and the Pearson correlation of each frame's CAM."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self._left = iter(calibration)

        def get_next(self) -> dict | None:
            frame = next(self._left, None)
            return None if frame is None else {"frames": frame[None], "class_ids": np.full(1, -1, np.int64)}

    if not calibration:
        raise CamstreamError("int8 calibration needs at least one image")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = out + ".prepared"
    try:  # the quantiser wants batch norms folded into their convolutions and every shape known first
        quant_pre_process(graph, prepared, skip_symbolic_shape=True)
        with warnings.catch_warnings(), written_atomically(out) as partial:
            warnings.simplefilter("ignore")
            quantize_static(prepared, partial, Frames(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                            per_channel=True, reduce_range=True, nodes_to_exclude=_float_convolutions(prepared),
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        if os.path.exists(prepared):
            os.remove(prepared)
    return {"out": out, "bytes": os.path.getsize(out), "float_bytes": os.path.getsize(graph),
            **compare_graphs(graph, out, check)}


def _float_convolutions(path: str) -> list[str]:
    """The convolutions kept in float: the stem (on the normalised image) and the depthwise ones. Measured on
    EfficientNet-Lite0 and the shared balloon photos (top-1 agreement / mean CAM correlation with float, on
    images not calibrated on): all convolutions int8 0.53 / 0.75; without the stem 0.77 / 0.92; without the
    stem and the depthwise convolutions 0.83 / 0.94."""
    import onnx

    convolutions = [node for node in onnx.load(path).graph.node if node.op_type == "Conv"]
    depthwise = [node.name for node in convolutions
                 if any(attribute.name == "group" and attribute.i > 1 for attribute in node.attribute)]
    return [convolutions[0].name, *depthwise] if convolutions else []


def compare_graphs(reference: str, candidate: str, frames: list[np.ndarray]) -> dict:
    """Top-1 agreement and mean per-frame CAM correlation of `candidate` against `reference` on `frames`."""
    import onnxruntime as ort

    outputs = []
    for path in (reference, candidate):
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        results = [session.run(None, {"frames": frame[None], "class_ids": np.full(1, -1, np.int64)})
                   for frame in frames]
        outputs.append((np.concatenate([r[1] for r in results]), np.concatenate([r[3] for r in results])))
    (classes, cams), (classes_q, cams_q) = outputs
    correlations = [float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) for a, b in zip(cams, cams_q, strict=True)
                    if a.std() > 0 and b.std() > 0]
    return {"frames_checked": len(frames), "top1_agreement": round(float((classes == classes_q).mean()), 4),
            "cam_correlation_mean": round(float(np.mean(correlations)), 4) if correlations else None,
            "cam_correlation_min": round(float(np.min(correlations)), 4) if correlations else None}


def read_image_folder(folder: str, size: tuple[int, int], limit: int = 200) -> list[np.ndarray]:
    """The JPEG/PNG images of `folder` (sorted, at most `limit`) as uint8 RGB at `size`; an InputError when none."""
    import cv2

    from camstream.errors import InputError
    from camstream.model.preprocess import resize_to_rgb

    if not os.path.isdir(folder):
        raise InputError(f"no such folder: {folder}")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".jpg", ".jpeg", ".png")))[:limit]
    images = [cv2.imread(os.path.join(folder, name), cv2.IMREAD_COLOR) for name in names]
    frames = [resize_to_rgb(image, size) for image in images if image is not None]
    if len(frames) < 2:
        raise InputError(f"{folder} holds {len(frames)} readable image(s); int8 needs at least 2")
    return frames
