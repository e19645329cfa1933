"""A limited evaluation, a figure or an analysis of a few scenes gives each scene the random
numbers (a random first glimpse, a random policy's places, sampling noise) that the whole
split's evaluation gives it (`Scenes.subset`, `evaluate.split_randomness`)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_ram import SMALL

from ramlab.data import datasets
from ramlab.data.loader import SceneLoader
from ramlab.data.scenes import Subset
from ramlab.evaluate import EVAL_SEED, evaluate, split_randomness
from ramlab.models.ram import RAM
from ramlab.rewards import box_distance
from ramlab.viz.glimpses import trajectories, where_glimpses_go


def ram_60(**changes) -> RAM:
    torch.manual_seed(0)
    return RAM(config=dataclasses.replace(SMALL, **changes), image_size=(60, 60), num_classes=10)


@pytest.mark.parametrize(
    ("changes", "sample", "rollouts"),
    [
        ({"policy": "random"}, False, 1),
        # a random first place, then the policy's noise: two draws, so a shorter draw's noise
        # starts elsewhere in the stream (a prefix of the rows would not do)
        ({"first_location": "random"}, True, 3),
    ],
)
def test_a_subset_gets_the_whole_splits_draws_for_its_rows(
    changes: dict, sample: bool, rollouts: int
) -> None:
    model = ram_60(**changes)
    cpu = torch.device("cpu")
    whole = split_randomness(model, 20, sample=sample, seed=EVAL_SEED, device=cpu, rollouts=rollouts)
    subset = Subset(np.array([3, 7, 9, 11, 15]), of=20)
    part = split_randomness(
        model, 5, sample=sample, seed=EVAL_SEED, device=cpu, subset=subset, rollouts=rollouts
    )
    rows = (torch.tensor(subset.rows)[:, None] * rollouts + torch.arange(rollouts)).flatten()
    first_five = split_randomness(model, 5, sample=sample, seed=EVAL_SEED, device=cpu, rollouts=rollouts)
    for drawn, full, prefix in zip(part, whole, first_five, strict=True):
        if full is None:
            assert drawn is None and prefix is None
            continue
        assert torch.equal(drawn, full[rows])
        assert not torch.equal(drawn, prefix)  # what the first five scenes' draw would give
    with pytest.raises(ValueError, match="a subset of 5 scenes for 4 scenes"):
        split_randomness(model, 4, sample=sample, seed=EVAL_SEED, device=cpu, subset=subset)


def test_a_limited_split_knows_its_rows_and_its_figures_and_error_use_the_whole_splits_places(
    synthetic_digits,
) -> None:
    whole = datasets.load_split("translated60", "test", digits=synthetic_digits)
    limited = datasets.load_split("translated60", "test", digits=synthetic_digits, limit=5)
    assert whole.subset is None and limited.subset.of == len(whole) == 20
    rows = limited.subset.rows
    np.testing.assert_array_equal(rows, datasets.evaluation_subset(20, 5, "test"))
    np.testing.assert_array_equal(limited.images, whole.images[rows])

    model = ram_60(policy="random")
    places = trajectories(model, whole).locations  # (20, T, 2)
    np.testing.assert_array_equal(trajectories(model, limited).locations, places[rows])

    # The error and the glimpses in the box of a limited evaluation: those scenes' own, read
    # with the places the whole split's evaluation gave them.
    inside = box_distance(torch.from_numpy(places), torch.from_numpy(whole.bboxes).float(), (60, 60)) == 0
    expected_in_box = (inside[rows].double().mean(dim=0) * 100).tolist()
    loader = SceneLoader(limited, batch_size=2)
    assert evaluate(model, loader).in_box == pytest.approx(expected_in_box)
    assert where_glimpses_go(model, loader)["inside_bbox_percent"] == pytest.approx(expected_in_box)
