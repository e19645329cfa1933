"""Batches of scenes as tensors: images (B, 1, H, W) float in [0, 1], labels (B,), bboxes (B, 4).

`SceneDataset` is a plain torch Dataset for use with a DataLoader. `SceneLoader` is what the
trainer uses: the whole split lives in memory as uint8 and a batch is one index and one
conversion, which on a 2-core machine is far faster than a DataLoader with workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from ramlab.data.scenes import Scenes


def unit_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels as float32 in [0, 1]: one rule for every reader (x * (1/255) and x / 255
    differ in the last bit for about half the byte values)."""
    return images.float().mul_(1.0 / 255.0)


@dataclass
class Batch:
    images: torch.Tensor  # (B, 1, H, W) float32 in [0, 1]
    labels: torch.Tensor  # (B,) int64
    bboxes: torch.Tensor  # (B, 4) float32, (x0, y0, x1, y1) in pixels, x1/y1 exclusive

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.images.to(device), self.labels.to(device), self.bboxes.to(device))

    def __len__(self) -> int:
        return len(self.labels)

    def repeat(self, copies: int) -> Batch:
        """Each scene `copies` times in a row: rows i*copies .. i*copies+copies-1 are scene i."""
        return Batch(*(t.repeat_interleave(copies, dim=0) for t in (self.images, self.labels, self.bboxes)))


class SceneDataset(Dataset):
    """Item i: (image (1, H, W) float in [0, 1], label, bbox (4,) float)."""

    def __init__(self, scenes: Scenes) -> None:
        self.images = torch.from_numpy(scenes.images)
        self.labels = torch.from_numpy(scenes.labels)
        self.bboxes = torch.from_numpy(scenes.bboxes).float()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # As SceneLoader scales: x / 255 and x * (1 / 255) differ in the last bit for some x.
        return unit_pixels(self.images[i].unsqueeze(0)), self.labels[i], self.bboxes[i]


class SceneLoader:
    """Iterates over a split in batches; shuffled by a torch Generator when given one."""

    def __init__(self, scenes: Scenes, *, batch_size: int, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        # Keep uint8 on the device: a quarter of the memory, converted per batch.
        self.images = torch.from_numpy(scenes.images).to(self.device)
        self.labels = torch.from_numpy(scenes.labels).to(self.device)
        self.bboxes = torch.from_numpy(scenes.bboxes).float().to(self.device)
        self.subset = scenes.subset  # which scenes of their whole split (None: all of it)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def batch(self, index: torch.Tensor) -> Batch:
        images = unit_pixels(self.images[index].unsqueeze(1))
        return Batch(images, self.labels[index], self.bboxes[index])

    def order(self, generator: torch.Generator | None = None) -> torch.Tensor:
        n = self.num_samples
        if generator is None:
            return torch.arange(n)
        return torch.randperm(n, generator=generator)

    def __iter__(self) -> Iterator[Batch]:
        return self.iterate()

    def iterate(self, order: torch.Tensor | None = None, *, start: int = 0) -> Iterator[Batch]:
        """Batches in `order` (default: sequential), beginning with batch number `start`."""
        order = torch.arange(self.num_samples) if order is None else order
        order = order.to(self.device)  # one copy per epoch: no host-to-device copy per batch
        for b in range(start, len(self)):
            yield self.batch(order[b * self.batch_size : (b + 1) * self.batch_size])
