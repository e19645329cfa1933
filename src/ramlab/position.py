"""Where a training run stands: what last.pt stores beside the weights, restored on resume."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch


@dataclass
class Position:
    """Where a run stands; saved in last.pt and restored on resume (the checkpoint's keys)."""

    epoch: int = 0  # epochs finished
    step_in_epoch: int = 0  # steps of the current epoch done (a checkpoint within an epoch)
    global_step: int = 0
    rollouts_seen: int = 0
    best_val_error: float = math.inf
    best_epoch: int = -1
    train_seconds: float = 0.0
    generator: torch.Tensor | None = None  # the epoch generator's state within an epoch
    sample_generator: torch.Tensor | None = None  # on a GPU, its rollouts' generator's state too
    norm_sums: dict[str, float] = field(default_factory=dict)  # the epoch's logged grad norms, summed

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> Position:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in names})


def seeded_generator(device: torch.device, seed: int, state: torch.Tensor | None) -> torch.Generator:
    """A generator on `device` seeded with `seed`, then set to the saved `state` if any."""
    generator = torch.Generator(device=device).manual_seed(seed)
    if state is not None:
        generator.set_state(state)
    return generator
