"""The core network: the recurrent state that integrates glimpses.

    rnn:  h_t = relu(W_g g_t + W_h h_{t-1} + b)          (the paper's)
    lstm: (h_t, c_t) = LSTMCell(g_t, (h_{t-1}, c_{t-1}))
The state is a tuple so that both cores share one interface; `hidden(state)` is h_t.
The state before the first glimpse is None (all zeros), so the first step skips W_h h_{-1}
(the LSTM's W_hh h_{-1} and f ⊙ c_{-1} too).
"""

from __future__ import annotations

import torch
from torch import nn

from ramlab.models.layers import init_as_one_layer, linear_sum

CORES = ("rnn", "lstm")

State = tuple[torch.Tensor, ...] | None


class RNNCore(nn.Module):
    def __init__(self, *, input_dim: int, hidden: int) -> None:
        super().__init__()
        self.hidden_size = hidden
        self.input = nn.Linear(input_dim, hidden)  # W_g, with the bias b
        self.recurrent = nn.Linear(hidden, hidden, bias=False)  # W_h
        init_as_one_layer(self.input, self.recurrent)

    def forward(self, g: torch.Tensor, state: State) -> tuple[torch.Tensor, ...]:
        """g (B, input_dim), state (h_{t-1},) or None -> (h_t,)."""
        if state is None:
            return (self.input(g).relu_(),)
        return (linear_sum(self.input, g, self.recurrent, state[0]).relu_(),)

    @staticmethod
    def hidden(state: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return state[0]


class LSTMCore(nn.Module):
    def __init__(self, *, input_dim: int, hidden: int) -> None:
        super().__init__()
        self.hidden_size = hidden
        self.cell = nn.LSTMCell(input_dim, hidden)

    def forward(self, g: torch.Tensor, state: State) -> tuple[torch.Tensor, ...]:
        """g (B, input_dim), state (h_{t-1}, c_{t-1}) or None -> (h_t, c_t). From the zero
        state the cell's own maths without its recurrent product (W_hh 0 = 0, f c_{-1} = 0):
        the same numbers as `LSTMCell(g, None)`, half the step's matrix products."""
        if state is not None:
            return self.cell(g, state)
        cell = self.cell
        gates = torch.nn.functional.linear(g, cell.weight_ih, cell.bias_ih) + cell.bias_hh
        i, _, c_hat, o = gates.chunk(4, dim=1)  # PyTorch's gate order: input, forget, cell, output
        c = torch.sigmoid(i) * torch.tanh(c_hat)
        return torch.sigmoid(o) * torch.tanh(c), c

    @staticmethod
    def hidden(state: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return state[0]


def build_core(kind: str, *, input_dim: int, hidden: int) -> nn.Module:
    return {"rnn": RNNCore, "lstm": LSTMCore}[kind](input_dim=input_dim, hidden=hidden)
