"""Robustness levels paired with each other (robustness.json format 5): every level draws from
the run's own spec's stream and a warp from its own, so a level changes only what its shift
changes, and a scale level keeps each digit's centre (format 7); sweeps of earlier formats
are another kind."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from ramlab import robustness
from ramlab.data.datasets import evaluation_subset, load_split, resolve_spec, split_seed
from ramlab.data.scenes import SceneSpec, generate_scenes, placement_range
from ramlab.protocols import ONE_PASS
from ramlab.robustness import SHIFTS, same_sweep, shifted_scenes, sweep_format
from ramlab.sweeps import FIRST_ROWS, MOVED_BY_SCALE, sweep_kind, without_moved_scale


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


def test_a_sweep_of_an_earlier_format_is_another_kind_of_sweep():
    current = {"format": robustness.FORMAT, "split": "test", "limit": None, "sample": False}
    assert same_sweep(current, limit=None, sample=False)
    for older in (4, 3, "5", None):  # 4 drew every level anew; a damaged format reads as the oldest
        assert not same_sweep({**current, "format": older}, limit=None, sample=False), older
    assert sweep_kind({**current, "format": 4})[-1] and not sweep_kind(current)[-1]


def test_the_report_and_the_sweeps_module_load_without_torch():
    code = "import sys, ramlab.report, ramlab.sweeps, ramlab.viz.curves; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_format_6_sweep_with_a_scale_shift_on_a_dataset_of_many_places_is_older():
    """Format 7 changed only the scale levels of datasets whose digits lie in more than one
    place: format 6 sweeps without a scale shift, or on mnist, are format 7's."""
    sweep = {"format": 6, "split": "test", "limit": None, "sample": False, "rollouts": 1}
    scaled = {**sweep, "shifts": {"rotate": {}, "scale": {}}}
    for data in ("translated60", "cluttered60", "centred60", "nope", None):
        assert sweep_kind({**scaled, "data": data})[-1] == MOVED_BY_SCALE, data
        assert sweep_format({**scaled, "data": data}) == 6, data
        assert not same_sweep({**scaled, "data": data}, limit=None, sample=False), data
        assert same_sweep({**sweep, "data": data, "shifts": {"rotate": {}}}, limit=None, sample=False)
        assert without_moved_scale({**scaled, "data": data})["shifts"] == {"rotate": {}}
    assert same_sweep({**scaled, "data": "mnist"}, limit=None, sample=False)  # its rule is unchanged
    assert sweep_kind({**scaled, "format": 5, "data": "cluttered60"})[-1] == MOVED_BY_SCALE
    assert sweep_kind({**scaled, "format": robustness.FORMAT, "data": "cluttered60"})[-1] == ""
    assert sweep_kind({**sweep, "data": "cluttered60", "shifts": 3})[-1] == ""  # damaged: no TypeError


def test_a_limited_format_5_sweep_of_a_model_that_draws_is_older_and_the_rest_are_current():
    """Format 6 gave a limited sweep's digits the whole split's random numbers (format 5 gave
    them the first N rows'): only format 5 sweeps it changed are another kind."""
    ram = {"format": 5, "split": "test", "sample": False, "protocol": "policy mean, one rollout"}
    resnet = {**ram, "protocol": ONE_PASS}
    assert same_sweep({**ram, "limit": None}, limit=None, sample=False)  # all digits: unchanged
    assert same_sweep({**resnet, "limit": 500}, limit=500, sample=False)  # draws nothing
    assert not same_sweep({**ram, "limit": 500}, limit=500, sample=False)
    assert sweep_kind({**ram, "limit": 500})[-1] == FIRST_ROWS
    assert sweep_kind({**ram, "format": 6, "limit": 500})[-1] == ""
    assert sweep_kind({**resnet, "limit": 500})[-1] == ""


def test_a_limited_level_knows_which_digits_of_the_split_it_holds(fake_mnist):
    base = resolve_spec("translated60")
    limited = shifted_scenes(base, base=base, seed=0, limit=5, split="test")
    whole = load_split("translated60", "test", seed=0)
    assert (
        limited.subset.of == len(whole) and shifted_scenes(base, base=base, seed=0, limit=None).subset is None
    )
    np.testing.assert_array_equal(limited.subset.rows, evaluation_subset(len(whole), 5, "test"))
    np.testing.assert_array_equal(limited.labels, whole.labels[limited.subset.rows])


def test_a_smaller_mnist_digit_stays_where_the_run_saw_digits(fake_mnist):
    # mnist puts every digit in one place; a digit at scale 0.5 has a 14 px box, which would
    # open a window of ±7 px: translation the run never saw, mixed into the scale curve.
    base, kind = resolve_spec("mnist"), SHIFTS["scale"]
    for level in (0.5, 0.75):
        spec = kind.spec(base, level)
        low, high = placement_range(spec, spec.footprint)
        assert high - low <= 1, level  # 0.75: a 21 px box, its centre between two pixels
        centred = (spec.canvas - spec.footprint) / 2
        assert low <= centred <= high
    # Nothing is drawn at 0.5: other seeds give the same scenes.
    half = kind.spec(base, 0.5)
    one, other = (shifted_scenes(half, base=base, seed=s, limit=None) for s in (0, 1))
    assert np.array_equal(one.images, other.images)
    assert kind.spec(base, 1.0) == base  # the trained level: the run's own test scenes
    # Datasets with a window keep it; the sweep puts each digit on the centre its scene gave it
    # (test_robustness_pairing.py).
    assert kind.spec(resolve_spec("translated60"), 0.5).max_offset is None
    assert kind.spec(resolve_spec("centred60"), 0.5).max_offset == 4


def test_format_3_sweeps_are_this_formats_but_on_a_dataset_of_one_place():
    assert sweep_format({"format": 3, "data": "translated60"}) == 4
    assert sweep_format({"format": 3, "data": "cluttered100"}) == 4
    assert sweep_format({"format": 3, "data": "mnist"}) == 3  # its scale levels changed
    assert sweep_format({"format": 3, "data": "nope"}) == 3
    assert sweep_format({"format": 2, "data": "translated60"}) == 2
    assert sweep_format({"format": 3}) == sweep_format({"format": 3, "data": [60]}) == 3  # damaged
