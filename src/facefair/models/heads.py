"""Task heads on the shared backbone features."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from facefair.labels import MAX_AGE_YEARS

AGE_OFFSET, AGE_SCALE = 33.0, 20.0  # rough centre and spread of face-dataset ages; eases the start


class ClassificationHead(nn.Module):
    def __init__(self, in_features: int, num_classes: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_classes))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        return output.softmax(dim=-1)


class RegressionHead(nn.Module):
    """Exact age in years."""

    def __init__(self, in_features: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1) * AGE_SCALE + AGE_OFFSET

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def loss(self, output: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        # L1 is the metric we report (MAE); scaled so it weighs like a cross-entropy.
        return _weighted_mean((output - target).abs(), weight) / 10


class CoralHead(nn.Module):
    """Rank-consistent ordinal regression (CORAL, Cao et al. 2020): one shared weight vector and
    ``max_age`` ordered biases; P(age > k) = sigmoid(w.x + b_k), and the predicted age is the sum
    of those probabilities.  ``max_age`` is the oldest age the labels accept (UTKFace goes to
    116), so no true age is clipped by the head."""

    def __init__(self, in_features: int, dropout: float, max_age: int = MAX_AGE_YEARS):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.weight = nn.Linear(in_features, 1, bias=False)
        self.bias = nn.Parameter(torch.linspace(2.0, -4.0, max_age))
        self.max_age = max_age

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.weight(self.dropout(features)) + self.bias

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints of older versions have 100 ordinal biases: take the checkpoint's count.
        saved = state_dict.get(prefix + "bias")
        if saved is not None and saved.shape != self.bias.shape:
            self.bias = nn.Parameter(torch.empty_like(saved))
            self.max_age = int(saved.shape[0])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def predict(self, output: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(output.float()).sum(dim=-1)

    def loss(self, output: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        thresholds = torch.arange(self.max_age, device=target.device).float()
        levels = (target.unsqueeze(-1) > thresholds).float()
        per_row = nn.functional.binary_cross_entropy_with_logits(output.float(), levels, reduction="none").sum(-1)
        return _weighted_mean(per_row, weight) / 10


def _weighted_mean(values: torch.Tensor, weight: Optional[torch.Tensor]) -> torch.Tensor:
    if weight is None:
        return values.mean()
    return (values * weight).sum() / weight.sum().clamp_min(1e-12)


def build_heads(in_features: int, tasks, dropout: float, age_head: str = "regression") -> nn.ModuleDict:
    """One head per task: classification heads, and for exact age a regression or CORAL head."""
    heads = {}
    for task in tasks:
        if task.kind == "classification":
            heads[task.name] = ClassificationHead(in_features, task.num_classes, dropout)
        elif age_head == "coral":
            heads[task.name] = CoralHead(in_features, dropout)
        else:
            heads[task.name] = RegressionHead(in_features, dropout)
    return nn.ModuleDict(heads)
