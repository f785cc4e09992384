"""Vision Transformers: layout discovery, attention taps against the models' own attention, the head pass,
and both methods on a constructed task where the decisive patches are known."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from camstream.errors import ModelError
from camstream.explain import HookedModel, TokenHookedModel, hook_model, make_method
from camstream.explain.vit import AttentionTaps, find_token_layout

from .cli import camstream, one_stream
from .training import fit

GRID, PATCH = 8, 4
SIDE = GRID * PATCH


def stripes_task(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise images with one 2×2-patch square of stripes on the patch grid: horizontal stripes are class
    0, vertical class 1, so the square is the only decisive region. Returns images, labels, square cells."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(count, 3, SIDE, SIDE, generator=gen) * 0.3
    labels = torch.randint(0, 2, (count,), generator=gen)
    corners = torch.randint(0, GRID - 1, (count, 2), generator=gen)
    rows, cols = torch.meshgrid(torch.arange(2 * PATCH), torch.arange(2 * PATCH), indexing="ij")
    for index in range(count):
        stripes = ((rows if labels[index] == 0 else cols) // 2 % 2).float() * 2 - 1
        top, left = (corners[index] * PATCH).tolist()
        images[index, :, top:top + 2 * PATCH, left:left + 2 * PATCH] = stripes
    return images, labels, corners


def tiny_timm_vit() -> nn.Module:
    return VisionTransformer(img_size=SIDE, patch_size=PATCH, embed_dim=48, depth=3, num_heads=3, num_classes=2,
                             mlp_ratio=2)


def tiny_torchvision_vit() -> nn.Module:
    return torchvision.models.VisionTransformer(image_size=SIDE, patch_size=PATCH, num_layers=3, num_heads=3,
                                                hidden_dim=48, mlp_dim=96, num_classes=2)


def train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, epochs: int = 6) -> nn.Module:
    return fit(model, images, labels, epochs, batch=100, optimiser=torch.optim.AdamW(model.parameters(), 2e-3))


@pytest.fixture(scope="module")
def trained_vits() -> dict[str, nn.Module]:
    images, labels, _ = stripes_task(3000, seed=1)
    models = {}
    for name, build in (("timm", tiny_timm_vit), ("torchvision", tiny_torchvision_vit)):
        torch.manual_seed(0)
        models[name] = train(build(), images, labels)
    return models


@pytest.fixture(scope="module")
def held_out() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return stripes_task(100, seed=2)


def square_masks(corners: torch.Tensor) -> np.ndarray:
    masks = np.zeros((len(corners), GRID, GRID), bool)
    for index, (top, left) in enumerate(corners.tolist()):
        masks[index, top:top + 2, left:left + 2] = True
    return masks


def top_percent(cams: np.ndarray, percent: float = 10.0) -> np.ndarray:
    """The top-P % mask of each map, as the threshold kernels draw it (cam > percentile(100 − P))."""
    return np.stack([cam > np.percentile(cam, 100 - percent) for cam in cams])


@pytest.mark.parametrize("name", ["timm", "torchvision"])
def test_layout_is_found_from_shapes(name):
    model = (tiny_timm_vit if name == "timm" else tiny_torchvision_vit)().eval()
    layout = find_token_layout(model, (3, SIDE, SIDE))
    assert layout is not None
    assert layout.grid == (GRID, GRID) and layout.prefix == 1 and layout.dim == 48 and len(layout.block_names) == 3
    with hook_model(model, (3, SIDE, SIDE)) as hooked:
        assert isinstance(hooked, TokenHookedModel)
        assert hooked.layer_name == layout.block_names[-2]  # the tokens entering the last block


def test_a_cnn_is_not_taken_for_a_vit():
    cnn = torchvision.models.mobilenet_v2(num_classes=3).eval()
    assert find_token_layout(cnn, (3, 64, 64)) is None
    with hook_model(cnn, (3, 64, 64)) as hooked:
        assert isinstance(hooked, HookedModel)


@pytest.mark.parametrize("name", ["timm", "torchvision"])
def test_head_pass_reproduces_the_logits(name):
    torch.manual_seed(3)
    model = (tiny_timm_vit if name == "timm" else tiny_torchvision_vit)().eval()
    images = torch.randn(3, 3, SIDE, SIDE)
    with hook_model(model, (3, SIDE, SIDE)) as hooked:
        logits = hooked.forward(images)
        tokens = hooked.activation.clone()
        torch.testing.assert_close(hooked.head(tokens), logits, rtol=1e-4, atol=1e-5)
        # the swapped-out blocks are back: a full forward still gives the same answer
        torch.testing.assert_close(hooked.forward(images), logits)


def test_timm_attention_tap_matches_the_explicit_attention():
    torch.manual_seed(4)
    model = tiny_timm_vit().eval()
    seen: list[torch.Tensor] = []
    for block in model.blocks:
        block.attn.fused_attn = False  # the explicit path puts its probabilities through attn_drop
        block.attn.attn_drop.register_forward_hook(lambda _m, _i, out: seen.append(out))
    taps = AttentionTaps(list(model.blocks))
    with torch.inference_mode():
        model(torch.randn(2, 3, SIDE, SIDE))
    assert len(seen) == 3
    for ours, reference in zip(taps.maps, seen, strict=True):
        torch.testing.assert_close(ours, reference)
    taps.close()


def test_multihead_attention_tap_matches_its_own_weights():
    torch.manual_seed(5)
    model = tiny_torchvision_vit().eval()
    blocks = list(model.encoder.layers)
    taps = AttentionTaps(blocks)
    images = torch.randn(2, 3, SIDE, SIDE)
    with torch.inference_mode():
        model(images)
        tokens = torch.cat([model.class_token.expand(2, -1, -1), model._process_input(images)], 1)
        normed = blocks[0].ln_1(tokens + model.encoder.pos_embedding)
        _, expected = blocks[0].self_attention(normed, normed, normed, need_weights=True,
                                               average_attn_weights=False)
    torch.testing.assert_close(taps.maps[0], expected)
    assert all(m.shape == (2, 3, GRID * GRID + 1, GRID * GRID + 1) for m in taps.maps)
    taps.close()


class _HiddenAttention(nn.Module):
    """A block whose attention is a fused black box."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mix = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens + self.mix(tokens).softmax(-1)


class _OpaqueVit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 16, PATCH, PATCH)
        self.cls = nn.Parameter(torch.zeros(1, 1, 16))
        self.blocks = nn.Sequential(*(_HiddenAttention(16) for _ in range(3)))
        self.head = nn.Linear(16, 4)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(images).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(images), -1, -1), tokens], 1)
        return self.head(self.blocks(tokens)[:, 0])


def test_hidden_attention_gets_a_clear_error_and_recipro_still_works():
    model = _OpaqueVit().eval()
    with hook_model(model, (3, SIDE, SIDE)) as hooked:
        assert isinstance(hooked, TokenHookedModel)
        with pytest.raises(ModelError, match="hides its attention.*vit-recipro"):
            make_method("vit-rollout", hooked)
        cams = make_method("vit-recipro", hooked)(torch.randn(2, 3, SIDE, SIDE)).maps
        assert cams.shape == (2, GRID, GRID)


def test_cnn_methods_are_refused_on_a_vit_and_vice_versa():
    with hook_model(tiny_timm_vit().eval(), (3, SIDE, SIDE)) as hooked:
        with pytest.raises(ModelError, match="'gradcam' explains CNN.*choose from vit-recipro, vit-rollout"):
            make_method("gradcam", hooked)
        assert make_method(None, hooked).name == "vit-recipro"
    resnet = torchvision.models.resnet18(num_classes=2).eval()
    with hook_model(resnet, (3, 64, 64)) as hooked, pytest.raises(ModelError, match="'vit-rollout' explains VIT"):
        make_method("vit-rollout", hooked)


@pytest.mark.parametrize("name", ["timm", "torchvision"])
def test_rollout_top_10_percent_covers_the_decisive_square(trained_vits, held_out, name):
    images, labels, corners = held_out
    with hook_model(trained_vits[name], (3, SIDE, SIDE)) as hooked:
        explanation = make_method("vit-rollout", hooked)(images)
    assert (explanation.class_ids == labels).float().mean() >= 0.95  # the model learnt the task
    kept = top_percent(explanation.maps.numpy())
    covered = np.all(kept | ~square_masks(corners), axis=(1, 2))  # every cell of the square is kept
    assert covered.mean() >= 0.9, f"rollout covered the square in {covered.mean():.0%} of images"


# Measured, not asserted: on the 3-block torchvision ViT the class token has already decided before the
# last block, and vit-recipro's top 10 % touches the square in only 4 % of images (58 % from the first
# block's tokens). Rollout, above, covers it on both.
def test_vit_recipro_points_into_the_decisive_square(trained_vits, held_out):
    images, labels, corners = held_out
    with hook_model(trained_vits["timm"], (3, SIDE, SIDE)) as hooked:
        cams = make_method("vit-recipro", hooked)(images, labels).maps.numpy()
    squares = square_masks(corners)
    hit = np.any(top_percent(cams) & squares, axis=(1, 2))
    assert hit.mean() >= 0.9, f"vit-recipro's top 10 % touched the square in {hit.mean():.0%} of images"
    inside = cams[squares].mean()
    outside = cams[~squares].mean()
    assert inside > outside  # the square is hotter than the background on average


def test_vit_streams_through_camstream_run(tmp_path):
    out = tmp_path / "vit"
    result = camstream("run", "--model", "vit_b_16", "--method", "vit-recipro", "--max-frames", "2",
                     "--max-batch", "2", "--threads", "2", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    report = one_stream(json.loads((out / "report.json").read_text()))
    assert report["method"] == "vit-recipro" and report["layer"] == "encoder.layers.encoder_layer_10"
    assert report["frames_out"] == 2 and report["frames_explained"] == 2 and report["error"] is None
    assert (out / "overlay.mp4").stat().st_size > 0


def test_a_cnn_method_on_a_vit_is_a_clear_cli_error_that_writes_nothing(tmp_path):
    out = tmp_path / "never"
    result = camstream("run", "--model", "deit_tiny", "--method", "gradcam", "--max-frames", "2", "--out", out)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == ("camstream: error: method 'gradcam' explains CNN models and this "
                                              "model is a VIT: choose from vit-recipro, vit-rollout")
    assert not out.exists()
