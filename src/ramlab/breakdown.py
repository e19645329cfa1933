"""Error breakdown: which scenes a model gets wrong, grouped by what might explain it.

`scene_outcomes` runs a model once over a split (the policy mean, one rollout, as evaluation
does) and keeps, per scene: whether the final prediction was wrong, the digit's class, how
far the digit's centre lies from the canvas centre (where a centred first glimpse looks), and
how many of the glimpse centres fell inside the digit's box. `grouped_errors` turns one of
these into an error rate per group, and `shared_errors` says how many wrong scenes two models
have in common: errors that two independently trained models share point at hard digits,
errors they do not share at variance between models.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from ramlab.data.scenes import Subset
from ramlab.evaluate import passes
from ramlab.models.base import Model
from ramlab.probe import box_centres
from ramlab.rewards import box_distance


@dataclass(frozen=True)
class Outcomes:
    wrong: torch.Tensor  # (N,) bool: the final prediction is not the label
    labels: torch.Tensor  # (N,) the digit's class
    offset_px: torch.Tensor  # (N,) pixels from the canvas centre to the digit's box centre
    glimpses_in_box: torch.Tensor | None  # (N,) how many glimpse centres lie in the box; None for a CNN


@dataclass(frozen=True)
class GroupError:
    group: str
    scenes: int
    wrong: int

    @property
    def error(self) -> float:
        return 100.0 * self.wrong / self.scenes if self.scenes else float("nan")


@torch.inference_mode()
def scene_outcomes(
    model: Model,
    images: torch.Tensor,
    labels: torch.Tensor,
    bboxes: torch.Tensor,
    *,
    batch_size: int = 500,
    subset: Subset | None = None,
) -> Outcomes:
    """images (N, 1, H, W) in [0, 1], labels (N,), bboxes (N, 4) as (x0, y0, x1, y1) pixels.
    The passes are `ramlab.evaluate`'s (a random first glimpse drawn as it draws it; `subset`:
    which scenes of their whole split these are, `Scenes.subset`)."""
    was_training = model.training
    model.eval()
    image_size = tuple(images.shape[-2:])
    wrong, inside = [], []
    for rows, out in passes(model, images, batch_size=batch_size, subset=subset):
        wrong.append(out.step_logits[:, -1].argmax(dim=1) != labels[rows])
        if out.rollout is not None:
            hits = box_distance(out.rollout.locations, bboxes[rows], image_size) == 0  # (B, T)
            inside.append(hits.sum(dim=1))
    model.train(was_training)
    height, width = image_size
    half = bboxes.new_tensor([width / 2, height / 2], dtype=torch.float64)  # on the boxes' device
    offset = (box_centres(bboxes, image_size) * half).norm(dim=1)
    return Outcomes(
        wrong=torch.cat(wrong),
        labels=labels.clone(),
        offset_px=offset,
        glimpses_in_box=torch.cat(inside) if inside else None,
    )


def grouped_errors(wrong: torch.Tensor, groups: torch.Tensor, names: list[str]) -> list[GroupError]:
    """The error of each group: wrong (N,) bool, groups (N,) ints in [0, len(names))."""
    return [
        GroupError(name, int((groups == g).sum()), int(wrong[groups == g].sum()))
        for g, name in enumerate(names)
    ]


def bins(values: torch.Tensor, edges: list[float]) -> tuple[torch.Tensor, list[str]]:
    """Group index of each value among the half-open bins [e_i, e_i+1) of ascending edges,
    with the last bin open above ([e_last, inf)); values below the first edge go to bin 0.
    Returns the indices and the bins' names."""
    if list(edges) != sorted(edges) or len(set(edges)) != len(edges):
        raise ValueError(f"bin edges must be strictly ascending, got {edges}")
    inner = torch.tensor(edges[1:], dtype=torch.float64, device=values.device)
    index = torch.bucketize(values.double(), inner, right=True)
    names = [f"{a:g}-{b:g}" for a, b in itertools.pairwise(edges)] + [f"{edges[-1]:g}+"]
    return index, names


def placement_offsets(centred: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
    """How far each digit was placed from the centre, max(|dx|, |dy|) in pixels (a translate
    level's window is a square): boxes (N, 4) as (x0, y0, x1, y1) of the same digits at
    translate 0 (the centre) and moved. A digit's ink box moves with its placement, so the
    difference of the boxes' corners is the move, whatever the digit's shape."""
    if centred.shape != moved.shape:
        raise ValueError(
            f"the boxes are of different scenes: {tuple(centred.shape)} and {tuple(moved.shape)}"
        )
    return (moved[:, :2] - centred[:, :2]).abs().amax(dim=1)


def rings(offsets: torch.Tensor, levels: list[float]) -> tuple[torch.Tensor, list[str]]:
    """Ring index of each whole-pixel offset between consecutive translate levels (ascending,
    the first 0): [0, l1], (l1, l2], ..., offsets past the last level in the last ring; and
    the rings' names ("0-4", "5-8", ...)."""
    edges = [int(level) for level in levels if level > 0]
    if not edges or levels != sorted(set(levels)):
        raise ValueError(f"ring levels must be strictly ascending with one above 0, got {levels}")
    inner = torch.tensor(edges[:-1], dtype=offsets.dtype, device=offsets.device)
    index = torch.bucketize(offsets, inner)  # boundaries[i - 1] < x <= boundaries[i]
    names = [f"{0 if i == 0 else edges[i - 1] + 1}-{high}" for i, high in enumerate(edges)]
    return index, names


def shared_errors(first: torch.Tensor, second: torch.Tensor) -> dict[str, int]:
    """How many scenes both models get wrong, only the first, only the second (bool (N,) each)."""
    if first.shape != second.shape:
        raise ValueError(f"the two models were scored on different scenes: {first.shape} and {second.shape}")
    return {
        "both": int((first & second).sum()),
        "first_only": int((first & ~second).sum()),
        "second_only": int((~first & second).sum()),
    }
