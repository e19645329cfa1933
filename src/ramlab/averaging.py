"""An exponential moving average of a model's weights, for evaluation (Polyak averaging).

    w_avg <- decay * w_avg + (1 - decay) * w        after every optimisation step

The optimiser trains the model itself; validation, best.pt and the test use the average,
which smooths the step-to-step noise a high learning rate leaves in the weights (the RAM's
validation error moves by a point or more from one epoch to the next without it). Built on
torch.optim.swa_utils; with decay 0 there is no average and the model is evaluated as is.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class WeightAverage:
    """The moving average of `model`'s weights (and buffers) with `decay` per step, or
    nothing when decay is 0. Create it after the model's weights are loaded."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.averaged = (
            AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
            if decay > 0
            else None
        )

    def update(self, model: nn.Module) -> None:
        """After an optimisation step (the first call copies the weights)."""
        if self.averaged is not None:
            self.averaged.update_parameters(model)

    def evaluated(self, model: nn.Module) -> nn.Module:
        """The weights to validate, keep as best and test: the average, or `model` itself."""
        return model if self.averaged is None else self.averaged.module

    def state_dict(self) -> dict[str, Any] | None:
        return None if self.averaged is None else self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.averaged is not None and state is not None:
            self.averaged.load_state_dict(state)
