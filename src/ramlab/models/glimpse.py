"""The glimpse network: what and where (Mnih et al. 2014, eq. for g_t).

h_g = relu(W_g rho + b_g),  h_l = relu(W_l l + b_l),  g = relu(W_hg h_g + W_hl h_l + b)
"""

from __future__ import annotations

import torch
from torch import nn

from ramlab.models.layers import init_as_one_layer, linear_sum


class GlimpseNetwork(nn.Module):
    def __init__(self, *, glimpse_dim: int, what_hidden: int, where_hidden: int, out_dim: int) -> None:
        super().__init__()
        self.what = nn.Linear(glimpse_dim, what_hidden)  # W_g
        self.where = nn.Linear(2, where_hidden)  # W_l
        self.from_what = nn.Linear(what_hidden, out_dim)  # W_hg, with the bias b
        self.from_where = nn.Linear(where_hidden, out_dim, bias=False)  # W_hl
        init_as_one_layer(self.from_what, self.from_where)

    def forward(self, glimpse: torch.Tensor, location: torch.Tensor) -> torch.Tensor:
        """glimpse (B, k*g*g), location (B, 2) -> g (B, out_dim)."""
        h_what = self.what(glimpse).relu_()  # (B, what_hidden)
        h_where = self.where(location).relu_()  # (B, where_hidden)
        return linear_sum(self.from_what, h_what, self.from_where, h_where).relu_()
