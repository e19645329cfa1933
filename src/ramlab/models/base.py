"""The interface every model shares, so training, evaluation and cost never branch on type.

out = model(images)                # images (B, 1, H, W) in [0, 1]
out.logits                         # (B, C) the final prediction
out.step_logits                    # (B, T, C) anytime predictions (T = 1 for a CNN)
terms = model.objective(out, batch)  # loss to minimise and metrics to log
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, C)
    step_logits: torch.Tensor  # (B, T, C)
    rollout: Any = None  # the RAM's Rollout; None for feed-forward models


@dataclass
class Objective:
    loss: torch.Tensor  # scalar to minimise
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # namespaced scalars


class Model(nn.Module):
    """Base class: subclasses set `config_class` and implement `forward`."""

    config_class: ClassVar[type]

    def __init__(self, *, config: Any, image_size: tuple[int, int], num_classes: int) -> None:
        super().__init__()
        self.config = config
        self.image_size = tuple(image_size)
        self.num_classes = num_classes

    def forward(
        self,
        images: torch.Tensor,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
        randomness: tuple[torch.Tensor, ...] | None = None,
        sensed: Any = None,
    ) -> ModelOutput:
        """`randomness`: what `draw_randomness` drew for this pass, so that a compiled
        forward (ramlab.fastpath) takes no generator; drawn inside when None. `sensed`: what
        `sense` made of these images, computed inside when None."""
        raise NotImplementedError

    def draw_randomness(
        self, images: torch.Tensor, *, sample: bool, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, ...]:
        """Every random number one forward pass of `images` uses, drawn from `generator` in
        the order the pass itself would draw them (so both give the same results)."""
        return ()

    def sense(self, images: torch.Tensor) -> Any:
        """The work a forward pass does on the images before any learned layer, which the
        compiled fast path runs eagerly outside its graph and passes in as `sensed` (the RAM's
        retina tables: faster eager than inductor's code for them, and kept out of the graph
        without a graph break); None for a model with no such work."""
        return None

    def objective(self, out: ModelOutput, labels: torch.Tensor, bboxes: torch.Tensor) -> Objective:
        """Cross-entropy on the final logits; the RAM overrides this with its hybrid loss."""
        loss = nn.functional.cross_entropy(out.logits, labels)
        return Objective(loss=loss, metrics={"loss/classification": loss.detach()})

    @property
    def looks_at_random(self) -> bool:
        """Whether its glimpses go to random places, in evaluation too (the RAM's random-policy
        control): an evaluation then says so rather than "policy mean"."""
        return False

    @property
    def training_copies(self) -> int:
        """How many times the trainer repeats each image in a batch (the RAM's M rollouts),
        consecutively: copies of image i are rows i*M .. i*M+M-1."""
        return 1

    @classmethod
    def check_image_size(cls, config: Any, image_size: tuple[int, int]) -> None:
        """Raises RamlabError when `config` cannot be built for (H, W) images (the RAM's
        glimpse wider than the canvas); nothing is built. Every size by default."""

    sized_fields: tuple[str, ...] = ()
    """Config fields `config_for_image_size` sets for a config of no size in particular (a
    study's `cost.configs`, whose value there would be replaced: the RAM's scales)."""

    @classmethod
    def config_for_image_size(cls, config: Any, image_size: int, *, trained_size: int | None = None) -> Any:
        """The config to use on other images (the RAM adds scales), from one given for images
        of `trained_size` (None: a config for no size in particular); unchanged by default."""
        return config

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The optimiser's parameter groups; a group's `lr_scale` multiplies its learning rate
        (ramlab.optim). One group at the configured rate by default."""
        return [{"params": list(self.parameters())}]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class FeedForwardModel(Model):
    """A one-shot classifier: subclasses implement `logits`; its anytime prediction has T = 1."""

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 1, H, W) -> logits (B, C)."""
        raise NotImplementedError

    def forward(
        self,
        images: torch.Tensor,
        *,
        sample: bool = False,
        generator: torch.Generator | None = None,
        randomness: tuple[torch.Tensor, ...] | None = None,
        sensed: Any = None,
    ) -> ModelOutput:
        """`sample`, `generator` and `randomness` are unused: nothing in a feed-forward net is
        random; nor is `sensed` (its `sense` is None)."""
        logits = self.logits(images)  # (B, C)
        return ModelOutput(logits=logits, step_logits=logits[:, None])
