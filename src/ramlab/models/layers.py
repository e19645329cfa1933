"""Small building blocks of the RAM's networks.

A layer on a concatenation, W [x; y] + b, is kept as two layers whose products are summed,
W_x x + W_y y + b: the second product accumulates into the first's output, so the hot
loop makes no concatenation, and a product with a known-zero input is skipped.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def init_as_one_layer(*layers: nn.Linear) -> None:
    """Initialise layers whose outputs are summed as nn.Linear on their concatenated inputs
    would be: uniform in +-1/sqrt(total fan-in)."""
    bound = 1.0 / math.sqrt(sum(layer.in_features for layer in layers))
    for layer in layers:
        nn.init.uniform_(layer.weight, -bound, bound)
        if layer.bias is not None:
            nn.init.uniform_(layer.bias, -bound, bound)


def linear_sum(first: nn.Linear, x: torch.Tensor, second: nn.Linear, y: torch.Tensor) -> torch.Tensor:
    """first(x) + second(y) for a `second` without bias: (B, in_x), (B, in_y) -> (B, out)."""
    return torch.addmm(first.bias, x, first.weight.t()).addmm_(y, second.weight.t())
