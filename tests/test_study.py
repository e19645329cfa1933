"""The study runner: the tiny preset end to end, skipping finished jobs, resuming an
interrupted one, the packaged presets, and clear errors for a wrong preset."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
import tiny
import yaml

from ramlab import robustness, study
from ramlab.cli import main
from ramlab.data.datasets import DATASETS
from ramlab.errors import RamlabError
from ramlab.runconfig import RunConfig, config_path
from ramlab.study import Study, load_preset, preset_path

TINY_RAM = {**tiny.TINY_RAM, "glimpses": 2}
TINY_TRAIN = {
    "epochs": 2,
    "batch_size": 8,
    "train_limit": 16,
    "eval_limit": 8,
    "threads": 1,
    "progress": False,
    "device": "cpu",
}


@pytest.fixture(autouse=True)
def restore_state():
    robustness._SCENES.clear()
    yield
    robustness._SCENES.clear()


def write_preset(path: Path, **sections) -> Path:
    preset = {
        "seeds": 1,
        "train": TINY_TRAIN,
        "runs": [{"name": "ram", "model": "ram", "data": "translated60", "model_config": TINY_RAM}],
        **sections,
    }
    path.write_text(yaml.safe_dump(preset, sort_keys=False))
    return path


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


# ---- the tiny preset, end to end ------------------------------------------------------------
def test_tiny_study_end_to_end_then_nothing_is_redone(fake_mnist, tmp_path, capsys, monkeypatch):
    commits = (f"commit{i}" for i in itertools.count())  # the tree moves on at every look
    # The trainer first: patching it may import ramlab.trainer, whose `from ramlab.provenance
    # import git_commit` would otherwise take the fake and keep it after this test.
    for where in ("ramlab.trainer.git_commit", "ramlab.provenance.git_commit"):
        monkeypatch.setattr(where, lambda *args: next(commits))
    out = tmp_path / "study"
    assert main(["study", "tiny", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "[study] tiny: 16 jobs, 0 already done, 16 to run" in err
    assert re.search(r"job 1/16: train ram-sparse-translated60-seed0 \(15 more after it; time left ~\d+", err)
    assert "ram-best on translated60: best reward is" in err

    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == [
        "ram-best-translated60-seed0",
        "ram-infogain-translated60-seed0",
        "ram-sparse-translated60-seed0",
        "ram-sparse-translated60-seed1",
        "resnet-translated60-seed0",
    ]
    for name in runs:
        run = out / "runs" / name
        assert {"config.yaml", "metrics.jsonl", "result.json", "eval.json", "robustness.json"} <= {
            p.name for p in run.iterdir()
        }
        sweep = json.loads((run / "robustness.json").read_text())
        assert list(sweep["shifts"]) == ["translate", "rotate", "noise"]
    for name in runs[:4]:  # the RAM runs draw their glimpses
        assert (out / "runs" / name / "glimpses.png").is_file()
        assert (out / "runs" / name / "glimpses.gif").is_file()
    assert not (out / "runs" / "resnet-translated60-seed0" / "glimpses.png").exists()

    # The best-reward group took the reward of the group with the lower validation error.
    def val(group: str) -> float:
        results = [json.loads(p.read_text()) for p in (out / "runs").glob(f"{group}-*/result.json")]
        return sum(r["val_error"] for r in results) / len(results)

    best = yaml.safe_load((out / "runs" / "ram-best-translated60-seed0" / "config.yaml").read_text())
    expected = "sparse" if val("ram-sparse") <= val("ram-infogain") else "sparse+infogain"
    assert best["model_config"]["reward"] == expected
    assert best["model_config"]["glimpses"] == 2

    cost = json.loads((out / "cost.json").read_text())["rows"]
    assert {(r["model"], r["size"]) for r in cost} == {
        ("ram", 28),
        ("ram", 60),
        ("resnet", 28),
        ("resnet", 60),
    }
    jobs = [json.loads(line) for line in (out / "jobs.jsonl").read_text().splitlines()]
    assert len(jobs) == 16 and all(j["command"].startswith("ramlab") for j in jobs)
    assert {j["commit"] for j in jobs} == {"commit0"}  # the code the study started with

    # The report: every section, and the numbers of the runs.
    report = (out / "report.md").read_text()
    for heading in (
        "## Test error per dataset and model",
        "## Compute cost",
        "## Robustness to shifts not seen in training",
        "## Reward structures",
        "## Glimpse trajectories",
        "## Provenance",
    ):
        assert heading in report
    sparse = [
        json.loads((out / "runs" / f"ram-sparse-translated60-seed{s}" / "result.json").read_text())
        for s in (0, 1)
    ]
    errors = [r["test_error"] for r in sparse]
    mean = sum(errors) / 2
    std = abs(errors[0] - errors[1]) / 2**0.5
    assert f"{mean:.2f} ± {std:.2f}" in report
    resnet = json.loads((out / "runs" / "resnet-translated60-seed0" / "result.json").read_text())
    assert re.search(rf"\| `resnet` \| {resnet['test_error']:.2f} \|", report)
    html = (out / "report.html").read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    # anytime, training, cost, error against FLOPs, robustness, rewards; PNG + GIF per RAM label (3)
    assert len(figures) == 6 + 3 * 2
    assert html.count("<img ") == len(figures)
    assert html.count('src="data:image/') == len(figures)

    # Again: every job is found done, and no run file is touched.
    before = mtimes(out / "runs")
    assert main(["study", "tiny", "--out", str(out)]) == 0
    assert "16 jobs, 16 already done, 0 to run" in capsys.readouterr().err
    assert mtimes(out / "runs") == before

    # --list: every job done, with the seconds jobs.jsonl recorded for it.
    assert main(["study", "tiny", "--out", str(out), "--list"]) == 0
    *rows, total = capsys.readouterr().out.splitlines()
    took = {j["job"]: j["seconds"] for j in jobs}
    assert len(rows) == 16 and total.startswith("16 jobs: 16 done, 0 to do, ~0 s of job time")
    for row in rows:
        state, seconds, title = re.fullmatch(r"\s*\d+  (done|to do)\s+(\d+) s  (.+)", row).groups()
        assert state == "done" and int(seconds) == round(took[title]), row


# ---- resuming ------------------------------------------------------------------------------
def test_interrupted_training_resumes_and_finished_jobs_are_kept(fake_mnist, tmp_path, monkeypatch):
    preset = write_preset(
        tmp_path / "mine.yaml",
        runs=[
            {"name": "a", "model": "ram", "data": "translated60", "model_config": TINY_RAM},
            {"name": "b", "model": "ram", "data": "translated60", "model_config": TINY_RAM},
        ],
        robustness=[{"runs": "all", "shifts": {"rotate": [0, 30]}, "limit": 8}],
    )
    out = tmp_path / "study"
    import ramlab.trainer as trainer

    real_evaluate, calls = trainer.evaluate, []

    def stop_in_second_epoch_of_b(model, loader, **kwargs):
        calls.append(1)
        # validation a1, a2, test a, validation b1, then stop before b's second validation
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real_evaluate(model, loader, **kwargs)

    monkeypatch.setattr(trainer, "evaluate", stop_in_second_epoch_of_b)
    logs: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        study.run_study(preset, out=out, log=logs.append)
    run_b = out / "runs" / "b-translated60-seed0"
    assert (out / "runs" / "a-translated60-seed0" / "result.json").is_file()
    assert (run_b / "last.pt").is_file() and not (run_b / "result.json").exists()
    monkeypatch.setattr(trainer, "evaluate", real_evaluate)

    finished = mtimes(out / "runs" / "a-translated60-seed0")
    logs.clear()
    study.run_study(preset, out=out, log=logs.append)
    assert logs[0].startswith("[study] mine: 4 jobs, 1 already done, 3 to run")
    assert mtimes(out / "runs" / "a-translated60-seed0").keys() >= finished.keys()
    assert all(
        mtimes(out / "runs" / "a-translated60-seed0")[k] == v for k, v in finished.items()
    )  # a's training files untouched
    result = json.loads((run_b / "result.json").read_text())
    assert result["epochs"] == 2
    val_epochs = [
        json.loads(line)["epoch"]
        for line in (run_b / "metrics.jsonl").read_text().splitlines()
        if "val/error" in line
    ]
    assert val_epochs == [1, 2]  # epoch 1 kept from before the interruption, epoch 2 done after


def test_a_failed_run_does_not_stop_the_others(fake_mnist, tmp_path, monkeypatch):
    preset = write_preset(
        tmp_path / "mine.yaml",
        runs=[
            {"name": "bad", "model": "ram", "data": "translated60", "model_config": TINY_RAM},
            {"name": "oom", "model": "ram", "data": "translated60", "model_config": TINY_RAM},
            {"name": "good", "model": "ram", "data": "translated60", "model_config": TINY_RAM},
        ],
        evaluate={"glimpses": 0, "sampled": False},
    )
    import ramlab.trainer as trainer

    real_fit = trainer.Trainer.fit

    def fit(self, **kwargs):
        if self.out.name.startswith("bad-"):
            raise RamlabError("the loss became nan")
        if self.out.name.startswith("oom-"):  # not a RamlabError: a job's failure all the same
            raise RuntimeError("CUDA out of memory")
        return real_fit(self, **kwargs)

    monkeypatch.setattr(trainer.Trainer, "fit", fit)
    logs: list[str] = []
    failed = (
        r"2 job\(s\) of the study failed.*\n  train bad-translated60-seed0: the loss.*"
        r"\n  train oom-translated60-seed0: RuntimeError: CUDA out of memory"
    )
    with pytest.raises(RamlabError, match=failed):
        study.run_study(preset, out=tmp_path / "s", log=logs.append)
    assert "[study] skipped: eval bad-translated60-seed0 (its training failed)" in logs
    assert "[study] skipped: eval oom-translated60-seed0 (its training failed)" in logs
    assert any("Traceback" in line and "RuntimeError: CUDA out of memory" in line for line in logs)
    assert (tmp_path / "s" / "runs" / "good-translated60-seed0" / "eval.json").is_file()
    assert "good-translated60-seed0" in (tmp_path / "s" / "report.md").read_text()


def test_a_changed_preset_does_not_silently_reuse_a_finished_run(fake_mnist, tmp_path):
    out = tmp_path / "study"
    study.run_study(write_preset(tmp_path / "p.yaml"), out=out, log=lambda _: None)
    changed = write_preset(tmp_path / "p.yaml", train={**TINY_TRAIN, "epochs": 3})
    loaded = load_preset(changed)
    run = Study(loaded, out, log=lambda _: None)
    refused = r"holds a run with another config .*train\.epochs: 2 -> 3"
    with pytest.raises(RamlabError, match=refused):  # finished: not counted as done ...
        run.run(report=False)
    job = run.jobs()[0]
    (out / "runs" / job.run / "result.json").unlink()  # ... nor continued when unfinished
    with pytest.raises(RamlabError, match=refused):
        run.run(report=False)


# ---- presets --------------------------------------------------------------------------------
def test_packaged_presets_load_and_hold_the_issue_plan():
    quick = load_preset("quick")
    assert quick.seeds == 1
    rams = [g for g in quick.runs if g.model == "ram"]
    assert [g.model_config["reward"] for g in rams] == ["sparse", "sparse+infogain", "sparse+bbox"]
    assert {g.model for g in quick.runs} == {"ram", "resnet"}
    assert {d for g in quick.runs for d in g.data} == {"translated60"}
    assert quick.cost is not None and max(quick.cost.sizes) >= 512
    assert quick.robustness and quick.evaluate is not None

    paper = load_preset("paper")
    assert paper.seeds == 3
    six = [g for g in paper.runs if g.model == "ram" and "glimpses" not in g.model_config]
    assert [g.seeds for g in six] == [None] * 7 + [1]  # the recipes' 6; the last, centred60
    scaled = [g for g in six if g.name == "ram6-sparse-scaled"]
    six = [g for g in six[:7] if g not in scaled]
    assert sorted(g.model_config["reward"] for g in six) == [
        "0.1*infogain",
        "bbox",
        "sparse",
        "sparse+0.1*infogain",
        "sparse+0.1*infogain+bbox",
        "sparse+bbox",
    ]  # each new reward with the sparse one and alone (DESIGN.md), information gain at the
    # weight chosen on validation (results/rewards-recipe/)
    for g in six:
        assert set(g.data) == {"mnist", "translated60", "cluttered60", "cluttered100"}
    # The control for the rewards' scale: the sparse reward at the new rewards' weight, where
    # policy_trains_core lets the scale reach the core (every recipe but mnist's).
    assert [(g.model_config["reward"], g.seeds) for g in scaled] == [("0.1*sparse", None)]
    assert set(scaled[0].data) == {"translated60", "cluttered60", "cluttered100"}
    for data in scaled[0].data:
        assert RunConfig.load(config_path(data)).model_config.policy_trains_core
    assert not RunConfig.load(config_path("mnist")).model_config.policy_trains_core
    for glimpses in (4, 8):
        groups = [g for g in paper.runs if g.model_config.get("glimpses") == glimpses]
        assert [g.seeds for g in groups] == [1, 1]
        assert [bool(g.best_reward_of) for g in groups] == [False, True]
        assert set(groups[1].best_reward_of) == {g.name for g in six if g.model_config["reward"] != "sparse"}
    assert {"resnet", "fc", "convnet"} <= {g.model for g in paper.runs if g.seeds == 1}
    resnets = [g for g in paper.runs if g.model == "resnet"]
    assert resnets and all(g.train["fresh_scenes"] for g in resnets)  # new scenes, as the RAMs get
    assert all(sweep.limit is None for sweep in paper.robustness)  # all 10,000 test scenes
    jobs = Study(paper, "unused", log=lambda _: None).jobs()
    assert sum(j.kind == "train" for j in jobs) == 72 + 9 + 16 + 12 + 3


def test_paper_rewards_add_to_each_recipes_own_sparse_weight():
    """Every paper RAM whose reward has the sparse term carries it at its recipe's weight (a
    tenth where the recipe trains the core with REINFORCE, 1 on mnist), so a new reward is
    added to the recipe's own; only ram6-sparse keeps the paper's weight of 1 everywhere. The
    new rewards' weights are the same on every dataset (chosen once, on cluttered60's
    validation split)."""
    from ramlab.rewards import parse_reward

    paper = load_preset("paper")
    recipe_weight = {}
    for group in (g for g in paper.runs if g.model == "ram"):
        others = set()
        for data in group.data:
            recipe = data if group.recipe is True else group.recipe
            recipe_reward = RunConfig.load(config_path(recipe)).model_config.reward
            recipe_weight[data] = parse_reward(recipe_reward)["sparse"]
            run = study.preset.run_config(group, data, 0, paper.train, where="test")
            weights = parse_reward(run.model_config.reward)
            if "sparse" in weights:
                expected = 1.0 if group.name == "ram6-sparse" else recipe_weight[data]
                assert weights.pop("sparse") == expected, (group.name, data)
            others.add(tuple(sorted(weights.items())))
        assert len(others) == 1, (group.name, others)
    assert {d: w for d, w in recipe_weight.items() if w != 1.0} == dict.fromkeys(
        ("translated60", "centred60", "cluttered60", "cluttered100"), 0.1
    )
    assert recipe_weight["mnist"] == 1.0
    combined = {g.name for g in paper.runs if "+" in g.model_config.get("reward", "")}
    assert combined == {"ram6-infogain", "ram6-bbox", "ram6-infogain-bbox"}


def test_seeds_option_replaces_the_default_only(tmp_path):
    tiny = load_preset("tiny", seeds=3)
    counts = {g.name: Study(tiny, tmp_path, log=lambda _: None).group_seeds(g) for g in tiny.runs}
    assert counts == {"ram-sparse": 2, "ram-infogain": 3, "ram-best": 3, "resnet": 3}
    assert tiny.raw["seeds"] == 3


def test_list_shows_jobs_without_running(fake_mnist, tmp_path, capsys):
    assert main(["study", "tiny", "--out", str(tmp_path / "s"), "--list"]) == 0
    *rows, total = capsys.readouterr().out.splitlines()
    assert len(rows) == 16 and all(re.search(r"to do +~\d+ (s|min)  ", row) for row in rows)
    assert re.match(r"16 jobs: 0 done, 16 to do, ~\d+ (s|min) of job time", total)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("edit", "key", "allowed"),
    [
        ({"epochs": 3}, "epochs", "description, seeds, device, train, runs"),
        ({"train": {"epoch": 2}}, "train.epoch", "epochs, batch_size"),
        ({"train": {"optimizer": "rmsprop"}}, "runs[0] (ram) on translated60", "adam, sgd"),
        ({"train": {"epochs": "two"}}, "train.epochs", "expected int"),
        ({"seeds": 0}, "seeds", "a whole number >= 1"),
        ({"runs": [{"name": "x", "model": "vit", "data": "mnist"}]}, "runs[0] (x).model", "ram, resnet"),
        (
            {"runs": [{"name": "x", "model": "ram", "data": "mnist9"}]},
            "runs[0] (x).data",
            "mnist, translated60",
        ),
        (
            {"runs": [{"name": "x", "model": "ram", "data": "mnist", "colour": 1}]},
            "runs[0] (x).colour",  # a group is named beside its index, as in every key below it
            "name, model",
        ),
        (
            {"runs": [{"name": "x", "model": "ram", "data": "mnist", "model_config": {"glimpse": 3}}]},
            "runs[0] (x).model_config.glimpse",
            "glimpses, glimpse_size",
        ),
        (
            {
                "runs": [
                    {"name": "x", "model": "ram", "data": "mnist", "model_config": {"reward": "sparse+foo"}}
                ]
            },
            "runs[0] (x) on mnist",
            "valid: sparse, infogain, bbox",
        ),
        (
            {"robustness": [{"shifts": ["blur"]}]},
            "robustness[0].shifts",
            "translate, rotate, scale, noise, clutter",
        ),
        ({"robustness": [{"runs": ["nope"]}]}, "robustness[0].runs", "all, ram"),
        ({"robustness": [{"shifts": {"scale": [3.0]}}]}, "robustness[0].shifts", "needs 84 px"),
        (
            {"cost": {"models": ["ram"], "size": [28]}},
            "cost.size",
            "models, sizes, batch, device, compile, configs",
        ),
        ({"evaluate": {"glimpses": -1}}, "evaluate.glimpses", "a whole number >= 0"),
        ({"train": {"test": False}}, "train.test", "a study's runs are its final models"),
        (
            {"runs": [{"name": "x", "model": "ram", "data": "mnist", "train": {"test": False}}]},
            "runs[0] (x).train.test",
            "leave test true; tune with `ramlab train ... --test false` instead",
        ),
        (
            {
                "runs": [
                    {
                        "name": "x",
                        "model": "ram",
                        "data": "mnist",
                        "per_data": {"mnist": {"train": {"test": False}}},
                    }
                ]
            },
            "runs[0] (x).per_data.mnist.train.test",
            "leave test true",
        ),
    ],
)
def test_a_wrong_preset_names_file_key_and_allowed_values(tmp_path, edit, key, allowed):
    path = write_preset(tmp_path / "bad.yaml", **edit)
    with pytest.raises(RamlabError) as caught:
        load_preset(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    assert key in message, message
    assert allowed in message, message


def test_a_wrong_preset_exits_2_on_the_cli(tmp_path, capsys):
    path = write_preset(tmp_path / "bad.yaml", train={"epoch": 2})
    assert main(["study", str(path), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ramlab: error: {path}: train.epoch: unknown key; allowed: ")
    assert "Traceback" not in err


@pytest.mark.parametrize(("args", "threads"), [([], None), (["--threads-per-job", "2"], 2)])
def test_the_serial_study_takes_its_threads_per_job(tmp_path, monkeypatch, args, threads):
    seen = []
    monkeypatch.setattr(Study, "run", lambda self, **_: seen.append(self.threads) or tmp_path / "r.md")
    monkeypatch.delenv("RAMLAB_THREADS", raising=False)
    assert main(["study", "tiny", "--out", str(tmp_path / "s"), *args]) == 0
    assert seen == [threads]  # None: the preset's threads
    assert main(["study", "tiny", "--out", str(tmp_path / "s"), "--threads-per-job", "0"]) == 2


def test_the_serial_study_refuses_executor_options(tmp_path, capsys):
    # It runs its jobs in this process: a time limit (or a typo) would be silently ignored.
    out = tmp_path / "s"
    assert main(["study", "tiny", "--out", str(out), "--option", "timeout_min=60"]) == 2
    err = capsys.readouterr().err
    assert "--option timeout_min: the serial study runs its jobs in this process" in err
    assert "--executor local --jobs 1 --option timeout_min=N" in err
    assert not out.exists()


def test_unknown_preset_lists_the_packaged_ones():
    with pytest.raises(RamlabError, match=r"unknown preset 'quik'.*paper, quick, tiny"):
        preset_path("quik")


def test_every_packaged_dataset_name_is_allowed_in_presets():
    assert set(DATASETS) >= {"mnist", "translated60", "centred60", "cluttered60", "cluttered100"}


def test_a_folder_holding_another_presets_study_is_refused(tmp_path):
    other = write_preset(tmp_path / "other.yaml", train={"epochs": 1})
    out = tmp_path / "s"
    from ramlab.study.jobs import save_preset

    save_preset(Study(load_preset("tiny"), out))
    assert (out / "study.yaml").read_text().startswith("# ramlab study of preset: tiny\n")
    save_preset(Study(load_preset("tiny"), out))  # the same preset again: its resume
    with pytest.raises(
        RamlabError, match=r"holds the study of preset 'tiny' \(its study.yaml\), not 'other'"
    ):
        save_preset(Study(load_preset(other), out))
    assert load_preset(out / "study.yaml").raw == load_preset("tiny").raw  # still readable by the jobs
    save_preset(Study(load_preset(out / "study.yaml"), out))  # rerun from its own study.yaml
