"""CAM methods: each a short subclass of `CamMethod` that says how its map is made.

Example::

    spec = load_model()
    with HookedModel(spec.module) as hooked:
        explanation = GradCam(hooked)(batch)      # batch: (B, 3, 224, 224), normalised
        explanation.maps                           # (B, 7, 7), each scaled to max 1
"""

from __future__ import annotations

import torch
from torch import nn

from camstream.errors import ModelError
from camstream.explain.base import CamMethod, HookedModel, scale_to_unit_range


class Cam(CamMethod):
    """CAM (Zhou et al. 2016) for GAP + linear heads, forward only: w_k = W[c, k] of the linear layer."""

    name = "cam"

    def __init__(self, hooked: HookedModel) -> None:
        super().__init__(hooked)
        self._classifier: nn.Linear | None = None

    def channel_weights(self, activation: torch.Tensor, gradient: torch.Tensor | None,
                        targets: torch.Tensor) -> torch.Tensor:
        if self.analytic_head is not None:
            return self.analytic_head.weight[targets]
        if self._classifier is None:
            self._classifier = self._find_gap_linear_head(activation)
        return self._classifier.weight[targets]

    def _find_gap_linear_head(self, activation: torch.Tensor) -> nn.Linear:
        """The last `nn.Linear` whose logits equal linear(GAP(A)); checked once on a real activation."""
        channels = activation.shape[1]
        linears = [m for m in self.hooked.model.modules() if isinstance(m, nn.Linear) and m.in_features == channels]
        if linears:
            linear = linears[-1]
            pooled = activation[:1].float().mean((2, 3))
            expected = self.hooked.head(activation[:1])
            if torch.allclose(nn.functional.linear(pooled, linear.weight, linear.bias), expected, atol=1e-3,
                              rtol=1e-3):
                return linear
        raise ModelError(f"cam needs a global-average-pool + linear head after '{self.hooked.layer_name}'; "
                         "use gradcam or recipro for this model")


class GradCam(CamMethod):
    """Grad-CAM (Selvaraju et al. 2017): w_k = mean_ij dy_c / dA_k,ij, gradients only down to the target layer."""

    name = "gradcam"
    needs_gradient = True

    def channel_weights(self, activation: torch.Tensor, gradient: torch.Tensor | None,
                        targets: torch.Tensor) -> torch.Tensor:
        assert gradient is not None
        return gradient.mean((2, 3))


class GradCamPlusPlus(CamMethod):
    """Grad-CAM++ (Chattopadhay et al. 2018), with the exponential-score closed form.

    alpha_k,ij = g² / (2 g² + sum_ab A_k,ab · g³), w_k = sum_ij alpha_k,ij · relu(g_k,ij), g = dy_c / dA.
    """

    name = "gradcam++"
    needs_gradient = True

    def channel_weights(self, activation: torch.Tensor, gradient: torch.Tensor | None,
                        targets: torch.Tensor) -> torch.Tensor:
        assert gradient is not None
        grad_2 = gradient.pow(2)
        grad_3 = grad_2 * gradient
        activation_sum = activation.sum((2, 3), keepdim=True)
        alpha = grad_2 / (2 * grad_2 + activation_sum * grad_3 + 1e-7)
        alpha = torch.where(gradient != 0, alpha, torch.zeros_like(alpha))
        return (alpha * gradient.relu()).sum((2, 3))


_GAUSSIAN_3X3 = torch.tensor([[1 / 16, 1 / 8, 1 / 16], [1 / 8, 1 / 4, 1 / 8], [1 / 16, 1 / 8, 1 / 16]]) * 4
_CELL_MASKS: dict[tuple[int, int, str], torch.Tensor] = {}


def gaussian_cell_masks(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(h·w, 1, h, w) masks, one 3×3 Gaussian (peak 1) centred on each cell; built once per shape and device."""
    height, width = int(height), int(width)  # sizes read while tracing an export come as 0-d tensors
    key = (height, width, str(device))
    if key not in _CELL_MASKS:
        padded = torch.zeros(height * width, 1, height + 2, width + 2)
        for cell in range(height * width):
            i, j = divmod(cell, width)
            padded[cell, 0, i:i + 3, j:j + 3] = _GAUSSIAN_3X3
        _CELL_MASKS[key] = padded[:, :, 1:-1, 1:-1].contiguous().to(device)
    return _CELL_MASKS[key]


class MaskedHeadMethod(CamMethod):
    """Base of the gradient-free masking methods: for each cell (i, j) of the map, the layers after the
    target see the activation kept only around that cell, and cam[i, j] = softmax(head(masked_ij))[c],
    then scaled to [0, 1]. One batched head pass of h·w inputs per sample; subclasses say how to mask.
    """

    def compute_maps(self, activation: torch.Tensor, gradient: torch.Tensor | None, targets: torch.Tensor,
                     out: torch.Tensor | None = None) -> torch.Tensor:
        batch = activation.shape[0]
        height, width = self.hooked.map_shape(activation)
        logits = self.cell_logits(activation, gaussian_cell_masks(height, width, activation.device))
        cells = torch.softmax(logits, 2).gather(2, targets.view(-1, 1, 1).expand(batch, height * width, 1))
        maps = cells.view(batch, height, width)
        maps = maps if out is None else out.copy_(maps)
        scale_to_unit_range(maps)
        return maps

    def cell_logits(self, activation: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """head(masked) for each sample and cell, (B, h·w, K): the model's own head one sample at a time, or the
        head in closed form for the whole batch inside an exported graph (`analytic_head`)."""
        if self.analytic_head is not None:
            return self.analytic_head.masked_logits(activation, masks)
        return torch.stack([self.hooked.head(self.masked_inputs(activation[sample:sample + 1].float(), masks))
                            for sample in range(activation.shape[0])])

    def __init__(self, hooked: HookedModel) -> None:
        super().__init__(hooked)
        self._masked: torch.Tensor | None = None

    def masked_buffer(self, shape: tuple[int, ...], channels_last: bool = False,
                      device: torch.device | None = None) -> torch.Tensor:
        """The reused buffer the masked copies are written into (on `device`), made again only when `shape`
        changes."""
        if self._masked is None or self._masked.shape != shape:
            buffer = torch.empty(shape, device=device)
            self._masked = buffer.to(memory_format=torch.channels_last) if channels_last else buffer
        return self._masked

    def masked_inputs(self, activation: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The h·w masked copies of one sample's activation (1, ...), from `masks` (h·w, 1, h, w), written
        into `masked_buffer`."""
        raise NotImplementedError


class ReciproCam(MaskedHeadMethod):
    """Recipro-CAM (Byun & Lee 2022): the feature map A (1, C, h, w) times each cell's Gaussian mask."""

    name = "recipro"

    def masked_inputs(self, activation: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        _, channels, height, width = activation.shape
        masked = self.masked_buffer((height * width, channels, height, width), channels_last=True,
                                    device=activation.device)
        return torch.mul(activation, masks, out=masked)
