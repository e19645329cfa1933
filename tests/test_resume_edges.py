"""Resume at the edges: a time budget spent within an epoch, checkpoint writes, a lowered
--epochs, and --init-from weights that do not fit (found by a review; each failed before)."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest
from test_trainer import ObjectiveHook, assert_same_weights, tiny_config, weights

from ramlab import trainer as trainer_module
from ramlab.checkpoint import load_checkpoint, save_checkpoint
from ramlab.cli import main
from ramlab.config import load_yaml, save_yaml
from ramlab.errors import Interrupted, RamlabError
from ramlab.metrics import read_metrics
from ramlab.run import load_run
from ramlab.runconfig import RunConfig
from ramlab.trainer import Trainer


def ticking_clock(monkeypatch, seconds: float = 1.0) -> None:
    """The trainer's clock advances `seconds` at every reading: every step is slow."""
    now = [0.0]

    def perf_counter() -> float:
        now[0] += seconds
        return now[0]

    monkeypatch.setattr(trainer_module, "time", SimpleNamespace(perf_counter=perf_counter))


def test_a_budget_spent_within_an_epoch_resumes_to_that_epochs_end(fake_mnist, tmp_path, monkeypatch):
    # --time-budget stops after the first epoch that reaches it. A checkpoint within that
    # epoch already holds the spent budget: the resume used to stop at once, without the
    # epoch's end (here, in epoch 1, with no best.pt yet: every resume failed).
    ticking_clock(monkeypatch)
    config = tiny_config(epochs=3, checkpoint_every=1, time_budget=0.001, schedule="exponential")
    straight = Trainer(config, tmp_path / "a").fit()
    assert straight["stop_reason"] == "time_budget" and straight["steps"] == 3
    with monkeypatch.context() as patch:
        ObjectiveHook(patch, at=2, action="interrupt")  # after step 1's checkpoint
        with pytest.raises(KeyboardInterrupt):
            Trainer(config, tmp_path / "b").fit()
    state = load_checkpoint(tmp_path / "b" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (0, 1) and state["train_seconds"] > 0.06
    resumed = Trainer(config, tmp_path / "b").fit(resume=True)
    assert (resumed["steps"], resumed["epochs_run"]) == (3, 1)
    assert_same_weights(weights(tmp_path / "a" / "last.pt"), weights(tmp_path / "b" / "last.pt"))


def test_a_checkpoint_write_is_not_training_time(fake_mnist, tmp_path, monkeypatch):
    # Time passes only in the steps (1 s each) and in checkpoint writes (1000 s: a slow disk):
    # the logged training time is the steps' alone, with or without checkpoints within epochs.
    from ramlab.models.ram import RAM

    now = [0.0]
    monkeypatch.setattr(trainer_module, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    objective, checkpoint = RAM.objective, Trainer._checkpoint

    def slow_step(model, *args):
        now[0] += 1.0
        return objective(model, *args)

    def slow_write(self, path):
        checkpoint(self, path)
        now[0] += 1000.0

    monkeypatch.setattr(RAM, "objective", slow_step)
    monkeypatch.setattr(Trainer, "_checkpoint", slow_write)
    for every in (0, 1):
        out = tmp_path / f"every{every}"
        Trainer(tiny_config(epochs=2, checkpoint_every=every), out).fit()
        logged = [r["perf/train_seconds"] for r in read_metrics(out / "metrics.jsonl") if "train/loss" in r]
        assert logged == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], every


def test_fewer_epochs_than_trained_are_refused_on_resume(fake_mnist, tmp_path):
    config = tiny_config(epochs=3, schedule="exponential")
    Trainer(config, tmp_path / "run").fit()
    before = (tmp_path / "run" / "config.yaml").read_text()
    fewer = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=1))
    with pytest.raises(
        RamlabError, match=r"--epochs 1 is fewer than the 3 epoch\(s\) this run has trained; give --epochs 3"
    ):
        Trainer(fewer, tmp_path / "run").fit(resume=True)
    assert (tmp_path / "run" / "config.yaml").read_text() == before  # nothing rewritten
    assert json.loads((tmp_path / "run" / "result.json").read_text())["epochs"] == 3


def test_init_from_weights_that_do_not_fit_leave_no_run_folder(fake_mnist, tmp_path):
    Trainer(tiny_config(epochs=1), tmp_path / "a").fit()
    config = tiny_config(init_from=str(tmp_path / "a"))
    wider = RunConfig.from_dict(
        {**config.to_dict(), "model_config": {**config.to_dict()["model_config"], "hidden": 20}}
    )
    with pytest.raises(RamlabError, match="its weights do not fit this model"):
        Trainer(wider, tmp_path / "b").fit()
    assert not (
        tmp_path / "b"
    ).exists()  # a corrected command starts afresh, not "a resumed run keeps its config"


def test_a_budget_raised_then_lowered_before_a_new_step_reads_the_test_split_once(
    fake_mnist, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    first = Trainer(tiny_config(epochs=1, schedule="exponential"), out).fit()
    with monkeypatch.context() as patch:
        ObjectiveHook(patch, at=1, action="interrupt")  # epoch 2's first step: nothing new kept
        with pytest.raises(KeyboardInterrupt):
            Trainer(tiny_config(epochs=2, schedule="exponential"), out).fit(resume=True)
    assert (out / "result.previous.json").exists() and not (out / "result.json").exists()
    tests = []
    monkeypatch.setattr(Trainer, "_finish", lambda self: tests.append(1) or {})
    again = Trainer(tiny_config(epochs=1, schedule="exponential"), out).fit(resume=True)
    assert again == first and tests == []  # the set-aside result, not a second test
    assert json.loads((out / "result.json").read_text()) == first


@pytest.mark.parametrize(
    "damage",
    [
        b'{"val_error": 1.',
        b"[1, 2]",
        b"\xff\xfe",
        b'{"test_error": 2.0}',
        # edited: the resume's summary line raised on each (a traceback)
        b'{"test_error": "1.2", "val_error": 1.0, "params": 5, "train_seconds": 1.0}',
        b'{"test_error": 1.2, "val_error": NaN, "params": 5, "train_seconds": 1.0}',
    ],
)
def test_a_damaged_result_is_rewritten_by_a_resume(fake_mnist, tmp_path, capsys, damage):
    # json.loads' traceback before; the same best.pt tested again gives the same numbers
    out = tmp_path / "run"
    first = Trainer(tiny_config(epochs=1), out).fit()
    (out / "result.json").write_bytes(damage)
    capsys.readouterr()
    again = Trainer(tiny_config(epochs=1), out).fit(resume=True)
    assert f"{out / 'result.json'} is damaged: testing best.pt again" in capsys.readouterr().err
    assert again == json.loads((out / "result.json").read_text())
    for key in ("test_error", "val_error", "per_glimpse_test_error", "steps", "train_seconds"):
        assert again[key] == first[key], key


def test_a_run_stopped_before_its_first_checkpoint_resumes_with_a_new_config(
    fake_mnist, tmp_path, monkeypatch
):
    # out of memory at the first step, then --resume with a smaller batch: "a resumed run
    # keeps its config" before, for a run with nothing trained to keep
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        ObjectiveHook(patch, at=1, action="interrupt")
        with pytest.raises(KeyboardInterrupt):
            Trainer(tiny_config(epochs=1, batch_size=12), out).fit()
    assert not (out / "last.pt").exists()
    result = Trainer(tiny_config(epochs=1), out).fit(resume=True)
    assert RunConfig.from_dict(load_yaml(out / "config.yaml")).train.batch_size == 8
    fresh = Trainer(tiny_config(epochs=1), tmp_path / "fresh").fit()
    for key in ("test_error", "val_error", "per_glimpse_test_error", "steps"):
        assert result[key] == fresh[key], key
    assert_same_weights(weights(out / "last.pt"), weights(tmp_path / "fresh" / "last.pt"))


def test_a_resume_by_other_code_is_recorded_in_the_history(fake_mnist, tmp_path, monkeypatch):
    # result.json names the commit that ended the run only: the code before a resume was lost
    out = tmp_path / "run"
    monkeypatch.setattr("ramlab.provenance.git_commit", lambda: "aaa")
    with monkeypatch.context() as patch:
        ObjectiveHook(patch, at=4, action="interrupt")  # epoch 2: epoch 1's last.pt exists
        with pytest.raises(KeyboardInterrupt):
            Trainer(tiny_config(epochs=2, schedule="exponential"), out, command="first").fit()
    assert load_checkpoint(out / "last.pt")["commit"] == "aaa"
    Trainer(tiny_config(epochs=2, schedule="exponential"), out, command="same code").fit(resume=True)
    assert not (out / "history.jsonl").exists()  # the same code, nothing changed: no line
    monkeypatch.setattr("ramlab.provenance.git_commit", lambda: "bbb")
    result = Trainer(tiny_config(epochs=3, schedule="exponential"), out, command="later").fit(resume=True)
    [line] = [json.loads(text) for text in (out / "history.jsonl").read_text().splitlines()]
    assert line == {"command": "later", "changed": {"epochs": [2, 3]}, "commit": "bbb", "trained_at": "aaa"}
    assert result["commit"] == "bbb"


def test_a_resume_on_another_device_is_recorded_in_the_history(fake_mnist, tmp_path, capsys):
    # With device auto a GPU run resumed on a CPU draws its samples from another generator;
    # config.yaml still said auto and result.json named only the last device.
    out = tmp_path / "run"
    Trainer(tiny_config(epochs=1, schedule="exponential"), out, command="first").fit()
    last = load_checkpoint(out / "last.pt")
    assert last["device"] == "cpu"
    save_checkpoint(out / "last.pt", {**last, "device": "cuda:0"})  # as if trained on a GPU
    capsys.readouterr()
    Trainer(tiny_config(epochs=2, schedule="exponential"), out, command="later").fit(resume=True)
    [line] = [json.loads(text) for text in (out / "history.jsonl").read_text().splitlines()]
    assert line == {
        "command": "later",
        "changed": {"epochs": [1, 2]},
        "device": "cpu",
        "trained_on": "cuda:0",
    }
    assert "note: this run trained on cuda:0 until now; it goes on on cpu" in capsys.readouterr().err


def test_a_damaged_result_without_last_pt_says_what_to_do(fake_mnist, tmp_path):
    out = tmp_path / "run"
    Trainer(tiny_config(epochs=1), out).fit()
    (out / "result.json").write_text('{"val_')
    (out / "last.pt").unlink()
    with pytest.raises(
        RamlabError, match=r"result\.json is damaged and last\.pt, which a resume rewrites it"
    ):
        Trainer(tiny_config(epochs=1), out).fit(resume=True)


def test_every_set_aside_result_is_kept_and_a_stop_while_testing_says_how_to_test(
    fake_mnist, tmp_path, monkeypatch
):
    # a second extension replaced the first's result.previous.json: a test read was lost
    out = tmp_path / "run"
    first = Trainer(tiny_config(epochs=1, schedule="exponential"), out).fit()
    second = Trainer(tiny_config(epochs=2, schedule="exponential"), out).fit(resume=True)
    with monkeypatch.context() as patch:  # Ctrl-C while the new best.pt is tested
        patch.setattr(Trainer, "_finish", lambda self: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(Interrupted, match=r"interrupted while testing .*best\.pt; the training is"):
            Trainer(tiny_config(epochs=3, schedule="exponential"), out, command="ramlab train x").fit(
                resume=True
            )
    assert json.loads((out / "result.previous.json").read_text()) == second
    assert json.loads((out / f"result.previous.{first['steps']}.json").read_text()) == first
    third = Trainer(tiny_config(epochs=3, schedule="exponential"), out).fit(resume=True)
    assert third["epochs_run"] == 3 and json.loads((out / "result.json").read_text()) == third


def test_a_damaged_config_yaml_says_how_to_get_it_back(fake_mnist, tmp_path, capsys):
    out = tmp_path / "run"
    Trainer(tiny_config(epochs=1), out).fit()
    (out / "config.yaml").write_text("model: [ram\n")
    with pytest.raises(
        RamlabError,
        match=r"(?s)not valid YAML .*fix: delete it and resume again \(it is rebuilt from last\.pt\)",
    ):
        Trainer(tiny_config(epochs=1), out).fit(resume=True)
    with pytest.raises(
        RamlabError,
        match=r"(?s)config\.yaml: not valid YAML .*fix: restore it from a copy, or delete it and resume",
    ):
        load_run(out)
    # Readable, but refused: edited by hand (last.pt holds another), delete it ...
    saved = tiny_config(epochs=1).to_dict()
    saved["model_config"]["std"] = 5.0
    save_yaml(out / "config.yaml", saved)
    with pytest.raises(
        RamlabError, match=r"std must be in \(0, e\].*config\.yaml was edited: delete it and resume"
    ):
        Trainer(tiny_config(epochs=1), out).fit(resume=True)
    # ... or refused by this version (a fixed std above e, allowed before 2026-12-07) as last.pt
    # holds it too: deleting it would rebuild the same, so the message says what can be done,
    # also through the CLI (whose bare --resume starts from the run's config).
    last = (out / "last.pt").read_bytes()
    save_checkpoint(out / "last.pt", {**load_checkpoint(out / "last.pt"), "config": saved})
    with pytest.raises(RamlabError, match=r"this version of ramlab refuses the run's config"):
        Trainer(tiny_config(epochs=1), out).fit(resume=True)
    assert main(["train", "ram", "--out", str(out), "--resume"]) == 2
    assert "this version of ramlab refuses the run's config" in capsys.readouterr().err
    (out / "last.pt").write_bytes(last)
    (out / "config.yaml").unlink()  # as the message says: back from last.pt, the result kept
    first = json.loads((out / "result.json").read_text())
    assert Trainer(tiny_config(epochs=1), out).fit(resume=True)["test_error"] == first["test_error"]
    assert load_run(out)[0].train.epochs == 1


def test_a_config_yaml_cut_short_or_edited_is_refused_against_last_pt(fake_mnist, tmp_path, capsys):
    # Cut short at a line's end it still parses, the fields it lost at their defaults: a
    # resume used to train on with them (another eval_limit, train_limit, model) unannounced.
    out = tmp_path / "run"
    Trainer(tiny_config(epochs=1, schedule="exponential"), out).fit()
    text = (out / "config.yaml").read_text()
    cut = text[: text.index("eval_limit")]  # train_limit and every field after it lost
    (out / "config.yaml").write_text(cut)
    before = (out / "last.pt").read_bytes()
    assert main(["train", "ram", "--out", str(out), "--resume", "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "config.yaml is not the config last.pt trained with (" in err
    assert "train.eval_limit: None in config.yaml, 8 in last.pt" in err
    assert "Delete it and resume again (it is rebuilt from last.pt)" in err
    assert (out / "last.pt").read_bytes() == before and (out / "config.yaml").read_text() == cut  # untouched
    # Cut where only fields a resume may change are lost (lr, the default 1e-3 when missing,
    # not the run's 0.01): the fields themselves are missing, whatever their values.
    (out / "config.yaml").write_text(text[: text.index("\n  lr:") + 1])
    assert main(["train", "ram", "--out", str(out), "--resume", "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "config.yaml is not the config last.pt trained with (train.lr, train.momentum" in err
    # A field a resume may change differs legitimately (a resume saves it to config.yaml
    # before its next checkpoint): no refusal.
    save_yaml(out / "config.yaml", tiny_config(epochs=2, schedule="exponential").to_dict())
    assert Trainer(tiny_config(epochs=2, schedule="exponential"), out).fit(resume=True)["epochs_run"] == 2
    # As the message says: deleted, config.yaml comes back from last.pt and the run goes on.
    (out / "config.yaml").unlink()
    assert Trainer(tiny_config(epochs=3, schedule="exponential"), out).fit(resume=True)["epochs_run"] == 3


def test_a_run_that_lost_its_config_yaml_is_never_trained_over(fake_mnist, tmp_path):
    out = tmp_path / "run"
    Trainer(tiny_config(epochs=1, schedule="exponential"), out).fit()
    (out / "config.yaml").unlink()
    before = weights(out / "best.pt")
    # A fresh run there would overwrite last.pt and best.pt and set result.json aside.
    with pytest.raises(
        RamlabError,
        match=r"holds a run \(last\.pt, best\.pt, result\.json\) but no config\.yaml: pass --resume",
    ):
        Trainer(tiny_config(epochs=1, schedule="exponential"), out).fit()
    assert_same_weights(weights(out / "best.pt"), before)
    # A resume takes the config from last.pt, so a changed option is a change, recorded.
    result = Trainer(tiny_config(epochs=2, schedule="exponential"), out).fit(resume=True)
    assert result["epochs_run"] == 2
    assert RunConfig.from_dict(load_yaml(out / "config.yaml")).train.epochs == 2
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert history[-1]["changed"] == {"epochs": [1, 2]}
    # Without last.pt only a copy of config.yaml can say what the run was.
    (out / "config.yaml").unlink()
    (out / "last.pt").unlink()
    for resume in (False, True):
        with pytest.raises(RamlabError, match=r"but no config\.yaml: restore config\.yaml from a copy"):
            Trainer(tiny_config(epochs=2), out).fit(resume=resume)


def test_the_metrics_log_is_on_disk_before_each_checkpoint(fake_mnist, tmp_path, monkeypatch):
    # last.pt is fsynced; a log behind it after a crash would lose lines a resume never redoes.
    from ramlab.metrics import MetricsLog

    events = []
    real_sync, real_save = MetricsLog.sync, trainer_module.save_checkpoint
    monkeypatch.setattr(MetricsLog, "sync", lambda self: (events.append("sync"), real_sync(self))[1])
    monkeypatch.setattr(
        trainer_module, "save_checkpoint", lambda *a, **k: (events.append("save"), real_save(*a, **k))[1]
    )
    Trainer(tiny_config(epochs=2, checkpoint_every=1), tmp_path / "run").fit()
    saves = [i for i, event in enumerate(events) if event == "save"]
    assert len(saves) >= 4 and all(events[i - 1] == "sync" for i in saves)


def test_a_tuning_run_never_loads_its_test_split(fake_mnist, tmp_path, monkeypatch):
    from ramlab import run_data

    splits, real = [], run_data.load_split
    monkeypatch.setattr(
        run_data, "load_split", lambda data, split, **k: (splits.append(split), real(data, split, **k))[1]
    )
    Trainer(tiny_config(epochs=1, test=False), tmp_path / "tune").fit()
    assert "test" not in splits and "val" in splits
    Trainer(tiny_config(epochs=1, test=True), tmp_path / "tune").fit(resume=True)  # made final
    assert splits.count("test") == 1


def test_the_fields_a_run_never_reads_follow_its_optimiser_schedule_and_checkpoint() -> None:
    from ramlab.runconfig import TrainConfig, unused_fields

    def unused(checkpointed=False, **train) -> set[str]:
        return unused_fields(TrainConfig(**train), checkpointed=checkpointed)

    schedules = {"lr_decay", "lr_min", "plateau_factor", "plateau_patience"}
    assert unused(optimizer="adam", schedule="cosine") == {"momentum"} | schedules
    assert unused(optimizer="sgd", schedule="step") == schedules
    assert unused(optimizer="sgd", schedule="none", checkpointed=True) == schedules | {"init_from"}
    assert unused(optimizer="sgd", schedule="exponential") == {"plateau_factor", "plateau_patience"}
    assert unused(optimizer="sgd", schedule="plateau") == {"lr_decay"}


def test_a_resume_ignores_values_of_fields_the_run_never_reads(fake_mnist, tmp_path, capsys) -> None:
    # Adam under a cosine schedule reads no momentum, lr_decay or plateau option, and a resume
    # from last.pt no init_from: a resume giving them other values used to be refused ("these
    # differ"). It now continues the run as configured, to the straight run's weights.
    config = tiny_config(epochs=2)
    Trainer(config, tmp_path / "straight").fit()
    out = tmp_path / "run"
    Trainer(tiny_config(epochs=2, time_budget=1e-9), out).fit()  # stops after epoch 1
    saved = (out / "config.yaml").read_text()
    other = dataclasses.replace(
        config.train,
        momentum=0.5,
        lr_decay=0.5,
        lr_min=1e-4,
        plateau_factor=0.1,
        plateau_patience=9,
        init_from=str(tmp_path / "straight"),
    )
    capsys.readouterr()
    resumed = Trainer(dataclasses.replace(config, train=other), out).fit(resume=True)
    note = capsys.readouterr().err
    assert "does not use init_from, lr_decay, lr_min, momentum, plateau_factor, plateau_patience" in note
    assert resumed["epochs_run"] == 2
    assert_same_weights(weights(tmp_path / "straight" / "last.pt"), weights(out / "last.pt"))
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["changed"] for h in history] == [{"time_budget": [1e-9, 0.0]}]
    # config.yaml and the checkpoints keep the run's own values
    kept = RunConfig.from_dict(load_yaml(out / "config.yaml"))
    assert kept.train == config.train and saved != (out / "config.yaml").read_text()
    assert load_checkpoint(out / "last.pt")["config"] == config.to_dict()

    # A field the run reads is still refused: SGD's momentum.
    sgd = tiny_config(epochs=1, optimizer="sgd")
    Trainer(sgd, tmp_path / "sgd").fit()
    with pytest.raises(RamlabError, match=r"these differ: momentum\."):
        Trainer(tiny_config(epochs=1, optimizer="sgd", momentum=0.5), tmp_path / "sgd").fit(resume=True)


def test_what_a_study_lets_change_for_a_finished_run_a_resume_accepts_too():
    from ramlab.config import HOW_IT_RAN
    from ramlab.runconfig import RESUME_MAY_CHANGE

    assert set(HOW_IT_RAN) <= set(RESUME_MAY_CHANGE)  # else a study resuming such a run fails
