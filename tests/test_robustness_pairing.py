"""Robustness levels paired with each other (robustness.json format 5): every level draws from
the run's own spec's stream and a warp from its own, so a level changes only what its shift
changes, and a scale level keeps each digit's centre (format 7); `test_robustness_formats.py`
reads sweeps of earlier formats."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ramlab import robustness
from ramlab.data.datasets import evaluation_subset, load_split, resolve_spec, split_seed
from ramlab.data.scenes import SceneSpec, generate_scenes
from ramlab.robustness import SHIFTS, shifted_scenes


@pytest.fixture(autouse=True)
def fresh_scene_memo():
    """The sweep keeps shifted scenes in memory; each test starts from its own digits."""
    robustness._SCENES.clear()
    yield
    robustness._SCENES.clear()


@pytest.mark.parametrize("data", ["translated60", "cluttered60"])
def test_noise_and_clutter_levels_are_the_runs_test_scenes_with_only_that_changed(fake_mnist, data):
    # Every level draws from the run's own spec's stream (format 5). Seeded by each level's own
    # spec (format 4), every level placed its digits anew: no box would match.
    base = resolve_spec(data)
    own = load_split(data, "test", seed=0, cache=False)
    noise = SHIFTS["noise"]
    low, high = (shifted_scenes(noise.spec(base, s), base=base, seed=0, limit=None) for s in (0.1, 0.2))
    assert np.array_equal(low.bboxes, own.bboxes) and np.array_equal(high.bboxes, own.bboxes)
    # The same draws times σ: where neither level clipped, 0.2's noise is twice 0.1's (each
    # rounded to a whole intensity, so within 0.5 + 2 x 0.5).
    clean, a, b = (x.images.astype(float) for x in (own, low, high))
    inside = (a > 0) & (a < 255) & (b > 0) & (b < 255)
    assert inside.mean() > 0.3
    assert np.abs((b - clean) - 2 * (a - clean))[inside].max() <= 1.5
    # Clutter: the first N pieces of one sequence, laid on the same placements.
    counts = [0, 2, 4, 8]
    clutter = SHIFTS["clutter"]
    levels = [shifted_scenes(clutter.spec(base, n), base=base, seed=0, limit=None) for n in counts]
    for fewer, more in itertools.pairwise(levels):
        assert np.array_equal(fewer.bboxes, own.bboxes) and np.array_equal(more.bboxes, own.bboxes)
        assert (more.images >= fewer.images).all() and (more.images > fewer.images).any()
    assert np.array_equal(levels[counts.index(base.clutter_count)].images, own.images)


def test_every_level_keeps_the_clutter_and_noise_but_a_level_of_one_place():
    # Blank digits but one: the scenes hold only clutter (cut from the lit digit) and noise.
    # A rotation level draws its warp apart; a translate level maps the same placement draws
    # onto its window (one each: NumPy's bounded integers), and a scale level draws the places
    # of the dataset's own box, so the clutter and noise stay. Translate 0 has one place,
    # draws nothing for it, and shifts them.
    digits = np.zeros((40, 28, 28), dtype=np.uint8)
    digits[0] = 255
    labels = np.arange(40) % 10
    base = SceneSpec(canvas=60, clutter_count=4, noise=0.1)
    own = generate_scenes(base, digits, labels, seed=3).images[1:]
    for name, level in [("rotate", 45), ("translate", 4), ("translate", 8), ("scale", 0.5), ("scale", 1.3)]:
        level_scenes = generate_scenes(
            SHIFTS[name].spec(base, level), digits, labels, seed=3, centres_of=base.footprint
        )
        assert np.array_equal(level_scenes.images[1:], own), (name, level)
    single = generate_scenes(SHIFTS["translate"].spec(base, 0), digits, labels, seed=3)
    assert not np.array_equal(single.images[1:], own)


@pytest.mark.parametrize("data", ["translated60", "cluttered60", "centred60"])
def test_a_scale_level_resizes_each_digit_about_the_centre_its_scene_gave_it(fake_mnist, data):
    # Format 6 placed the resized box anywhere in the window it left: at 60 px a digit's
    # centre then reached 7-53 px at scale 0.5 and only 22.5-37.5 at 1.6, a translation mixed
    # into the scale curve (and a larger digit nearer a RAM's first, central glimpse).
    base = resolve_spec(data)
    lit = np.full((300, 28, 28), 255, dtype=np.uint8)  # a digit's tight box is its whole box
    labels = np.arange(300) % 10
    own = generate_scenes(base, lit, labels, seed=5).bboxes
    centre = (own[:, :2] + own[:, 2:]) / 2  # (x, y)
    for level in (0.5, 0.75, 1.3, 1.6):
        spec = SHIFTS["scale"].spec(base, level)
        boxes = generate_scenes(spec, lit, labels, seed=5, centres_of=base.footprint).bboxes
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= spec.canvas).all(), level
        side = boxes[:, 2:] - boxes[:, :2]
        assert np.abs(side - 28 * level).max() <= 1.5, level
        # Kept to the pixel, moved only as far as the canvas's edge needs (a larger digit).
        wanted = np.clip(centre, side / 2, spec.canvas - side / 2)
        assert np.abs((boxes[:, :2] + boxes[:, 2:]) / 2 - wanted).max() <= 1.0, level
        assert level > 1 or np.array_equal(wanted, centre)  # a smaller digit never reaches an edge
    # The sweep's scenes are these (the test split's digits, the run's own seed).
    spec = SHIFTS["scale"].spec(base, 1.3)
    swept = shifted_scenes(spec, base=base, seed=1, limit=None)
    made = generate_scenes(
        spec,
        fake_mnist.test_images,
        fake_mnist.test_labels,
        seed=split_seed(base, 1, "test"),
        centres_of=base.footprint,
    )
    assert np.array_equal(swept.images, made.images) and np.array_equal(swept.bboxes, made.bboxes)


def test_every_level_is_drawn_with_the_runs_own_seed(fake_mnist):
    base = resolve_spec("cluttered60")
    images, labels = fake_mnist.test_images, fake_mnist.test_labels
    for name, level in [("rotate", 30), ("noise", 0.2), ("translate", 8)]:
        spec = SHIFTS[name].spec(base, level)
        swept = shifted_scenes(spec, base=base, seed=1, limit=None)
        made = generate_scenes(spec, images, labels, seed=split_seed(base, 1, "test"))
        assert np.array_equal(swept.images, made.images), name
        other = generate_scenes(spec, images, labels, seed=split_seed(spec, 1, "test"))  # format 4's
        assert not np.array_equal(swept.images, other.images), name


def test_a_limited_level_knows_which_digits_of_the_split_it_holds(fake_mnist):
    base = resolve_spec("translated60")
    limited = shifted_scenes(base, base=base, seed=0, limit=5, split="test")
    whole = load_split("translated60", "test", seed=0)
    assert (
        limited.subset.of == len(whole) and shifted_scenes(base, base=base, seed=0, limit=None).subset is None
    )
    np.testing.assert_array_equal(limited.subset.rows, evaluation_subset(len(whole), 5, "test"))
    np.testing.assert_array_equal(limited.labels, whole.labels[limited.subset.rows])
