"""An exponential moving average of a model's weights, for evaluation (Polyak averaging).

    w_avg <- decay * w_avg + (1 - decay) * w        after every optimisation step

The optimiser trains the model itself; validation, best.pt and the test use the average,
which smooths the step-to-step noise a high learning rate leaves in the weights (the RAM's
validation error moves by a point or more from one epoch to the next without it). With decay
0 there is no average and the model is evaluated as is. There is no warm-up: after n steps
the first step's weights still weigh decay^(n-1) (42% after 430 steps at 0.998), so early
validation lags the weights; every recipe trains with it, so it stays as it is.

The update is torch.optim.swa_utils' EMA (`torch._foreach_lerp_` over the parameters and
buffers, the first update a copy) with the step count kept on the host: `AveragedModel`
keeps it in a CPU tensor and copies it to the device on every update, which on a GPU waits
for every kernel queued so far. Its state dict is `AveragedModel`'s (`n_averaged`,
`module.<name>`), so checkpoints written with either load in both.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """The moving average of `model`'s weights (and buffers) with `decay` per step, or
    nothing when decay is 0. Create it after the model's weights are loaded."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 <= decay <= 1:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.averaged: nn.Module | None = None
        self.count = 0  # updates so far
        self._groups: dict | None = None  # (device, dtype) -> (average's, model's) tensors
        self._source: nn.Module | None = None  # the model the groups hold
        if decay > 0:
            self.averaged = deepcopy(model)
            for p in self.averaged.parameters():
                p.requires_grad_(False)

    def update(self, model: nn.Module) -> None:
        """After an optimisation step (the first call copies the weights)."""
        if self.averaged is None:
            return
        with torch.no_grad():
            if self._source is not model:  # grouped once: the optimiser updates them in place
                self._groups, self._source = {}, model
                for mine, theirs in zip(_tensors(self.averaged), _tensors(model), strict=True):
                    own, new = self._groups.setdefault((mine.device, mine.dtype), ([], []))
                    own.append(mine)
                    new.append(theirs)
            for (_, dtype), (own, new) in self._groups.items():
                if self.count == 0:
                    torch._foreach_copy_(own, new)
                elif dtype.is_floating_point or dtype.is_complex:
                    torch._foreach_lerp_(own, new, 1 - self.decay)
                else:  # integer buffers, as swa_utils treats them
                    for mine, theirs in zip(own, new, strict=True):
                        mine.copy_(mine * self.decay + theirs * (1 - self.decay))
        self.count += 1

    def evaluated(self, model: nn.Module) -> nn.Module:
        """The weights to validate, keep as best and test: the average, or `model` itself."""
        return model if self.averaged is None else self.averaged

    def state_dict(self) -> dict[str, Any] | None:
        if self.averaged is None:
            return None
        weights = {f"module.{name}": value for name, value in self.averaged.state_dict().items()}
        return {"n_averaged": torch.tensor(self.count, dtype=torch.long), **weights}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.averaged is None or state is None:
            return
        self.count = int(state["n_averaged"])
        weights = {name.removeprefix("module."): v for name, v in state.items() if name != "n_averaged"}
        self.averaged.load_state_dict(weights)


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    """The parameters, then the buffers, in a fixed order (as swa_utils with use_buffers)."""
    return [*model.parameters(), *model.buffers()]
