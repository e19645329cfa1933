"""Evaluation: error of the final prediction and of every step's (anytime) prediction.

Deterministic by default: one rollout per image, the RAM looking where its policy's mean
says. `sample=True` draws locations as in training; `rollouts=M > 1` draws M rollouts per
image and averages their class probabilities (Monte Carlo), at every step. `protocol` names
which of these produced a number, and every result file carries it.

Every random number an evaluation uses (a random first location, a random policy's places,
the sampled policy's noise)
is drawn before it starts, for the whole split at once, on the CPU from a generator of fixed
seed: so an evaluation gives the same numbers at any batch size and on any device (up to the
device's arithmetic), and two evaluations of one model agree. A subset of a split (a limited
evaluation, a figure's few scenes: `Scenes.subset`) gets the rows of the whole split's draw
that its scenes have there.

For a model that glimpses (its output has a rollout), `in_box` is the share (%) of glimpse
centres inside the digit's bounding box, per step, and `glimpse_distance` the mean distance in
pixels between the centres of two glimpses of one rollout: small when the glimpses pile up on
one spot and see the same pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ramlab.data.loader import SceneLoader
from ramlab.data.scenes import Subset
from ramlab.errors import RamlabError
from ramlab.models.base import FeedForwardModel, Model, ModelOutput
from ramlab.protocols import ONE_PASS, protocol
from ramlab.rewards import box_distance, to_pixels

EVAL_SEED = 1234


def protocol_of(model: Model, *, sample: bool, rollouts: int) -> str:
    """`protocol` for this model: one forward pass for a model without glimpses, and a RAM's
    random places said as such."""
    if isinstance(model, FeedForwardModel):
        return ONE_PASS
    return protocol(sample=sample, rollouts=rollouts, random_places=model.looks_at_random)


def check_sampling(model: Model, *, sample: bool, rollouts: int) -> None:
    """Refuse a sampled evaluation where there is nothing to sample: it would give the same
    numbers under a false label (and another kind of sweep)."""
    if sample and rollouts == 1 and model.looks_at_random:
        raise RamlabError(
            "a RAM with random glimpse locations (policy: random) has no policy to sample: its "
            "places are random already; drop --sample (--rollouts M averages M random placements)"
        )
    if (sample or rollouts > 1) and isinstance(model, FeedForwardModel):
        raise RamlabError(
            f"the {type(model).__name__} model draws no glimpse locations: sampled evaluation and "
            "several rollouts are for the RAM"
        )


@dataclass
class Evaluation:
    error: float  # % of wrong final predictions
    per_step_error: list[float]  # % wrong after each glimpse (one entry for a CNN)
    loss: float  # mean cross-entropy of the final prediction
    count: int
    protocol: str = "policy mean, one rollout"
    in_box: list[float] | None = None  # % of glimpse t's centres inside the digit's box
    glimpse_distance: float | None = None  # mean px between two glimpse centres of a rollout

    def to_dict(self) -> dict:
        return {
            "error": self.error,
            "per_step_error": self.per_step_error,
            "loss": self.loss,
            "count": self.count,
            "protocol": self.protocol,
            "in_box": self.in_box,
            "glimpse_distance": self.glimpse_distance,
        }


def glimpse_distance(locations: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Mean distance in pixels between the centres of two glimpses of one rollout, over all
    pairs: locations (B, T, 2) as (x, y) in [-1, 1] -> (B,); 0 with one glimpse."""
    steps = locations.shape[1]
    if steps < 2:
        return locations.new_zeros(len(locations))
    centres = to_pixels(locations, image_size)  # (B, T, 2)
    # The (T, T) distance matrix holds every pair twice and a zero diagonal.
    return torch.cdist(centres, centres).sum(dim=(1, 2)) / (steps * (steps - 1))


def split_randomness(
    model: Model,
    count: int,
    *,
    sample: bool,
    seed: int,
    device: torch.device,
    subset: Subset | None = None,
    rollouts: int = 1,
) -> tuple[torch.Tensor | None, ...]:
    """What `model.draw_randomness` draws for `count` scenes' `rollouts` rollouts each (scene
    by scene, a scene's M rollouts in a row), drawn at once on the CPU from a generator seeded
    with `seed`, then moved to `device` in one copy (not one per batch, each of which would
    wait for a GPU). `subset`: which scenes of a whole split these are (`Scenes.subset`): the
    whole split's numbers are drawn and the subset's rows kept, so each scene gets those the
    whole split's evaluation gives it. None: the whole split."""
    if subset is not None and len(subset.rows) != count:
        raise ValueError(f"a subset of {len(subset.rows)} scenes for {count} scenes")
    generator = torch.Generator().manual_seed(seed)
    # draw_randomness reads the number of rows and the dtype only
    weight = next(model.parameters(), None)  # a model may have none (a fixed rule)
    dtype = torch.float32 if weight is None else weight.dtype
    scenes = count if subset is None else subset.of
    drawn = model.draw_randomness(
        torch.empty(scenes * rollouts, 1, 0, 0, dtype=dtype), sample=sample, generator=generator
    )
    if subset is not None:
        rows = torch.as_tensor(subset.rows, dtype=torch.long)[:, None] * rollouts + torch.arange(rollouts)
        drawn = tuple(None if d is None else d[rows.flatten()] for d in drawn)
    return tuple(None if d is None else d.to(device) for d in drawn)


def passes(
    model: Model,
    images: torch.Tensor,
    *,
    batch_size: int,
    seed: int = EVAL_SEED,
    subset: Subset | None = None,
) -> Iterator[tuple[slice, ModelOutput]]:
    """The model's policy-mean passes over `images` (N, 1, H, W), batch by batch, as (rows,
    output), with the random numbers `evaluate` draws for the same scenes (a random first
    location, a random policy's places; `subset`: which scenes of their whole split they are,
    as `split_randomness` reads it): per-scene analyses then add up to its figures. Call in
    eval mode."""
    draws = split_randomness(model, len(images), sample=False, seed=seed, device=images.device, subset=subset)
    for start in range(0, len(images), batch_size):
        rows = slice(start, start + batch_size)
        randomness = tuple(None if d is None else d[rows] for d in draws)
        yield rows, model(images[rows], sample=False, randomness=randomness)


@torch.inference_mode()
def evaluate(
    model: Model,
    loader: SceneLoader,
    *,
    sample: bool = False,
    rollouts: int = 1,
    seed: int = EVAL_SEED,
) -> Evaluation:
    if rollouts < 1:
        raise ValueError(f"rollouts must be >= 1, got {rollouts}")
    check_sampling(model, sample=sample, rollouts=rollouts)
    sample = sample or rollouts > 1
    was_training = model.training
    model.eval()
    draws = split_randomness(
        model,
        loader.num_samples,
        sample=sample,
        seed=seed,
        device=loader.device,
        subset=loader.subset,
        rollouts=rollouts,
    )
    wrong_steps = inside = None
    distance = torch.zeros((), dtype=torch.float64, device=loader.device)
    loss_sum, count = torch.zeros((), dtype=torch.float64, device=loader.device), 0
    for batch in loader:
        images = batch.images.repeat_interleave(rollouts, dim=0) if rollouts > 1 else batch.images
        rows = slice(count * rollouts, (count + len(batch)) * rollouts)
        randomness = tuple(None if d is None else d[rows] for d in draws)
        out = model(images, sample=sample, randomness=randomness)
        log_p = torch.log_softmax(out.step_logits, dim=2)  # (B*M, T, C)
        if rollouts > 1:  # log of the mean probability over each image's M rollouts
            log_p = log_p.view(len(batch), rollouts, *log_p.shape[1:]).logsumexp(dim=1) - math.log(rollouts)
        wrong = (log_p.argmax(dim=2) != batch.labels[:, None]).sum(dim=0)  # (T,)
        wrong_steps = wrong if wrong_steps is None else wrong_steps + wrong
        loss_sum += F.nll_loss(log_p[:, -1], batch.labels, reduction="sum")  # summed on the device
        if out.rollout is not None:
            bboxes = batch.bboxes.repeat_interleave(rollouts, dim=0) if rollouts > 1 else batch.bboxes
            hits = (box_distance(out.rollout.locations, bboxes, out.rollout.image_size) == 0).sum(dim=0)
            inside = hits if inside is None else inside + hits
            distance += glimpse_distance(out.rollout.locations, out.rollout.image_size).sum()
        count += len(batch)
    model.train(was_training)
    per_step = (wrong_steps.double() * 100.0 / count).tolist()
    return Evaluation(
        error=per_step[-1],
        per_step_error=per_step,
        loss=loss_sum.item() / count,
        count=count,
        protocol=protocol_of(model, sample=sample, rollouts=rollouts),
        in_box=None if inside is None else (inside.double() * 100.0 / (count * rollouts)).tolist(),
        glimpse_distance=None if inside is None else distance.item() / (count * rollouts),
    )
