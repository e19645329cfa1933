"""The location network: a Gaussian policy over the next glimpse location.

    mu_t = tanh(W_mu h_t)  (in [-1, 1]);  sigma fixed (the paper) or exp(W_s h_t) (learned)
    l_{t+1} ~ N(mu_t, sigma^2), clamped to [-1, 1] for the retina

Its input is the detached hidden state, so only REINFORCE trains it. The log-probability
is of the unclamped sample (the action the policy actually drew).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class LocationSample:
    location: torch.Tensor  # (B, 2) clamped to [-1, 1], what the retina sees
    log_prob: torch.Tensor  # (B,) of the unclamped sample under N(mu, sigma^2), summed over x, y
    entropy: torch.Tensor  # (B,) of the Gaussian


class LocationPolicy(nn.Module):
    def __init__(self, *, hidden: int, std: float, learn_std: bool, min_std: float = 1e-3) -> None:
        super().__init__()
        self.mean = nn.Linear(hidden, 2)
        self.log_std = nn.Linear(hidden, 2) if learn_std else None
        self.fixed_log_std = math.log(std)
        self.min_log_std = math.log(min_std)
        if self.log_std is not None:  # start at the configured std
            nn.init.zeros_(self.log_std.weight)
            nn.init.constant_(self.log_std.bias, self.fixed_log_std)

    def forward(
        self, h: torch.Tensor, *, sample: bool, generator: torch.Generator | None = None
    ) -> LocationSample:
        """h (B, hidden), detached by the caller -> the next location."""
        mu = torch.tanh(self.mean(h))  # (B, 2)
        if self.log_std is None:
            log_std = torch.full_like(mu, self.fixed_log_std)
        else:
            log_std = self.log_std(h).clamp(min=self.min_log_std, max=1.0)
        if not sample:
            zeros = mu.new_zeros(len(mu))
            return LocationSample(location=mu.detach(), log_prob=zeros, entropy=zeros)
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        action = (mu + noise * log_std.exp()).detach()
        # log N(a; mu, sigma) = -(a - mu)^2 / (2 sigma^2) - log sigma - log sqrt(2 pi)
        z = (action - mu) * torch.exp(-log_std)
        log_prob = (-0.5 * z.square() - log_std - LOG_SQRT_2PI).sum(dim=1)
        entropy = (log_std + 0.5 + LOG_SQRT_2PI).sum(dim=1)
        return LocationSample(location=action.clamp(-1.0, 1.0), log_prob=log_prob, entropy=entropy)
