"""Temporal models: a per-frame CNN feature extractor, a GRU/LSTM over the last N frames, and which time
steps decided the clip's class.

Example::

    model = ClipClassifier(encoder, feature_dim=16, classes=2)       # encoder: (N, C, H, W) → (N, 16)
    steps = StepOcclusion()(model, clips)                            # clips (B, T, C, H, W)
    steps.maps                                                       # (B, T), each scaled to max 1
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from camstream.errors import ModelError
from camstream.explain.result import Explanation, ModelKind, evaluation_mode


class ClipClassifier(nn.Module):
    """logits = head(last state of RNN(encoder(frame_1) … encoder(frame_T))).

    `encoder` maps a batch of frames (N, C, H, W) to feature vectors (N, feature_dim); `cell` is "gru" or
    "lstm". The two halves are exposed (`features`, `classify`) so that explanations run the encoder once.
    """

    def __init__(self, encoder: nn.Module, feature_dim: int, classes: int, hidden: int = 32,
                 cell: str = "gru") -> None:
        super().__init__()
        if cell not in ("gru", "lstm"):
            raise ModelError(f"unknown recurrent cell '{cell}' (choose gru or lstm)")
        self.encoder = encoder
        self.rnn = (nn.GRU if cell == "gru" else nn.LSTM)(feature_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """Per-frame features (B, T, F) of clips (B, T, C, H, W)."""
        batch, steps = clips.shape[:2]
        return self.encoder(clips.flatten(0, 1)).view(batch, steps, -1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits (B, classes) from per-frame features (B, T, F)."""
        states, _ = self.rnn(features)
        return self.head(states[:, -1])

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(clips))


class StepMethod:
    """Base class: importance per time step of a `ClipClassifier`-like model (`features` + `classify`).

    The encoder runs once per clip; subclasses say how steps are scored from the features, and the result
    is scaled to max 1 per clip (scores ≤ 0 mean: no evidence for the class).
    """

    name: ClassVar[str]
    model_kind: ClassVar[ModelKind] = ModelKind.TEMPORAL

    def __call__(self, model: nn.Module, clips: torch.Tensor,
                 class_ids: torch.Tensor | int | None = None) -> Explanation:
        """`maps` (B, T): each clip's step importance."""
        require_clip_model(model)
        with evaluation_mode(model), torch.inference_mode(False), torch.no_grad():
            return self.explain_features(model, model.features(clips), class_ids)

    def explain_features(self, model: nn.Module, features: torch.Tensor,
                         class_ids: torch.Tensor | int | None = None) -> Explanation:
        """The same from per-step features (B, T, F) already computed (the streaming pipeline keeps them)."""
        with torch.inference_mode(False), torch.no_grad():
            features = features.clone() if features.is_inference() else features
            logits = model.classify(features)
            targets = logits.argmax(1) if class_ids is None else torch.as_tensor(class_ids).expand(len(features))
            importance = self.step_scores(model, features, targets).clamp_min(0.0)
            importance /= importance.amax(1, keepdim=True).clamp_min(1e-12)
            scores = torch.softmax(logits, 1).gather(1, targets[:, None])[:, 0]
        return Explanation(self.model_kind, self.name, targets, scores, importance, logits)

    def step_scores(self, model: nn.Module, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Raw importance (B, T) from the per-step features (B, T, F)."""
        raise NotImplementedError


class StepGradient(StepMethod):
    """Gradient × feature per step: s_t = Σ_f (x_tf − x̄_f) · ∂y_c/∂x_tf (negative: evidence against c, cut
    to 0 as Grad-CAM's ReLU does), with x_t the frame's feature
    vector (the CNN's hidden state fed to the RNN) and x̄ the clip's mean feature, the same reference the
    occlusion method masks with; gradients run through the RNN and head only."""

    name = "step-gradient"

    def step_scores(self, model: nn.Module, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        leaf = features.detach().requires_grad_(True)
        with torch.enable_grad():
            score = model.classify(leaf).gather(1, targets[:, None]).sum()
            (gradient,) = torch.autograd.grad(score, leaf)
        return (gradient * (features - features.mean(1, keepdim=True))).sum(2)


class StepOcclusion(StepMethod):
    """Masking of time steps: s_t = p_c(clip) − p_c(clip with step t's features replaced by the clip's mean
    feature). One batched RNN pass of T masked clips per clip."""

    name = "step-occlusion"

    def step_scores(self, model: nn.Module, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        batch, steps, _ = features.shape
        base = torch.softmax(model.classify(features), 1).gather(1, targets[:, None])
        masked = features.unsqueeze(1).repeat(1, steps, 1, 1)  # (B, T masked copies, T, F)
        diagonal = torch.arange(steps)
        masked[:, diagonal, diagonal] = features.mean(1, keepdim=True)
        probabilities = torch.softmax(model.classify(masked.flatten(0, 1)), 1).view(batch, steps, -1)
        return base - probabilities.gather(2, targets.view(-1, 1, 1).expand(batch, steps, 1))[..., 0]


def require_clip_model(model: nn.Module) -> None:
    """A ModelError unless `model` has the two halves the time-step methods use."""
    for part in ("features", "classify"):
        if not callable(getattr(model, part, None)):
            raise ModelError(f"time-step methods need a model with features(clips) and classify(features) "
                             f"(see camstream.explain.temporal.ClipClassifier); this one has no '{part}'")


