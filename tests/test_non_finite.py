"""Non-finite values on purpose: a NaN location, a loss or gradient that becomes NaN, an
infinite option. Each stops with one clear message, keeps the last good checkpoint, and
advises a resume the run accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_trainer import ObjectiveHook, tiny_config

from ramlab.checkpoint import load_checkpoint
from ramlab.cli import main
from ramlab.errors import RamlabError
from ramlab.models.retina import Retina
from ramlab.rewards import parse_reward
from ramlab.runconfig import TrainConfig
from ramlab.trainer import Trainer


def test_a_nan_location_reads_a_defined_glimpse_instead_of_crashing() -> None:
    retina = Retina(glimpse_size=4, scales=2, image_size=(16, 16))
    pyramid = retina.prepare(torch.rand(3, 1, 16, 16))
    nan = float("nan")
    patches = retina.glimpse(pyramid, torch.tensor([[nan, nan], [0.2, nan], [float("inf"), -float("inf")]]))
    assert patches.shape == (3, 2 * 4 * 4) and torch.isfinite(patches).all()


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_huge_learning_rate_stops_with_the_nan_message(fake_mnist, tmp_path, optimizer) -> None:
    config = tiny_config(optimizer=optimizer, lr=1e12, schedule="none", epochs=3)
    with pytest.raises(
        RamlabError, match=r"the loss became nan at epoch 1, step \d+ of 3; stopped\. No checkpoint"
    ):
        Trainer(config, tmp_path / "run").fit()


def test_the_advice_after_a_nan_resumes_with_a_lower_learning_rate(fake_mnist, tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    config = tiny_config(schedule="exponential")
    with monkeypatch.context() as patch:
        ObjectiveHook(patch, at=5, action="nan")  # epoch 2: last.pt of epoch 1 exists
        with pytest.raises(RamlabError) as info:
            Trainer(config, out, command="ramlab train ram --lr 0.01").fit()
    assert f"The last good checkpoint, {out / 'last.pt'}, is kept" in str(info.value)
    # a bare resume of the folder (it keeps the run's settings), with the change
    assert f"ramlab train ram --out {out} --resume --lr 0.001" in str(info.value)
    lower = tiny_config(schedule="exponential", lr=0.001)
    result = Trainer(lower, out, command="ramlab train ram --lr 0.01 --resume --lr 0.001").fit(resume=True)
    assert result["epochs_run"] == 2
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert history[-1]["changed"] == {"lr": [0.01, 0.001]}
    # The schedule went on from epoch 1 at the new rate: 0.001 · 0.97^(steps / 3) at step 6.
    assert load_checkpoint(out / "last.pt")["optimizer"]["param_groups"][0]["lr"] == pytest.approx(
        0.001 * 0.97**2
    )


def test_the_advice_before_any_checkpoint_lowers_the_floor_with_the_rate(tmp_path):
    from ramlab.run_messages import non_finite_message

    said = non_finite_message(
        "the loss became nan", "at epoch 1, step 2 of 3", tmp_path, "x", 1e-3, lr_floor=5e-4
    )
    assert "rerun with a lower rate (e.g. --lr 0.0001 --lr-min 5e-05) or --grad-clip 5;" in said
    said = non_finite_message(
        "the loss became nan", "at epoch 1, step 2 of 3", tmp_path, "x", 1e-3, grad_clip=5
    )
    assert "rerun with a lower rate (e.g. --lr 0.0001) or --grad-clip 1;" in said


@pytest.mark.parametrize(
    ("lr_min", "clip", "advice"),
    [
        (0.005, 0.0, "--resume --lr 0.005 (or --grad-clip 5)"),  # a tenth is under the floor
        (0.01, 5.0, "--resume --grad-clip 1"),  # at the floor already
    ],
)
def test_the_advised_lower_rate_is_one_a_resume_accepts(
    fake_mnist, tmp_path, monkeypatch, lr_min, clip, advice
):
    out = tmp_path / "run"
    config = tiny_config(schedule="exponential", lr=0.01, lr_min=lr_min, grad_clip=clip)
    with monkeypatch.context() as patch:
        ObjectiveHook(patch, at=5, action="nan")
        with pytest.raises(RamlabError) as info:
            Trainer(config, out, command="ramlab train ram").fit()
    assert str(info.value).endswith(f"ramlab train ram --out {out} {advice}")
    if lr_min == 0.005:  # the advice runs: lr 0.005 >= lr_min
        lower = tiny_config(schedule="exponential", lr=0.005, lr_min=lr_min)
        assert Trainer(lower, out).fit(resume=True)["epochs_run"] == 2


@pytest.mark.parametrize("at", [3, 6])  # epoch 1's last step (nothing kept yet); epoch 2's
def test_a_finite_loss_with_a_nan_gradient_never_reaches_a_checkpoint(
    fake_mnist, tmp_path, monkeypatch, at
) -> None:
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        ObjectiveHook(patch, at=at, action="nan_grad")
        with pytest.raises(
            RamlabError,
            match=rf"the weights became non-finite \(the loss was finite\) at epoch {(at - 1) // 3 + 1}, step 3 of 3; stopped",
        ):
            Trainer(tiny_config(epochs=2), out).fit()
    if at == 3:  # stopped before epoch 1's validation: nothing written
        assert not (out / "last.pt").exists() and not (out / "best.pt").exists()
        return
    kept = load_checkpoint(out / "last.pt")  # epoch 1's, untouched
    assert kept["epoch"] == 1 and all(torch.isfinite(t).all() for t in kept["model"].values())
    assert all(torch.isfinite(t).all() for t in load_checkpoint(out / "best.pt")["model"].values())


def test_an_infinite_number_is_refused(capsys) -> None:
    with pytest.raises(RamlabError, match="lr must be a finite number, got inf"):
        TrainConfig(lr=float("inf"))
    with pytest.raises(SystemExit) as stop:  # argparse's, for the flag's value
        main(["train", "ram", "--lr", "inf"])
    assert stop.value.code == 2 and "expected a finite number, got 'inf'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("spec", "why"),
    [("sparse+-1*bbox", "weight of bbox must be a positive finite number, got -1"),
     ("1e309*sparse", "weight of sparse must be a positive finite number, got 1e309"),
     ("sparse+0*infogain", "weight of infogain must be a positive finite number, got 0")],
)  # fmt: skip
def test_reward_weights_must_be_positive_and_finite(spec, why) -> None:
    with pytest.raises(RamlabError, match=why):
        parse_reward(spec)


def test_a_gpu_runs_stop_names_the_first_non_finite_loss_not_the_read_steps() -> None:
    # The flag read at step 3 covers steps 1-3; it quoted step 3's loss, finite (2.5) after a
    # one-off inf at step 2: "the loss became 2.5".
    from ramlab.finite import FiniteCheck

    check = FiniteCheck(torch.device("cuda"), lambda step: f"step {step}", Path("run"), "resume", 1e-3)
    assert not check.every_step
    check.loss(torch.tensor(1.0), 1, now=False)
    check.loss(torch.tensor(float("inf")), 2, now=False)
    with pytest.raises(RamlabError, match=r"the loss became inf by step 3 \(a GPU run"):
        check.loss(torch.tensor(2.5), 3, now=True)
    check.loss(torch.tensor(float("nan")), 4, now=False)  # a new window: the first bad of it
    check.loss(torch.tensor(float("-inf")), 5, now=False)
    with pytest.raises(RamlabError, match=r"the loss became nan by step 6"):
        check.loss(torch.tensor(1.0), 6, now=True)
    check.loss(torch.tensor(1.0), 7, now=True)  # all finite: nothing raised


def test_a_gpu_runs_check_keeps_its_own_copy_of_an_unread_loss() -> None:
    # A compiled step's loss is CUDA-graph memory that the next step's replay overwrites (and
    # reading it after raises): the check kept a view of it until the read step.
    from ramlab.finite import FiniteCheck

    check = FiniteCheck(torch.device("cuda"), lambda step: f"step {step}", Path("run"), "resume", 1e-3)
    output = torch.tensor(float("nan"))  # the graph's output buffer, step 1's loss
    check.loss(output, 1, now=False)
    output.fill_(2.0)  # step 2's replay writes its (finite) loss into the same memory
    with pytest.raises(RamlabError, match=r"the loss became nan by step 2"):
        check.loss(output, 2, now=True)
