"""The glimpse network's convolution: the gather of each pixel's 3x3 taps, and the pooled
convolution it computes, against hand-computed cases and against torch's conv2d."""

from __future__ import annotations

import torch
from torch import nn

from ramlab.models.glimpse import GlimpseNetwork, conv3x3_relu_pool, im2col_index


def test_im2col_index_lists_each_pixels_taps_in_the_padded_input() -> None:
    """A 2x2 input of 2 channels, padded to 4x4 each (16 values a channel): the pixel at
    row 1, column 1 starts at padded offset 1 * 4 + 1 = 5; its taps are rows 1-3, columns 1-3
    of channel 0, then the same 16 further on in channel 1."""
    index = im2col_index(2, 2)
    assert index.shape == (4, 18)
    assert index[0, :9].tolist() == [0, 1, 2, 4, 5, 6, 8, 9, 10]
    assert index[3].tolist() == [5, 6, 7, 9, 10, 11, 13, 14, 15, 21, 22, 23, 25, 26, 27, 29, 30, 31]
    assert index[1, 0] == 1 and index[2, 0] == 4  # row-major pixels


def test_conv3x3_relu_pool_is_conv2d_relu_max_pool() -> None:
    """Values and gradients (weight, bias) against conv2d -> ReLU -> max_pool2d, in float64,
    on inputs with blank regions, where all four positions of a pooling window tie at the
    bias (their taps are all zero, so they add nothing to the weight's gradient either way)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, kernel_size=3, padding=1).double()
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    x[:2, :, :4, :4] = 0.0
    ours = conv3x3_relu_pool(x, conv, im2col_index(3, 6))
    theirs = nn.functional.max_pool2d(conv(x).relu(), 2).flatten(1)
    assert ours.shape == (4, 5 * 3 * 3)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    weights = torch.randn_like(ours)
    for a, b in zip(
        torch.autograd.grad((ours * weights).sum(), list(conv.parameters())),
        torch.autograd.grad((theirs * weights).sum(), list(conv.parameters())),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


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
