"""A run's scenes: the training, validation and test loaders its config asks for, and each
epoch's fresh training scenes (new placements, and the augmentation's rotations and scales)."""

from __future__ import annotations

import torch

from ramlab.data.datasets import load_split, resolve_spec
from ramlab.data.loader import SceneLoader
from ramlab.runconfig import RunConfig


def split_loaders(config: RunConfig, device: torch.device) -> tuple[SceneLoader, SceneLoader, SceneLoader]:
    """The training (the cached scenes of `data_seed`), validation and test loaders."""
    cfg, seed = config.train, config.train.data_seed
    train = load_split(config.data, "train", seed=seed, limit=cfg.train_limit)
    val = load_split(config.data, "val", seed=seed, limit=cfg.eval_limit)
    test = load_split(config.data, "test", seed=seed, limit=cfg.eval_limit)
    return (
        SceneLoader(train, batch_size=cfg.batch_size, device=device),
        SceneLoader(val, batch_size=cfg.eval_batch_size, device=device),
        SceneLoader(test, batch_size=cfg.eval_batch_size, device=device),
    )


def fresh_train_loader(config: RunConfig, epoch: int, device: torch.device) -> SceneLoader:
    """Epoch e's own training scenes (same digits, new placements, and the augmentation's
    rotations and scales): scene seed data_seed + 1000·e, built in memory, not cached."""
    cfg, spec = config.train, config.data
    if cfg.augmented:
        spec = resolve_spec(
            spec,
            rotation=(-cfg.augment_rotation, cfg.augment_rotation),
            scale=(min(cfg.augment_scale, 1.0), max(cfg.augment_scale, 1.0)),
        )
    scenes = load_split(spec, "train", seed=cfg.data_seed + 1000 * epoch, limit=cfg.train_limit, cache=False)
    return SceneLoader(scenes, batch_size=cfg.batch_size, device=device)
