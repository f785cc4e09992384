"""Explainer speed: plain inference (the physical limit) vs camstream's methods vs peer libraries."""

from __future__ import annotations

import copy
import importlib.util
import warnings
from collections.abc import Callable, Iterable

import numpy as np
import torch

from camstream.bench.timing import interleaved_medians
from camstream.explain import REGISTRY, HookedModel, ModelKind, make_method
from camstream.model.load import ModelSpec, load_model
from camstream.model.preprocess import Preprocessor

PEERS = {"pytorch-grad-cam": "pytorch_grad_cam", "captum": "captum", "torchcam": "torchcam"}


def real_frames(video: str, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """`count` RGB frames of `video` at the model's size, spread over the clip."""
    import av

    with av.open(video) as container:
        frames = [frame.reformat(width=size[1], height=size[0], format="rgb24").to_ndarray()
                  for frame in container.decode(video=0)]
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    return [frames[index] for index in picks]


def load_quietly(name: str) -> ModelSpec:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(name)


def peer_contenders(models: dict[str, torch.nn.Module], layer_name: str, batch: torch.Tensor,
                    targets: list[int]) -> tuple[dict[str, Callable[[], object]], list[str]]:
    """Each installed peer's Grad-CAM on its own copy of the model (`models`, by peer name, copied before
    camstream hooked the original); also the names of missing peers."""
    contenders: dict[str, Callable[[], object]] = {}
    missing = [name for name, module in PEERS.items() if importlib.util.find_spec(module) is None]
    if "pytorch-grad-cam" not in missing:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        peer_model = models["pytorch-grad-cam"]
        extractor = GradCAM(model=peer_model, target_layers=[dict(peer_model.named_modules())[layer_name]])
        wanted = [ClassifierOutputTarget(t) for t in targets]
        contenders["pytorch-grad-cam"] = lambda: extractor(input_tensor=batch, targets=wanted)
    if "captum" not in missing:
        from captum.attr import LayerGradCam

        peer_model = models["captum"]
        captum_cam = LayerGradCam(peer_model, dict(peer_model.named_modules())[layer_name])
        target_tensor = torch.tensor(targets)
        contenders["captum"] = lambda: captum_cam.attribute(batch, target=target_tensor, relu_attributions=True)
    if "torchcam" not in missing:
        from torchcam.methods import GradCAM as TorchcamGradCAM

        peer_model = models["torchcam"]
        torchcam_cam = TorchcamGradCAM(peer_model, target_layer=layer_name)

        def torchcam_run() -> object:
            scores = peer_model(batch)
            return torchcam_cam(class_idx=targets, scores=scores)

        contenders["torchcam"] = torchcam_run
    return contenders, missing


def bench_explainers(model_name: str, batch_size: int, video: str, rounds: int = 20,
                     channels_last: bool = True, input_side: int | None = None,
                     methods: tuple[str, ...] = tuple(REGISTRY[ModelKind.CNN]), peers: bool = True,
                     progress: Callable[[str], None] | None = None) -> dict:
    """ms/frame of plain inference, each method and each peer on the same real frames and batch."""
    spec = load_quietly(model_name)
    if input_side is not None:
        spec.input_size = (input_side, input_side)
    model = spec.module
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    frames = real_frames(video, batch_size, spec.input_size)
    batch = Preprocessor(spec, batch_size)(frames).clone().contiguous(memory_format=memory_format)
    # Copies first: a hooked model holds its hook and its mode-restoring context, which cannot be deep-copied.
    frozen_copy = copy.deepcopy(model)
    peer_copies = {name: copy.deepcopy(model) for name in PEERS} if peers else {}
    hooked = HookedModel(model, (3, *spec.input_size))
    with torch.inference_mode():
        targets = model(batch).argmax(1).tolist()

    def plain() -> object:
        with torch.inference_mode():
            return model(batch)

    contenders: dict[str, Callable[[], object]] = {"plain": plain}

    def skipped(name: str, exc: Exception) -> None:
        if progress:
            progress(f"{model_name}: {name} skipped ({exc})")

    contenders.update(method_contenders(hooked, methods, batch, "", skipped))
    frozen = HookedModel(frozen_copy, (3, *spec.input_size))
    frozen_ok = frozen.freeze(batch)
    if frozen_ok:
        contenders["plain_frozen"] = lambda: frozen.forward(batch)
        contenders.update(method_contenders(frozen, [m for m in methods if m in contenders], batch, "_frozen"))
    missing: list[str] = []
    if peers:
        peer_runs, missing = peer_contenders(peer_copies, hooked.layer_name, batch, targets)
        contenders.update(peer_runs)

    def tick(index: int) -> None:
        if progress and (index + 1) % 5 == 0:
            progress(f"{model_name} batch {batch_size}: round {index + 1}/{rounds}")

    medians = interleaved_medians(contenders, rounds=rounds, on_round=tick)
    hooked.close()
    frozen.close()
    per_frame = {name: seconds * 1e3 / batch_size for name, seconds in medians.items()}
    return {"model": model_name, "batch": batch_size, "input": list(spec.input_size), "channels_last": channels_last,
            "layer": hooked.layer_name} | summarise(per_frame, methods, missing)


def method_contenders(hooked: HookedModel, methods: Iterable[str], batch: torch.Tensor, suffix: str,
                      on_skip: Callable[[str, Exception], object] | None = None) -> dict[str, Callable[[], object]]:
    """A timed call per method that runs on `hooked` (a method that fails once, e.g. cam on a head that is not
    GAP + linear, is left out and told to `on_skip`), named `name + suffix`."""
    contenders: dict[str, Callable[[], object]] = {}
    for name in methods:
        explainer = make_method(name, hooked)
        try:
            explainer(batch)
        except Exception as exc:  # noqa: BLE001 - any failure leaves the method out of the race
            if on_skip is not None:
                on_skip(name, exc)
            continue
        contenders[name + suffix] = (lambda e=explainer: e(batch))
    return contenders


def summarise(per_frame: dict[str, float], methods: Iterable[str], missing: list[str]) -> dict:
    """ms/frame of every contender and its ratio to plain inference (eager and frozen), and the peers' speed
    against our Grad-CAM."""
    plain_ms = per_frame["plain"]
    gradcam_ms = per_frame.get("gradcam")

    def timed(name: str, reference: float) -> dict:
        return {"ms": round(per_frame[name], 3), "ratio_to_plain": round(per_frame[name] / reference, 3)}

    result: dict = {"plain_ms": round(plain_ms, 3),
                    "methods": {name: timed(name, plain_ms) for name in methods if name in per_frame},
                    "peers": {}, "missing_peers": missing, "frozen": None}
    if "plain_frozen" in per_frame:
        frozen_plain = per_frame["plain_frozen"]
        result["frozen"] = {"plain_ms": round(frozen_plain, 3), "methods": {
            name: timed(f"{name}_frozen", frozen_plain)
            | {"ratio_to_eager_plain": round(per_frame[f"{name}_frozen"] / plain_ms, 3)}
            for name in methods if f"{name}_frozen" in per_frame}}
    for name in PEERS:
        if name in per_frame:
            result["peers"][name] = timed(name, plain_ms) | {
                "speedup_vs_peer": round(per_frame[name] / gradcam_ms, 3) if gradcam_ms else None}
    return result
