"""The glimpse network: what and where (Mnih et al. 2014, eq. for g_t).

h_g = relu(W_g rho + b_g),  h_l = relu(W_l l + b_l),  g = relu(W_hg h_g + W_hl h_l + b)

With `combine="product"` what and where meet multiplicatively, as in the deep recurrent
attention model (Ba et al. 2015): g = relu(W_hg h_g + b) * relu(W_hl h_l + b_hl), so the
location gates each feature instead of shifting it.

With `conv_channels` > 0 the 'what' layer reads a convolution of the glimpse instead of its
pixels: rho's k patches of g x g become k channels of one g x g image, and
h_g = relu(W_g pool(relu(conv3x3(rho))) + b_g), a 2x2 max-pool halving each side.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ramlab.config import choice
from ramlab.models.layers import init_as_one_layer, linear_sum

COMBINES = ("sum", "product")


class GlimpseNetwork(nn.Module):
    def __init__(
        self,
        *,
        glimpse_dim: int,
        what_hidden: int,
        where_hidden: int,
        out_dim: int,
        patches: int = 1,
        conv_channels: int = 0,
        combine: str = "sum",
    ) -> None:
        """`patches`: k, the glimpse's square patches (scale-major), each of glimpse_dim / k
        pixels; read only with `conv_channels` > 0, whose pooling needs their even side.
        `combine`: "sum" (the paper's) or "product" of the what and where layers."""
        super().__init__()
        choice("glimpse combine", combine, COMBINES)
        self.product = combine == "product"
        self.conv = None
        self.patches = patches
        self.side = math.isqrt(glimpse_dim // patches)
        if conv_channels:
            self.conv = nn.Conv2d(patches, conv_channels, kernel_size=3, padding=1)
            glimpse_dim = conv_channels * (self.side // 2) ** 2
        self.what = nn.Linear(glimpse_dim, what_hidden)  # W_g
        self.where = nn.Linear(2, where_hidden)  # W_l
        self.from_what = nn.Linear(what_hidden, out_dim)  # W_hg, with the bias b
        self.from_where = nn.Linear(where_hidden, out_dim, bias=self.product)  # W_hl
        if not self.product:  # summed: initialised as one layer on both inputs
            init_as_one_layer(self.from_what, self.from_where)

    def forward(self, glimpse: torch.Tensor, location: torch.Tensor) -> torch.Tensor:
        """glimpse (B, k*g*g), location (B, 2) -> g (B, out_dim)."""
        if self.conv is not None:
            patches = glimpse.view(len(glimpse), self.patches, self.side, self.side)  # (B, k, g, g)
            glimpse = nn.functional.max_pool2d(self.conv(patches).relu_(), 2).flatten(1)
        h_what = self.what(glimpse).relu_()  # (B, what_hidden)
        h_where = self.where(location).relu_()  # (B, where_hidden)
        if self.product:
            return self.from_what(h_what).relu_() * self.from_where(h_where).relu_()
        return linear_sum(self.from_what, h_what, self.from_where, h_where).relu_()
