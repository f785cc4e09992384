"""Vision Transformers: the token-hooked model and its two methods, attention rollout and ViT Recipro-CAM.

A ViT is found by its shape, not its class: a patch embedding (a convolution whose stride equals its
kernel) and a container of at least two blocks that each map (B, tokens, dim) to the same shape. The
tokens after the patch grid's h·w are the patch tokens; the ones before (class, distillation) are the
prefix. Both torchvision's `VisionTransformer` and timm's ViT / DeiT are recognised.

Example::

    spec = load_model("vit_b_16")
    with TokenHookedModel(spec.module) as hooked:
        VitReciproCam(hooked)(batch).maps          # (B, 14, 14), scaled to [0, 1]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from camstream.errors import ModelError
from camstream.explain.base import CamMethod, HookedNetwork, model_device, probe_forward, scale_to_unit_range
from camstream.explain.cnn import MaskedHeadMethod
from camstream.explain.result import ModelKind


@dataclass(frozen=True)
class TokenLayout:
    """Where a ViT keeps its tokens: the block container, its length, the patch grid and the prefix count."""

    container: str
    block_names: tuple[str, ...]
    grid: tuple[int, int]
    prefix: int
    dim: int


def find_token_layout(model: nn.Module, input_shape: tuple[int, int, int]) -> TokenLayout | None:
    """The model's token layout from one probe forward, or None when it is not a ViT."""
    outputs: dict[str, torch.Size] = {}
    patch_grids: list[tuple[int, int]] = []

    def record(name: str, module: nn.Module, output: torch.Tensor) -> None:
        outputs.setdefault(name, output.shape)
        if isinstance(module, nn.Conv2d) and module.kernel_size == module.stride and module.stride[0] > 1:
            patch_grids.append((output.shape[2], output.shape[3]))

    probe_forward(model, torch.zeros(1, *input_shape, device=model_device(model)), record)
    if not patch_grids:
        return None
    best: TokenLayout | None = None
    for name, module in model.named_modules():
        layout = _blocks_layout(name, module, outputs, patch_grids[0])
        if layout is not None and (best is None or len(layout.block_names) >= len(best.block_names)):
            best = layout
    return best


def _blocks_layout(name: str, module: nn.Module, outputs: dict[str, torch.Size],
                   grid: tuple[int, int]) -> TokenLayout | None:
    """`module` as a ViT's block container: ≥ 2 children that all return the same (B, tokens ≥ h·w, dim)."""
    if not isinstance(module, (nn.Sequential, nn.ModuleList)) or len(module) < 2:
        return None
    names = tuple(f"{name}.{child}" if name else child for child, _ in module.named_children())
    shapes = {outputs.get(child) for child in names}
    if len(shapes) != 1 or None in shapes:
        return None
    (shape,) = shapes
    if len(shape) != 3 or shape[1] < grid[0] * grid[1]:
        return None
    return TokenLayout(name, names, grid, shape[1] - grid[0] * grid[1], shape[2])


class _Emit(nn.Module):
    """Stands in for the first blocks during a head pass: returns the given tokens whatever it is fed."""

    def __init__(self, tokens: torch.Tensor) -> None:
        super().__init__()
        self.tokens = tokens

    def forward(self, *_args, **_kwargs) -> torch.Tensor:
        return self.tokens


class AttentionTaps:
    """Per-block attention probabilities (B, heads, T, T) of the last forward, read from the blocks' own
    attention modules: `nn.MultiheadAttention` (asked for its per-head weights) or a timm-style attention
    with a `qkv` projection (softmax(q kᵀ · scale) recomputed from that projection's output)."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        self.maps: list[torch.Tensor | None] = [None] * len(blocks)
        self.enabled = True
        self._handles = []
        for index, block in enumerate(blocks):
            if not self._tap(index, block):
                self.close()
                raise ModelError(f"block {index} hides its attention: attention rollout looks for an "
                                 "nn.MultiheadAttention or a module with a 'qkv' nn.Linear and 'num_heads'; "
                                 "use vit-recipro, which needs no attention weights")

    def _tap(self, index: int, block: nn.Module) -> bool:
        for module in block.modules():
            if isinstance(module, nn.MultiheadAttention):
                self._handles.append(module.register_forward_pre_hook(self._ask_weights, with_kwargs=True))
                self._handles.append(module.register_forward_hook(self._keep_weights(index)))
                return True
            if isinstance(getattr(module, "qkv", None), nn.Linear) and hasattr(module, "num_heads"):
                self._handles.append(module.qkv.register_forward_hook(self._from_qkv(index, module)))
                return True
        return False

    @staticmethod
    def _ask_weights(_module, args, kwargs):
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    def _keep_weights(self, index: int):
        def hook(_module, _inputs, output):
            if self.enabled:
                self.maps[index] = output[1]

        return hook

    def _from_qkv(self, index: int, attention: nn.Module):
        heads = attention.num_heads

        def hook(_module, _inputs, qkv: torch.Tensor):
            if not self.enabled:
                return
            batch, tokens, width = qkv.shape
            q, k, _ = qkv.reshape(batch, tokens, 3, heads, width // (3 * heads)).permute(2, 0, 3, 1, 4)
            q = getattr(attention, "q_norm", nn.Identity())(q)
            k = getattr(attention, "k_norm", nn.Identity())(k)
            scale = getattr(attention, "scale", q.shape[-1] ** -0.5)
            self.maps[index] = torch.softmax((q * scale) @ k.transpose(-2, -1), dim=-1)

        return hook

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self.maps = [None] * len(self.maps)


class TokenHookedModel(HookedNetwork):
    """A ViT with a forward hook on one block's output tokens: by default the tokens entering the last
    block, so the layers after the target (last block, norm, head) still mix the patch tokens into the
    class token. Same interface as `HookedModel`; ViTs run eager (`freeze` returns False).
    """

    kind = ModelKind.VIT

    def __init__(self, model: nn.Module, input_shape: tuple[int, int, int] = (3, 224, 224),
                 target_layer: str | None = None, layout: TokenLayout | None = None) -> None:
        layout = layout or find_token_layout(model, input_shape)
        if layout is None:
            raise ModelError("not a vision transformer: looked for a patch embedding (a Conv2d with stride = "
                             "kernel) and a Sequential/ModuleList of blocks mapping (B, tokens, dim) to the same shape")
        self.layout = layout
        modules = dict(model.named_modules())
        self.blocks = [modules[name] for name in layout.block_names]
        self._container = modules[layout.container]
        candidates = list(layout.block_names[:-1])
        target_layer = target_layer or candidates[-1]
        if target_layer not in candidates:
            raise ModelError(f"layer '{target_layer}' is not a ViT block before the last one; candidates: "
                             f"{', '.join(candidates[-4:])}")
        super().__init__(model, input_shape)
        self.layer_name = target_layer
        self.target_index = candidates.index(target_layer)
        self.attention: AttentionTaps | None = None
        self._probe = torch.zeros(1, *input_shape, device=model_device(model))
        self.hook(self.blocks[self.target_index])

    def _hook(self, _module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        self.activation = output

    def tap_attention(self) -> AttentionTaps:
        """Record every block's attention on each forward from now on (made once; raises when hidden)."""
        if self.attention is None:
            self.attention = AttentionTaps(self.blocks)
        return self.attention

    def freeze(self, example: torch.Tensor, cache: str | None = None) -> bool:
        """ViTs stay eager: always False (nothing is cached)."""
        return False

    def forward(self, x: torch.Tensor, open_graph: bool = False) -> torch.Tensor:
        """Logits for `x`; the target block's tokens (B, T, D) are kept in `self.activation`."""
        if open_graph:
            raise ModelError("gradient methods are not built for ViTs; use vit-recipro or vit-rollout")
        with torch.inference_mode():
            return self.model(x)

    def head(self, tokens: torch.Tensor, open_graph: bool = False) -> torch.Tensor:
        """Logits of the blocks after the target, the norm and the head, fed with `tokens` (N, T, D).

        The blocks up to the target are swapped out for the duration of the call, so only the rest runs
        (the patch embedding sees a cached 1-image probe, its result ignored). Not thread-safe: one caller
        at a time, as in the inference stage."""
        container = self._container
        saved = [container[i] for i in range(self.target_index + 1)]
        taps = self.attention
        if taps is not None:
            taps.enabled = False
        try:
            container[0] = _Emit(tokens)
            for index in range(1, self.target_index + 1):
                container[index] = nn.Identity()
            with torch.inference_mode():
                return self.model(self._probe)
        finally:
            for index, block in enumerate(saved):
                container[index] = block
            if taps is not None:
                taps.enabled = True

    def map_shape(self, activation: torch.Tensor) -> tuple[int, int]:
        """The patch grid (h, w)."""
        return self.layout.grid

    def close(self) -> None:
        """Remove the hooks, drop what they kept and give the model back its own mode."""
        if self.attention is not None:
            self.attention.close()
        super().close()


class VitRollout(CamMethod):
    """Attention rollout (Abnar & Zuidema 2020), class-agnostic.

    Â_l = ½ mean_heads(A_l) + ½ I, rows renormalised; R = Â_L ⋯ Â_1; the map is the class token's row
    of R over the patch tokens (the mean row when the model has no prefix token), scaled to [0, 1].
    """

    name = "vit-rollout"
    model_kind = ModelKind.VIT

    def __init__(self, hooked: TokenHookedModel) -> None:
        super().__init__(hooked)
        self.taps = hooked.tap_attention()

    def compute_maps(self, activation: torch.Tensor, gradient: torch.Tensor | None, targets: torch.Tensor,
                     out: torch.Tensor | None = None) -> torch.Tensor:
        if any(m is None for m in self.taps.maps):
            raise ModelError("the attention modules did not run in this forward")
        rollout = None
        half_identity = 0.5 * torch.eye(self.taps.maps[0].shape[-1], device=self.taps.maps[0].device)
        for attention in self.taps.maps:
            mixed = 0.5 * attention.float().mean(1) + half_identity
            mixed = mixed / mixed.sum(-1, keepdim=True)
            rollout = mixed if rollout is None else mixed @ rollout
        prefix = self.hooked.layout.prefix
        rows = rollout[:, 0, prefix:] if prefix else rollout.mean(1)
        maps = rows.reshape(rows.shape[0], *self.hooked.map_shape(activation))
        maps = maps if out is None else out.copy_(maps)
        scale_to_unit_range(maps)
        return maps


class VitReciproCam(MaskedHeadMethod):
    """ViT Recipro-CAM (Byun & Lee 2023): for each patch cell, the target block's patch tokens weighted by
    that cell's 3×3 Gaussian (all others zero), prefix tokens (class, distillation) kept as they are."""

    name = "vit-recipro"
    model_kind = ModelKind.VIT

    def masked_inputs(self, activation: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        prefix = self.hooked.layout.prefix
        cells = masks.shape[0]
        masked = self.masked_buffer((cells, *activation.shape[1:]), device=activation.device)
        masked[:, :prefix] = activation[:, :prefix]
        torch.mul(activation[:, prefix:], masks.view(cells, -1, 1), out=masked[:, prefix:])
        return masked
