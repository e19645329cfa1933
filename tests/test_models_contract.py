"""The contract every registered model keeps, on every named dataset's image size.

Output shapes, finite values, a gradient for every parameter from the model's own
objective, determinism under a seed, and identical outputs after a checkpoint round trip.
Models are built with their default config, as `ramlab train MODEL --data NAME` builds them.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ramlab.checkpoint import load_checkpoint, save_checkpoint
from ramlab.data.datasets import DATASETS, image_size
from ramlab.models.base import Model, ModelOutput
from ramlab.models.registry import build_model, model_class, model_config_class, model_names

BATCH = 4
CLASSES = 10
SIZES = sorted({image_size(name) for name in DATASETS})
CASES = [
    pytest.param(name, size, id=f"{name}-{size[0]}x{size[1]}") for name in model_names() for size in SIZES
]


def make_model(name: str, size: tuple[int, int], *, seed: int = 0) -> Model:
    torch.manual_seed(seed)
    return build_model(name, image_size=size, num_classes=CLASSES)


def make_batch(size: tuple[int, int], *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise images (B, 1, H, W), labels (B,), digit boxes (B, 4) inside the image."""
    gen = torch.Generator().manual_seed(seed)
    height, width = size
    images = torch.rand(BATCH, 1, height, width, generator=gen)
    labels = torch.randint(0, CLASSES, (BATCH,), generator=gen)
    x0 = torch.randint(0, width - 28 + 1, (BATCH,), generator=gen)
    y0 = torch.randint(0, height - 28 + 1, (BATCH,), generator=gen)
    bboxes = torch.stack([x0, y0, x0 + 28, y0 + 28], dim=1).float()
    return images, labels, bboxes


def run(model: Model, images: torch.Tensor, *, sample: bool, seed: int = 0) -> ModelOutput:
    return model(images, sample=sample, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("name", "size"), CASES)
def test_output_shapes_and_values(name, size):
    model = make_model(name, size).eval()
    images, _, _ = make_batch(size)
    with torch.no_grad():
        for sample in (False, True):
            out = run(model, images, sample=sample)
            assert out.logits.shape == (BATCH, CLASSES)
            steps = out.step_logits.shape[1]
            assert steps >= 1
            assert out.step_logits.shape == (BATCH, steps, CLASSES)
            assert torch.equal(out.step_logits[:, -1], out.logits)
            assert torch.isfinite(out.step_logits).all()


@pytest.mark.parametrize(("name", "size"), CASES)
def test_every_parameter_gets_a_gradient(name, size):
    model = make_model(name, size).train()
    images, labels, bboxes = make_batch(size)
    out = run(model, images, sample=True)  # the RAM's policy learns only from sampled locations
    objective = model.objective(out, labels, bboxes)
    assert objective.loss.shape == ()
    assert torch.isfinite(objective.loss)
    objective.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"{name}: no gradient reaches {missing}"
    for n, p in model.named_parameters():
        assert torch.isfinite(p.grad).all(), n


@pytest.mark.parametrize(("name", "size"), CASES)
def test_deterministic_under_a_seed(name, size):
    images, labels, bboxes = make_batch(size)
    first, second = make_model(name, size, seed=3), make_model(name, size, seed=3)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    for sample in (False, True):
        a, b = run(first, images, sample=sample, seed=7), run(second, images, sample=sample, seed=7)
        assert torch.equal(a.step_logits, b.step_logits)
        loss_a = first.objective(a, labels, bboxes).loss
        loss_b = second.objective(b, labels, bboxes).loss
        assert torch.equal(loss_a, loss_b)
    other = make_model(name, size, seed=4)
    assert not torch.equal(run(other, images, sample=False).logits, run(first, images, sample=False).logits)


@pytest.mark.parametrize(("name", "size"), CASES)
def test_save_load_gives_the_same_outputs(name, size, tmp_path):
    model = make_model(name, size, seed=1)
    images, labels, bboxes = make_batch(size)
    model.train()
    model.objective(run(model, images, sample=True), labels, bboxes).loss.backward()  # BatchNorm stats move
    model.eval()
    save_checkpoint(tmp_path / "model.pt", {"model": model.state_dict()})
    restored = make_model(name, size, seed=2)
    restored.load_state_dict(load_checkpoint(tmp_path / "model.pt")["model"])
    restored.eval()
    for sample in (False, True):
        before = run(model, images, sample=sample, seed=5).step_logits
        after = run(restored, images, sample=sample, seed=5).step_logits
        assert torch.equal(before, after)
    assert restored.num_parameters() == model.num_parameters()


@pytest.mark.parametrize(("name", "size"), CASES)
@pytest.mark.parametrize("sample", [False, True])
def test_randomness_drawn_outside_gives_the_same_pass(name, size, sample):
    # The compiled fast path draws a pass's random numbers with `draw_randomness` and hands
    # them in: every model must then give exactly its own pass from the same generator.
    model = make_model(name, size).eval()
    images, _, _ = make_batch(size)
    drawn = model.draw_randomness(images, sample=sample, generator=torch.Generator().manual_seed(7))
    handed = model(images, sample=sample, randomness=drawn)
    inside = run(model, images, sample=sample, seed=7)
    assert torch.equal(handed.step_logits, inside.step_logits)


@pytest.mark.parametrize(("name", "size"), CASES)
def test_what_sense_made_handed_in_gives_the_same_pass(name, size):
    # The compiled fast path runs `sense` (the RAM's retina tables) outside its graph and
    # hands the result in as `sensed`: every model must then give exactly its own pass.
    model = make_model(name, size).eval()
    images, _, _ = make_batch(size)
    sensed = model.sense(images)
    handed = model(images, sample=True, generator=torch.Generator().manual_seed(3), sensed=sensed)
    inside = run(model, images, sample=True, seed=3)
    assert torch.equal(handed.step_logits, inside.step_logits)
    assert (sensed is None) == (name != "ram")


@pytest.mark.parametrize("name", model_names())
def test_config_for_image_size_sets_only_the_fields_the_model_names(name):
    # A study's cost.configs refuses the sized fields, which the cost job replaces at each
    # side: a field replaced but not named would be dropped without a word again.
    cls = model_class(name)
    default = model_config_class(name)()
    changed = set()
    for side in (28, 60, 100, 200, 400, 512, 800):
        sized = cls.config_for_image_size(default, side)
        changed |= {
            f.name for f in dataclasses.fields(default) if getattr(sized, f.name) != getattr(default, f.name)
        }
    assert changed <= set(cls.sized_fields)
    assert name != "ram" or changed == {"scales"}  # the RAM's does change its scales
