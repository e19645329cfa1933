"""Every tensor a model's passes make lives on the images' device, checked without a GPU.

A tensor made on the CPU inside a GPU pass (a factory call without `device=`) costs a
blocking host-to-device copy per step, which waits for the work queued on the GPU (the host
waits for the GPU mid-step), and torch.compile either splits its CUDA graph around the CPU
op (graph partition, on by default in torch 2.13) or skips CUDA graphs altogether. Such a
tensor mixes silently with GPU tensors when it is copied into one, so GPU tests pass all
the same.
Here the model runs on the meta device, where every tensor it makes from its inputs stays on
meta; a dispatch mode records any op whose output lands elsewhere. Meta tensors hold no
values, so a host synchronisation in a pass (`.item()`, `bool(tensor)`, a shape read from
data) fails it too. A fixed std's policy
entropy was built on the CPU this way in every training rollout until 2026-12-04.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ramlab.models import build_model

META = torch.device("meta")
SIZE = 28

RAM_CONFIGS = {
    "defaults": {},
    "recipe": {"core": "lstm", "first_location": "centre", "std": 0.15, "rollouts": 2},
    "learned-std": {"learn_std": True, "entropy_weight": 0.01},
    "infogain": {"reward": "sparse+infogain"},
    "bbox": {"reward": "sparse+0.5*bbox"},
    "every-step-ce": {"ce_all_steps": True, "label_smoothing": 0.1, "gamma": 0.9},
    "conv-product": {"glimpse_conv": 8, "glimpse_combine": "product"},
    "dropout": {"dropout": 0.2},
    "rollout-baseline": {"rollouts": 2, "baseline": "rollouts", "consistency_weight": 0.5},
}


class OffDevice(TorchDispatchMode):
    """Records each op that returns a tensor on a device other than `device`."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor) and value.device != self.device:
                self.ops.add(f"{func} -> {value.device}")
        return out


def passes(model: torch.nn.Module, batch: int = 4) -> None:
    """A training step's passes (eager, and the fast path's split: randomness and sensing
    outside, the rest inside) and an evaluation pass, all on the model's device."""
    images = torch.rand(batch, 1, SIZE, SIZE, device=META)
    labels = torch.zeros(batch, dtype=torch.long, device=META)
    bboxes = torch.zeros(batch, 4, device=META)
    model.train()
    out = model(images, sample=True)
    model.objective(out, labels, bboxes).loss.backward()
    randomness = model.draw_randomness(images, sample=True, generator=None)
    out = model(images, sample=True, randomness=randomness, sensed=model.sense(images))
    model.objective(out, labels, bboxes).loss.backward()
    model.eval()
    with torch.no_grad():
        model(images, sample=False)


def off_device_ops(name: str, config: dict | None) -> set[str]:
    model = build_model(name, config, image_size=(SIZE, SIZE)).to(META)
    with OffDevice(META) as recorder:
        passes(model)
    return recorder.ops


@pytest.mark.parametrize("changes", RAM_CONFIGS.values(), ids=RAM_CONFIGS.keys())
def test_the_ram_makes_every_tensor_on_the_images_device(changes: dict) -> None:
    assert off_device_ops("ram", changes) == set()


@pytest.mark.parametrize("name", ["resnet", "convnet", "fc"])
def test_the_baselines_make_every_tensor_on_the_images_device(name: str) -> None:
    assert off_device_ops(name, None) == set()


def test_the_recorder_sees_a_tensor_made_on_the_cpu() -> None:
    """The check itself: a CPU factory call inside a meta pass is caught (it is how the old
    entropy was made)."""
    with OffDevice(META) as recorder:
        x = torch.zeros(3, device=META)
        x[1:] = torch.full((2,), 1.5)
    assert recorder.ops == {"aten.full.default -> cpu"}


def test_a_host_synchronisation_fails_on_meta() -> None:
    """The check's other half: a pass that reads a value on the host cannot run on meta."""
    x = torch.zeros(3, device=META)
    with pytest.raises(RuntimeError, match="meta"):
        x.sum().item()
    with pytest.raises(RuntimeError, match="meta"):
        bool(x.sum() > 0)
