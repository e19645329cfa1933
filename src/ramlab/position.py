"""Where a training run stands: what last.pt stores beside the weights, restored on resume."""

from __future__ import annotations

import math
from collections.abc import Callable
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


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**63)


def epoch_generators(
    pos: Position,
    seed: int,
    order_of: Callable[[torch.Generator], torch.Tensor],
    device: torch.device,
    *,
    shared: bool,
) -> tuple[torch.Tensor, torch.Generator, torch.Generator]:
    """The epoch's order of scenes, its generator and the rollouts' sampling generator. The
    epoch's generator is seeded from the run's seed and the epoch, draws the order, then takes
    its saved state within an epoch. The samples draw from it too (`shared`, on a CPU), or
    from a generator on `device` (a GPU's: a CPU one cannot fill its tensors), seeded and
    saved alike, so a resumed GPU run goes on with the draws it would have made."""
    epoch_s, part_done = epoch_seed(seed, pos.epoch), pos.step_in_epoch > 0
    generator = torch.Generator().manual_seed(epoch_s)
    order = order_of(generator)
    if pos.generator is not None and part_done:
        generator.set_state(pos.generator)
    if shared:
        return order, generator, generator
    return order, generator, seeded_generator(device, epoch_s, pos.sample_generator if part_done else None)
