"""Training-scene augmentation (`--augment-rotation`, `--augment-scale`): new rotations and
scales of the training digits every epoch, from the first; validation and test untouched;
exact on resume; refused without fresh scenes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_trainer import assert_same_weights, straight_and_resumed, tiny_config, weights

from ramlab.data.datasets import load_split
from ramlab.errors import RamlabError
from ramlab.models.ram import RAMConfig
from ramlab.robustness import robustness_sweep
from ramlab.run_data import fresh_train_loader
from ramlab.runconfig import RunConfig, TrainConfig
from ramlab.trainer import Trainer


def test_augmentation_needs_fresh_scenes_and_sane_ranges() -> None:
    with pytest.raises(RamlabError, match="need fresh_scenes true"):
        TrainConfig(augment_rotation=10)
    with pytest.raises(RamlabError, match=r"augment_rotation must be in \[0, 180\]"):
        TrainConfig(augment_rotation=-5, fresh_scenes=True)
    with pytest.raises(RamlabError, match="augment_scale > 0"):
        TrainConfig(augment_scale=0, fresh_scenes=True)


def test_every_epoch_rotates_and_scales_the_same_training_digits(fake_mnist) -> None:
    config, cpu = tiny_config(fresh_scenes=True, augment_rotation=30, augment_scale=0.7), torch.device("cpu")
    cached = load_split("translated60", "train", seed=0, limit=24)
    first, second = fresh_train_loader(config, 0, cpu), fresh_train_loader(config, 1, cpu)
    for loader in (first, second):
        assert loader.labels.tolist() == cached.labels.tolist()
        assert not np.array_equal(loader.images.numpy(), cached.images)
    assert not np.array_equal(first.images.numpy(), second.images.numpy())
    # Without augmentation the first epoch trains on the cached scenes, as before.
    assert not tiny_config(fresh_scenes=True).train.augmented and config.train.augmented


def test_resume_with_augmentation_is_exact(fake_mnist, tmp_path, monkeypatch) -> None:
    config = tiny_config(fresh_scenes=True, augment_rotation=20, augment_scale=0.8, checkpoint_every=2)
    a, b = straight_and_resumed(config, tmp_path, monkeypatch, interrupt_at=5)
    assert_same_weights(weights(a / "last.pt"), weights(b / "last.pt"))


def test_a_scale_that_does_not_fit_the_canvas_is_refused_before_the_run_starts() -> None:
    with pytest.raises(RamlabError, match=r"augment_scale 1.2 on mnist: a digit at scale 1.2 needs 34 px"):
        RunConfig(
            model="ram",
            data="mnist",
            train=TrainConfig(fresh_scenes=True, augment_scale=1.2),
            model_config=RAMConfig(),
        )
    fits = tiny_config(fresh_scenes=True, augment_scale=1.2)  # translated60: 34 px fit in 60
    assert fits.training_spec().scale == (1.0, 1.2)


def test_a_sweep_marks_the_augmented_levels_as_trained(fake_mnist, tmp_path) -> None:
    config = tiny_config(epochs=1, fresh_scenes=True, augment_rotation=30, augment_scale=0.8)
    Trainer(config, tmp_path / "run").fit()
    sweep = robustness_sweep(
        tmp_path / "run", shifts={"rotate": [0, 30], "scale": [1.0]}, limit=4, device="cpu"
    )
    assert sweep["shifts"]["rotate"]["trained"] == [-30.0, 30.0]
    assert sweep["shifts"]["scale"]["trained"] == [0.8, 1.0]
    plain = tiny_config(epochs=1)
    Trainer(plain, tmp_path / "plain").fit()
    sweep = robustness_sweep(tmp_path / "plain", shifts={"rotate": [0]}, limit=4, device="cpu")
    assert sweep["shifts"]["rotate"]["trained"] == [0.0, 0.0]


def test_the_dataset_and_the_loader_scale_pixels_alike(fake_mnist):
    # x / 255 and x * (1 / 255) differ in the last bit for 126 of the 256 values.
    from ramlab.data.loader import SceneDataset, SceneLoader

    scenes = load_split("translated60", "val", limit=4)
    loader = SceneLoader(scenes, batch_size=4)
    batch = loader.batch(torch.arange(4))
    dataset = SceneDataset(scenes)
    assert torch.equal(torch.stack([dataset[i][0] for i in range(4)]), batch.images)
