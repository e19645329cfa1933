"""Location probe: does the RAM's state know where the digit is, and does its policy use it?

For each step t, a ridge regression (closed form, with a bias) from the core's state h_t to
the centre of the digit's box, in location units ([-1, 1], the policy's), is fitted on the
first scenes of a split and scored on the rest: the median distance of its prediction to the
centre, in pixels. Beside it, the median distance from the same centre to where the policy
sends glimpse t+1 (its mean, as evaluation looks). The policy is itself a linear layer of h_t
(then a tanh), so a probe well ahead of the policy says the state holds where the digit is and
the policy could aim there but does not (which may be its choice: a glimpse on a stroke off
the centre can serve the classifier better); a probe no better than guessing the average
centre says the state does not hold it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ramlab.data.scenes import Subset
from ramlab.errors import RamlabError
from ramlab.evaluate import passes
from ramlab.models.base import Model


def box_centres(bboxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """bboxes (N, 4) as (x0, y0, x1, y1) in pixels, x1/y1 exclusive -> (N, 2) centres (x, y) in
    location units: pixel column c's left edge is at 2c/W - 1, so the box's centre
    (x0 + x1) / 2 is at (x0 + x1) / W - 1."""
    height, width = image_size
    size = bboxes.new_tensor([width, height], dtype=torch.float64)
    boxes = bboxes.to(torch.float64)
    return (boxes[:, :2] + boxes[:, 2:]) / size - 1.0


def ridge_fit(features: torch.Tensor, targets: torch.Tensor, penalty: float) -> torch.Tensor:
    """Weights W (F+1, K) minimising |[X 1] W - Y|^2 + penalty |W[:F]|^2 (the bias is not
    penalised), in float64. features (N, F), targets (N, K)."""
    x = torch.cat([features.double(), features.new_ones(len(features), 1, dtype=torch.float64)], 1)
    gram = x.T @ x
    ridge = torch.full((x.shape[1],), float(penalty), dtype=torch.float64)
    ridge[-1] = 0.0
    return torch.linalg.solve(gram + torch.diag(ridge), x.T @ targets.double())


def ridge_predict(weights: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    return features.double() @ weights[:-1] + weights[-1]


@dataclass(frozen=True)
class ProbeStep:
    step: int  # glimpse t (1-based): the state after it
    probe_px: float  # median |probe(h_t) - centre| on the held-out scenes, pixels
    policy_px: float | None  # median |glimpse t+1 - centre| there; None after the last glimpse
    mean_guess_px: float  # median |average fitted centre - centre|: the probe of a state that knows nothing


def _median_px(predicted: torch.Tensor, centres: torch.Tensor, image_size: tuple[int, int]) -> float:
    height, width = image_size
    half = centres.new_tensor([width / 2, height / 2])
    return float(((predicted - centres) * half).norm(dim=1).median())


@torch.no_grad()
def location_probe(
    model: Model,
    images: torch.Tensor,
    bboxes: torch.Tensor,
    *,
    fit_fraction: float = 0.8,
    penalty: float = 1.0,
    batch_size: int = 500,
    subset: Subset | None = None,
) -> list[ProbeStep]:
    """images (N, 1, H, W) in [0, 1], bboxes (N, 4): one row per glimpse. The model looks with
    its policy's mean (as evaluation does, `subset` as `ramlab.evaluate.passes` reads it) and
    must expose its states (the RAM's rollout)."""
    fit = int(fit_fraction * len(images))
    if not 2 <= fit <= len(images) - 2:
        raise RamlabError(f"location probe: {len(images)} scenes leave too few to fit or to score")
    was_training = model.training
    model.eval()
    states, locations = [], []
    try:
        for _, out in passes(model, images, batch_size=batch_size, subset=subset):
            rollout = out.rollout
            if rollout is None or rollout.states is None:
                raise RamlabError("location probe: the model has no recurrent states to probe (a RAM has)")
            states.append(rollout.states.float().cpu())
            locations.append(rollout.locations.double().cpu())
    finally:
        model.train(was_training)
    h, where = torch.cat(states), torch.cat(locations)  # (N, T, hidden), (N, T, 2)
    size = tuple(images.shape[-2:])
    centres = box_centres(bboxes.cpu(), size)
    held = slice(fit, None)
    guess = _median_px(centres[:fit].mean(0, keepdim=True).expand_as(centres[held]), centres[held], size)
    steps = h.shape[1]
    rows = []
    for t in range(steps):
        weights = ridge_fit(h[:fit, t], centres[:fit], penalty)
        probe = _median_px(ridge_predict(weights, h[held, t]), centres[held], size)
        policy = _median_px(where[held, t + 1], centres[held], size) if t + 1 < steps else None
        rows.append(ProbeStep(step=t + 1, probe_px=probe, policy_px=policy, mean_guess_px=guess))
    return rows


def probe_rows(rows: list[ProbeStep]) -> list[dict]:
    return [asdict(row) for row in rows]
