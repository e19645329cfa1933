"""The paper's feed-forward baselines (Mnih et al. 2014, section 4.1): FC and a small conv net.

    fc:      x -> flatten -> [linear -> relu] x layers -> linear                (B, C)
    convnet: x -> relu(conv k×k, stride s, F filters) -> flatten
               -> relu(linear, 256) -> linear                                  (B, C)

Both see the whole image through layers whose weights depend on its size, so they need the
image size at construction, and their parameters (the FC's first layer, the conv net's
hidden layer) grow with the pixel count. The paper reports the FC net with 64 or 256 hidden
units (256 is the default). Its conv net has one layer of 10×10 filters with stride 5; we
use 8 filters, the number the paper gives (as we read it; the paper does not list an
initialisation or a padding: none here, so a 60×60 image gives an 11×11×8 feature map).
A feed-forward model makes one prediction: `step_logits = logits[:, None]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ramlab.config import param
from ramlab.errors import RamlabError
from ramlab.models.base import FeedForwardModel
from ramlab.models.registry import register_model


def _check_positive(model: str, config: object, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(config, name) < 1:
            raise RamlabError(f"{model} {name} must be a positive integer, got {getattr(config, name)}")


@dataclass(frozen=True)
class FCConfig:
    """A multi-layer perceptron on the flattened image."""

    hidden: int = param(256, "units of each hidden layer (the paper: 64 or 256)")
    layers: int = param(2, "number of hidden layers (the paper: 2)")

    def __post_init__(self) -> None:
        _check_positive("fc", self, ("hidden", "layers"))


@dataclass(frozen=True)
class ConvNetConfig:
    """One convolutional layer and one hidden fully connected layer."""

    filters: int = param(8, "number of convolutional filters (the paper: 8)")
    kernel: int = param(10, "side of the square filters in pixels (the paper: 10)")
    stride: int = param(5, "stride of the convolution (the paper: 5)")
    hidden: int = param(256, "units of the fully connected hidden layer (the paper: 256)")

    def __post_init__(self) -> None:
        _check_positive("convnet", self, ("filters", "kernel", "stride", "hidden"))
        if self.kernel < self.stride:
            raise RamlabError(
                f"convnet kernel ({self.kernel}) must be >= stride ({self.stride}), "
                "or the convolution skips pixels"
            )


@register_model("fc")
class FC(FeedForwardModel):
    """The paper's fully connected baseline: hidden ReLU layers on the flattened image."""

    config_class = FCConfig

    def __init__(self, *, config: FCConfig, image_size: tuple[int, int], num_classes: int = 10) -> None:
        super().__init__(config=config, image_size=image_size, num_classes=num_classes)
        height, width = image_size
        layers: list[nn.Module] = [nn.Flatten()]
        inputs = height * width
        for _ in range(config.layers):
            layers += [nn.Linear(inputs, config.hidden), nn.ReLU(inplace=True)]
            inputs = config.hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(inputs, num_classes)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 1, H, W) -> logits (B, C)."""
        return self.head(self.body(images))  # (B, C)


@register_model("convnet")
class ConvNet(FeedForwardModel):
    """The paper's small conv net: one strided convolution, one hidden layer."""

    config_class = ConvNetConfig

    def __init__(self, *, config: ConvNetConfig, image_size: tuple[int, int], num_classes: int = 10) -> None:
        super().__init__(config=config, image_size=image_size, num_classes=num_classes)
        self.check_image_size(config, image_size)
        height, width = image_size
        rows = (height - config.kernel) // config.stride + 1
        cols = (width - config.kernel) // config.stride + 1
        self.conv = nn.Conv2d(1, config.filters, config.kernel, stride=config.stride)
        self.hidden = nn.Linear(config.filters * rows * cols, config.hidden)
        self.head = nn.Linear(config.hidden, num_classes)

    @classmethod
    def check_image_size(cls, config: ConvNetConfig, image_size: tuple[int, int]) -> None:
        height, width = image_size
        if config.kernel > min(height, width):
            raise RamlabError(
                f"convnet kernel {config.kernel} is larger than the {height}x{width} image; use a smaller "
                "kernel (ramlab train convnet --kernel) or a larger image"
            )

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 1, H, W) -> logits (B, C)."""
        features = torch.relu(self.conv(images))  # (B, F, rows, cols)
        hidden = torch.relu(self.hidden(features.flatten(1)))  # (B, hidden)
        return self.head(hidden)  # (B, C)
