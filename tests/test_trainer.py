"""The trainer on tiny synthetic MNIST: what a run writes, exact resume, NaN stops,
checkpoint safety and refusing to overwrite a run."""

from __future__ import annotations

import json
import os

import pytest
import tiny
import torch

from ramlab import trainer as trainer_module
from ramlab.checkpoint import load_checkpoint
from ramlab.config import load_yaml
from ramlab.errors import RamlabError
from ramlab.finite import FiniteCheck
from ramlab.metrics import read_metrics
from ramlab.models.base import Objective
from ramlab.models.ram import RAM, RAMConfig
from ramlab.progress import train_by_epoch
from ramlab.run_data import fresh_train_loader
from ramlab.runconfig import RunConfig, TrainConfig
from ramlab.trainer import Trainer

TINY_RAM = RAMConfig(**tiny.TINY_RAM, glimpses=2, reward="sparse+infogain")


def tiny_config(**train) -> RunConfig:
    options = {
        "epochs": 2,
        "batch_size": 8,
        "train_limit": 24,  # 3 steps per epoch
        "eval_limit": 8,
        "lr": 0.01,
        "device": "cpu",
        "progress": False,
        "log_every": 1,
        "threads": 1,  # tiny tensors: one thread is fastest, and the test machine is shared
        **train,
    }
    return RunConfig(model="ram", data="translated60", train=TrainConfig(**options), model_config=TINY_RAM)


def tiny_params() -> int:
    """The tiny RAM's parameter count, layer by layer (weights + biases)."""
    k, g, what, where, hidden = 2, 8, 8, 4, 12
    return (
        (k * g * g + 1) * what  # glimpse net: what
        + (2 + 1) * where  # where
        + (what + where + 1) * hidden  # fusion to g_t
        + (hidden + hidden + 1) * hidden  # ReLU RNN core on [g_t, h_{t-1}]
        + (hidden + 1) * 2  # policy mean
        + (hidden + 1) * 10  # classifier
        + (hidden + 1) * 1  # baseline
    )


def weights(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


class ObjectiveHook:
    """Wraps RAM.objective to act at training step `at` (1-based): interrupt (a
    KeyboardInterrupt raised there), give NaN, a finite loss with a NaN gradient
    ("nan_grad"), or send `signals` to this process."""

    def __init__(self, monkeypatch, *, at: int, action: str, signals: tuple[int, ...] = ()) -> None:
        self.calls, self.at, self.action = 0, at, action
        original = RAM.objective

        def objective(model, out, labels, bboxes) -> Objective:
            self.calls += 1
            result = original(model, out, labels, bboxes)
            if self.calls == self.at:
                if self.action == "interrupt":
                    raise KeyboardInterrupt
                if self.action == "signal":
                    for signum in signals:
                        os.kill(os.getpid(), signum)
                    return result
                if self.action == "nan_grad":  # a finite loss whose gradient is NaN: d/dw sqrt(w - w)
                    weight = next(model.parameters())
                    return Objective(
                        loss=result.loss + 0.0 * torch.sqrt(weight - weight).sum(), metrics=result.metrics
                    )
                return Objective(loss=result.loss * float("nan"), metrics=result.metrics)
            return result

        monkeypatch.setattr(RAM, "objective", objective)


def straight_and_resumed(config: RunConfig, tmp_path, monkeypatch, *, interrupt_at: int):
    """Train `config` straight through into tmp_path/a, and into tmp_path/b interrupted at
    training step `interrupt_at` then resumed; returns the two run folders."""
    Trainer(config, tmp_path / "a").fit()
    with monkeypatch.context() as patch:
        ObjectiveHook(patch, at=interrupt_at, action="interrupt")
        with pytest.raises(KeyboardInterrupt):
            Trainer(config, tmp_path / "b").fit()
    Trainer(config, tmp_path / "b").fit(resume=True)
    return tmp_path / "a", tmp_path / "b"


def test_a_run_describes_itself(fake_mnist, tmp_path) -> None:
    out = tmp_path / "run"
    result = Trainer(tiny_config(), out).fit()

    assert RunConfig.from_dict(load_yaml(out / "config.yaml")) == tiny_config()
    saved = json.loads((out / "result.json").read_text())
    assert saved == result
    for key in ("test_error", "val_error", "per_glimpse_test_error", "params", "epochs", "train_seconds"):
        assert key in saved, key
    assert saved["epochs"] == 2
    assert saved["params"] == tiny_params()
    assert saved["train_seconds"] > 0
    assert len(saved["per_glimpse_test_error"]) == TINY_RAM.glimpses
    assert saved["per_glimpse_test_error"][-1] == saved["test_error"]
    # Errors are percentages of the 8 test and 8 validation scenes (eval_limit).
    assert saved["test_count"] == 8
    for error in [*saved["per_glimpse_test_error"], saved["val_error"]]:
        assert error * 8 / 100 == pytest.approx(round(error * 8 / 100))

    lines = read_metrics(out / "metrics.jsonl")
    keys = set().union(*lines)
    for key in keys - {"step", "epoch"}:
        assert "/" in key, key
    for key in ("train/loss", "train/error", "loss/classification", "loss/reinforce", "loss/baseline"):
        assert key in keys, key
    assert {"policy/reward", "val/error", "val/per_step_error"} <= keys
    assert [line["step"] for line in lines if "train/loss" in line] == [1, 2, 3, 4, 5, 6]
    # A training line's epoch is how much is done after its step (3 steps an epoch), so each
    # falls in its own epoch as `progress.train_by_epoch` counts them.
    epochs = [line["epoch"] for line in lines if "train/loss" in line]
    assert epochs == pytest.approx([1 / 3, 2 / 3, 1, 4 / 3, 5 / 3, 2])
    assert sorted(train_by_epoch(lines, "train/loss")) == [1, 2]
    validations = [line for line in lines if "val/error" in line]
    assert [(line["step"], line["epoch"]) for line in validations] == [(3, 1), (6, 2)]
    val_errors = [line["val/error"] for line in validations]
    assert saved["val_error"] == min(val_errors)
    assert saved["best_epoch"] == 1 + val_errors.index(min(val_errors))

    # Checkpoints hold only tensors and plain data: they load with weights_only=True.
    last = torch.load(out / "last.pt", weights_only=True)
    best = torch.load(out / "best.pt", weights_only=True)
    assert (last["epoch"], last["step_in_epoch"], last["global_step"]) == (2, 0, 6)
    assert {"config", "model", "optimizer", "schedule", "generator"} <= last.keys()
    assert RunConfig.from_dict(best["config"]) == tiny_config()
    assert best["val_error"] == saved["val_error"]
    assert best["epoch"] == saved["best_epoch"]


def test_the_result_names_the_commit_the_run_started_from(fake_mnist, tmp_path, monkeypatch) -> None:
    tree = {"commit": "aaa111"}
    save = trainer_module.save_checkpoint

    def save_then_move_on(*args, **kwargs):  # the tree moves on while the run trains
        tree["commit"] = "bbb222"
        return save(*args, **kwargs)

    monkeypatch.setattr("ramlab.provenance.git_commit", lambda: tree["commit"])
    monkeypatch.setattr(trainer_module, "save_checkpoint", save_then_move_on)
    assert Trainer(tiny_config(epochs=1), tmp_path / "run").fit()["commit"] == "aaa111"
    assert tree["commit"] == "bbb222"


@pytest.mark.parametrize(
    ("interrupt_at", "checkpoint_every", "fresh_scenes"),
    [
        (6, 2, False),  # last.pt after step 4 (epoch 2, 1 of 3 steps done): step 5 is redone
        (4, 0, False),  # last.pt from the end of epoch 1 only: the first step of epoch 2 is lost
        (6, 2, True),  # epoch 2 trains on its own scenes, rebuilt on resume
    ],
)
def test_resume_ends_with_the_weights_of_an_uninterrupted_run(
    fake_mnist, tmp_path, monkeypatch, interrupt_at: int, checkpoint_every: int, fresh_scenes: bool
) -> None:
    config = tiny_config(checkpoint_every=checkpoint_every, fresh_scenes=fresh_scenes)
    Trainer(config, tmp_path / "a").fit()

    with monkeypatch.context() as patch:
        hook = ObjectiveHook(patch, at=interrupt_at, action="interrupt")
        with pytest.raises(KeyboardInterrupt):
            Trainer(config, tmp_path / "b").fit()
        assert hook.calls == interrupt_at
    assert not (tmp_path / "b" / "result.json").exists()
    state = load_checkpoint(tmp_path / "b" / "last.pt")
    assert state["global_step"] == (4 if checkpoint_every else 3)
    assert state["step_in_epoch"] == (1 if checkpoint_every else 0)

    result = Trainer(config, tmp_path / "b").fit(resume=True)
    assert_same_weights(weights(tmp_path / "a" / "last.pt"), weights(tmp_path / "b" / "last.pt"))
    assert_same_weights(weights(tmp_path / "a" / "best.pt"), weights(tmp_path / "b" / "best.pt"))
    uninterrupted = json.loads((tmp_path / "a" / "result.json").read_text())
    for key in ("test_error", "val_error", "per_glimpse_test_error", "steps", "best_epoch"):
        assert result[key] == uninterrupted[key], key

    # The log of the resumed run is the uninterrupted one (timings aside): no repeated or
    # missing steps, the same losses, rewards and validation errors.
    def log(run: str) -> list[dict]:
        lines = read_metrics(tmp_path / run / "metrics.jsonl")
        return [{k: v for k, v in line.items() if not k.startswith("perf/")} for line in lines]

    assert log("b") == log("a")


def test_a_gpu_runs_sampling_generator_resumes_where_it_stopped(fake_mnist, tmp_path, monkeypatch) -> None:
    # On a GPU the rollouts draw from a generator of their own, saved in last.pt and restored
    # mid-epoch (here on a CPU, the same code path): interrupted at step 5 (epoch 2, step 2,
    # a checkpoint every step), the resumed run ends with the uninterrupted one's weights.
    config = tiny_config(checkpoint_every=1)
    Trainer(config, tmp_path / "cpu").fit()  # the CPU's path: one generator for order and draws
    monkeypatch.setattr(Trainer, "_samples_from_epoch_generator", property(lambda self: False))
    a, b = straight_and_resumed(config, tmp_path, monkeypatch, interrupt_at=5)
    assert load_checkpoint(b / "last.pt")["sample_generator"] is not None
    assert_same_weights(weights(a / "last.pt"), weights(b / "last.pt"))
    # The draws were the generator's own (the weights differ from the CPU path's).
    own, shared = weights(a / "last.pt"), weights(tmp_path / "cpu" / "last.pt")
    assert any(not torch.equal(own[name], shared[name]) for name in own)


def test_a_gpu_run_resumed_on_a_cpu_drops_its_sampling_generators_state(fake_mnist, tmp_path, monkeypatch):
    # A resume may change the device. On the CPU the epoch's generator draws the samples, and
    # the GPU generator's state of the first checkpoint was written again into every later
    # one: a second resume back on the GPU, within the epoch, replayed stale draws.
    config, out = tiny_config(checkpoint_every=1), tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_samples_from_epoch_generator", property(lambda self: False))
        ObjectiveHook(patch, at=5, action="interrupt")  # epoch 2, step 2: mid-epoch
        with pytest.raises(KeyboardInterrupt):
            Trainer(config, out).fit()
    assert load_checkpoint(out / "last.pt")["sample_generator"] is not None
    with monkeypatch.context() as patch:
        ObjectiveHook(patch, at=2, action="interrupt")  # one step on the CPU path, checkpointed
        with pytest.raises(KeyboardInterrupt):
            Trainer(config, out).fit(resume=True)
    state = load_checkpoint(out / "last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (1, 2) and state["sample_generator"] is None


def test_fresh_scenes_move_the_digits_but_keep_them(fake_mnist) -> None:
    config, cpu = tiny_config(fresh_scenes=True), torch.device("cpu")
    first, second = fresh_train_loader(config, 1, cpu), fresh_train_loader(config, 2, cpu)
    assert torch.equal(first.labels, second.labels)  # the same digits, in the same order
    assert not torch.equal(first.bboxes, second.bboxes)  # at other places
    again = fresh_train_loader(config, 1, cpu)
    assert torch.equal(first.images, again.images)  # and epoch e's scenes are reproducible


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(fake_mnist, tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    ObjectiveHook(monkeypatch, at=5, action="nan")  # epoch 2, second step
    with pytest.raises(RamlabError, match=r"loss became nan at epoch 2, step \d+ of \d+; stopped") as info:
        Trainer(tiny_config(), out).fit()
    assert str(out) in str(info.value)
    assert not (out / "result.json").exists()
    state = load_checkpoint(out / "last.pt")
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (1, 0, 3)
    for name, tensor in state["model"].items():
        assert torch.isfinite(tensor).all(), name
    assert load_checkpoint(out / "best.pt")["epoch"] == 1
    # No tensor was left half-written: no temp files beside the checkpoints.
    assert sorted(p.name for p in out.iterdir() if p.name != ".lock") == [
        "best.pt",
        "config.yaml",
        "last.pt",
        "metrics.jsonl",
    ]


def test_a_gpu_run_reads_its_finite_flag_at_logged_steps(fake_mnist, tmp_path, monkeypatch) -> None:
    # On a GPU the per-step check would wait for the device: steps accumulate a flag that is
    # read at logged steps (and an epoch's last). Step 4 (epoch 2, step 1) gives NaN, the
    # weights go NaN, and the run stops at the logged step 6 (the epoch's last, log_every 3)
    # before any checkpoint holds them.
    monkeypatch.setattr(FiniteCheck, "every_step", property(lambda self: False))
    out = tmp_path / "run"
    hook = ObjectiveHook(monkeypatch, at=4, action="nan")
    message = r"loss became nan by epoch 2, step 3 of 3 \(a GPU run checks at logged steps\); stopped"
    with pytest.raises(RamlabError, match=message):
        Trainer(tiny_config(log_every=3), out).fit()
    assert hook.calls == 6
    state = load_checkpoint(out / "last.pt")
    assert state["global_step"] == 3
    for name, tensor in state["model"].items():
        assert torch.isfinite(tensor).all(), name


def test_corrupt_checkpoint_is_named(fake_mnist, tmp_path) -> None:
    out = tmp_path / "run"
    config = tiny_config(epochs=1)
    Trainer(config, out).fit()
    last = out / "last.pt"
    last.write_bytes(last.read_bytes()[:200])  # cut short, as by a full disk
    with pytest.raises(RamlabError, match="cannot read the checkpoint") as info:
        load_checkpoint(last)
    assert str(last) in str(info.value)
    with pytest.raises(RamlabError, match="cannot read the checkpoint") as info:
        Trainer(config, out).fit(resume=True)
    assert str(last) in str(info.value)

    (out / "best.pt").write_text("not a checkpoint")
    with pytest.raises(RamlabError, match="cannot read the checkpoint") as info:
        load_checkpoint(out / "best.pt")
    assert str(out / "best.pt") in str(info.value)


def test_a_checkpoint_of_another_format_says_so_and_how_to_fix_it(tmp_path) -> None:
    old = tmp_path / "old.pt"
    torch.save({"format": 1, "model": {}}, old)
    with pytest.raises(RamlabError, match=r"format 1, this ramlab reads format 2.*retrain") as info:
        load_checkpoint(old)
    assert str(old) in str(info.value)
    torch.save({"weights": {}}, tmp_path / "other.pt")
    with pytest.raises(RamlabError, match="not a ramlab checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_an_existing_run_is_not_overwritten(fake_mnist, tmp_path) -> None:
    out = tmp_path / "run"
    config = tiny_config(epochs=1)
    Trainer(config, out).fit()
    before = (out / "result.json").read_bytes()
    with pytest.raises(RamlabError, match="already holds a run; pass --resume"):
        Trainer(config, out).fit()
    with pytest.raises(
        RamlabError, match=r"keeps its config; these differ: batch_size\. A resume may change only lr"
    ):
        Trainer(tiny_config(epochs=1, batch_size=4), out).fit(resume=True)
    assert (out / "result.json").read_bytes() == before


def test_a_finished_untested_run_is_tested_once_by_a_resume_with_test(
    fake_mnist, tmp_path, monkeypatch
) -> None:
    """A tuning run (test false) chosen as the final model reads the test split once, on
    `--resume --test true`, from its best checkpoint; its training is untouched."""
    out = tmp_path / "run"
    untested = Trainer(tiny_config(test=False), out).fit()
    assert untested["test_error"] is None and untested["test_count"] is None
    weights_before = weights(out / "best.pt")
    with monkeypatch.context() as patch:  # test false again: nothing is evaluated
        patch.setattr(trainer_module, "evaluate", None)
        assert Trainer(tiny_config(test=False), out).fit(resume=True) == untested

    tested = Trainer(tiny_config(), out, command="ramlab train ... --resume --test true").fit(resume=True)
    assert tested["test_count"] == 8 and 0 <= tested["test_error"] <= 100
    assert tested["command"] == "ramlab train ... --resume --test true"
    unchanged = ("val_error", "best_epoch", "epochs_run", "steps", "rollouts_seen", "train_seconds")
    assert {k: tested[k] for k in unchanged} == {k: untested[k] for k in unchanged}
    assert_same_weights(weights(out / "best.pt"), weights_before)
    # The same test error as a run that tested itself at the end.
    straight = Trainer(tiny_config(), tmp_path / "straight").fit()
    assert tested["test_error"] == straight["test_error"]
    assert tested["test_loss"] == pytest.approx(straight["test_loss"], rel=1e-6)  # finer than 8 scenes' error

    with monkeypatch.context() as patch:  # and never again
        patch.setattr(trainer_module, "evaluate", None)
        assert Trainer(tiny_config(), out).fit(resume=True) == tested


def test_a_resume_may_extend_the_budget_and_says_so(fake_mnist, tmp_path, monkeypatch) -> None:
    # Cosine's length is its number of epochs: extending it would change the past schedule.
    Trainer(tiny_config(epochs=1), tmp_path / "cosine").fit()
    with pytest.raises(RamlabError, match="epochs \\(the cosine and step schedules depend on it\\)"):
        Trainer(tiny_config(epochs=2), tmp_path / "cosine").fit(resume=True)

    out = tmp_path / "run"
    Trainer(tiny_config(epochs=1, schedule="exponential"), out).fit()
    longer = tiny_config(epochs=2, schedule="exponential", time_budget=5.0)
    result = Trainer(longer, out, command="ramlab train ... --resume").fit(resume=True)
    assert result["epochs_run"] == 2
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert history == [
        {"command": "ramlab train ... --resume", "changed": {"epochs": [1, 2], "time_budget": [0.0, 5.0]}}
    ]
    assert load_yaml(out / "config.yaml")["train"]["epochs"] == 2

    # Resuming the finished run with nothing left to train does not read the test split again.
    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, "evaluate", None)  # any evaluation would fail
        assert Trainer(longer, out).fit(resume=True) == result

    # The same weights as a run given 2 epochs from the start.
    Trainer(tiny_config(epochs=2, schedule="exponential"), tmp_path / "whole").fit()
    assert_same_weights(weights(out / "last.pt"), weights(tmp_path / "whole" / "last.pt"))


def test_a_finished_run_that_trains_on_sets_its_result_aside_until_its_new_end(
    fake_mnist, tmp_path, monkeypatch
) -> None:
    out = tmp_path / "run"
    first = Trainer(tiny_config(epochs=1, schedule="exponential"), out).fit()
    longer = tiny_config(epochs=2, schedule="exponential")
    with monkeypatch.context() as patch:
        ObjectiveHook(patch, at=2, action="interrupt")  # epoch 2, step 2
        with pytest.raises(KeyboardInterrupt):
            Trainer(longer, out).fit(resume=True)
    # The old result no longer describes best.pt once epoch 2 may beat it: the run is unfinished.
    assert not (out / "result.json").exists()
    assert json.loads((out / "result.previous.json").read_text()) == first
    result = Trainer(longer, out).fit(resume=True)
    assert result["epochs_run"] == 2 and json.loads((out / "result.json").read_text()) == result
