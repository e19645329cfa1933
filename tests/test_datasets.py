"""Named datasets and their splits: the paper's specs, split sizes and order, independent
seeds, limits, spec keys and the cache (the generator itself: test_scenes.py)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from ramlab.data import datasets
from ramlab.data.mnist import Mnist
from ramlab.data.scenes import SceneSpec, generate_scenes
from ramlab.errors import RamlabError


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(RamlabError) as info:
        datasets.dataset_spec("nope")
    msg = str(info.value)
    assert "unknown dataset 'nope'" in msg
    for name in ("mnist", "translated60", "centred60", "cluttered60", "cluttered100"):
        assert name in msg


def test_named_specs_follow_the_paper():
    assert datasets.dataset_spec("mnist").canvas == 28
    assert datasets.dataset_spec("translated60") == SceneSpec(canvas=60)
    assert datasets.dataset_spec("cluttered60") == SceneSpec(canvas=60, clutter_count=4)
    assert datasets.dataset_spec("cluttered100") == SceneSpec(canvas=100, clutter_count=8)
    assert datasets.dataset_spec("cluttered60").clutter_size == 8


def test_mnist_split_sizes():
    """55k train and 5k val from MNIST's 60k train; the 10k test set as is."""
    assert datasets.TRAIN_SIZE == 55_000
    shape = Mnist(
        train_images=np.zeros((60_000, 1, 1), np.uint8),
        train_labels=np.arange(60_000),
        test_images=np.zeros((10_000, 1, 1), np.uint8),
        test_labels=np.arange(10_000) + 100_000,
    )
    sizes = {s: len(datasets.split_digits(shape, s)[1]) for s in datasets.SPLITS}
    assert sizes == {"train": 55_000, "val": 5_000, "test": 10_000}
    assert datasets.split_digits(shape, "val")[1][0] == 55_000
    assert datasets.split_digits(shape, "test")[1][0] == 100_000


@pytest.mark.parametrize("name", list(datasets.DATASETS))
def test_split_labels_are_the_split_digits_labels_in_order(name, fake_mnist):
    n_train = datasets.TRAIN_SIZE  # 40 under fake_mnist
    expected = {
        "train": fake_mnist.train_labels[:n_train],
        "val": fake_mnist.train_labels[n_train:],
        "test": fake_mnist.test_labels,
    }
    for split, labels in expected.items():
        scenes = datasets.load_split(name, split)
        np.testing.assert_array_equal(scenes.labels, labels)
        canvas = datasets.dataset_spec(name).canvas
        assert scenes.images.shape == (len(labels), canvas, canvas)
        assert datasets.image_size(name) == (canvas, canvas)
    assert [len(v) for v in expected.values()] == [40, 8, 20]


def test_mnist_dataset_is_the_digits_themselves(fake_mnist):
    scenes = datasets.load_split("mnist", "test")
    np.testing.assert_array_equal(scenes.images, fake_mnist.test_images)


def test_splits_and_seeds_are_independent_streams(fake_mnist):
    a = datasets.load_split("translated60", "val", seed=0)
    b = datasets.load_split("translated60", "val", seed=1)
    assert not np.array_equal(a.bboxes, b.bboxes)
    spec = datasets.dataset_spec("translated60")
    seeds = {datasets.split_seed(spec, 0, s) for s in datasets.SPLITS}
    assert len(seeds) == 3


def test_unknown_split_lists_valid_ones(fake_mnist):
    with pytest.raises(RamlabError, match="unknown split 'dev'; valid: test, train, val"):
        datasets.load_split("mnist", "dev")


def test_split_is_cached_and_a_damaged_cache_is_rebuilt(fake_mnist):
    spec = datasets.dataset_spec("cluttered60")
    path = datasets.cache_path("cluttered60", spec, 0, "test")
    assert f"-v{datasets.CACHE_VERSION}-" in path.name  # a version bump never reads old files
    assert not path.exists()
    first = datasets.load_split("cluttered60", "test")
    assert path.is_file()

    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # a truncated .npz
    again = datasets.load_split("cluttered60", "test")
    np.testing.assert_array_equal(again.images, first.images)
    np.testing.assert_array_equal(again.bboxes, first.bboxes)
    assert path.read_bytes() == raw  # rewritten whole

    # The cache is read, not regenerated: a planted file is what comes back.
    planted = first.images.copy()
    planted[0] = 7
    datasets.save_scenes(path, type(first)(planted, first.labels, first.bboxes, spec))
    assert (datasets.load_split("cluttered60", "test").images[0] == 7).all()


def test_explicit_digits_are_never_cached(synthetic_digits):
    scenes = datasets.load_split("translated60", "test", digits=synthetic_digits, limit=5)
    assert len(scenes) == 5 and scenes.images.shape == (5, 60, 60)
    assert not (datasets.ramlab_home() / "scenes").exists()


def test_an_evaluation_subset_is_a_fixed_spread_sample_and_nested():
    subset = datasets.evaluation_subset(10_000, 2000, "test")
    assert len(subset) == len(np.unique(subset)) == 2000
    assert np.all(np.diff(subset) > 0) and subset[0] >= 0 and subset[-1] < 10_000
    # Not the first N: MNIST's test file is ordered by source. A uniform sample puts about
    # half in each half (binomial sd about 22); the first 2,000 would put all of them in one.
    assert 900 < np.sum(subset < 5000) < 1100
    np.testing.assert_array_equal(subset, datasets.evaluation_subset(10_000, 2000, "test"))
    assert set(datasets.evaluation_subset(10_000, 500, "test")) <= set(subset)  # nested
    assert not np.array_equal(datasets.evaluation_subset(5000, 500, "val"), subset[:500])
    for limit in (None, 10_000, 20_000):
        np.testing.assert_array_equal(datasets.evaluation_subset(10_000, limit, "test"), np.arange(10_000))


def test_a_limit_keeps_the_first_training_scenes_and_the_subset_of_val_and_test(fake_mnist):
    assert list(datasets.evaluation_subset(20, 5, "test")) == [3, 7, 9, 11, 15]  # not the first 5
    train = datasets.load_split("translated60", "train", limit=5)
    np.testing.assert_array_equal(train.labels, fake_mnist.train_labels[:5])
    for split, total in (("val", 8), ("test", 20)):
        full = datasets.load_split("translated60", split)
        kept = datasets.evaluation_subset(total, 5, split)
        limited = datasets.load_split("translated60", split, limit=5)
        for name in ("images", "labels", "bboxes"):
            np.testing.assert_array_equal(getattr(limited, name), getattr(full, name)[kept])


def test_equal_specs_have_one_key_whatever_the_number_types():
    # The key names the cache file and seeds the scenes: noise=0 and noise=0.0 are one spec.
    assert SceneSpec(noise=0).key() == SceneSpec(noise=0.0).key()
    assert SceneSpec(canvas=60.0, clutter_count=4.0, max_offset=8.0) == SceneSpec(
        canvas=60, clutter_count=4, max_offset=8
    )
    assert SceneSpec(canvas=60.0).key() == SceneSpec(canvas=60).key()
    assert type(SceneSpec(canvas=np.int64(60)).canvas) is int
    for bad in ({"canvas": 60.5}, {"clutter_size": True}, {"max_offset": float("nan")}):
        with pytest.raises(RamlabError, match="must be a whole number"):
            SceneSpec(**bad)


def test_a_negative_train_limit_is_refused():
    with pytest.raises(RamlabError, match="a limit of train scenes must be >= 1"):
        datasets.kept_scenes(50, -3, "train")
    assert datasets.kept_scenes(50, 3, "train") == slice(3)


def test_warped_scenes_are_cached_apart_from_the_earlier_warps():
    # The float64 warp re-rounded a pixel here and there, then the warp took a stream of its
    # own (new placements): neither earlier file ("-w64", or none) may be served.
    warped = SceneSpec(canvas=60, rotation=(-30.0, 30.0))
    name = datasets.cache_path("t", warped, 0, "test").name
    assert f"-v{datasets.CACHE_VERSION}-warp2-seed0-" in name and datasets.WARP_VERSION == 2
    assert "-warp" not in datasets.cache_path("t", SceneSpec(canvas=60), 0, "test").name


# The scene generator's output, pinned: the cache's file names cover every SceneSpec field but
# not the generator's code, so a change that keeps the labels (say, the clutter's crop and
# place drawn in the other order) would go on serving old cached scenes beside new ones (a
# fresh-scene run's epoch 0 from the cache, later epochs made anew; a robustness sweep's
# trained level no longer the run's test set). When this fails, the output changed: bump
# `datasets.CACHE_VERSION` (or, where only warped scenes changed, `WARP_VERSION`) and write
# the new digests here.
PINNED_SCENES = {
    "mnist": "35f8ca2baed0990a",
    "translated60": "8590401a3a0c99ae",
    "centred60": "4bea2577822bda3f",
    "cluttered60": "4540d82382402aae",
    "cluttered100": "8db2de42489fac08",
    "warped": "1569d92e3b5d3d0f",  # WARP_VERSION 2 (1: 773162623a7faba7)
}


@pytest.mark.parametrize("name", list(PINNED_SCENES))
def test_the_scene_generators_output_is_pinned_to_the_cache_version(name):
    assert (datasets.CACHE_VERSION, datasets.WARP_VERSION) == (1, 2), (
        "the version was bumped: update PINNED_SCENES and this line"
    )
    rng = np.random.default_rng(2026)
    digits = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    labels = np.arange(12, dtype=np.uint8) % 10
    specs = {
        **datasets.DATASETS,
        "warped": SceneSpec(canvas=60, rotation=(-30, 30), scale=(0.75, 1.25), noise=0.1, clutter_count=2),
    }
    scenes = generate_scenes(specs[name], digits, labels, seed=7)
    digest = hashlib.sha256()
    for array in (scenes.images, scenes.labels, scenes.bboxes):
        digest.update(np.ascontiguousarray(array).tobytes())
    assert digest.hexdigest()[:16] == PINNED_SCENES[name], (
        f"{name}: the scene generator's output changed; bump CACHE_VERSION (or WARP_VERSION) in "
        "ramlab/data/datasets.py"
    )
