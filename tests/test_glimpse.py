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


def test_glimpse_product_gates_what_by_where() -> None:
    """combine="product": g = relu(W_hg h_g + b) * relu(W_hl h_l + b_hl), worked out by hand
    with identity weights: h_g = relu(2, 3) = (2, 3), h_l = relu(0.5, -0.5) = (0.5, 0);
    relu((2, 3) + (0, -10)) = (2, 0) times relu((0.5, 0) + (1, 1)) = (1.5, 1) gives (3, 0)."""
    net = GlimpseNetwork(glimpse_dim=2, what_hidden=2, where_hidden=2, out_dim=2, combine="product")
    eye = torch.eye(2)
    with torch.no_grad():
        for layer in (net.what, net.where, net.from_what, net.from_where):
            layer.weight.copy_(eye)
            layer.bias.zero_()
        net.from_what.bias.copy_(torch.tensor([0.0, -10.0]))
        net.from_where.bias.fill_(1.0)
    g = net(torch.tensor([[2.0, 3.0]]), torch.tensor([[0.5, -0.5]]))
    assert g.tolist() == [[3.0, 0.0]]


def test_glimpse_sum_keeps_the_paper_s_single_bias() -> None:
    """The paper's sum has one bias b (on W_hg); the product needs one on each factor."""
    summed = GlimpseNetwork(glimpse_dim=2, what_hidden=2, where_hidden=2, out_dim=2)
    product = GlimpseNetwork(glimpse_dim=2, what_hidden=2, where_hidden=2, out_dim=2, combine="product")
    assert summed.from_where.bias is None
    assert product.from_where.bias is not None
