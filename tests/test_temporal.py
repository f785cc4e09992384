"""Temporal models: a CNN + GRU/LSTM trained here on clips whose one decisive frame is known, and both
time-step methods recovering that frame."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from camstream.errors import ModelError
from camstream.explain import REGISTRY, ModelKind
from camstream.explain.temporal import ClipClassifier, StepGradient, StepOcclusion

from .training import fit

STEPS, SIDE = 10, 16


def event_clips(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clips of noise frames; one frame (the decisive step) shows a bar: horizontal is class 0, vertical
    class 1. Returns clips (N, T, 1, H, W), labels and the decisive steps."""
    gen = torch.Generator().manual_seed(seed)
    clips = torch.randn(count, STEPS, 1, SIDE, SIDE, generator=gen) * 0.3
    labels = torch.randint(0, 2, (count,), generator=gen)
    decisive = torch.randint(0, STEPS, (count,), generator=gen)
    offsets = torch.randint(2, SIDE - 4, (count,), generator=gen)
    for index in range(count):
        frame = clips[index, decisive[index], 0]
        at = int(offsets[index])
        if labels[index] == 0:
            frame[at:at + 3, 2:-2] = 1.5
        else:
            frame[2:-2, at:at + 3] = 1.5
    return clips, labels, decisive


def frame_encoder() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                         nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten())


def train(model: nn.Module, clips: torch.Tensor, labels: torch.Tensor, epochs: int = 8) -> nn.Module:
    return fit(model, clips, labels, epochs, batch=64, optimiser=torch.optim.Adam(model.parameters(), 3e-3))


@pytest.fixture(scope="module", params=["gru", "lstm"])
def trained(request) -> ClipClassifier:
    clips, labels, _ = event_clips(1500, seed=1)
    torch.manual_seed(0)
    return train(ClipClassifier(frame_encoder(), 16, 2, hidden=32, cell=request.param), clips, labels)


@pytest.fixture(scope="module")
def held_out():
    return event_clips(100, seed=2)


@pytest.mark.parametrize("method", list(REGISTRY[ModelKind.TEMPORAL]))
def test_top_10_percent_of_steps_is_the_decisive_frame(trained, held_out, method):
    clips, labels, decisive = held_out
    explanation = REGISTRY[ModelKind.TEMPORAL][method]()(trained, clips)
    assert (explanation.class_ids == labels).float().mean() >= 0.95  # the model learnt the task
    assert explanation.maps.shape == (100, STEPS)
    top = explanation.maps.argmax(1)  # top 10 % of 10 steps: one step
    found = (top == decisive).float().mean()
    assert found >= 0.9, f"{method} found the decisive step in {found:.0%} of clips"


def test_importance_is_scaled_to_unit_max_and_non_negative(trained, held_out):
    clips = held_out[0][:8]
    for method in (StepOcclusion(), StepGradient()):
        importance = method(trained, clips).maps
        assert torch.all(importance >= 0)
        torch.testing.assert_close(importance.amax(1), torch.ones(8))


def test_occlusion_is_the_score_drop_of_each_masked_step(trained, held_out):
    clips = held_out[0][:2]
    with torch.no_grad():
        features = trained.features(clips)
        target = trained.classify(features).argmax(1)
        raw = StepOcclusion().step_scores(trained, features, target)
        for clip in range(2):
            base = torch.softmax(trained.classify(features[clip:clip + 1]), 1)[0, target[clip]]
            for step in (0, STEPS - 1):
                masked = features[clip:clip + 1].clone()
                masked[0, step] = features[clip].mean(0)
                drop = base - torch.softmax(trained.classify(masked), 1)[0, target[clip]]
                torch.testing.assert_close(raw[clip, step], drop)


def test_a_model_without_the_two_halves_gets_a_clear_error():
    plain = nn.GRU(4, 4, batch_first=True)
    with pytest.raises(ModelError, match="features\\(clips\\) and classify\\(features\\)"):
        StepOcclusion()(plain, torch.zeros(1, 3, 4))
    with pytest.raises(ModelError, match="gru or lstm"):
        ClipClassifier(frame_encoder(), 16, 2, cell="transformer")
