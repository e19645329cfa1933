"""The location network: a Gaussian policy over the next glimpse location.

    f_t = h_t,  or  ReLU(W_f h_t + b_f)  with a hidden layer (`policy_hidden` > 0)
    mu_t = tanh(W_mu f_t)  (mean "tanh", in [-1, 1])  or  W_mu f_t  (mean "linear", the paper's)
    sigma fixed (the paper, at most e) or learned: log sigma = log MIN_STD + (1 - log MIN_STD) sigmoid(W_s f_t),
          in (MIN_STD, e)
    l_{t+1} ~ N(mu_t, sigma^2), clamped to [-1, 1] for the retina

A tanh mean that drifts toward an edge saturates: its gradient vanishes there. A linear mean
keeps its full REINFORCE gradient; the retina sees it (and the evaluation's mean location)
clamped to the canvas. Measured (results/recipes/TUNING.md): on mnist the linear mean ran off
the digit sooner and ended much worse, so tanh stays the default; what pulls the policy off
the digit early is noise in its gradient (see RAMConfig.policy_lr), not the saturation.

Only REINFORCE trains it (its actions are detached samples). Its input is the hidden state,
detached by default so that REINFORCE trains nothing else (`RAMConfig.policy_trains_core`
lets it reach the core and glimpse network). Measured: the policy is limited less by its own
learning rate than by what the state holds of the digit's place; with the REINFORCE gradient
in the core, 85% of cluttered60's glimpses land in the digit's box, against about 50%
detached (TUNING.md, `c60-ptc`). The log-probability
is of the unclamped sample (the action the policy actually drew). The rollout calls
`forward` once per step and scores all steps' actions at once with `log_prob`/`entropy`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

POLICY_MEANS = ("tanh", "linear")
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
MIN_STD = 1e-3
MAX_LOG_STD = 1.0  # a learned std of at most e: wider than the canvas (half its side is 1)


class LocationPolicy(nn.Module):
    def __init__(
        self,
        *,
        hidden: int,
        std: float,
        learn_std: bool,
        mean: str = "tanh",
        layer: int = 0,
        min_std: float = MIN_STD,
    ) -> None:
        """`layer` > 0 puts a ReLU layer of that many units between the state and the mean
        (and log-std); 0 reads the state directly, the paper's single affine map."""
        super().__init__()
        self.bounded = mean == "tanh"
        self.features = nn.Sequential(nn.Linear(hidden, layer), nn.ReLU()) if layer > 0 else None
        width = layer if layer > 0 else hidden
        self.mean = nn.Linear(width, 2)
        # The learned std's logit (not a raw log-std: checkpoints of the straight-through clamp
        # before 2026-12-07 named it log_std, and do not load into this one).
        self.std_logit = nn.Linear(width, 2) if learn_std else None
        self.fixed_log_std = math.log(std)
        self.min_log_std = math.log(min_std)
        if self.std_logit is not None:  # start at the configured std (strictly inside the bounds)
            share = (self.fixed_log_std - self.min_log_std) / (MAX_LOG_STD - self.min_log_std)
            nn.init.zeros_(self.std_logit.weight)
            nn.init.constant_(self.std_logit.bias, math.log(share / (1 - share)))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        """h (B, hidden) (detached by the caller unless policy_trains_core) -> mean (B, 2), log-std (B, 2) or a float."""
        if self.features is not None:
            h = self.features(h)
        mu = torch.tanh(self.mean(h)) if self.bounded else self.mean(h)
        if self.std_logit is None:
            return mu, self.fixed_log_std
        # Bounded smoothly: a plain clamp has no gradient outside its range, so a std pushed past
        # a bound (by an entropy bonus) stayed there; a clamp passing the gradient straight
        # through let the raw value run on past the bound while the std stood still. The
        # sigmoid's gradient fades near a bound, which slows that run (Adam rescales small
        # gradients, so it slows it rather than stops it: in a simulated constant push, half as
        # far and back four times sooner).
        share = torch.sigmoid(self.std_logit(h))
        return mu, self.min_log_std + (MAX_LOG_STD - self.min_log_std) * share

    @staticmethod
    def sample(mu: torch.Tensor, log_std: torch.Tensor | float, noise: torch.Tensor) -> torch.Tensor:
        """The action mu + sigma * noise, detached (REINFORCE, not reparameterisation)."""
        std = log_std.exp() if isinstance(log_std, torch.Tensor) else math.exp(log_std)
        return (mu + noise * std).detach()

    @staticmethod
    def location(mu_or_action: torch.Tensor) -> torch.Tensor:
        """Where the retina looks for a mean or an action: clamped to the canvas, detached."""
        return mu_or_action.detach().clamp(-1.0, 1.0)

    @staticmethod
    def log_prob(action: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor | float) -> torch.Tensor:
        """log N(action; mu, sigma^2) summed over (x, y): (..., 2) -> (...)."""
        if isinstance(log_std, torch.Tensor):
            z = (action - mu) * torch.exp(-log_std)
            return (-0.5 * z.square() - log_std - LOG_SQRT_2PI).sum(dim=-1)
        z = (action - mu) * math.exp(-log_std)
        return (-0.5 * z.square()).sum(dim=-1) - 2 * (log_std + LOG_SQRT_2PI)

    @staticmethod
    def entropy(log_std: torch.Tensor | float, mu: torch.Tensor) -> torch.Tensor:
        """Entropy of the Gaussian with mean `mu` (..., 2), summed over (x, y): (...).

        A fixed std's entropy is built on `mu`'s device and dtype: made on the CPU inside a GPU
        rollout, it costs a blocking host-to-device copy a step (which waits for the work queued
        on the GPU), and torch.compile splits the training step's CUDA graph around it or
        skips CUDA graphs for it."""
        if isinstance(log_std, torch.Tensor):
            return (log_std + 0.5 + LOG_SQRT_2PI).sum(dim=-1)
        return mu.new_full(mu.shape[:-1], 2 * (log_std + 0.5 + LOG_SQRT_2PI))
