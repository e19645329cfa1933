"""A low-parameter ResNet of basic residual blocks (He et al. 2016), for images of any size.

    stem:   x -> relu(BN(conv k×k, stride s)(x))                      (B, w_0, H/s, W/s)
    stages: stage i = depth_i basic blocks of width w_i; its first block has stride s_i
    block:  y = relu(BN(conv3x3(relu(BN(conv3x3(x))))) + shortcut(x)),
            shortcut = identity, or BN(conv1x1, stride s_i) when the shape changes
    head:   global average pool -> linear                              (B, C)

Global average pooling makes the weights independent of the image size, so one config
serves 28×28 to 800×800; the compute grows with the pixel count (that is the point of the
comparison with the RAM). The default has 0.15 M parameters, comparable to the RAM's, and
costs 31 MFLOPs on a 60×60 image: a 3×3 stride-2 stem, one block of width 16 at half
resolution, one of width 32 at a quarter, two of width 64 at an eighth. Tuned for training
in minutes on a 2-core CPU: on translated60, keeping one stage at half resolution mattered
more than depth (a 4×4 stride-4 stem at 13 MFLOPs learned about half as fast per sample).
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


@dataclass(frozen=True)
class ResNetConfig:
    """Widths and depths of the stages, and the stem's downsampling."""

    widths: tuple[int, ...] = param((16, 32, 64), "channels of each stage")
    depths: tuple[int, ...] = param((1, 1, 2), "basic residual blocks in each stage")
    strides: tuple[int, ...] = param((1, 2, 2), "stride of each stage's first block")
    stem_kernel: int = param(3, "side of the stem convolution's filters")
    stem_stride: int = param(2, "stride of the stem convolution")

    def __post_init__(self) -> None:
        # The CLI hands lists; keep tuples so that configs compare equal after a YAML round trip.
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "depths", tuple(self.depths))
        object.__setattr__(self, "strides", tuple(self.strides))
        if not self.widths or not len(self.widths) == len(self.depths) == len(self.strides):
            raise RamlabError(
                f"resnet widths, depths and strides need one entry per stage each; got widths "
                f"{list(self.widths)}, depths {list(self.depths)}, strides {list(self.strides)}"
            )
        if min(self.widths) < 1 or min(self.depths) < 1 or min(self.strides) < 1:
            raise RamlabError(
                f"resnet widths, depths and strides must be positive; got {list(self.widths)}, "
                f"{list(self.depths)}, {list(self.strides)}"
            )
        if self.stem_stride < 1 or self.stem_kernel < 1:
            raise RamlabError(
                f"resnet stem_kernel and stem_stride must be >= 1, got {self.stem_kernel}, {self.stem_stride}"
            )
        if self.stem_kernel < self.stem_stride:
            raise RamlabError(
                f"resnet stem_kernel ({self.stem_kernel}) must be >= stem_stride ({self.stem_stride}), "
                "or the stem skips pixels"
            )


def conv3x3(in_channels: int, out_channels: int, *, stride: int = 1) -> nn.Conv2d:
    # No bias: the BatchNorm that follows has its own.
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm and a residual connection."""

    def __init__(self, *, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride=stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, H, W) -> (B, C_out, H / stride, W / stride)."""
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


@register_model("resnet")
class ResNet(FeedForwardModel):
    """Low-parameter ResNet of basic blocks with BatchNorm and global average pooling."""

    config_class = ResNetConfig

    def __init__(self, *, config: ResNetConfig, image_size: tuple[int, int], num_classes: int = 10) -> None:
        super().__init__(config=config, image_size=image_size, num_classes=num_classes)
        kernel, stride = config.stem_kernel, config.stem_stride
        self.stem = nn.Sequential(
            nn.Conv2d(1, config.widths[0], kernel, stride=stride, padding=(kernel - 1) // 2, bias=False),
            nn.BatchNorm2d(config.widths[0]),
            nn.ReLU(inplace=True),
        )
        stages, channels = [], config.widths[0]
        for width, depth, stride in zip(config.widths, config.depths, config.strides, strict=True):
            blocks = []
            for j in range(depth):
                block_stride = stride if j == 0 else 1
                blocks.append(BasicBlock(in_channels=channels, out_channels=width, stride=block_stride))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 1, H, W) -> pooled features (B, widths[-1])."""
        x = self.stages(self.stem(images))  # (B, w_last, H', W')
        return x.mean(dim=(2, 3))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, widths[-1]) -> logits (B, C)."""
        return self.head(features)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 1, H, W) -> logits (B, C)."""
        return self.forward_head(self.forward_features(images))
