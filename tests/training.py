"""Training the small models that the constructed-task tests explain."""

from __future__ import annotations

import torch
from torch import nn


def fit(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, epochs: int, batch: int,
        optimiser: torch.optim.Optimizer) -> nn.Module:
    """Minibatch cross-entropy training in a seeded order; returns the model in eval mode."""
    torch.manual_seed(0)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs))
        for start in range(0, len(inputs), batch):
            picked = order[start:start + batch]
            loss = nn.functional.cross_entropy(model(inputs[picked]), labels[picked])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()
