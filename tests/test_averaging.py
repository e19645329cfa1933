"""The moving average of the weights (`--ema`): the average by hand, what a run evaluates
and keeps with it, and exact resume with it."""

from __future__ import annotations

import pytest
import torch
from test_trainer import assert_same_weights, straight_and_resumed, tiny_config, weights
from torch import nn

from ramlab.averaging import WeightAverage
from ramlab.checkpoint import load_checkpoint
from ramlab.data.datasets import load_split
from ramlab.data.loader import SceneLoader
from ramlab.errors import RamlabError
from ramlab.evaluate import evaluate
from ramlab.run import load_run
from ramlab.runconfig import RunConfig, TrainConfig, build_run_model
from ramlab.trainer import Trainer


def test_the_average_by_hand() -> None:
    model = nn.Linear(1, 1, bias=False)
    average = WeightAverage(model, decay=0.9)
    for value in (1.0, 3.0, 5.0):  # the weights after three optimisation steps
        model.weight.data.fill_(value)
        average.update(model)
    # The first update copies (1); then 0.9 * 1 + 0.1 * 3 = 1.2; then 0.9 * 1.2 + 0.1 * 5 = 1.58.
    assert average.evaluated(model).weight.item() == pytest.approx(1.58)
    assert model.weight.item() == 5.0  # the model itself is not touched
    assert average.evaluated(model) is not model


def test_the_average_is_swa_utils_ema_to_the_bit_and_reads_its_checkpoints() -> None:
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    torch.manual_seed(0)
    model = build_run_model(tiny_config())
    ours = WeightAverage(model, decay=0.97)
    reference = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.97), use_buffers=True)
    for _ in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ours.update(model)
        reference.update_parameters(model)
    assert ours.state_dict().keys() == reference.state_dict().keys()
    for key, value in reference.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    # A checkpoint of the old average (an AveragedModel's state dict) resumes in the new one.
    resumed = WeightAverage(build_run_model(tiny_config()), decay=0.97)
    resumed.load_state_dict(reference.state_dict())
    assert resumed.count == 4
    assert_same_weights(resumed.evaluated(model).state_dict(), reference.module.state_dict())


def test_the_average_of_a_resnet_is_swa_utils_ema_buffers_included() -> None:
    # The RAM has no buffers; a ResNet's BatchNorm running statistics are averaged as well
    # (use_buffers), and its integer step count averaged then truncated, as swa_utils does.
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from ramlab.models.registry import build_model

    torch.manual_seed(0)
    model = build_model("resnet", {"widths": [4], "depths": [1], "strides": [1]}, image_size=(28, 28))
    ours = WeightAverage(model, decay=0.9)
    reference = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    model.train()
    for _ in range(3):
        model(torch.rand(4, 1, 28, 28))  # moves the running statistics
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ours.update(model)
        reference.update_parameters(model)
    averaged = ours.evaluated(model).state_dict()
    buffers = [k for k in averaged if "running_" in k]
    assert buffers and not torch.equal(averaged[buffers[0]], model.state_dict()[buffers[0]])
    for key, value in reference.module.state_dict().items():
        assert torch.equal(averaged[key], value), key


def test_without_an_average_the_model_itself_is_evaluated() -> None:
    model = nn.Linear(1, 1)
    average = WeightAverage(model, decay=0.0)
    average.update(model)
    assert average.evaluated(model) is model and average.state_dict() is None


@pytest.mark.parametrize("decay", [1.0, -0.1])
def test_a_decay_outside_0_1_is_refused(decay: float) -> None:
    with pytest.raises(RamlabError, match=r"ema must be in \[0, 1\)"):
        TrainConfig(ema=decay)


def test_a_run_validates_keeps_and_tests_the_average(fake_mnist, tmp_path) -> None:
    out = tmp_path / "run"
    result = Trainer(tiny_config(ema=0.5, epochs=1), out).fit()
    best, last = load_checkpoint(out / "best.pt"), load_checkpoint(out / "last.pt")
    # After one epoch best.pt holds the average at that epoch's end (last.pt holds both).
    averaged = {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}
    assert_same_weights(best["model"], averaged)
    assert any(not torch.equal(averaged[k], last["model"][k]) for k in averaged)
    # The run's test error is the average's: a finished run's loader reads best.pt.
    _, model = load_run(out)
    test = SceneLoader(load_split("translated60", "test", seed=0, limit=8), batch_size=8)
    tested = evaluate(model, test)
    assert tested.error == result["test_error"]
    # (8 scenes make the error coarse: the loss tells the average from the raw weights)
    assert tested.loss == pytest.approx(result["test_loss"], rel=1e-6)
    raw = build_run_model(RunConfig.load(out / "config.yaml"), torch.device("cpu"))
    raw.load_state_dict(last["model"])
    assert evaluate(raw.eval(), test).loss != pytest.approx(result["test_loss"], rel=1e-6)


def test_resume_with_an_average_is_exact(fake_mnist, tmp_path, monkeypatch) -> None:
    config = tiny_config(ema=0.5, checkpoint_every=2)
    a, b = straight_and_resumed(config, tmp_path, monkeypatch, interrupt_at=6)
    assert_same_weights(weights(a / "best.pt"), weights(b / "best.pt"))
    assert_same_weights(load_checkpoint(a / "last.pt")["ema"], load_checkpoint(b / "last.pt")["ema"])
