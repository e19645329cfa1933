"""The glimpse network: what and where, fused (Mnih et al. 2014, eq. for g_t).

    h_g = relu(W_g rho),  h_l = relu(W_l l),  g = relu(W_hg h_g + W_hl h_l + b)

`W_hg` and `W_hl` are stored side by side as one linear layer on [h_g, h_l]: the same
maths, one matrix product instead of two on the hot path.
"""

from __future__ import annotations

import torch
from torch import nn


class GlimpseNetwork(nn.Module):
    def __init__(self, *, glimpse_dim: int, what_hidden: int, where_hidden: int, out_dim: int) -> None:
        super().__init__()
        self.what = nn.Linear(glimpse_dim, what_hidden)  # W_g
        self.where = nn.Linear(2, where_hidden)  # W_l
        self.out = nn.Linear(what_hidden + where_hidden, out_dim)  # [W_hg W_hl]

    def forward(self, glimpse: torch.Tensor, location: torch.Tensor) -> torch.Tensor:
        """glimpse (B, k*g*g), location (B, 2) -> g (B, out_dim)."""
        h_what = torch.relu(self.what(glimpse))  # (B, what_hidden)
        h_where = torch.relu(self.where(location))  # (B, where_hidden)
        return torch.relu(self.out(torch.cat([h_what, h_where], dim=1)))
