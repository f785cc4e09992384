"""The layers after the target layer in closed form, for the heads where that form exists.

For a head that is an elementwise activation φ (identity, ReLU or ReLU6), global average pooling and a linear
layer W — EfficientNet-Lite0, MobileNetV2, ResNet18 and most classifiers — y = W · mean_ij φ(A_ij) + b, so the
gradient is analytic: ∂y_c/∂A_kij = W[c, k] · φ'(A_kij) / (h·w), and the head of a masked activation is one
matmul. An exported graph (`camstream.backends.export`) hands a method this head (`CamMethod.analytic_head`)
instead of running a backward pass: the method's own formula then needs no autograd. Whether a model's
head has this form is checked numerically by the export (`camstream.backends.export.analyse_head`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Elementwise = Callable[[torch.Tensor], torch.Tensor]
ACTIVATIONS: dict[str, tuple[Elementwise, Elementwise]] = {  # φ and φ' (torch's backward rules)
    "identity": (lambda a: a, torch.ones_like),
    "relu": (torch.relu, lambda a: (a > 0).to(a.dtype)),
    "relu6": (lambda a: a.clamp(0.0, 6.0), lambda a: ((a > 0) & (a < 6)).to(a.dtype)),
}
HOMOGENEOUS = ("identity", "relu")  # φ(m·a) = m·φ(a) for m ≥ 0


@dataclass
class GapLinearHead:
    """The layers after the target: y = W · mean_ij φ(A_ij) + b."""

    activation: str  # a key of ACTIVATIONS
    weight: torch.Tensor  # (K, C)
    bias: torch.Tensor  # (K,)

    def gradient(self, activation: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """∂y_c/∂A = W[c] · φ'(A) / (h·w) for each sample's target c: (B, C, h, w)."""
        _, derivative = ACTIVATIONS[self.activation]
        height, width = activation.shape[2:]
        return self.weight[targets][:, :, None, None] * derivative(activation) / float(height * width)

    def masked_logits(self, activation: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """head(A_b ⊙ M_m) for every sample b and mask m of `masks` (M, 1, h, w): (B, M, K), all in one batch.
        For a homogeneous φ, mean_ij φ(M ⊙ A) = Σ_ij M φ(A) / (h·w): one matmul over the masks."""
        phi, _ = ACTIVATIONS[self.activation]
        height, width = activation.shape[2:]
        if self.activation in HOMOGENEOUS:
            flat_masks = masks.view(masks.shape[0], height * width)  # (masks, positions)
            pooled = torch.matmul(phi(activation).flatten(2), flat_masks.t()).transpose(1, 2) / float(height * width)
        else:
            pooled = phi(activation[:, None] * masks[None]).mean((3, 4))  # via (B, M, C, h, w)
        return torch.matmul(pooled, self.weight.t()) + self.bias
