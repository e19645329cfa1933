"""Training diagnostics: gradient norms per part, a starved policy made visible, glimpses
in the box per epoch, time to accuracy and window means read from a metrics log."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from test_trainer import tiny_config
from torch import nn

from ramlab.diagnostics import grad_norms, starved_parts
from ramlab.errors import RamlabError
from ramlab.metrics import read_metrics
from ramlab.progress import (
    CurvePoint,
    EarlyStop,
    RunFiles,
    best,
    early_stop_at,
    labelled_run,
    setting_over_resumes,
    time_to,
    train_by_epoch,
    val_by_epoch,
    val_curve,
    window_mean,
)
from ramlab.trainer import Trainer


class TwoParts(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Linear(2, 1, bias=False)
        self.right = nn.Linear(1, 1)
        self.act = nn.ReLU()  # no parameters: not a part


def test_grad_norms_per_part_by_hand() -> None:
    model = TwoParts()
    model.left.weight.grad = torch.tensor([[3.0, 4.0]])  # norm 5
    model.right.weight.grad = torch.tensor([[1.0]])
    model.right.bias.grad = None  # counts as zero
    norms = grad_norms(model)
    assert norms.keys() == {"grad/left", "grad/right"}
    assert norms["grad/left"].item() == pytest.approx(5.0)
    assert norms["grad/right"].item() == pytest.approx(1.0)
    model.right.weight.grad = None
    assert grad_norms(model)["grad/right"].item() == 0.0
    assert starved_parts({"grad/left": 2.5, "grad/right": 0.0}) == ["right"]


def test_a_policy_without_gradient_is_flagged(fake_mnist, tmp_path, capsys) -> None:
    config = tiny_config()
    # No REINFORCE term: nothing else reaches the location policy (its input is detached).
    starved = dataclasses.replace(
        config, model_config=dataclasses.replace(config.model_config, reinforce_weight=0.0)
    )
    Trainer(starved, tmp_path / "starved").fit()
    lines = read_metrics(tmp_path / "starved" / "metrics.jsonl")
    norms = [line["grad/policy"] for line in lines if "grad/policy" in line]
    assert norms and all(norm == 0.0 for norm in norms)  # logged, and zero
    assert [line.get("warning/no_gradient") for line in lines if "val/error" in line] == [
        ["policy"],
        ["policy"],
    ]
    assert "no gradient reached policy" in capsys.readouterr().err

    Trainer(config, tmp_path / "healthy").fit()
    lines = read_metrics(tmp_path / "healthy" / "metrics.jsonl")
    train = [line for line in lines if "grad/policy" in line]
    assert train and all(line["grad/policy"] > 0 for line in train)
    assert {"grad/glimpse", "grad/core", "grad/classifier", "grad/baseline"} <= train[0].keys()
    assert not any("warning/no_gradient" in line for line in lines)
    assert "no gradient" not in capsys.readouterr().err


def test_validation_lines_carry_time_rollouts_and_glimpses_in_the_box(fake_mnist, tmp_path) -> None:
    config = tiny_config()
    config = dataclasses.replace(config, model_config=dataclasses.replace(config.model_config, rollouts=3))
    result = Trainer(config, tmp_path / "run").fit()
    vals = [line for line in read_metrics(tmp_path / "run" / "metrics.jsonl") if "val/error" in line]
    # 24 training scenes x 3 rollouts per epoch.
    assert [line["train/rollouts"] for line in vals] == [72, 144]
    assert result["rollouts_seen"] == 144
    assert vals[0]["perf/train_seconds"] < vals[1]["perf/train_seconds"]
    for line in vals:
        assert len(line["val/in_box_per_step"]) == 2
        assert all(0.0 <= share <= 100.0 for share in line["val/in_box_per_step"])
        assert line["val/in_box"] == pytest.approx(sum(line["val/in_box_per_step"]) / 2)
        assert 0.0 < line["val/glimpse_distance"] <= math.hypot(60, 60)  # two glimpses, 60x60 canvas
    assert result["test_protocol"] == "policy mean, one rollout"


def test_time_to_accuracy_from_hand_written_records() -> None:
    records = [
        {"step": 10, "train/loss": 1.0},
        {"step": 10, "epoch": 1, "val/error": 9.0, "perf/train_seconds": 60.0, "train/rollouts": 1000},
        {"step": 20, "epoch": 2, "val/error": 4.0, "perf/train_seconds": 120.0, "train/rollouts": 2000},
        {"step": 30, "epoch": 3, "val/error": 4.5, "perf/train_seconds": 180.0, "train/rollouts": 3000},
        {"step": 40, "epoch": 4, "val/error": 2.0, "perf/train_seconds": 240.0, "train/rollouts": 4000},
    ]
    curve = val_curve(records)
    assert [p.error for p in curve] == [9.0, 4.0, 4.5, 2.0]
    assert time_to(curve, 4.5) == CurvePoint(epoch=2, seconds=120.0, rollouts=2000, error=4.0)
    assert time_to(curve, 2.0).seconds == 240.0
    assert time_to(curve, 1.0) is None
    assert best(curve).epoch == 4
    # Logs older than the timing fields still give a curve, without time.
    assert val_curve([{"epoch": 1, "val/error": 3.0}]) == [CurvePoint(1, None, None, 3.0)]


def test_early_stop_at_replays_the_trainers_rule_on_a_curve() -> None:
    curve = {1: 9.0, 2: 5.0, 3: 5.0, 4: 6.0, 5: 4.0, 6: 7.0, 7: 8.0}
    # Patience 2: epoch 3 ties 5.0 (not better), so 2 epochs without better after epoch 4.
    assert early_stop_at(curve, 2, 100) == EarlyStop(stop=4, best_epoch=2, best_error=5.0)
    # Patience 3: epoch 5 is better, then 6 and 7 are not; the curve ends before a third: unknown.
    assert early_stop_at(curve, 3, 100) == EarlyStop(stop=None, best_epoch=5, best_error=4.0)
    assert early_stop_at(curve, 2, 3) == EarlyStop(stop=3, best_epoch=2, best_error=5.0)  # epochs first
    assert early_stop_at(curve, 0, 6) == EarlyStop(stop=6, best_epoch=5, best_error=4.0)  # 0: no early stop
    assert early_stop_at({}, 2, 10) is None


def test_window_means_from_hand_written_records() -> None:
    records = [
        {"step": 1, "epoch": 0.25, "train/error": 10.0},
        {"step": 2, "epoch": 0.75, "train/error": 20.0},
        {"step": 2, "epoch": 1.0, "train/error": 30.0},  # epoch 1's last step
        {"step": 3, "epoch": 1, "val/error": 9.0, "val/in_box": 40.0, "train/lr": 1e-3},
        {"step": 4, "epoch": 1.5, "train/error": 6.0},
        {"step": 5, "epoch": 2, "val/error": 5.0},  # no in_box on this line
        {"step": 6, "epoch": 3, "val/error": 3.5, "val/in_box": 50.0},
        {"step": 6, "epoch": 3, "val/error": 4.0, "val/in_box": 60.0},  # a repeated epoch: the last wins
    ]
    errors = val_by_epoch(records)
    assert errors == {1: 9.0, 2: 5.0, 3: 4.0}
    assert val_by_epoch(records, "val/in_box") == {1: 40.0, 3: 60.0}
    # Steps logged while epoch 1 ran (fractional epochs up to 1.0) belong to epoch 1, as validation numbers it.
    assert train_by_epoch(records) == {1: 20.0, 2: 6.0}  # (10 + 20 + 30) / 3
    grads = [{"step": 1, "epoch": 0.5, "grad/core": 1.0}, {"step": 2, "epoch": 1.0, "grad/core": 2.0},
             {"step": 3, "epoch": 1.5, "train/error": 4.0}, {"step": 4, "epoch": 2.0, "grad/core": 0.25}]  # fmt: skip
    assert train_by_epoch(grads, "grad/core") == {1: 1.5, 2: 0.25}  # a line without the key adds nothing
    assert train_by_epoch(records, "grad/core") == {}
    assert window_mean(errors, 1, 3) == 6.0  # (9 + 5 + 4) / 3
    assert window_mean(errors, 2, 2) == 5.0
    assert window_mean(val_by_epoch(records, "val/in_box"), 1, 3) == 50.0  # epoch 2 skipped: (40 + 60) / 2
    assert window_mean(errors, 4, 9) is None
    assert labelled_run("seed 0=results/recipes/translated60-val.jsonl") == (
        "seed 0",
        Path("results/recipes/translated60-val.jsonl"),
    )
    assert labelled_run("results/recipes/tuning/t60-cos150-val.jsonl")[0] == "t60-cos150"
    assert labelled_run("runs/tune/t60-aug")[0] == "t60-aug"


def test_run_files_in_a_run_directory_and_beside_a_committed_curve(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    (run / "config.yaml").write_text("data: mnist\n")
    files = RunFiles.find(run)
    assert (files.curve, files.config, files.history) == (run / "metrics.jsonl", run / "config.yaml", None)

    # results/recipes/tuning keeps NAME-val.jsonl, NAME-config.yaml, NAME-history.jsonl ...
    for name in ("a-val.jsonl", "a-config.yaml", "a-history.jsonl", "a.json"):
        (tmp_path / name).write_text("")
    files = RunFiles.find(tmp_path / "a-val.jsonl")
    assert files == RunFiles(
        tmp_path / "a-val.jsonl", tmp_path / "a-config.yaml", tmp_path / "a-history.jsonl"
    )
    # ... and results/recipes keeps DATASET-val.jsonl beside the result DATASET.json (its config).
    (tmp_path / "b-val.jsonl").write_text("")
    (tmp_path / "b.json").write_text("")
    assert RunFiles.find(tmp_path / "b-val.jsonl") == RunFiles(
        tmp_path / "b-val.jsonl", tmp_path / "b.json", None
    )
    # ... and a run that did not finish as NAME-val-partial.jsonl, its files beside it.
    for name in ("p-val-partial.jsonl", "p-config.yaml", "p-history.jsonl"):
        (tmp_path / name).write_text("")
    assert RunFiles.find(tmp_path / "p-val-partial.jsonl") == RunFiles(
        tmp_path / "p-val-partial.jsonl", tmp_path / "p-config.yaml", tmp_path / "p-history.jsonl"
    )
    assert labelled_run(str(tmp_path / "p-val-partial.jsonl"))[0] == "p"
    # No curve: a run directory before its first line, or a path that is not there.
    (tmp_path / "unstarted").mkdir()
    with pytest.raises(RamlabError, match=r"unstarted has no metrics\.jsonl"):
        RunFiles.find(tmp_path / "unstarted")
    with pytest.raises(RamlabError, match=r"c-val\.jsonl: no such run"):
        RunFiles.find(tmp_path / "c-val.jsonl")


def test_setting_over_resumes_reads_each_resume_change() -> None:
    history = [
        {"command": "a", "changed": {"time_budget": [100.0, 90.0]}},
        {"command": "b", "changed": {"threads": [1, 2], "test": [False, True]}},
        {"command": "c", "changed": {"threads": [2, 4]}},
    ]
    # The config holds the last value; the first change's old value is where the run began.
    assert setting_over_resumes(4, history, "threads") == [1, 2, 4]
    assert setting_over_resumes(90.0, history, "time_budget") == [100.0, 90.0]
    assert setting_over_resumes(3, history, "lr") == [3]
    assert setting_over_resumes(None, [], "threads") == [None]
