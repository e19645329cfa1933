"""The study's time estimates: units of work per job, seconds per unit learnt from finished
jobs (this process's, and the study's jobs.jsonl on a resume), priors before any."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ramlab.study import Study, load_preset
from ramlab.study.estimate import (
    PRIOR_BY_KIND,
    PRIOR_SECONDS,
    Rates,
    epochs_trained,
    finished_seconds,
    units,
)
from ramlab.study.runner import duration

TRAIN = {"epochs": 2, "batch_size": 8, "train_limit": 16, "eval_limit": 8, "threads": 1, "progress": False}


def preset(tmp_path: Path, **sections):
    spec = {
        "seeds": 2,
        "train": TRAIN,
        "runs": [
            {"name": "ram", "model": "ram", "data": "translated60", "model_config": {"rollouts": 2}},
            {"name": "resnet", "model": "resnet", "data": "translated60"},
        ],
        **sections,
    }
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_preset(str(path))


def by_id(study: Study) -> dict:
    return {job.id: job for job in study.jobs()}


def test_units_of_each_kind_of_job_by_hand(tmp_path):
    p = preset(
        tmp_path,
        evaluate={"limit": 30},
        robustness=[{"runs": "all", "shifts": {"rotate": [0, 30]}, "limit": 10}],
        cost={"models": ["ram", "resnet"], "sizes": [28, 60, 100]},
    )
    jobs = by_id(Study(p, tmp_path / "s", log=lambda _: None))
    # 2 epochs x 16 scenes x 2 rollouts, plus a quarter of 2 validations of 8 and a test of 8
    assert units(jobs["train-ram-translated60-seed0"], p) == ("ram", 2 * 16 * 2 + (2 * 8 + 8) / 4)
    assert units(jobs["train-resnet-translated60-seed1"], p) == ("resnet", 2 * 16 + (2 * 8 + 8) / 4)
    assert units(jobs["eval-ram-translated60-seed0"], p) == ("ram", 60)  # mean and sampled
    assert units(jobs["robustness-0-resnet-translated60-seed0"], p) == ("resnet", 20)  # 2 levels
    assert units(jobs["cost"], p) == ("all", 6)


def test_an_evaluation_counts_the_scenes_it_reads(tmp_path):
    # no preset limit: the run's own eval_limit (8), as study.extras reads; it counted 10,000
    p = preset(tmp_path, evaluate={"sampled": False})
    jobs = by_id(Study(p, tmp_path / "s", log=lambda _: None))
    assert units(jobs["eval-ram-translated60-seed0"], p) == ("ram", 8)  # where the glimpses go
    p = preset(tmp_path, evaluate={"sampled": True})
    jobs = by_id(Study(p, tmp_path / "s", log=lambda _: None))
    assert units(jobs["eval-ram-translated60-seed0"], p) == ("ram", 16)  # and sampled


def test_rates_prefer_the_model_then_the_kind_then_the_prior():
    rates = Rates()
    assert rates.per_unit("train", "ram") == PRIOR_SECONDS[("train", "ram")]
    assert rates.per_unit("train", "newnet") == PRIOR_BY_KIND["train"]  # no measured prior
    rates.add("train", "resnet", work=100, seconds=30)
    # Another model of the kind says how fast this machine is against the priors' (the
    # ResNet's 0.3 against its prior), not what a RAM's unit costs.
    speed = 0.3 / PRIOR_SECONDS[("train", "resnet")]
    assert rates.per_unit("train", "ram") == pytest.approx(PRIOR_SECONDS[("train", "ram")] * speed)
    assert rates.per_unit("train", "newnet") == pytest.approx(PRIOR_BY_KIND["train"] * speed)
    for seconds in (10, 50, 20):
        rates.add("train", "ram", work=100, seconds=seconds)
    assert rates.per_unit("train", "ram") == pytest.approx(0.2)  # the median: one slow job moves it little
    assert rates.per_unit("eval", "ram") == PRIOR_SECONDS[("eval", "ram")]
    rates.add("eval", "ram", work=0, seconds=5)  # nothing to learn from
    assert rates.per_unit("eval", "ram") == PRIOR_SECONDS[("eval", "ram")]


def test_rates_prefer_the_same_dataset_then_any_dataset_of_the_model():
    rates = Rates()
    rates.add("train", "ram", work=100, seconds=10, data="mnist")
    assert rates.per_unit("train", "ram", "cluttered60") == pytest.approx(0.1)  # mnist's, for want of its own
    rates.add("train", "ram", work=100, seconds=40, data="cluttered60")
    assert rates.per_unit("train", "ram", "cluttered60") == pytest.approx(0.4)
    assert rates.per_unit("train", "ram", "mnist") == pytest.approx(0.1)
    assert rates.per_unit("train", "ram", "translated60") == pytest.approx(0.25)  # the median of both
    assert rates.per_unit("train", "ram") == pytest.approx(0.25)  # no dataset: every ram training
    speed = 0.25 / PRIOR_SECONDS[("train", "ram")]  # the kind's: the RAM's at its prior's scale
    assert rates.per_unit("train", "resnet", "mnist") == pytest.approx(
        PRIOR_SECONDS[("train", "resnet")] * speed
    )


def test_finished_seconds_reads_the_jobs_of_the_plan_and_passes_over_bad_lines(tmp_path):
    path = tmp_path / "jobs.jsonl"
    assert finished_seconds(path, ["a"]) == {}  # no file yet
    lines = [
        json.dumps({"id": "a", "seconds": 12.5}),
        "{not json",
        json.dumps({"id": "b"}),
        json.dumps({"id": "c", "seconds": "x"}),
        json.dumps({"id": "gone", "seconds": 3}),
        json.dumps({"id": {"a": 1}, "seconds": 3}),  # an unhashable id: a TypeError before
        json.dumps({"id": "a", "seconds": 14.0}),
    ]
    path.write_text("\n".join(lines) + "\n")
    assert finished_seconds(path, ["a", "b", "c"]) == {"a": (14.0, None)}  # no units: an older line
    path.write_text(json.dumps({"id": "a", "seconds": 6.0, "units": 30}) + "\n")
    assert finished_seconds(path, ["a"]) == {"a": (6.0, 30.0)}
    path.write_bytes(b"\xff\xfe")
    assert finished_seconds(path, ["a"]) == {}


def test_a_resumed_study_estimates_from_what_its_finished_jobs_took(tmp_path):
    p = preset(tmp_path)
    out = tmp_path / "s"
    lines: list[str] = []
    study = Study(p, out, log=lines.append)
    jobs = by_id(study)
    seed0, seed1 = jobs["train-ram-translated60-seed0"], jobs["train-ram-translated60-seed1"]
    resnet = jobs["train-resnet-translated60-seed0"]
    prior = units(seed1, p)[1] * PRIOR_SECONDS[("train", "ram")]
    assert study._seconds(seed1) == pytest.approx(prior)

    # seed 0 finished in an earlier process at 0.5 s a unit (70 units): 35 s
    (out / "runs" / seed0.run).mkdir(parents=True)
    (out / "runs" / seed0.run / "result.json").write_text(json.dumps({"val_error": 3.0, "test_error": 4.0}))
    (out / "jobs.jsonl").write_text(json.dumps({"id": seed0.id, "seconds": 35.0}) + "\n")
    study = Study(p, out, log=lines.append)
    study._start("in this process")
    assert study._seconds(seed1) == pytest.approx(35.0)  # the same units, the same model
    # The ResNet: its own prior at the speed the RAM showed (0.5 s a unit against its prior).
    speed = 0.5 / PRIOR_SECONDS[("train", "ram")]
    assert study._seconds(resnet) == pytest.approx(
        speed * PRIOR_SECONDS[("train", "resnet")] * units(resnet, p)[1]
    )
    left = [job for job in by_id(study).values() if not study.is_done(job)]
    total = duration(sum(study._seconds(job) for job in left))
    # By hand: RAM seed 1 35 s; two ResNet seeds of 38 units at 1.8e-3 x (0.5 / 4e-4) = 2.25 s a unit.
    assert units(resnet, p)[1] == 38 and [job.group.name for job in left] == ["ram", "resnet", "resnet"]
    assert sum(study._seconds(job) for job in left) == pytest.approx(35 + 2 * 38 * 2.25)
    assert total == duration(35 + 2 * 38 * 2.25)
    assert f"{len(left)} to run in this process (estimate {total})" in lines[-1]
    study._start("with --executor local", serial=False)  # a sum of the jobs' times, not the wall
    assert f"{len(left)} to run with --executor local (estimate {total} of job time)" in lines[-1]

    # seed 1 was interrupted after validating epoch 1 of 2: 1 x 16 x 2 + (1 x 8 + 8) / 4 = 36 left
    metrics = [{"step": 2, "epoch": 0.5, "train/loss": 1.0}, {"step": 4, "epoch": 1, "val/error": 50.0}]
    (out / "runs" / seed1.run).mkdir(parents=True)
    (out / "runs" / seed1.run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    assert study._seconds(seed1) == pytest.approx(0.5 * 36)

    # seed 0's line says its attempt did 35 units (it resumed half-trained): 1 s a unit, not 0.5.
    (out / "jobs.jsonl").write_text(json.dumps({"id": seed0.id, "seconds": 35.0, "units": 35}) + "\n")
    study = Study(p, out, log=lines.append)
    study._start("in this process")
    assert study._seconds(seed1) == pytest.approx(1.0 * 36)


def test_epochs_trained_reads_the_last_validated_epoch(tmp_path):
    assert epochs_trained(tmp_path) == 0  # no metrics.jsonl
    lines = [
        {"epoch": 1, "val/error": 9.0},
        {"epoch": 2.5, "train/loss": 1.0},
        {"epoch": 2, "val/error": 8.0},
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    (tmp_path / "metrics.jsonl").write_text(text + '{"epoch": 3, "val/err')  # a line cut by a crash
    assert epochs_trained(tmp_path) == 2
    (tmp_path / "metrics.jsonl").write_bytes(b"\xff")
    assert epochs_trained(tmp_path) == 0


def test_a_resumed_sweep_or_cost_job_is_estimated_on_what_it_has_left(tmp_path, monkeypatch):
    # Both counted every level (cell) again: a sweep keeps the shifts its robustness.json holds
    # at the asked levels (`robustness_sweep` on a resume), and the cost job the cells of
    # cost.json it keeps.
    import torch

    from ramlab.device import threads_given
    from ramlab.study import jobs as study_jobs
    from ramlab.sweeps import FORMAT, same_sweep

    p = preset(
        tmp_path,
        robustness=[{"runs": "all", "shifts": {"rotate": [0, 30], "noise": [0, 0.1, 0.2]}, "limit": 10}],
        cost={"models": ["ram", "resnet"], "sizes": [28, 60, 100]},
    )
    study = Study(p, tmp_path / "s", log=lambda _: None)
    jobs = by_id(study)
    sweep = jobs["robustness-0-resnet-translated60-seed0"]
    assert study._left(sweep) == ("resnet", 5 * 10)  # nothing swept: 5 levels of 10 scenes
    saved = {"format": FORMAT, "split": "test", "sample": False, "limit": 10, "shifts": {}}
    assert same_sweep(saved, limit=10, sample=False)
    rotate = {"levels": [0, 30], "error": [1.0, 2.0]}
    noise = {"levels": [0, 0.1, 0.2], "error": [1.0, 5.0, 9.0]}
    path = study.run_dir(sweep.run) / "robustness.json"
    path.parent.mkdir(parents=True)

    def holding(shifts: dict, **changes) -> tuple[str, float]:
        path.write_text(json.dumps({**saved, **changes, "shifts": shifts}))
        return study._left(sweep)

    assert holding({"rotate": rotate}) == ("resnet", 3 * 10)  # noise's 3 levels left
    assert not study.is_done(sweep)
    assert holding({"rotate": {"levels": [0, 45], "error": [1.0, 3.0]}}) == ("resnet", 5 * 10)  # redone
    assert holding({"rotate": rotate, "noise": noise}) == ("resnet", 0)
    assert study.is_done(sweep)
    assert holding({"rotate": rotate, "noise": noise, "scale": {"levels": [1]}}) == ("resnet", 5 * 10)
    assert not study.is_done(sweep)  # a damaged shift, even one not asked for: all swept afresh
    assert holding({"rotate": rotate, "noise": {"levels": [0, 0.1, 0.2]}}) == ("resnet", 5 * 10)  # no errors
    assert holding({"rotate": rotate}, limit=20) == ("resnet", 5 * 10)  # another kind of sweep

    cost = jobs["cost"]
    assert study._left(cost) == ("all", 6)
    study.commit = "abc"
    alike = {"commit": "abc", "threads": threads_given(study.job_threads()), "torch": torch.__version__}
    rows = [{"model": m, "size": size, **alike} for m, size in (("ram", 28), ("resnet", 100), ("fc", 60))]
    monkeypatch.setattr(study_jobs, "_cost_rows_of", lambda ctx: rows)  # measured as asked
    assert study_jobs.cost_cells_left(study, rows) == {
        ("ram", 60),
        ("ram", 100),
        ("resnet", 28),
        ("resnet", 60),
    }
    assert study._left(cost) == ("all", 4)  # fc's row is not one the preset asks for
    for other in ({"commit": "old"}, {"threads": alike["threads"] + 1}, {"torch": "1.0"}):
        rows[0] = {**rows[0], **alike, **other}
        assert study._left(cost) == ("all", 6), other  # a row of other code, threads or torch: all again
