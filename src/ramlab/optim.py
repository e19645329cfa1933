"""Optimisers and learning-rate schedules, one interface for all of them.

    none         lr
    cosine       lr * 0.5 * (1 + cos(pi * step / total))             per step, to 0
    step         lr * 0.1 at 50% and again at 75% of the steps
    exponential  max(lr * decay^(step / steps_per_epoch), lr_min)     x decay per epoch, smoothly
    plateau      lr * factor each time the validation error has not improved for more than
                 `patience` epochs in a row, never below lr_min        (per epoch, on val/error)

`Schedule.after_step()` is called after every optimisation step, `after_epoch(val_error)`
after every validation; its state_dict makes resume exact. A parameter group may carry an
`lr_scale` (a model's `parameter_groups`, e.g. the RAM's `policy_lr`): its learning rate is
the schedule's times that scale throughout.
"""

from __future__ import annotations

import math
from typing import Any

import torch

SCHEDULES = ("none", "cosine", "step", "exponential", "plateau")


def lr_scale(group: dict[str, Any]) -> float:
    """A parameter group's multiplier of the schedule's learning rate (1 unless it has one)."""
    return group.get("lr_scale", 1.0)


def make_optimizer(groups: list[dict[str, Any]], cfg) -> torch.optim.Optimizer:
    """Adam or SGD with momentum over a model's `parameter_groups`, each group at `cfg.lr`
    times its `lr_scale`; fused: one kernel per step for all parameters."""
    parameters = [{**group, "lr": cfg.lr * lr_scale(group)} for group in groups]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            parameters, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=True
        )
    return torch.optim.Adam(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)


def lr_factor(kind: str, step: int, *, total_steps: int, steps_per_epoch: int, cfg) -> float:
    """The per-step schedules' multiplier of the initial learning rate (pure; tested)."""
    if kind == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    if kind == "step":
        return 0.1 ** ((step >= total_steps // 2) + (step >= (3 * total_steps) // 4))
    if kind == "exponential":
        return max(cfg.lr_decay ** (step / steps_per_epoch), cfg.lr_min / cfg.lr)
    return 1.0


class Schedule:
    """The configured schedule over `optimizer`, stepped by the trainer."""

    def __init__(self, optimizer: torch.optim.Optimizer, cfg, *, steps_per_epoch: int) -> None:
        self.kind = cfg.schedule
        self.optimizer = optimizer
        self.initial_lr = cfg.lr
        if self.kind == "plateau":
            self._plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer,
                mode="min",
                factor=cfg.plateau_factor,
                patience=cfg.plateau_patience,
                threshold=0.0,
                min_lr=[cfg.lr_min * lr_scale(group) for group in optimizer.param_groups],
            )
            self._per_step = None
        else:
            total = cfg.epochs * steps_per_epoch

            def factor(step: int) -> float:
                return lr_factor(self.kind, step, total_steps=total, steps_per_epoch=steps_per_epoch, cfg=cfg)

            self._per_step = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    @property
    def lr(self) -> float:
        """The learning rate of the first group (the model's main one; others are scaled)."""
        return self.optimizer.param_groups[0]["lr"]

    def after_step(self) -> None:
        if self._per_step is not None:
            self._per_step.step()

    def after_epoch(self, val_error: float) -> None:
        if self._per_step is None:
            self._plateau.step(val_error)

    def state_dict(self) -> dict[str, Any]:
        inner = self._per_step if self._per_step is not None else self._plateau
        return {"kind": self.kind, "state": inner.state_dict(), "initial_lr": self.initial_lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the schedule where it was. A resume may give another initial learning rate
        (`--resume --lr X`, e.g. after a NaN): the schedule then goes on scaled to it. Call it
        after loading the optimiser's state."""
        inner = self._per_step if self._per_step is not None else self._plateau
        # Checkpoints before the plateau schedule held the LambdaLR's state itself.
        inner.load_state_dict(state["state"] if "kind" in state else state)
        groups = self.optimizer.param_groups
        if self._per_step is not None:
            per_step = self._per_step
            per_step.base_lrs = [self.initial_lr * lr_scale(group) for group in groups]
            for group, base, factor in zip(groups, per_step.base_lrs, per_step.lr_lambdas, strict=True):
                group["initial_lr"] = base
                group["lr"] = base * factor(per_step.last_epoch)
            per_step._last_lr = [group["lr"] for group in groups]
        else:
            scale = self.initial_lr / state.get("initial_lr", self.initial_lr)
            for group, floor in zip(groups, self._plateau.min_lrs, strict=True):
                group["lr"] = max(group["lr"] * scale, floor)
