"""Rewards for the location policy: pure functions of (rollout, labels, bboxes) -> (B, T).

Index t of every (B, T) tensor is glimpse t: `rollout.locations[:, t]` is where glimpse t
looked, `rollout.log_probs[:, t]` the log-probability of choosing that location (sampled
from the state after glimpse t-1), and `reward[:, t]` what glimpse t earned. So a reward
is credited to the action that caused it, and the return of action t is the discounted
reward-to-go G_t = sum_{s >= t} gamma^(s - t) r_s.

    sparse:   r_{T-1} = 1 if the final prediction is right, else 0; r_t = 0 before
    infogain: r_t = log p(y | h_t) - log p(y | h_{t-1}),  p(y | h_{-1}) = 1 / C (uniform),
              so the rewards sum to log p(y | h_{T-1}) + log C. At gamma = 1 the return
              G_t = log p(y | h_{T-1}) - log p(y | h_{t-1}) telescopes: its second term is
              fixed before l_t is drawn (a baseline, zero in expectation), so the policy's
              expected gradient is that of a terminal log-likelihood reward; per-glimpse
              credit needs gamma < 1 (`infogain@0`: a glimpse's own gain only)
    bbox:     r_t = -d_t, d_t the distance from glimpse t's centre to the digit's bounding
              box (0 inside it), in location units (half the canvas side is 1)

A reward structure is a weighted sum written `"sparse+0.5*bbox"`; a term may take its own
discount, `"0.1*sparse+0.1*infogain@0"` (information gain credited to its own glimpse only,
the sparse reward's return at the config's gamma), its return then discounted apart and the
returns summed. Weights default to 1 and must be positive and finite: each reward already
has the sign of what it asks for (bbox is a penalty, -distance), so a negative weight would
ask for the opposite of its name (glimpses far from the digit, wrong answers); a zero weight
is refused (leave the term out).

sparse and infogain read `rollout.step_logits`, the classifier's predictions the loss trains:
with dropout, in training, those of the dropped-out state (unbiased, a little noisier).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import torch

from ramlab.errors import RamlabError


def sparse_reward(rollout, labels: torch.Tensor, bboxes: torch.Tensor) -> torch.Tensor:
    correct = (rollout.step_logits[:, -1].argmax(dim=1) == labels).float()  # (B,)
    reward = torch.zeros_like(rollout.log_probs)
    reward[:, -1] = correct
    return reward


def infogain_reward(rollout, labels: torch.Tensor, bboxes: torch.Tensor) -> torch.Tensor:
    log_p = torch.log_softmax(rollout.step_logits.detach(), dim=2)  # (B, T, C)
    log_py = log_p.gather(2, labels[:, None, None].expand(-1, log_p.shape[1], 1)).squeeze(2)
    prior = torch.full_like(log_py[:, :1], -math.log(log_p.shape[2]))
    return log_py - torch.cat([prior, log_py[:, :-1]], dim=1)


def _per_axis(op: Callable, values: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """`op(values, (x, y))` over the last dimension (x, y), with Python numbers: a tensor made
    of them would be copied to a GPU on every call, and wait for it."""
    return torch.stack((op(values[..., 0], x), op(values[..., 1], y)), dim=-1)


def to_pixels(locations: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Locations (..., 2) as (x, y) in [-1, 1] -> pixel coordinates (..., 2) on an (H, W) canvas."""
    height, width = image_size
    return _per_axis(torch.mul, (locations + 1.0) * 0.5, width, height)


def box_distance(locations: torch.Tensor, bboxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Distance from each glimpse centre to the digit's box (0 inside it), in location units
    (half the canvas side is 1). locations (B, T, 2) as (x, y) in [-1, 1], bboxes (B, 4)
    (x0, y0, x1, y1) in pixels -> (B, T)."""
    height, width = image_size
    centre = to_pixels(locations, image_size)  # (B, T, 2)
    low, high = bboxes[:, None, :2], bboxes[:, None, 2:]  # (B, 1, 2) each
    gap = torch.clamp(low - centre, min=0) + torch.clamp(centre - high, min=0)  # (B, T, 2)
    return _per_axis(torch.div, gap, 0.5 * width, 0.5 * height).norm(dim=2)


def bbox_reward(rollout, labels: torch.Tensor, bboxes: torch.Tensor) -> torch.Tensor:
    return -box_distance(rollout.locations, bboxes, rollout.image_size)


REWARDS: dict[str, Callable] = {
    "sparse": sparse_reward,
    "infogain": infogain_reward,
    "bbox": bbox_reward,
}
_TERM = re.compile(r"^\s*(?:(?P<w>[0-9.eE+-]+)\s*\*\s*)?(?P<name>[a-z_]+)\s*(?:@\s*(?P<g>[0-9.eE+-]+)\s*)?$")
_PLUS = re.compile(r"(?<![0-9.][eE])\+")
"""The '+' between terms, not the one of an exponent (`1e+0*bbox`)."""


def parse_reward(spec: str) -> dict[str, float]:
    """`"sparse+0.5*bbox"` -> {"sparse": 1.0, "bbox": 0.5}; unknown names list the valid ones."""
    return {name: weight for name, (weight, _) in _terms(spec).items()}


def parse_discounts(spec: str) -> dict[str, float]:
    """The terms that take their own discount: `"sparse+infogain@0"` -> {"infogain": 0.0}."""
    return {name: gamma for name, (_, gamma) in _terms(spec).items() if gamma is not None}


def _terms(spec: str) -> dict[str, tuple[float, float | None]]:
    """name -> (weight, own discount or None), every term checked."""
    terms: dict[str, tuple[float, float | None]] = {}
    for term in _PLUS.split(spec):
        match = _TERM.match(term)
        if not match:
            raise RamlabError(
                f"reward {spec!r}: cannot read term {term!r}; write e.g. sparse+0.5*bbox "
                f"(valid: {', '.join(REWARDS)})"
            )
        name = match["name"]
        if name not in REWARDS:
            raise RamlabError(f"reward {spec!r}: unknown reward {name!r}; valid: {', '.join(REWARDS)}")
        try:
            weight = float(match["w"] or 1.0)
        except ValueError:
            raise RamlabError(f"reward {spec!r}: bad weight {match['w']!r}") from None
        if not (math.isfinite(weight) and weight > 0):
            raise RamlabError(
                f"reward {spec!r}: the weight of {name} must be a positive finite number, got "
                f"{match['w']}; each reward already points the right way (bbox is a penalty), "
                "so a negative weight would reward the opposite; leave a term out to turn it off"
            )
        gamma = None
        if match["g"] is not None:
            try:
                gamma = float(match["g"])
            except ValueError:
                raise RamlabError(f"reward {spec!r}: bad discount {match['g']!r}") from None
            if not 0 <= gamma <= 1:
                raise RamlabError(
                    f"reward {spec!r}: the discount of {name} must be in [0, 1], got {match['g']}"
                )
        if name in terms and terms[name][1] != gamma:
            raise RamlabError(f"reward {spec!r}: {name} is given twice with different discounts")
        terms[name] = (terms.get(name, (0.0, gamma))[0] + weight, gamma)
    return terms


def combined_reward(weights: dict[str, float], rollout, labels, bboxes) -> torch.Tensor:
    """The weighted sum of the named rewards, (B, T)."""
    total = torch.zeros_like(rollout.log_probs)
    for name, weight in weights.items():
        total = total + weight * REWARDS[name](rollout, labels, bboxes)
    return total


def reward_and_returns(
    weights: dict[str, float], discounts: dict[str, float], gamma: float, rollout, labels, bboxes
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weighted reward (B, T) and its discounted reward-to-go (B, T): the terms that share
    a discount (`gamma`, or their own in `discounts`) summed, then discounted together."""
    groups: dict[float, dict[str, float]] = {}
    for name, weight in weights.items():
        groups.setdefault(discounts.get(name, gamma), {})[name] = weight
    reward = returns = None
    for discount, members in groups.items():
        part = combined_reward(members, rollout, labels, bboxes)
        part_returns = discounted_returns(part, discount)
        reward = part if reward is None else reward + part
        returns = part_returns if returns is None else returns + part_returns
    return reward, returns


def discounted_returns(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = r_t + gamma * G_{t+1}, over the last dimension. (B, T) -> (B, T)."""
    returns = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
    return returns
