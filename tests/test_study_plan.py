"""The study's plan: a pure function of the preset, with stable, file-safe job ids and the
dependencies (evaluation and robustness after their training; a best-reward group after the
groups it compares, on the same dataset), in an order that respects them."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from test_study import TINY_RAM, TINY_TRAIN, write_preset

from ramlab.errors import RamlabError
from ramlab.study import Job, Study, build_plan, load_preset, topological_order


def by_id(jobs: list[Job]) -> dict[str, Job]:
    return {job.id: job for job in jobs}


def test_the_tiny_plan_has_stable_ids_and_deps(tmp_path):
    preset = load_preset("tiny")
    jobs = build_plan(preset)
    assert jobs == build_plan(load_preset("tiny"))  # pure: the same preset, the same plan
    assert not list(tmp_path.iterdir())
    ids = [job.id for job in jobs]
    assert len(set(ids)) == len(ids) == 16
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", id) for id in ids)
    assert ids[:5] == [
        "train-ram-sparse-translated60-seed0",
        "train-ram-sparse-translated60-seed1",
        "train-ram-infogain-translated60-seed0",
        "train-ram-best-translated60-seed0",
        "train-resnet-translated60-seed0",
    ]
    assert ids[-1] == "cost" and by_id(jobs)["cost"].deps == ()
    for job in jobs:
        if job.kind in ("eval", "robustness"):
            assert job.deps == (f"train-{job.run}",)
            assert job.id == (f"eval-{job.run}" if job.kind == "eval" else f"robustness-0-{job.run}")
    assert by_id(jobs)["train-ram-best-translated60-seed0"].deps == (
        "train-ram-sparse-translated60-seed0",
        "train-ram-sparse-translated60-seed1",
        "train-ram-infogain-translated60-seed0",
    )
    assert by_id(jobs)["train-ram-sparse-translated60-seed0"].deps == ()
    assert Study(preset, tmp_path, log=lambda _: None).jobs() == jobs  # already in order


def test_a_best_reward_group_waits_for_the_compared_runs_on_its_own_dataset(tmp_path):
    ram = {"model": "ram", "model_config": TINY_RAM}
    preset = load_preset(
        write_preset(
            tmp_path / "p.yaml",
            seeds=2,
            runs=[
                {"name": "a", "data": ["mnist", "translated60"], **ram},
                {"name": "b", "data": "translated60", "seeds": 1, **ram},
                {"name": "best", "data": ["translated60", "mnist"], "best_reward_of": ["a"], **ram},
                {"name": "cnn", "model": "resnet", "data": "mnist"},
            ],
            robustness=[{"runs": "b", "shifts": ["noise"]}, {"runs": ["a"], "shifts": ["rotate"]}],
        )
    )
    jobs = by_id(build_plan(preset))
    for seed in (0, 1):
        assert jobs[f"train-best-mnist-seed{seed}"].deps == ("train-a-mnist-seed0", "train-a-mnist-seed1")
        assert jobs[f"train-best-translated60-seed{seed}"].deps == (
            "train-a-translated60-seed0",
            "train-a-translated60-seed1",
        )
    assert jobs["robustness-0-b-translated60-seed0"].deps == ("train-b-translated60-seed0",)
    assert jobs["robustness-1-a-mnist-seed1"].deps == ("train-a-mnist-seed1",)
    assert not any(id.startswith(("eval-", "cost")) for id in jobs)  # no evaluate nor cost section
    assert sum(job.kind == "robustness" for job in jobs.values()) == 1 + 4


def test_a_best_reward_group_keeps_the_reward_its_first_run_was_given(tmp_path):
    import json

    import yaml

    from ramlab.study.context import Context

    ram = {"model": "ram", "model_config": TINY_RAM}
    preset = load_preset(
        write_preset(
            tmp_path / "p.yaml",
            seeds=2,
            runs=[
                {
                    "name": "a",
                    "data": "translated60",
                    **ram,
                    "model_config": {**TINY_RAM, "reward": "sparse"},
                },
                {"name": "b", "data": "translated60", **ram, "model_config": {**TINY_RAM, "reward": "bbox"}},
                {"name": "best", "data": "translated60", "best_reward_of": ["a", "b"], **ram},
            ],
        )
    )
    out = tmp_path / "study"
    ctx = Context(preset, out, log=lambda _: None)
    jobs = by_id(build_plan(preset))
    for run, error in (("a-translated60-seed0", 5.0), ("b-translated60-seed0", 3.0)):
        (out / "runs" / run).mkdir(parents=True)
        (out / "runs" / run / "result.json").write_text(json.dumps({"val_error": error, "test_error": None}))
    best0, best1 = jobs["train-best-translated60-seed0"], jobs["train-best-translated60-seed1"]
    assert ctx.run_config(best1).model_config.reward == "bbox"  # b's mean is lower
    # Seed 0 started when a was ahead: the group stays on a's reward whatever finished since.
    config = ctx.run_config(best0).with_overrides(train={}, model_config={"reward": "sparse"})
    (out / "runs" / best0.run).mkdir(parents=True)
    (out / "runs" / best0.run / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    assert ctx.run_config(best1).model_config.reward == "sparse"
    assert ctx.run_config(best0).model_config.reward == "sparse"


def test_topological_order_puts_deps_first_and_keeps_the_given_order_otherwise():
    jobs = [Job("train", "a"), Job("eval", "b", ("a",)), Job("train", "c", ("d",)), Job("train", "d")]
    assert [j.id for j in topological_order(jobs)] == ["a", "b", "d", "c"]
    plan = build_plan(load_preset("tiny"))
    reordered = topological_order(list(reversed(plan)))
    position = {job.id: i for i, job in enumerate(reordered)}
    assert all(position[dep] < position[job.id] for job in plan for dep in job.deps)
    assert reordered[0].id == "cost"  # it needs nothing, and came first
    with pytest.raises(ValueError, match="cycle: a, b"):
        topological_order([Job("train", "a", ("b",)), Job("train", "b", ("a",))])
    with pytest.raises(ValueError, match="depends on x, which is not in the plan"):
        topological_order([Job("eval", "a", ("x",))])
    with pytest.raises(ValueError, match="same id"):
        topological_order([Job("train", "a"), replace(jobs[0], kind="eval")])


def test_a_failed_training_skips_the_jobs_that_need_it(fake_mnist, tmp_path, monkeypatch):
    import ramlab.trainer as trainer

    def fit(self, **kwargs):
        raise RamlabError("the loss became nan")

    monkeypatch.setattr(trainer.Trainer, "fit", fit)
    preset = load_preset(
        write_preset(
            tmp_path / "p.yaml",
            train=TINY_TRAIN,
            runs=[
                {"name": "a", "model": "ram", "data": "translated60", "model_config": TINY_RAM},
                {"name": "b", "model": "ram", "data": "translated60", "best_reward_of": "a"},
            ],
            evaluate={"glimpses": 0, "sampled": False},
        )
    )
    logs: list[str] = []
    with pytest.raises(
        RamlabError, match=r"^1 job\(s\) of the study failed.*\n  train a-translated60-seed0: "
    ):
        Study(preset, tmp_path / "s", log=logs.append).run(report=False)
    assert [line for line in logs if "skipped" in line] == [
        "[study] skipped: train b-translated60-seed0 (train a-translated60-seed0 failed)",
        "[study] skipped: eval a-translated60-seed0 (its training failed)",
        "[study] skipped: eval b-translated60-seed0 (train b-translated60-seed0 was skipped)",
    ]
    assert not (tmp_path / "s" / "jobs.jsonl").exists()
