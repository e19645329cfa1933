"""The glimpse network's convolution against a hand-computed case."""

from __future__ import annotations

import torch

from ramlab.models.glimpse import GlimpseNetwork


def test_glimpse_conv_reads_the_patches_as_channels_and_pools_them() -> None:
    """glimpse_conv C: the 'what' layer reads maxpool2x2(relu(conv3x3(rho as k channels))).
    Two 4x4 patches, a convolution set by hand to pass patch 0 through (channel 0) and to
    negate patch 1 (channel 1): the 'what' layer must read their 2x2 maxima, worked out below."""
    net = GlimpseNetwork(
        glimpse_dim=2 * 16, what_hidden=3, where_hidden=2, out_dim=4, patches=2, conv_channels=2
    )
    with torch.no_grad():
        net.conv.weight.zero_()
        net.conv.bias.zero_()
        net.conv.weight[0, 0, 1, 1] = 1.0  # the centre tap: channel 0 = patch 0
        net.conv.weight[1, 1, 1, 1] = -1.0  # channel 1 = -patch 1
    patch0 = torch.arange(16.0)  # rows 0-3, 4-7, 8-11, 12-15: block maxima 5, 7, 13, 15
    patch1 = torch.arange(16.0) - 8  # negated and rectified: 8 7 6 5 / 4 3 2 1 / 0.. / 0..
    seen = []
    net.what.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    net(torch.cat([patch0, patch1])[None], torch.zeros(1, 2))
    assert seen[0].tolist() == [[5.0, 7.0, 13.0, 15.0, 8.0, 6.0, 0.0, 0.0]]
