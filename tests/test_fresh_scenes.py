"""Fresh training scenes made an epoch ahead (`ramlab.run_data.FreshScenes`): the same scenes
as made on demand, bit for bit; on by default on a GPU only; a thread's error reaches the
run; a run that makes them ahead is the run that does not, straight and resumed."""

from __future__ import annotations

import time

import pytest
import torch
from test_trainer import assert_same_weights, straight_and_resumed, tiny_config, weights

from ramlab import run_data
from ramlab.metrics import read_metrics
from ramlab.run_data import FreshScenes, fresh_train_loader
from ramlab.trainer import Trainer

CPU = torch.device("cpu")


def assert_same_scenes(a, b) -> None:
    for name in ("images", "labels", "bboxes"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_scenes_made_ahead_are_the_ones_made_on_demand(fake_mnist) -> None:
    config = tiny_config(fresh_scenes=True, epochs=4)
    fresh = FreshScenes(config, CPU, ahead=True)
    try:
        fresh.start(1)
        assert fresh.making == 1
        for epoch in (1, 2, 3):
            loader = fresh.loader(epoch)
            assert_same_scenes(loader, fresh_train_loader(config, epoch, CPU))
            assert fresh.making == (epoch + 1 if epoch + 1 < 4 else None)  # none past the last epoch
        # An epoch out of turn (a resume elsewhere) is made on demand, and the next one ahead.
        assert_same_scenes(fresh.loader(1), fresh_train_loader(config, 1, CPU))
        assert fresh.making == 2
    finally:
        fresh.close()


def test_ahead_by_default_on_a_gpu_only(fake_mnist) -> None:
    config = tiny_config(fresh_scenes=True, epochs=3)
    on_cpu = FreshScenes(config, CPU)
    on_cpu.loader(1)
    assert on_cpu.making is None
    on_gpu = FreshScenes(config, torch.device("cuda"))  # makes scenes on the CPU: no CUDA needed
    try:
        on_gpu.start(1)
        assert on_gpu.making == 1
    finally:
        on_gpu.close()


def test_an_error_in_the_thread_reaches_the_epoch_that_needs_its_scenes(fake_mnist, monkeypatch) -> None:
    config = tiny_config(fresh_scenes=True, epochs=4)
    make = run_data.fresh_train_scenes

    def broken(config, epoch):
        if epoch == 2:
            raise OSError("disk full")
        return make(config, epoch)

    monkeypatch.setattr(run_data, "fresh_train_scenes", broken)
    fresh = FreshScenes(config, CPU, ahead=True)
    try:
        fresh.loader(1)  # starts epoch 2's, which fails in the thread
        with pytest.raises(OSError, match="disk full"):
            fresh.loader(2)
    finally:
        fresh.close()


def test_a_run_making_scenes_ahead_is_the_same_run(fake_mnist, tmp_path, monkeypatch) -> None:
    config = tiny_config(fresh_scenes=True, epochs=3, checkpoint_every=2)
    Trainer(config, tmp_path / "plain").fit()
    monkeypatch.setattr(run_data, "AHEAD_ON", ("cpu", "cuda"))
    made = []
    original = FreshScenes.start

    def start(self, epoch):
        original(self, epoch)
        made.append(self.making)

    monkeypatch.setattr(FreshScenes, "start", start)
    a, b = straight_and_resumed(config, tmp_path, monkeypatch, interrupt_at=5)  # epoch 2, step 2
    assert set(made) == {1, 2, None}  # made ahead: epochs 1 and 2 (none past the last)

    def log(run) -> list[dict]:
        return [
            {k: v for k, v in line.items() if not k.startswith("perf/")}
            for line in read_metrics(run / "metrics.jsonl")
        ]

    assert log(a) == log(tmp_path / "plain") == log(b)
    assert_same_weights(weights(a / "last.pt"), weights(tmp_path / "plain" / "last.pt"))
    assert_same_weights(weights(b / "last.pt"), weights(a / "last.pt"))


def test_making_an_epochs_fresh_scenes_is_training_time(fake_mnist, tmp_path, monkeypatch) -> None:
    # On a CPU the next epoch's scenes are made when it begins: part of what training costs
    # (rotated and scaled scenes take seconds an epoch), so part of perf/train_seconds and of
    # the time budget. Here making them takes at least 0.5 s, the steps far less.
    make = run_data.fresh_train_scenes

    def slow(config, epoch):
        scenes = make(config, epoch)
        time.sleep(0.5)
        return scenes

    monkeypatch.setattr(run_data, "fresh_train_scenes", slow)
    result = Trainer(tiny_config(fresh_scenes=True, epochs=2, compile=False), tmp_path / "run").fit()
    assert result["train_seconds"] >= 0.5  # epoch 1's scenes (epoch 0 trains on the cache)


def test_data_seeds_a_thousand_apart_cannot_share_fresh_scenes() -> None:
    # Epoch e draws its scenes with seed data_seed + 1000 e: data seed 1000's first fresh
    # epoch was data seed 0's second, the same scenes in two runs meant to differ.
    from ramlab.errors import RamlabError
    from ramlab.runconfig import TrainConfig

    with pytest.raises(RamlabError, match=r"with fresh_scenes, data_seed must be below 1000, got 1000"):
        TrainConfig(fresh_scenes=True, data_seed=1000)
    assert TrainConfig(fresh_scenes=True, data_seed=999).data_seed == 999
    assert (
        TrainConfig(fresh_scenes=False, data_seed=5000).data_seed == 5000
    )  # fixed scenes: no epochs to share
