"""The core network: the recurrent state that integrates glimpses.

    rnn:  h_t = relu(W_h h_{t-1} + W_g g_t)          (the paper's)
    lstm: (h_t, c_t) = LSTMCell(g_t, (h_{t-1}, c_{t-1}))
The state is a tuple so that both cores share one interface; `hidden(state)` is h_t.
"""

from __future__ import annotations

import torch
from torch import nn

CORES = ("rnn", "lstm")


class RNNCore(nn.Module):
    """`W_g` and `W_h` are stored side by side as one linear layer on [g_t, h_{t-1}]."""

    def __init__(self, *, input_dim: int, hidden: int) -> None:
        super().__init__()
        self.hidden_size = hidden
        self.linear = nn.Linear(input_dim + hidden, hidden)  # [W_g W_h]

    def initial_state(self, batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        return (torch.zeros(batch, self.hidden_size, device=device),)

    def forward(self, g: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        (h,) = state
        return (torch.relu(self.linear(torch.cat([g, h], dim=1))),)

    @staticmethod
    def hidden(state: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return state[0]


class LSTMCore(nn.Module):
    def __init__(self, *, input_dim: int, hidden: int) -> None:
        super().__init__()
        self.hidden_size = hidden
        self.cell = nn.LSTMCell(input_dim, hidden)

    def initial_state(self, batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        zeros = torch.zeros(batch, self.hidden_size, device=device)
        return (zeros, zeros)

    def forward(self, g: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return self.cell(g, state)

    @staticmethod
    def hidden(state: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return state[0]


def build_core(kind: str, *, input_dim: int, hidden: int) -> nn.Module:
    return {"rnn": RNNCore, "lstm": LSTMCore}[kind](input_dim=input_dim, hidden=hidden)
