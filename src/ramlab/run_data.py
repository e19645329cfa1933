"""A run's scenes: the training, validation and test loaders its config asks for, and each
epoch's fresh training scenes (new placements, and the augmentation's rotations and scales),
on a GPU made during the epoch before."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import torch

from ramlab.data.datasets import load_split
from ramlab.data.loader import SceneLoader
from ramlab.data.scenes import Scenes
from ramlab.runconfig import FRESH_SEED_STRIDE, RunConfig

AHEAD_ON = ("cuda",)
"""Device types on which the next epoch's scenes are made in a thread while this one trains:
there the CPU mostly waits on the GPU. On this project's CPU (`python benchmarks/data.py
--threads 2 --repeat 5 --warped`) an epoch's 55,000 training scenes take 0.10 s for
translated60, 0.26 s for cluttered60, 0.47 s for cluttered100 and 4.8 s for translated60
rotated and scaled (9.7 s since the warp runs in float64, the same on every CPU: the same
command with --repeat 3 at `52970f0`), against 2.4 s for the recipe's 110,000 rollouts an epoch at the 45,804
a second its compiled step trained on an H200. On a CPU the thread would take cores from
training."""


def split_loaders(config: RunConfig, device: torch.device) -> tuple[SceneLoader, SceneLoader]:
    """The training (the cached scenes of `data_seed`) and validation loaders."""
    cfg, seed = config.train, config.train.data_seed
    train = load_split(config.data, "train", seed=seed, limit=cfg.train_limit)
    val = load_split(config.data, "val", seed=seed, limit=cfg.eval_limit)
    return (
        SceneLoader(train, batch_size=cfg.batch_size, device=device),
        SceneLoader(val, batch_size=cfg.eval_batch_size, device=device),
    )


def final_test_loader(config: RunConfig, device: torch.device) -> SceneLoader:
    """The test loader: made only when the finished run is tested (`test: true`), so a
    tuning run never loads its test split."""
    cfg = config.train
    test = load_split(config.data, "test", seed=cfg.data_seed, limit=cfg.eval_limit)
    return SceneLoader(test, batch_size=cfg.eval_batch_size, device=device)


def fresh_train_scenes(config: RunConfig, epoch: int) -> Scenes:
    """Epoch e's own training scenes (same digits, new placements, and the augmentation's
    rotations and scales): scene seed data_seed + 1000·e (`FRESH_SEED_STRIDE`; data_seed is
    below it, so no two runs' epochs share one), built in memory, not cached."""
    cfg = config.train
    seed = cfg.data_seed + FRESH_SEED_STRIDE * epoch
    return load_split(config.training_spec(), "train", seed=seed, limit=cfg.train_limit, cache=False)


def fresh_train_loader(config: RunConfig, epoch: int, device: torch.device) -> SceneLoader:
    """A loader of epoch e's own training scenes (`fresh_train_scenes`) on `device`."""
    return SceneLoader(fresh_train_scenes(config, epoch), batch_size=config.train.batch_size, device=device)


class FreshScenes:
    """Each epoch's fresh training loader. With `ahead` (default: on the device types of
    `AHEAD_ON`), asking for epoch e's also starts making epoch e+1's scenes in a background
    thread, so that they are ready when that epoch begins. The scenes are the same either way,
    bit for bit (their seed is their epoch's), so a run is exactly the same and resumes the
    same; a thread's error is raised when its epoch asks for its scenes."""

    def __init__(self, config: RunConfig, device: torch.device, *, ahead: bool | None = None) -> None:
        self.config, self.device = config, device
        ahead = device.type in AHEAD_ON if ahead is None else ahead
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ramlab-scenes") if ahead else None
        self._next: tuple[int, Future[Scenes]] | None = None

    def loader(self, epoch: int) -> SceneLoader:
        made, self._next = self._next, None
        if made is not None and made[0] == epoch:
            scenes = made[1].result()
        else:
            scenes = fresh_train_scenes(self.config, epoch)
        self.start(epoch + 1)
        return SceneLoader(scenes, batch_size=self.config.train.batch_size, device=self.device)

    def start(self, epoch: int) -> None:
        """With `ahead`: start making `epoch`'s scenes in the thread (within the run's epochs)."""
        if self._pool is not None and epoch < self.config.train.epochs and self.making != epoch:
            self._next = (epoch, self._pool.submit(fresh_train_scenes, self.config, epoch))

    @property
    def making(self) -> int | None:
        """The epoch whose scenes the thread is making (or has made), if any."""
        return None if self._next is None else self._next[0]

    def close(self) -> None:
        """Stops the thread after the scenes it is making (a run's end, or an interruption)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
