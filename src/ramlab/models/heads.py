"""Heads on the hidden state: the classifier (every step) and the baseline b_t.

The baseline regresses the expected return from the detached state, so its loss reaches
only its own weights.
"""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    def __init__(self, *, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h (..., hidden) -> logits (..., C)."""
        return self.fc(h)


class Baseline(nn.Module):
    def __init__(self, *, hidden: int) -> None:
        super().__init__()
        self.fc = nn.Linear(hidden, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h (B, hidden) -> b (B,)."""
        return self.fc(h).squeeze(-1)
