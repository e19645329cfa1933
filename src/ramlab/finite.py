"""Stopping a run whose numbers stop being finite, before anything non-finite is kept.

On a CPU every step's loss is checked. On a GPU the check would wait for the step to finish,
so steps accumulate a flag on the device, read only at logged and checkpointed steps (which
include an epoch's last); the message then names the step it was read at. Before a step's
weights are kept (checkpointed, or validated at an epoch's end) they are checked too: a
finite loss can still have a non-finite gradient.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ramlab.errors import RamlabError
from ramlab.run_messages import non_finite_message


class FiniteCheck:
    """`where(step)` names a step ("epoch 3, step 12 of 430"); the other arguments go into
    the message (what is kept and the command that goes on)."""

    def __init__(
        self,
        device: torch.device,
        where: Callable[[int], str],
        out: Path,
        resume_command: str,
        lr: float,
        *,
        lr_floor: float = 0.0,
        grad_clip: float = 0.0,
    ) -> None:
        self.device = device
        self.where, self.out, self.resume_command, self.lr = where, out, resume_command, lr
        self.lr_floor = lr_floor  # the schedule's lr_min, under which no resume may go
        self.grad_clip = grad_clip
        self._finite: torch.Tensor | None = None  # a GPU run's steps since the last read
        self._first_bad: torch.Tensor | None = None  # and the first non-finite loss among them

    @property
    def every_step(self) -> bool:
        """Whether each step's loss is read at once (on a CPU, where that costs nothing)."""
        return self.device.type == "cpu"

    def loss(self, loss: torch.Tensor, step: int, *, now: bool) -> None:
        """After step `step`'s forward pass; `now`: read a GPU's flag (a logged or
        checkpointed step)."""
        if self.every_step:
            if not torch.isfinite(loss):
                self._stop(f"the loss became {loss.item()}", f"at {self.where(step)}")
            return
        # A copy: a compiled step's loss lives in CUDA-graph memory the next replay overwrites
        # (reading it then raises), and this one is kept until a read step.
        loss = loss.detach().clone()
        finite = torch.isfinite(loss)
        if self._finite is None:
            self._finite, self._first_bad = finite, loss
        else:  # kept on the device, no wait: the first bad loss, not the read step's (finite)
            self._first_bad = torch.where(self._finite, loss, self._first_bad)
            self._finite = self._finite & finite
        if now:
            all_finite, self._finite = bool(self._finite), None
            if not all_finite:
                at = f"by {self.where(step)} (a GPU run checks at logged steps)"
                self._stop(f"the loss became {self._first_bad.item()}", at)

    def weights(self, model: nn.Module, step: int) -> None:
        """Before step `step`'s weights are kept."""
        if not bool(torch.stack([p.isfinite().all() for p in model.parameters()]).all()):
            self._stop("the weights became non-finite (the loss was finite)", f"at {self.where(step)}")

    def _stop(self, what: str, at: str) -> None:
        raise RamlabError(
            non_finite_message(
                what,
                at,
                self.out,
                self.resume_command,
                self.lr,
                lr_floor=self.lr_floor,
                grad_clip=self.grad_clip,
            )
        )
