"""The RAM's summed layers: the same maths as one layer on a concatenation, and the first
core step's skipped product changes nothing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ramlab.models.core import LSTMCore, RNNCore
from ramlab.models.glimpse import GlimpseNetwork
from ramlab.models.layers import init_as_one_layer, linear_sum


def test_linear_sum_by_hand() -> None:
    first, second = nn.Linear(2, 2), nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
        first.bias.copy_(torch.tensor([0.5, -0.5]))
        second.weight.copy_(torch.tensor([[3.0], [4.0]]))
    x, y = torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0]])
    # [1 + 2 + 0.5 + 3 * 2, -1 - 0.5 + 4 * 2]
    assert linear_sum(first, x, second, y).tolist() == [[9.5, 6.5]]


def test_linear_sum_is_a_layer_on_the_concatenation_and_backpropagates_the_same() -> None:
    torch.manual_seed(0)
    first, second = nn.Linear(5, 4), nn.Linear(3, 4, bias=False)
    joint = nn.Linear(8, 4)
    with torch.no_grad():
        joint.weight.copy_(torch.cat([first.weight, second.weight], dim=1))
        joint.bias.copy_(first.bias)
    x, y = torch.randn(6, 5, requires_grad=True), torch.randn(6, 3)
    torch.testing.assert_close(linear_sum(first, x, second, y), joint(torch.cat([x, y], dim=1)))
    linear_sum(first, x, second, y).square().sum().backward()
    grad_x = x.grad.clone()
    x.grad = None
    joint(torch.cat([x, y], dim=1)).square().sum().backward()
    torch.testing.assert_close(grad_x, x.grad)
    torch.testing.assert_close(torch.cat([first.weight.grad, second.weight.grad], 1), joint.weight.grad)


def test_init_as_one_layer_uses_the_total_fan_in() -> None:
    torch.manual_seed(0)
    first, second = nn.Linear(300, 50), nn.Linear(100, 50, bias=False)
    init_as_one_layer(first, second)
    bound = 1 / math.sqrt(400)
    for w in (first.weight, second.weight, first.bias):
        assert w.abs().max() <= bound
        assert w.abs().max() > 0.9 * bound  # spread over the whole range, not a narrower one


@pytest.mark.parametrize("batch", [1, 7])
def test_first_core_step_without_a_state_is_the_step_from_zeros(batch: int) -> None:
    torch.manual_seed(0)
    core = RNNCore(input_dim=6, hidden=5)
    g = torch.randn(batch, 6)
    (from_none,) = core(g, None)
    (from_zeros,) = core(g, (torch.zeros(batch, 5),))
    torch.testing.assert_close(from_none, from_zeros)
    assert (from_none >= 0).all()


def test_glimpse_network_by_its_equation() -> None:
    torch.manual_seed(0)
    net = GlimpseNetwork(glimpse_dim=7, what_hidden=4, where_hidden=3, out_dim=5)
    rho, loc = torch.randn(2, 7), torch.rand(2, 2) * 2 - 1
    h_g = torch.relu(rho @ net.what.weight.T + net.what.bias)
    h_l = torch.relu(loc @ net.where.weight.T + net.where.bias)
    expected = torch.relu(h_g @ net.from_what.weight.T + h_l @ net.from_where.weight.T + net.from_what.bias)
    torch.testing.assert_close(net(rho, loc), expected)


def test_the_lstm_core_from_the_zero_state_is_the_cells_own_maths_without_its_product():
    torch.manual_seed(0)
    core = LSTMCore(input_dim=7, hidden=5)
    g = torch.randn(4, 7, requires_grad=True)
    h, c = core(g, None)
    h_cell, c_cell = core.cell(g, None)  # LSTMCell from zeros: W_hh 0 and f ⊙ 0 computed
    assert torch.equal(h, h_cell) and torch.equal(c, c_cell)
    grads = torch.autograd.grad(h.sum() + 2 * c.sum(), [g, *core.parameters()], allow_unused=True)
    expected = torch.autograd.grad(h_cell.sum() + 2 * c_cell.sum(), [g, *core.parameters()])
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got if got is not None else torch.zeros_like(want), want)
    # Later steps are the cell's.
    later = core(g, (h, c))
    assert all(torch.equal(a, b) for a, b in zip(later, core.cell(g, (h, c)), strict=True))
