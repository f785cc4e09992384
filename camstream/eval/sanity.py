"""Sanity checks for saliency methods (Adebayo et al. 2018, "Sanity checks for saliency maps", NeurIPS).

A map that explains the model's decision must change when the decision's inputs change:
- **class sensitivity**: the map for the top-1 class against the map for another class on the same image;
- **model-parameter randomisation**: the map against the map of the same model whose classifier (its last linear
  layer, the first step of Adebayo et al.'s cascading randomisation) has random weights.
Similarity is the Spearman rank correlation of the two maps, averaged over the images. One draw of "another
class" or "random weights" moves that figure by 0.1–0.35, so each check is drawn `draws` times (other classes
spread evenly over the ids, `other_class_offsets`; random heads from seeds 0, 1, …) and reported as the mean with
the range; a method passes a check when the mean stays below `PASS_BELOW` (an edge detector, blind to the model,
scores near 1 on both).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from scipy import stats
from torch import nn

from camstream.errors import ModelError
from camstream.explain import hook_model, make_method
from camstream.model.card import ModelCard
from camstream.model.load import load_model
from camstream.model.preprocess import Normaliser, resize_to_rgb

PASS_BELOW = 0.5
DRAWS = 5
MAX_DRAWS = 8


def other_class_offsets(classes: int, draws: int) -> list[int]:
    """How far from the top-1 class each draw's other class lies (mod `classes`): spread evenly over 1..C−1, so never
    the top-1 itself and never twice the same (fewer draws when the model has fewer other classes)."""
    offsets = sorted({classes * (k + 1) // (draws + 1) for k in range(draws)} - {0})
    return [offset for offset in offsets if offset < classes]


def _maps(model: nn.Module, method: str, inputs: torch.Tensor, input_shape: tuple[int, int, int],
          class_ids: torch.Tensor | None, layer: str | None = None) -> tuple[np.ndarray, torch.Tensor, int]:
    """The maps at `layer` (copied out of the method's buffer), the explained classes and the number of
    classes."""
    with hook_model(model, input_shape, layer) as hooked:
        explanation = make_method(method, hooked)(inputs, class_ids)
        return np.asarray(explanation.maps).copy(), explanation.class_ids.clone(), explanation.logits.shape[1]


def _spearman(first: np.ndarray, second: np.ndarray) -> float:
    values = []
    for a, b in zip(first, second, strict=True):
        if np.ptp(a) == 0 or np.ptp(b) == 0:  # a flat map carries no ranking: as different as can be
            values.append(0.0)
            continue
        values.append(float(stats.spearmanr(a.ravel(), b.ravel()).statistic))
    return float(np.mean(values))


def randomised_classifier(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of `model` whose last linear layer has fresh random weights (the rest untouched)."""
    copied = copy.deepcopy(model)
    linears = [module for module in copied.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError("the model has no linear classifier to randomise")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        linears[-1].weight.copy_(torch.randn(linears[-1].weight.shape, generator=generator) * 0.05)
        if linears[-1].bias is not None:
            linears[-1].bias.zero_()
    return copied


def drawn(values: list[float]) -> dict:
    """The summary of one check's draws: mean (the verdict's figure), min, max and each draw."""
    return {"mean": round(float(np.mean(values)), 3), "min": round(min(values), 3), "max": round(max(values), 3),
            "draws": [round(value, 3) for value in values]}


def sanity_checks(frames_bgr: list[np.ndarray], methods: list[str], model: str = "efficientnet_lite0",
                  weights: str | None = None, card: ModelCard | None = None, draws: int = DRAWS) -> dict:
    """Per method: the class-sensitivity and randomisation correlations on `frames_bgr` over `draws` other
    classes and random classifiers (mean and range; the verdict from the means), and pass / fail; the model made
    from `model`, `weights` and `card` (`load_model`), fed as a stream feeds it."""
    if not 1 <= draws <= MAX_DRAWS:
        raise ValueError(f"draws must be 1 to {MAX_DRAWS}")
    spec = load_model(model, weights, card)
    height, width = spec.input_size
    pixels = torch.from_numpy(np.stack([resize_to_rgb(f, (height, width), spec.resize)
                                        for f in frames_bgr])).permute(0, 3, 1, 2)
    inputs = Normaliser(spec)(pixels.float() / 255.0)
    shape = (3, height, width)
    tops = {method: _maps(spec.module, method, inputs, shape, None, spec.layer) for method in methods}
    random_rhos: dict[str, list[float]] = {method: [] for method in methods}
    for seed in range(draws):  # one randomised copy of the model at a time (a ViT's is 0.3 GB)
        head = randomised_classifier(spec.module, seed)
        for method, (top_maps, targets, _classes) in tops.items():
            random_rhos[method].append(_spearman(top_maps, _maps(head, method, inputs, shape, targets, spec.layer)[0]))
        del head
    results = {}
    for method, (top_maps, targets, classes) in tops.items():
        if classes < 2:
            raise ModelError(f"{spec.name} has one output: the class-sensitivity check needs another class")
        class_rhos = [_spearman(top_maps, _maps(spec.module, method, inputs, shape, (targets + offset) % classes,
                                                spec.layer)[0]) for offset in other_class_offsets(classes, draws)]
        class_drawn, random_drawn = drawn(class_rhos), drawn(random_rhos[method])
        class_rho, random_rho = class_drawn["mean"], random_drawn["mean"]
        results[method] = {"class_sensitivity_spearman": class_rho, "randomisation_spearman": random_rho,
                           "class_sensitivity": class_drawn, "randomisation": random_drawn,
                           "passes_class_sensitivity": class_rho < PASS_BELOW,
                           "passes_randomisation": random_rho < PASS_BELOW,
                           "passed": class_rho < PASS_BELOW and random_rho < PASS_BELOW}
    return {"model": spec.name, "images": len(frames_bgr), "pass_below": PASS_BELOW, "draws": draws,
            "methods": results}
