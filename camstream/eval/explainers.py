"""Every method `camstream eval` compares, behind one call: pixels in [0, 1] → one [0, 1] map per image.

camstream's own CAM methods are wrapped as they stream (map at the target layer's size, upsampled by the
same kernel as the overlay). The baselines are there to be measured against: RISE and Score-CAM are short
algorithms written here; pytorch-grad-cam and Captum (DeepLift, LRP, Lime) are optional extras
(`pip install 'camstream[baselines]'`), imported only when asked for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from camstream.catalog import EXPORTABLE_METHODS
from camstream.errors import CamstreamError, ModelError
from camstream.explain import CAM_METHODS, HookedModel, hook_model, make_method
from camstream.explain.result import evaluation_mode
from camstream.kernels import upsample_bilinear
from camstream.model.card import ModelCard
from camstream.model.load import ModelSpec
from camstream.model.preprocess import Normaliser

Predict = Callable[[torch.Tensor], torch.Tensor]  # pixels (B, 3, H, W) in [0, 1] → probabilities (B, classes)


class EvalExplainer:
    """A method under evaluation. Subclasses implement `maps`; `__call__` picks targets and scales maps."""

    name: ClassVar[str]
    computed_by = "torch"  # what computes the maps, as eval reports it

    def __init__(self, spec: ModelSpec, predict: Predict | None = None) -> None:
        self.spec = spec
        self._restore = contextlib.ExitStack()  # the model goes back to its own mode on `close`
        self.model = self._restore.enter_context(evaluation_mode(spec.module))
        self.normalise = Normaliser(spec)
        self._predict = predict

    def probabilities(self, pixels: torch.Tensor, batch: int = 16) -> torch.Tensor:
        """Softmax of the model on pixel images (through `predict` when one was given, e.g. a frozen
        copy of the model), in chunks of `batch`."""
        if self._predict is not None:
            return self._predict(pixels)
        with torch.inference_mode():
            return torch.cat([torch.softmax(self.model(self.normalise(chunk)), 1) for chunk in pixels.split(batch)])

    def targets(self, pixels: torch.Tensor, class_id: int | torch.Tensor | None) -> torch.Tensor:
        """The class explained for each image: `class_id` (one for all, or one each), or each image's top-1."""
        if isinstance(class_id, torch.Tensor):
            return class_id.long()
        if class_id is not None:
            return torch.full((pixels.shape[0],), class_id, dtype=torch.long)
        return self.probabilities(pixels).argmax(1)

    def __call__(self, pixels: torch.Tensor,
                 class_id: int | torch.Tensor | None = None) -> tuple[np.ndarray, torch.Tensor]:
        """(maps (B, H, W) float32 each scaled to [0, 1], targets (B,)) for pixels (B, 3, H, W) in [0, 1]."""
        maps, targets = self.explain(pixels, class_id)
        maps = np.nan_to_num(np.asarray(maps, dtype=np.float32))
        maps = np.maximum(maps, 0.0)
        peak = maps.reshape(len(maps), -1).max(1)
        maps /= np.where(peak > 0, peak, 1.0)[:, None, None]
        return maps, targets

    def explain(self, pixels: torch.Tensor, class_id: int | torch.Tensor | None) -> tuple[np.ndarray, torch.Tensor]:
        """(raw maps, targets); by default the targets are chosen first, then `maps` is asked."""
        targets = self.targets(pixels, class_id)
        return self.maps(pixels, targets), targets

    def maps(self, pixels: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
        """Non-negative maps (B, H, W) at the input's size; any scale."""
        raise NotImplementedError

    def release(self) -> None:
        """Release hooks or other state (subclasses that hold some)."""

    def close(self) -> None:
        """Release what the method holds and give the model back the mode it came in."""
        self.release()
        self._restore.close()


def at_input_size(cams, pixels: torch.Tensor) -> np.ndarray:
    """Feature-size maps (a tensor or an array, (B, h, w)) upsampled by the overlay's kernel to the size of
    `pixels` (B, 3, H, W)."""
    height, width = pixels.shape[2:]
    values = np.asarray(cams, dtype=np.float32)
    return np.stack([upsample_bilinear(np.ascontiguousarray(cam), (height, width)) for cam in values])


class OwnMethod(EvalExplainer):
    """One of camstream's streaming methods (`cam`, `gradcam`, `gradcam++`, `recipro`; on a ViT
    `vit-recipro`, `vit-rollout`)."""

    name = "own"

    def __init__(self, spec: ModelSpec, method: str, predict: Predict | None = None) -> None:
        super().__init__(spec, predict)
        self.name = method
        self.hooked = hook_model(self.model, (3, *spec.input_size), spec.layer)
        self.method = make_method(method, self.hooked)

    def explain(self, pixels, class_id):
        explanation = self.method(self.normalise(pixels), class_id)
        return at_input_size(explanation.maps, pixels), explanation.class_ids.clone()

    def release(self) -> None:
        self.hooked.close()


class ExportedMethod(EvalExplainer):
    """One of camstream's CNN CAM methods computed by a runtime from the exported graph that reproduces the torch
    method (`camstream.backends.export.export_pixels_graph`: float pixels in, the same maps); eval's fast path."""

    name = "own"

    def __init__(self, spec: ModelSpec, method: str, predict: Predict | None = None, runtime: str = "openvino") -> None:
        from camstream.backends.factory import pixels_graph

        super().__init__(spec, predict)
        self.name = method
        self.graph = pixels_graph(spec, method, runtime)
        self.computed_by = f"{runtime} (exported graph)"

    def explain(self, pixels, class_id):
        if isinstance(class_id, torch.Tensor):
            wanted = class_id.long().numpy()
        else:
            wanted = np.full(len(pixels), -1 if class_id is None else class_id, np.int64)
        _, targets, _, cams = self.graph(pixels.float().contiguous().numpy(), wanted)
        return at_input_size(cams, pixels), torch.from_numpy(targets.astype(np.int64))


class BackendMethod(EvalExplainer):
    """One of camstream's CAM methods run by a runtime backend (ONNX Runtime, OpenVINO: the explanation inside
    the exported graph), fed the images as the uint8 frames a stream would hand it; scored like the others."""

    name = "own"

    def __init__(self, spec: ModelSpec, method: str, predict: Predict | None = None, backend: str = "onnxruntime",
                 model: str | None = None, max_batch: int = 8, weights: str | None = None,
                 card: ModelCard | None = None) -> None:
        from camstream.backends import BackendRequest, make_backend

        super().__init__(spec, predict)
        self.name = method
        self.backend = make_backend(BackendRequest(backend, model or spec.name, method, weights, max_batch=max_batch,
                                                   device="cpu", card=card))
        self.computed_by = f"{backend} backend (uint8 frames, as a stream)"

    def explain(self, pixels, class_id):
        frames = list((pixels * 255.0).round().byte().permute(0, 2, 3, 1).contiguous().numpy())
        wanted = class_id.tolist() if isinstance(class_id, torch.Tensor) else class_id
        explanation = self.backend.explain(frames, wanted)
        return at_input_size(explanation.maps, pixels), torch.as_tensor(np.asarray(explanation.class_ids),
                                                                        dtype=torch.long)

    def release(self) -> None:
        self.backend.close()


class Rise(EvalExplainer):
    """RISE (Petsiuk et al. 2018): S = Σ_i f_c(x ⊙ M_i) M_i / (N p) over N random masks.

    Each mask is a `cells`×`cells` grid of Bernoulli(p) cells, upsampled bilinearly to (cells + 1) cell
    sizes and cropped at a random shift; the same masks (fixed seed) serve every image.
    """

    name = "rise"

    def __init__(self, spec: ModelSpec, predict: Predict | None = None, masks: int = 500, cells: int = 7,
                 keep: float = 0.5, seed: int = 0, batch: int = 16) -> None:
        super().__init__(spec, predict)
        self.count, self.cells, self.keep, self.seed, self.batch = masks, cells, keep, seed, batch
        self._masks: torch.Tensor | None = None

    def random_masks(self, height: int, width: int) -> torch.Tensor:
        """(N, 1, H, W) soft masks, made once per input size."""
        if self._masks is None or self._masks.shape[2:] != (height, width):
            generator = torch.Generator().manual_seed(self.seed)
            grid = (torch.rand(self.count, 1, self.cells, self.cells, generator=generator) < self.keep).float()
            cell_h, cell_w = -(-height // self.cells), -(-width // self.cells)
            big = nn.functional.interpolate(grid, size=((self.cells + 1) * cell_h, (self.cells + 1) * cell_w),
                                            mode="bilinear", align_corners=False)
            shifts = torch.randint(0, cell_h, (self.count,), generator=generator), \
                torch.randint(0, cell_w, (self.count,), generator=generator)
            self._masks = torch.stack([big[i, :, dy:dy + height, dx:dx + width]
                                       for i, (dy, dx) in enumerate(zip(*shifts, strict=True))])
        return self._masks

    def maps(self, pixels, targets):
        height, width = pixels.shape[2:]
        masks = self.random_masks(height, width)
        out = np.empty((pixels.shape[0], height, width), np.float32)
        for sample in range(pixels.shape[0]):
            scores = torch.cat([self.probabilities(pixels[sample:sample + 1] * chunk, self.batch)
                                [:, targets[sample]] for chunk in masks.split(self.batch)])
            out[sample] = (torch.tensordot(scores, masks[:, 0], dims=1) / (self.count * self.keep)).numpy()
        return out


class ScoreCam(EvalExplainer):
    """Score-CAM (Wang et al. 2020): w_k = softmax(f(x ⊙ norm(up(A_k))))_c; map = relu(Σ_k w_k A_k).

    Channels whose activation is zero everywhere add nothing to the map and are not scored.
    """

    name = "scorecam"

    def __init__(self, spec: ModelSpec, predict: Predict | None = None, batch: int = 16) -> None:
        super().__init__(spec, predict)
        self.batch = batch
        self.hooked = HookedModel(self.model, (3, *spec.input_size))

    def maps(self, pixels, targets):
        height, width = pixels.shape[2:]
        self.hooked.forward(self.normalise(pixels))
        activations = self.hooked.activation.float().clone()
        out = np.empty((pixels.shape[0], height, width), np.float32)
        for sample, activation in enumerate(activations):
            live = activation.flatten(1).amax(1) > 0
            upsampled = nn.functional.interpolate(activation[live][:, None], size=(height, width), mode="bilinear",
                                                  align_corners=False)
            low = upsampled.flatten(1).amin(1).view(-1, 1, 1, 1)
            span = (upsampled.flatten(1).amax(1).view(-1, 1, 1, 1) - low).clamp_min(1e-12)
            masks = (upsampled - low) / span
            weights = torch.cat([self.probabilities(pixels[sample:sample + 1] * chunk, self.batch)
                                 [:, targets[sample]] for chunk in masks.split(self.batch)])
            cam = torch.tensordot(weights, activation[live], dims=1).relu()[None, None]
            out[sample] = nn.functional.interpolate(cam, size=(height, width), mode="bilinear",
                                                    align_corners=False)[0, 0].numpy()
        return out

    def release(self) -> None:
        self.hooked.close()


def _import(module: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise CamstreamError(f"this baseline needs {module.split('.')[0]}: pip install 'camstream[baselines]'") \
            from exc


class PytorchGradCam(EvalExplainer):
    """pytorch-grad-cam's GradCAM on the same target layer as ours."""

    name = "pgc-gradcam"

    def __init__(self, spec: ModelSpec, predict: Predict | None = None) -> None:
        super().__init__(spec, predict)
        library = _import("pytorch_grad_cam")
        targets = _import("pytorch_grad_cam.utils.model_targets")
        with HookedModel(self.model, (3, *spec.input_size)) as hooked:
            layer = dict(self.model.named_modules())[hooked.layer_name]
        self._target = targets.ClassifierOutputTarget
        self._cam = library.GradCAM(model=self.model, target_layers=[layer])

    def maps(self, pixels, targets):
        return self._cam(self.normalise(pixels), targets=[self._target(int(t)) for t in targets])

    def release(self) -> None:
        self._cam.activations_and_grads.release()


class _CaptumAttribution(EvalExplainer):
    """A Captum attribution (B, 3, H, W) summed over colour channels; positive evidence kept."""

    algorithm: ClassVar[str]

    def __init__(self, spec: ModelSpec, predict: Predict | None = None) -> None:
        super().__init__(spec, predict)
        self._method = getattr(_import("captum.attr"), self.algorithm)(self.model)

    def maps(self, pixels, targets):
        inputs = self.normalise(pixels).requires_grad_(True)
        try:
            attribution = self._method.attribute(inputs, target=targets, **self.options(pixels, inputs))
        except (AssertionError, TypeError, RuntimeError) as exc:
            raise ModelError(f"{self.name} cannot run on {self.spec.name}: {str(exc).splitlines()[0]}") from exc
        return attribution.detach().sum(1).numpy()

    def options(self, pixels: torch.Tensor, inputs: torch.Tensor) -> dict:
        return {}


class CaptumDeepLift(_CaptumAttribution):
    """Captum DeepLift against a black image."""

    name = "captum-deeplift"
    algorithm = "DeepLift"

    def options(self, pixels, inputs):
        return {"baselines": self.normalise(torch.zeros_like(pixels))}


class CaptumLrp(_CaptumAttribution):
    """Captum LRP (only models built of layers it has rules for, e.g. vgg16)."""

    name = "captum-lrp"
    algorithm = "LRP"


class CaptumLime(_CaptumAttribution):
    """Captum Lime over SLIC superpixels (scikit-image), black as the 'off' value."""

    name = "captum-lime"
    algorithm = "Lime"

    def __init__(self, spec: ModelSpec, predict: Predict | None = None, samples: int = 200,
                 segments: int = 50) -> None:
        super().__init__(spec, predict)
        self.samples, self.segments = samples, segments
        self._slic = _import("skimage.segmentation").slic
        softmax_model = nn.Sequential(self.model, nn.Softmax(1))
        self._method = _import("captum.attr").Lime(softmax_model)

    def maps(self, pixels, targets):
        out = []
        for sample in range(pixels.shape[0]):
            image = pixels[sample].permute(1, 2, 0).numpy()
            segments = torch.from_numpy(self._slic(image, n_segments=self.segments, start_label=0)).long()
            inputs = self.normalise(pixels[sample:sample + 1])
            with torch.no_grad():
                attribution = self._method.attribute(inputs, target=int(targets[sample]), n_samples=self.samples,
                                                     feature_mask=segments.expand(1, 3, -1, -1),
                                                     baselines=self.normalise(torch.zeros_like(inputs)),
                                                     perturbations_per_eval=50)
            out.append(attribution[0, 0].numpy())
        return np.stack(out)


BASELINES: dict[str, type[EvalExplainer]] = {b.name: b for b in (Rise, ScoreCam, PytorchGradCam, CaptumDeepLift,
                                                                 CaptumLrp, CaptumLime)}
EXPLAINERS = [*CAM_METHODS, *BASELINES]


def is_vit(spec: ModelSpec) -> bool:
    """Whether `spec`'s model is a vision transformer (a patch grid of tokens): no exported graph reproduces its
    CNN methods, so asking for one stays with torch, which says so."""
    from camstream.explain.vit import find_token_layout

    return find_token_layout(spec.module, (3, *spec.input_size)) is not None


def make_explainer(name: str, spec: ModelSpec, predict: Predict | None = None, backend: str = "torch",
                   model: str | None = None, runtime: str = "torch", weights: str | None = None,
                   card: ModelCard | None = None) -> EvalExplainer:
    """The method or baseline called `name` (see `EXPLAINERS`) on `spec`'s model (`model`: the name or file it
    was loaded from); perturbation baselines score their masked images through `predict` when given. camstream's
    own CAM methods run on `backend` (torch, onnxruntime, openvino: as a stream's backend runs them, on the model
    made from `model`, `weights` and `card`); torch's methods are computed by `runtime` (openvino, onnxruntime)
    from an exported graph that reproduces them where the model's head allows, else by torch. The baselines are
    references and always run on torch. eval runs on the CPU."""
    if name in CAM_METHODS:
        if backend != "torch":
            return BackendMethod(spec, name, predict, backend, model, weights=weights, card=card)
        if runtime != "torch" and name in EXPORTABLE_METHODS and not is_vit(spec):
            try:
                return ExportedMethod(spec, name, predict, runtime)
            except ModelError:  # a head the graph cannot reproduce (analyse_head): torch computes it
                pass
        return OwnMethod(spec, name, predict)
    if name in BASELINES:
        return BASELINES[name](spec, predict)
    raise CamstreamError(f"unknown method '{name}' (choose from {', '.join(EXPLAINERS)})")
