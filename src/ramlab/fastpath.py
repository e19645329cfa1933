"""The compiled fast path: a model's forward pass (and, in training, its objective) as one
`torch.compile` graph, the same function as the eager one.

    step = TrainingStep(model, compiled=True)
    out, objective = step(images, labels, bboxes, generator)   # as model(...) + model.objective(...)
    forward = CompiledForward(model)                           # evaluation: model(images, sample=...)

Why: a RAM step at batch 128 is six small sequential steps of a 256-unit network, so eager
PyTorch spends much of its time between operators (dispatch on a CPU, kernel launches on a
GPU). Compiled, the element-wise work of a step fuses into a few kernels, and on CUDA
`mode="reduce-overhead"` replays the whole forward and backward as CUDA graphs.

Same results: the random numbers of a pass are drawn eagerly from the caller's generator by
`model.draw_randomness`, in the order the eager pass draws them, and handed to the graph, so
compiled and eager runs see the same locations; losses agree to float rounding (inductor may
sum in another order). Likewise `model.sense` (the RAM's retina tables) runs eagerly and is
handed in: eager it is faster than inductor's code for it, and the graph stays whole (one
graph a pass, not the four that a graph break inside the rollout left). Compiling takes
tens of seconds per input shape (cached on disk by torch across runs), so it pays for long
runs, not for a few seconds of training.

On a CPU the graphs are called through inductor's C++ wrapper (`cpp_wrapper`), not its
Python one: a pass calls about a hundred small kernels and products, and the compiled
regions' wrappers took 10-13% of the paper RAM's step in the profile. The kernels are the
same, so the results are the same bit for bit; `python benchmarks/fastpath_ab.py` times the
two paired in one process (the paper's RAM 1.06x faster in training and 1.04x in inference).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

import torch

from ramlab.errors import RamlabError
from ramlab.models.base import Model, ModelOutput, Objective

CPU_COMPILERS = ("g++", "c++", "clang++")
"""Inductor writes C++ for a CPU graph and needs one of these to build it."""


def cpu_compiler() -> str | None:
    """The C++ compiler inductor will find on this machine, or None."""
    return next((name for name in CPU_COMPILERS if shutil.which(name)), None)


CPU_OPTIONS = {"cpp_wrapper": True}
"""Inductor's options for a CPU graph: kernels launched from C++, not Python."""


def compile_mode(device: torch.device) -> str | None:
    """torch.compile's mode for `device`: CUDA graphs on a GPU, inductor's default on a CPU."""
    return "reduce-overhead" if device.type == "cuda" else None


def inductor_options(device: torch.device) -> dict[str, Any]:
    """The inductor options the fast path compiles with on `device` (none beyond the mode on CUDA)."""
    return dict(CPU_OPTIONS) if device.type == "cpu" else {}


def _compile(function: Callable, device: torch.device, options: dict[str, Any] | None) -> Callable:
    if device.type == "cpu" and cpu_compiler() is None:
        raise RamlabError(
            "the compiled fast path on a CPU needs a C++ compiler (g++ or clang++) and none is on "
            "PATH: install one (e.g. apt install g++), or train without --compile"
        )
    options = inductor_options(device) if options is None else options
    # dynamic=False: one graph per batch shape (training: the full batch only, see TrainingStep).
    if options:  # torch.compile takes a mode or options, not both
        return torch.compile(function, options=options, dynamic=False)
    return torch.compile(function, mode=compile_mode(device), dynamic=False)


class TrainingStep:
    """The forward pass with sampled locations and the model's objective, eager or compiled.

    `options` replace `inductor_options(device)` (benchmarks compare them; on CUDA they also
    replace the CUDA-graphs mode unless they include `"triton.cudagraphs": True`). With
    `batch`, only batches of that size go through the graph and any other (an epoch's last,
    smaller one) runs eagerly: a graph for one step an epoch cost its compile, about 30 s on 2
    CPU cores with a cold cache (the quick study's RAM), for nothing. Eager and compiled draw
    the same random numbers, so a run stays exactly resumable either way."""

    def __init__(
        self,
        model: Model,
        *,
        compiled: bool,
        options: dict[str, Any] | None = None,
        batch: int | None = None,
    ) -> None:
        self.model = model
        self.compiled = compiled
        self.batch = batch
        device = next(model.parameters()).device
        self._graph = _compile(self._forward_objective, device, options) if compiled else None

    def _forward_objective(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        bboxes: torch.Tensor,
        randomness: tuple,
        sensed: Any,
    ) -> tuple[ModelOutput, Objective]:
        out = self.model(images, sample=True, randomness=randomness, sensed=sensed)
        return out, self.model.objective(out, labels, bboxes)

    def __call__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        bboxes: torch.Tensor,
        generator: torch.Generator | None,
    ) -> tuple[ModelOutput, Objective]:
        if self._graph is None or (self.batch is not None and len(images) != self.batch):
            out = self.model(images, sample=True, generator=generator)
            return out, self.model.objective(out, labels, bboxes)
        randomness = self.model.draw_randomness(images, sample=True, generator=generator)
        sensed = self.model.sense(images)
        if images.device.type == "cuda":  # the graph's outputs live in memory its next replay reuses
            torch.compiler.cudagraph_mark_step_begin()
        return self._graph(images, labels, bboxes, randomness, sensed)


class CompiledForward:
    """`model(images, sample=..., generator=...)` through a compiled graph, for evaluation
    (`options` as for `TrainingStep`)."""

    def __init__(self, model: Model, *, options: dict[str, Any] | None = None) -> None:
        self.model = model
        device = next(model.parameters()).device
        self._graph = _compile(self._forward, device, options)

    def _forward(self, images: torch.Tensor, sample: bool, randomness: tuple, sensed: Any) -> ModelOutput:
        return self.model(images, sample=sample, randomness=randomness, sensed=sensed)

    def __call__(
        self, images: torch.Tensor, *, sample: bool = False, generator: torch.Generator | None = None
    ) -> ModelOutput:
        randomness = self.model.draw_randomness(images, sample=sample, generator=generator)
        sensed = self.model.sense(images)
        if images.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()
        return self._graph(images, sample, randomness, sensed)
