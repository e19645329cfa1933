"""Named datasets and their splits, built from MNIST by the scene generator and cached.

Splits: train = MNIST train[:55000], val = MNIST train[55000:], test = MNIST test. Every
scene of a split holds the split's digits in order, so label counts are MNIST's and the
same test digits appear in every variant (robustness curves are comparable across levels).
A `limit` keeps the first N training scenes, but a fixed random N of the validation or test
scenes (`evaluation_subset`): MNIST's test file is ordered by the NIST collection its digits
came from, and its first half is the harder one (three models read 1.9-2.4x the second half's
error on it), so its first N are not a sample of the split.
Cache: `$RAMLAB_HOME/scenes/<name>-<spec hash>-v<CACHE_VERSION>-seed<S>-<split>.npz` (a warped
spec's with `-warp<WARP_VERSION>` before `-seed`; S is 0 for a spec that draws nothing, such
as mnist's, whose scenes are the same for every seed), with a checksum of its arrays
(`ramlab.data.cache`): a file that fails to read or verify is named on stderr, deleted and
rebuilt.
"""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path

import numpy as np

from ramlab.data.cache import DamagedCache, load_arrays, read_or_discard, save_arrays
from ramlab.data.mnist import FILES as MNIST_FILES
from ramlab.data.mnist import Mnist, load_mnist
from ramlab.data.mnist import cache_dir as mnist_cache_dir
from ramlab.data.scenes import Scenes, SceneSpec, Subset, generate_scenes
from ramlab.errors import RamlabError, unknown_name
from ramlab.home import ramlab_home

DATASETS: dict[str, SceneSpec] = {
    "mnist": SceneSpec(canvas=28),
    "translated60": SceneSpec(canvas=60),
    "centred60": SceneSpec(canvas=60, max_offset=4),
    "cluttered60": SceneSpec(canvas=60, clutter_count=4, clutter_size=8),
    "cluttered100": SceneSpec(canvas=100, clutter_count=8, clutter_size=8),
}
SPLITS = ("train", "val", "test")
TRAIN_SIZE = 55_000
CACHE_VERSION = 1  # bump when the generator's output changes for the same spec and seed
# Bump instead when only warped scenes change (it names their cache files, not every split's
# seed): 1 (named "-w64") rounded in float64, 2 draws the warp from a stream of its own.
WARP_VERSION = 2

_mnist: Mnist | None = None


def dataset_spec(name: str) -> SceneSpec:
    """The spec of a named dataset; an unknown name lists the valid ones."""
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS)
    return DATASETS[name]


def resolve_spec(data: str | SceneSpec, **overrides) -> SceneSpec:
    """A named dataset or a spec, with fields replaced (e.g. robustness levels)."""
    spec = dataset_spec(data) if isinstance(data, str) else data
    return dataclasses.replace(spec, **overrides) if overrides else spec


def mnist_digits() -> Mnist:
    global _mnist
    if _mnist is None:
        _mnist = load_mnist()
    return _mnist


def split_digits(mnist: Mnist, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split == "train":
        return mnist.train_images[:TRAIN_SIZE], mnist.train_labels[:TRAIN_SIZE]
    if split == "val":
        return mnist.train_images[TRAIN_SIZE:], mnist.train_labels[TRAIN_SIZE:]
    if split == "test":
        return mnist.test_images, mnist.test_labels
    raise unknown_name("split", split, SPLITS)


def evaluation_subset(total: int, limit: int | None, split: str) -> np.ndarray:
    """Indices of the `limit` scenes (of `total`) that a limited evaluation of `split` reads:
    a prefix of one fixed permutation per split, in ascending order. So every model, dataset,
    data seed and robustness level is read on the same digits, and a smaller limit's digits are
    part of a larger one's. limit None (or >= total) keeps them all."""
    if limit is not None and limit < 1:  # order[:-5] would quietly keep all but 5
        raise RamlabError(f"a limit of {split} scenes must be >= 1 (None: all), got {limit}")
    if limit is None or limit >= total:
        return np.arange(total)
    order = np.random.default_rng(zlib.crc32(f"evaluation-subset/{split}".encode())).permutation(total)
    return np.sort(order[:limit])


def kept_scenes(total: int, limit: int | None, split: str) -> slice | np.ndarray:
    """What a `limit` keeps of a split of `total` scenes, as an index of its arrays: the first N
    training scenes (a slice, no copy), `evaluation_subset`'s N validation or test scenes."""
    if split == "train":
        if limit is not None and limit < 1:  # slice(-3) would quietly keep all but 3
            raise RamlabError(f"a limit of train scenes must be >= 1 (None: all), got {limit}")
        return slice(limit)
    return evaluation_subset(total, limit, split)


def split_seed(spec: SceneSpec, seed: int, split: str) -> int:
    """Independent random streams per split, spec and seed."""
    return zlib.crc32(f"{spec.key()}/{seed}/{split}/v{CACHE_VERSION}".encode())


def cache_path(name: str, spec: SceneSpec, seed: int, split: str) -> Path:
    # The version is in the name so that bumping it never serves scenes of the old generator.
    # Warped scenes carry their own version: rounded in float32 at first (CPU-dependent), then
    # in float64 ("-w64"), now with the warp on its own stream ("-warp2").
    warp = f"-warp{WARP_VERSION}" if spec.warped else ""
    if spec.draws_nothing:  # one set of scenes for every seed: one file (seed 0's), not copies
        seed = 0
    stem = f"{name}-{spec.key()}-v{CACHE_VERSION}{warp}-seed{seed}-{split}"
    return ramlab_home() / "scenes" / f"{stem}.npz"


def _layout(n: int, canvas: int) -> dict[str, tuple[type, tuple[int, ...]]]:
    """dtype and shape of each cached array of n scenes (`Scenes`' documented layout)."""
    return {
        "images": (np.uint8, (n, canvas, canvas)),
        "labels": (np.int64, (n,)),
        "bboxes": (np.int32, (n, 4)),
    }


def _scenes_from(path: Path, spec: SceneSpec, labels: np.ndarray | None) -> Scenes:
    arrays = load_arrays(path, ("images", "labels", "bboxes"))
    for name, (dtype, shape) in _layout(len(arrays["labels"]), spec.canvas).items():
        got = arrays[name]
        if got.dtype != dtype or got.shape != shape:
            raise DamagedCache(f"{name} is {got.dtype} {got.shape}, expected {np.dtype(dtype)} {shape}")
    if labels is not None and not np.array_equal(arrays["labels"], labels):  # another split: stale
        raise DamagedCache(
            f"its {len(arrays['labels'])} labels are not the split's {len(labels)} digits' labels"
        )
    return Scenes(**arrays, spec=spec)


def _read(path: Path, spec: SceneSpec, labels: np.ndarray | None) -> Scenes | None:
    """The cached scenes, or None (after a warning naming the file) when it must be rebuilt:
    damaged, or not one scene per digit of the split, in its order (`labels`, when known)."""
    return read_or_discard(path, lambda p: _scenes_from(p, spec, labels), then="rebuilding it")


def _labels_at_hand(split: str) -> np.ndarray | None:
    """The split's labels when MNIST is loaded or in its cache; None otherwise (it is never
    fetched for this: a scene cache serves without MNIST's files, and with a damaged one that
    cannot be fetched again, which its warning names)."""
    if _mnist is None and not all((mnist_cache_dir() / name).is_file() for name in MNIST_FILES):
        return None
    try:
        return split_digits(mnist_digits(), split)[1]
    except RamlabError:
        return None


def load_split(
    data: str | SceneSpec,
    split: str,
    *,
    seed: int = 0,
    digits: Mnist | None = None,
    cache: bool = True,
    limit: int | None = None,
) -> Scenes:
    """The scenes of one split, from the cache or built (and cached) on first use.

    `digits` replaces MNIST (tests use tiny synthetic digits); `limit` keeps N scenes: the
    first N of the training split, `evaluation_subset`'s N of validation or test.
    """
    if split not in SPLITS:
        raise unknown_name("split", split, SPLITS)
    if seed < 0:  # a run's data_seed is 0..2^32-1: such scenes would serve no run
        raise RamlabError(f"scene seed must be >= 0 (a run's data_seed), got {seed}")
    name = data if isinstance(data, str) else "custom"
    spec = resolve_spec(data)
    path = cache_path(name, spec, seed, split)
    scenes = None
    if cache and digits is None and path.is_file():
        scenes = _read(path, spec, _labels_at_hand(split))
    if scenes is None:
        images, labels = split_digits(digits or mnist_digits(), split)
        scenes = generate_scenes(spec, images, labels, seed=split_seed(spec, seed, split))
        if cache and digits is None:
            save_scenes(path, scenes)
    if limit is not None:
        keep = kept_scenes(len(scenes), limit, split)
        subset = Subset.kept(keep, of=len(scenes))
        scenes = Scenes(scenes.images[keep], scenes.labels[keep], scenes.bboxes[keep], spec, subset)
    return scenes


def save_scenes(path: Path, scenes: Scenes) -> Path:
    return save_arrays(path, {"images": scenes.images, "labels": scenes.labels, "bboxes": scenes.bboxes})


def build_dataset(name: str, *, seed: int = 0) -> dict[str, Path]:
    """Build (or find) every split of a named dataset; return their cache paths."""
    spec = dataset_spec(name)
    paths = {}
    for split in SPLITS:
        load_split(name, split, seed=seed)
        paths[split] = cache_path(name, spec, seed, split)
    return paths


def image_size(data: str | SceneSpec) -> tuple[int, int]:
    """(H, W) of a dataset's images."""
    spec = resolve_spec(data)
    return spec.canvas, spec.canvas
