"""The glimpse network: what and where (Mnih et al. 2014, eq. for g_t).

h_g = relu(W_g rho + b_g),  h_l = relu(W_l l + b_l),  g = relu(W_hg h_g + W_hl h_l + b)

With `conv_channels` > 0 the 'what' layer reads a convolution of the glimpse instead of its
pixels: rho's k patches of g x g become k channels of one g x g image, and
h_g = relu(W_g pool(relu(conv3x3(rho))) + b_g), a 2x2 max-pool halving each side.

The convolution runs as one gather and one matrix product (`conv3x3_relu_pool`), not as
torch's conv2d: on a 12 x 12 glimpse of 3 channels the library's convolution is mostly
overhead on a CPU (benchmarks/glimpse_conv_ab.py measures both).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ramlab.models.layers import init_as_one_layer, linear_sum


def im2col_index(channels: int, side: int) -> torch.Tensor:
    """(side*side, channels*9) int64: for each output pixel (row-major) its 3x3 taps, ordered
    as a conv2d weight's (channel, dy, dx), as offsets into the flattened zero-padded
    (channels, side + 2, side + 2) input."""
    padded = side + 2
    taps = (
        torch.arange(channels).view(-1, 1, 1) * padded * padded
        + torch.arange(3).view(1, -1, 1) * padded
        + torch.arange(3).view(1, 1, -1)
    ).flatten()
    origins = (torch.arange(side).view(-1, 1) * padded + torch.arange(side).view(1, -1)).flatten()
    return origins[:, None] + taps[None, :]


def conv3x3_relu_pool(x: torch.Tensor, conv: nn.Conv2d, index: torch.Tensor) -> torch.Tensor:
    """max_pool2d(relu(conv(x)), 2).flatten(1) for a 3x3 `conv` with padding 1, as a gather
    of each pixel's taps and one matrix product: (B, C, g, g) -> (B, C_out * (g/2)^2).
    Pooling comes before the bias and ReLU (max(z + b) = max(z) + b, ReLU is monotonic), on a
    quarter of the values. `index`: im2col_index(C, g)."""
    batch, _, side, _ = x.shape
    half = side // 2
    cols = nn.functional.pad(x, (1, 1, 1, 1)).flatten(1)[:, index]  # (B, g*g, C*9)
    z = cols @ conv.weight.flatten(1).t()  # (B, g*g, C_out)
    pooled = z.view(batch, half, 2, half, 2, -1).amax(dim=(2, 4))  # (B, g/2, g/2, C_out)
    return (pooled + conv.bias).relu_().permute(0, 3, 1, 2).flatten(1)


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
    ) -> None:
        """`patches`: k, the glimpse's square patches (scale-major), each of glimpse_dim / k
        pixels; read only with `conv_channels` > 0, whose pooling needs their even side."""
        super().__init__()
        self.conv = None
        self.patches = patches
        self.side = math.isqrt(glimpse_dim // patches)
        if conv_channels:
            self.conv = nn.Conv2d(patches, conv_channels, kernel_size=3, padding=1)
            self.register_buffer("im2col", im2col_index(patches, self.side), persistent=False)
            glimpse_dim = conv_channels * (self.side // 2) ** 2
        self.what = nn.Linear(glimpse_dim, what_hidden)  # W_g
        self.where = nn.Linear(2, where_hidden)  # W_l
        self.from_what = nn.Linear(what_hidden, out_dim)  # W_hg, with the bias b
        self.from_where = nn.Linear(where_hidden, out_dim, bias=False)  # W_hl
        init_as_one_layer(self.from_what, self.from_where)

    def what_input(self, glimpse: torch.Tensor) -> torch.Tensor:
        """What the 'what' layer reads: the glimpse's pixels, or their pooled convolution."""
        if self.conv is None:
            return glimpse
        patches = glimpse.view(len(glimpse), self.patches, self.side, self.side)  # (B, k, g, g)
        return conv3x3_relu_pool(patches, self.conv, self.im2col)

    def forward(self, glimpse: torch.Tensor, location: torch.Tensor) -> torch.Tensor:
        """glimpse (B, k*g*g), location (B, 2) -> g (B, out_dim)."""
        h_what = self.what(self.what_input(glimpse)).relu_()  # (B, what_hidden)
        h_where = self.where(location).relu_()  # (B, where_hidden)
        return linear_sum(self.from_what, h_what, self.from_where, h_where).relu_()
