"""Learning-rate schedules (hand-computed factors), the plateau schedule, early stopping and
its exact resume."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from test_trainer import tiny_config, weights

from ramlab import trainer as trainer_module
from ramlab.errors import RamlabError
from ramlab.evaluate import Evaluation
from ramlab.metrics import read_metrics
from ramlab.optim import Schedule, lr_factor, make_optimizer
from ramlab.progress import EarlyStop, early_stop_at
from ramlab.runconfig import TrainConfig
from ramlab.trainer import Trainer


def factor(kind: str, step: int, **cfg) -> float:
    options = {"lr": 1e-3, "lr_decay": 0.5, "lr_min": 1e-4, **cfg}
    return lr_factor(kind, step, total_steps=100, steps_per_epoch=10, cfg=SimpleNamespace(**options))


def test_exponential_decays_per_epoch_smoothly_down_to_the_floor() -> None:
    assert factor("exponential", 0) == 1.0
    assert factor("exponential", 10) == pytest.approx(0.5)  # one epoch: x lr_decay
    assert factor("exponential", 5) == pytest.approx(math.sqrt(0.5))  # half an epoch
    assert factor("exponential", 30) == pytest.approx(0.125)
    assert factor("exponential", 40) == pytest.approx(0.1)  # 0.0625 < floor 1e-4 / 1e-3


def test_cosine_and_step_factors() -> None:
    assert factor("cosine", 0) == 1.0
    assert factor("cosine", 50) == pytest.approx(0.5)
    assert factor("cosine", 100) == pytest.approx(0.0, abs=1e-12)
    assert [factor("step", s) for s in (49, 50, 74, 75)] == pytest.approx([1.0, 0.1, 0.1, 0.01])
    assert factor("none", 77) == 1.0


def test_plateau_lowers_the_rate_after_patience_epochs_and_stops_at_the_floor() -> None:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    cfg = TrainConfig(schedule="plateau", lr=1.0, plateau_factor=0.5, plateau_patience=1, lr_min=0.3)
    schedule = Schedule(optimizer, cfg, steps_per_epoch=5)
    rates = []
    for error in (10.0, 9.0, 9.0, 9.0, 8.0, 8.0, 8.0, 8.0):
        for _ in range(5):
            schedule.after_step()  # no effect per step
        schedule.after_epoch(error)
        rates.append(schedule.lr)
    # Better, better, same (1 bad epoch: patience 1 not exceeded), same (2: halve),
    # better, same, same (halve to 0.25 -> floor 0.3), same.
    assert rates == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.3, 0.3])

    # Restored as the trainer does: a new optimizer at the configured rate, its saved state,
    # then the schedule's. The rate and the plateau's count both carry on.
    optimizer2 = torch.optim.SGD([parameter], lr=1.0)
    restored = Schedule(optimizer2, cfg, steps_per_epoch=5)
    optimizer2.load_state_dict(optimizer.state_dict())
    restored.load_state_dict(schedule.state_dict())
    assert restored.state_dict() == schedule.state_dict()
    assert restored.lr == pytest.approx(0.3)
    restored.after_epoch(8.0)
    assert restored.lr == pytest.approx(0.3)  # at the floor: no lower


def scaled_groups() -> list[dict]:
    return [
        {"params": [torch.nn.Parameter(torch.zeros(1))]},
        {"params": [torch.nn.Parameter(torch.zeros(1))], "lr_scale": 0.1},
    ]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_groups_lr_scale_holds_through_the_exponential_schedule_and_its_resume(optimizer) -> None:
    cfg = TrainConfig(optimizer=optimizer, schedule="exponential", lr=1.0, lr_decay=0.5, lr_min=0.2)
    opt = make_optimizer(scaled_groups(), cfg)
    schedule = Schedule(opt, cfg, steps_per_epoch=2)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1.0, 0.1])
    for _ in range(2):  # one epoch: x0.5
        schedule.after_step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5, 0.05])
    assert schedule.lr == pytest.approx(0.5)  # the main group's

    # A resume at a new initial rate (--resume --lr 2) goes on with the scale kept.
    resumed_cfg = TrainConfig(optimizer=optimizer, schedule="exponential", lr=2.0, lr_decay=0.5, lr_min=0.2)
    resumed = make_optimizer(scaled_groups(), resumed_cfg)
    resumed.load_state_dict(opt.state_dict())
    restored = Schedule(resumed, resumed_cfg, steps_per_epoch=2)
    restored.load_state_dict(schedule.state_dict())
    assert [g["lr"] for g in resumed.param_groups] == pytest.approx([1.0, 0.1])
    for _ in range(6):  # three more epochs: 2 x 0.5^4 = 0.125, under the floor 0.2 (x0.1 for the policy)
        restored.after_step()
    assert [g["lr"] for g in resumed.param_groups] == pytest.approx([0.2, 0.02])


def test_a_groups_lr_scale_holds_through_the_plateau_schedule_and_its_floor() -> None:
    cfg = TrainConfig(schedule="plateau", lr=1.0, plateau_factor=0.5, plateau_patience=1, lr_min=0.3)
    opt = make_optimizer(scaled_groups(), cfg)
    schedule = Schedule(opt, cfg, steps_per_epoch=1)
    rates = []
    for _ in range(5):  # never better: halve every second epoch, down to the floor (x0.1)
        schedule.after_epoch(10.0)
        rates += [g["lr"] for g in opt.param_groups]
    assert rates == pytest.approx([1.0, 0.1, 1.0, 0.1, 0.5, 0.05, 0.5, 0.05, 0.3, 0.03])


def test_schedule_options_are_checked() -> None:
    with pytest.raises(RamlabError, match="schedule must be one of none, cosine, step, exponential, plateau"):
        TrainConfig(schedule="linear")
    with pytest.raises(RamlabError, match="lr_decay"):
        TrainConfig(lr_decay=1.5)
    with pytest.raises(RamlabError, match="lr_min"):
        TrainConfig(schedule="exponential", lr=1e-3, lr_min=1e-2)
    with pytest.raises(RamlabError, match="early_stop"):
        TrainConfig(early_stop=-1)
    # before torch.optim's own ValueError (a traceback, after the run folder was written)
    with pytest.raises(
        RamlabError, match=r"weight_decay must be >= 0 and momentum in \[0, 1\); got -0.1, 0.9"
    ):
        TrainConfig(weight_decay=-0.1)
    with pytest.raises(RamlabError, match=r"momentum in \[0, 1\); got 0.0, 5"):
        TrainConfig(optimizer="sgd", momentum=5)


def scripted_validation(monkeypatch, errors: list[float], *, then=None) -> None:
    """Make the trainer's validation return `errors` epoch after epoch, then raise `then`
    (an interruption) or return 50%."""
    calls = iter(errors)

    def fake(model, loader, **kwargs):
        error = next(calls, None)
        if error is None and then is not None:
            raise then
        error = 50.0 if error is None else error
        return Evaluation(error=error, per_step_error=[error], loss=1.0, count=8)

    monkeypatch.setattr(trainer_module, "evaluate", fake)


def test_early_stopping_after_patience_epochs_without_improvement(fake_mnist, tmp_path, monkeypatch) -> None:
    # Epoch errors 40, 30, 35, 31, 20: best at epoch 2, two epochs without better -> stop after 4.
    scripted_validation(monkeypatch, [40.0, 30.0, 35.0, 31.0, 20.0])
    config = tiny_config(epochs=6, early_stop=2, test=False)
    result = Trainer(config, tmp_path / "run").fit()
    vals = [
        line["val/error"] for line in read_metrics(tmp_path / "run" / "metrics.jsonl") if "val/error" in line
    ]
    assert vals == [40.0, 30.0, 35.0, 31.0]
    assert result["epochs_run"] == 4 and result["stopped_early"] is True
    assert result["best_epoch"] == 2 and result["val_error"] == 30.0
    assert result["test_error"] is None  # test false: the test split is not read
    # benchmarks/compare_curves.py --early-stop replays this rule on saved curves: the same answer.
    scripted = dict(enumerate([40.0, 30.0, 35.0, 31.0, 20.0], start=1))
    replayed = early_stop_at(scripted, patience=2, epochs=6)
    assert replayed == EarlyStop(
        stop=result["epochs_run"], best_epoch=result["best_epoch"], best_error=result["val_error"]
    )


def test_early_stopping_resumes_exactly(fake_mnist, tmp_path, monkeypatch) -> None:
    config = tiny_config(epochs=6, early_stop=2, test=False)
    errors = [40.0, 30.0, 35.0, 31.0, 20.0]
    scripted_validation(monkeypatch, errors)
    Trainer(config, tmp_path / "whole").fit()

    # Interrupted while validating epoch 3 (last.pt holds epoch 2), then resumed.
    scripted_validation(monkeypatch, errors[:2], then=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, tmp_path / "cut").fit()
    scripted_validation(monkeypatch, errors[2:])
    result = Trainer(config, tmp_path / "cut").fit(resume=True)
    assert result["epochs_run"] == 4 and result["best_epoch"] == 2
    whole, cut = weights(tmp_path / "whole" / "last.pt"), weights(tmp_path / "cut" / "last.pt")
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    best_whole, best_cut = weights(tmp_path / "whole" / "best.pt"), weights(tmp_path / "cut" / "best.pt")
    assert best_whole.keys() == best_cut.keys() and all(
        torch.equal(best_whole[k], best_cut[k]) for k in best_whole
    )


def test_a_time_budget_ends_training_at_the_end_of_an_epoch(fake_mnist, tmp_path, monkeypatch) -> None:
    # A fake clock that moves 20 s at every reading: the 3-minute budget runs out mid-run.
    clock = iter(range(0, 10**6, 20))
    monkeypatch.setattr(trainer_module.time, "perf_counter", lambda: float(next(clock)))
    result = Trainer(tiny_config(epochs=20, time_budget=3.0, test=False), tmp_path / "run").fit()
    seconds = [
        line["perf/train_seconds"]
        for line in read_metrics(tmp_path / "run" / "metrics.jsonl")
        if "val/error" in line
    ]
    # The epoch that crossed 180 s was finished, and none began after it.
    assert seconds[-1] >= 180 > seconds[-2]
    assert result["epochs_run"] == len(seconds) < 20 and result["stop_reason"] == "time_budget"


def test_the_logged_rate_is_the_one_each_step_took(fake_mnist, tmp_path) -> None:
    # Exponential at 0.5 an epoch over 3 steps an epoch: step s takes 0.01 * 0.5^(s/3). The
    # epoch's line carries its last step's rate; the plateau schedule's stays 0.01 all epoch.
    Trainer(tiny_config(epochs=2, schedule="exponential", lr_decay=0.5, test=False), tmp_path / "exp").fit()
    lines = read_metrics(tmp_path / "exp" / "metrics.jsonl")
    steps = [line["train/lr"] for line in lines if "train/loss" in line]
    assert steps == pytest.approx([0.01 * 0.5 ** (s / 3) for s in range(6)])
    epochs = [line["train/lr"] for line in lines if "val/error" in line]
    assert epochs == pytest.approx([0.01 * 0.5 ** (2 / 3), 0.01 * 0.5 ** (5 / 3)])
    Trainer(tiny_config(epochs=1, schedule="plateau", test=False), tmp_path / "plateau").fit()
    rates = [line["train/lr"] for line in read_metrics(tmp_path / "plateau" / "metrics.jsonl")]
    assert rates == pytest.approx([0.01] * 4)


@pytest.mark.parametrize(
    ("schedule", "factors"),
    [
        # over the run's 6 steps (2 epochs of 3): step s takes (1 + cos(pi s / 6)) / 2
        ("cosine", [1.0, (2 + math.sqrt(3)) / 4, 0.75, 0.5, 0.25, (2 - math.sqrt(3)) / 4]),
        ("step", [1.0, 1.0, 1.0, 0.1, 0.01, 0.01]),  # x0.1 from step 3 (50%), again from 4 (75%)
    ],
)
def test_the_run_length_schedules_span_every_step_of_the_run(fake_mnist, tmp_path, schedule, factors):
    # The schedule's length is epochs x steps an epoch; the pure factor is tested above with
    # the total given by hand.
    Trainer(tiny_config(epochs=2, schedule=schedule, test=False), tmp_path / schedule).fit()
    lines = read_metrics(tmp_path / schedule / "metrics.jsonl")
    assert [line["train/lr"] for line in lines if "train/loss" in line] == pytest.approx(
        [0.01 * f for f in factors]
    )


def test_a_resume_that_trains_nothing_says_why_and_keeps_the_result(
    fake_mnist, tmp_path, monkeypatch, capsys
):
    # Best at epoch 2, stopped after 4 (patience 2); more epochs do not lift the early stop.
    scripted_validation(monkeypatch, [40.0, 30.0, 35.0, 31.0])
    first = Trainer(
        tiny_config(epochs=6, early_stop=2, test=False, schedule="exponential"), tmp_path / "run"
    ).fit()
    capsys.readouterr()
    again = Trainer(
        tiny_config(epochs=8, early_stop=2, test=False, schedule="exponential"), tmp_path / "run"
    ).fit(resume=True)
    assert again == first
    assert capsys.readouterr().err.endswith(
        f"note: {tmp_path / 'run'} trained nothing more (it is still early-stopped; raise "
        "--early-stop, or give 0, to train on); its result.json stands as it was\n"
    )


@pytest.mark.parametrize("clip", [1e-3, 0.0])
def test_gradient_clipping_bounds_the_steps_global_norm(fake_mnist, tmp_path, clip) -> None:
    # One step of plain SGD at rate 1 moves the weights by the (clipped) gradient itself.
    from ramlab.runconfig import build_run_model

    config = tiny_config(
        epochs=1,
        train_limit=8,
        optimizer="sgd",
        momentum=0.0,
        lr=1.0,
        schedule="none",
        grad_clip=clip,
        test=False,
    )
    torch.manual_seed(config.train.seed)  # as fit() builds the model
    before = build_run_model(config).state_dict()
    Trainer(config, tmp_path / "run").fit()
    after = weights(tmp_path / "run" / "last.pt")
    moved = torch.cat([(after[name] - before[name]).flatten() for name in before]).norm().item()
    if clip:
        assert moved == pytest.approx(clip, rel=1e-3)
    else:
        assert moved > 100 * 1e-3  # unclipped, the step is far longer
