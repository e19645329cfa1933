"""Robustness sweep files of earlier formats: which read as today's (`sweep_format`), which are
another kind of sweep (`sweeps.sweep_kind`: REDRAWN, FIRST_ROWS, MOVED_BY_SCALE), a dataset of
one place's scale levels, and the torch-free module that reads them for the report."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ramlab import robustness
from ramlab.data.datasets import resolve_spec
from ramlab.data.scenes import placement_range
from ramlab.protocols import ONE_PASS
from ramlab.robustness import SHIFTS, same_sweep, shifted_scenes, sweep_format
from ramlab.sweeps import FIRST_ROWS, MOVED_BY_SCALE, REDRAWN, SMALL_MOVED, sweep_kind, without_moved_scale


@pytest.fixture(autouse=True)
def fresh_scene_memo():
    """The sweep keeps shifted scenes in memory; each test starts from its own digits."""
    robustness._SCENES.clear()
    yield
    robustness._SCENES.clear()


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


def test_a_scale_sweep_before_format_4_on_a_dataset_of_one_place_is_kept_apart():
    """Format 4 kept mnist's smaller digits centred (3 let them move): its scale levels below 1
    are not format 3's, so the two are never averaged, though both drew each level anew."""
    sweep = {"split": "test", "limit": None, "sample": False, "shifts": {"scale": {}}}
    for older in (1, 2, 3):
        assert sweep_kind({**sweep, "format": older, "data": "mnist"})[-1] == SMALL_MOVED, older
        assert sweep_kind({**sweep, "format": older, "data": "nope"})[-1] == SMALL_MOVED  # unknown: older
        assert sweep_kind({**sweep, "format": older, "data": "cluttered60"})[-1] == REDRAWN
        unscaled = {**sweep, "format": older, "data": "mnist", "shifts": {"rotate": {}}}
        assert sweep_kind(unscaled)[-1] == REDRAWN
    assert sweep_kind({**sweep, "format": 4, "data": "mnist"})[-1] == REDRAWN


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
