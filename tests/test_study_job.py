"""The job entry point, `python -m ramlab.study.job STUDY_DIR JOB_ID`: one job of a study in
its own process, as parallel executors run it. A crash during training is resumed by the
next attempt; a done job is not redone; errors exit 1 with their message, Ctrl-C 130."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import tiny
import torch
from test_study import TINY_RAM, TINY_TRAIN, write_preset

from ramlab import robustness
from ramlab.config import load_yaml
from ramlab.cost import row_settings
from ramlab.data import datasets
from ramlab.device import threads_given
from ramlab.provenance import run_commit
from ramlab.study import Context, load_preset
from ramlab.study import jobs as study_jobs
from ramlab.study.extras import eval_settings
from ramlab.study.job import main
from ramlab.study.plan import build_plan

TRAIN = "train-ram-translated60-seed0"


@pytest.fixture
def study_dir(fake_mnist, tmp_path):
    """A study folder holding its study.yaml (one tiny RAM run, its evaluation and a cost
    measurement), with the run's scenes cached in RAMLAB_HOME so that another process,
    which cannot see `fake_mnist`, reads the same tiny scenes."""
    preset = load_preset(
        write_preset(
            tmp_path / "p.yaml",
            train={**TINY_TRAIN, "threads": 2},
            evaluate={"glimpses": 0, "sampled": False},
            cost={"models": ["ram"], "sizes": [28], "batch": 2, "configs": {"ram": tiny.TINY_RAM_COST}},
        )
    )
    out = tmp_path / "study"
    study_jobs.save_preset(Context(preset, out))
    datasets.build_dataset("translated60", seed=0)
    return out


def records(out) -> list[dict]:
    path = out / "jobs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_job_process(out, job_id: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ramlab.study.job", str(out), job_id],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_crashed_training_job_resumes_in_the_next_process(study_dir, tmp_path, capsys):
    mark = tmp_path / "crashed"
    crash = {"RAMLAB_TEST_CRASH_JOB": TRAIN, "RAMLAB_TEST_CRASH_MARK": str(mark), "RAMLAB_THREADS": "1"}
    run = study_dir / "runs" / "ram-translated60-seed0"

    first = run_job_process(study_dir, TRAIN, **crash)
    assert first.returncode == 3, first.stderr
    assert mark.exists() and (run / "last.pt").is_file() and not (run / "result.json").exists()
    assert records(study_dir) == []

    second = run_job_process(study_dir, TRAIN, **crash)  # the mark exists: no crash this time
    assert second.returncode == 0, second.stderr
    result = json.loads((run / "result.json").read_text())
    assert result["epochs_run"] == 2
    val_epochs = [
        json.loads(line)["epoch"]
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if "val/error" in line
    ]
    assert val_epochs == [1, 2]  # epoch 1 from the crashed process, epoch 2 after the resume
    assert load_yaml(run / "config.yaml")["train"]["threads"] == 1  # RAMLAB_THREADS over the preset's 2
    [line] = records(study_dir)
    assert (line["id"], line["kind"], line["run"]) == (TRAIN, "train", "ram-translated60-seed0")
    assert line["command"].startswith("python -m ramlab.study.job ")

    third = run_job_process(study_dir, TRAIN)
    assert third.returncode == 0 and f"{TRAIN}: already done" in third.stderr
    assert len(records(study_dir)) == 1

    # The same entry point in this process: the evaluation, now that its training is done.
    assert main([str(study_dir), "eval-ram-translated60-seed0"]) == 0
    assert (run / "eval.json").is_file()
    assert [r["id"] for r in records(study_dir)] == [TRAIN, "eval-ram-translated60-seed0"]


def test_a_job_whose_deps_are_not_done_is_refused(study_dir, capsys):
    assert main([str(study_dir), "eval-ram-translated60-seed0"]) == 1
    assert f"job eval-ram-translated60-seed0 needs {TRAIN} done first" in capsys.readouterr().err
    assert records(study_dir) == []


def test_an_unknown_job_or_study_exits_1_with_its_message(study_dir, tmp_path, capsys):
    assert main([str(study_dir), "train-ram-translated60-seed9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ramlab: error: ") and "has no job 'train-ram-translated60-seed9'" in err
    assert TRAIN in err and "Traceback" not in err
    assert main([str(tmp_path / "nowhere"), TRAIN]) == 1
    assert "no study.yaml" in capsys.readouterr().err


def test_a_wrong_thread_count_in_the_environment_exits_1(study_dir, capsys, monkeypatch):
    monkeypatch.setenv("RAMLAB_THREADS", "two")
    assert main([str(study_dir), "cost"]) == 1
    assert "RAMLAB_THREADS must be a whole number >= 1" in capsys.readouterr().err


def test_ctrl_c_exits_130_and_records_nothing(study_dir, capsys, monkeypatch):
    def interrupted(ctx, job):
        raise KeyboardInterrupt

    monkeypatch.setitem(study_jobs.RUNNERS, "cost", interrupted)
    assert main([str(study_dir), "cost"]) == 130
    assert capsys.readouterr().err.endswith("ramlab: interrupted; rerun the same command to resume\n")
    assert records(study_dir) == []


def test_cost_rows_timed_the_other_way_are_measured_again(tmp_path):
    def context(compile_: bool, repeats: int = 10) -> Context:
        cost = {"models": ["fc"], "sizes": [28], "compile": compile_, "repeats": repeats}
        return Context(
            load_preset(write_preset(tmp_path / f"{compile_}-{repeats}.yaml", cost=cost)), tmp_path / "study"
        )

    (job,) = [j for j in build_plan(context(False).preset) if j.kind == "cost"]
    (tmp_path / "study").mkdir()
    # how the preset measures: on the CPU, a batch of 64, the model's default config
    eager_row = {
        "model": "fc",
        "size": 28,
        "threads": threads_given(0),
        "commit": run_commit(),  # the code this test runs
        **row_settings("fc", 28, device="cpu", batch=64),
    }
    assert eager_row["compiled"] is False and eager_row["throughput_batch"] == 64

    def done(row: dict, *, compile_: bool = False, repeats: int = 10) -> bool:
        (tmp_path / "study" / "cost.json").write_text(json.dumps({"rows": [row]}))
        return study_jobs.is_done(context(compile_, repeats), job)

    assert done(eager_row)
    assert not done(eager_row, compile_=True)
    assert done({k: v for k, v in eager_row.items() if k != "compiled"})  # written before the key: eager
    assert not done({**eager_row, "device": "cuda"})  # the preset's device changed since
    assert not done({**eager_row, "throughput_batch": 256})  # or its batch
    assert not done({**eager_row, "config": {**eager_row["config"], "hidden": 7}})  # or the model's config
    assert eager_row["repeats"] == 10  # the preset's default: the median of 10 calls
    assert not done({**eager_row, "repeats": 3})  # timed with fewer calls (and rows before the key)
    assert not done({k: v for k, v in eager_row.items() if k != "repeats"})  # written before: 3
    # A preset of 3 calls: its rows, and those written before the key, are done; 10 calls' not.
    assert done({**eager_row, "repeats": 3}, repeats=3)
    assert done({k: v for k, v in eager_row.items() if k != "repeats"}, repeats=3)
    assert not done(eager_row, repeats=3)
    # Rows of other code, all there: done (a study rerun after a commit redoes nothing).
    assert done({**eager_row, "commit": "0" * 40})


def test_a_cost_job_with_rows_to_measure_measures_again_those_of_other_code(tmp_path, monkeypatch):
    # A study resumed after a commit measured only its missing rows, beside rows of the old code;
    # the ratios divide only rows of one commit, so the pairs were lost from the report.
    preset = load_preset(write_preset(tmp_path / "p.yaml", cost={"models": ["fc"], "sizes": [28, 60]}))
    (job,) = [j for j in build_plan(preset) if j.kind == "cost"]
    out = tmp_path / "study"
    out.mkdir()
    monkeypatch.setenv("RAMLAB_THREADS", "1")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # as run_job sets them
    row = {"model": "fc", "size": 28, "threads": 1, "torch": torch.__version__}
    row |= row_settings("fc", 28, device="cpu", batch=64)
    ctx = Context(preset, out)
    ctx.commit = "new"
    sizes: list[int] = []

    def measure(models, asked, **options):
        assert options["repeats"] == 10  # the preset's, as its rows must say to count as done
        sizes.extend(asked)
        return [{**row, "size": s} for s in asked]

    monkeypatch.setattr("ramlab.cost.measure_costs", measure)
    kept_rows = {  # the kept row at 28 px, and what is measured beside it
        "old code": ({**row, "commit": "old"}, [28, 60]),
        "another torch": ({**row, "commit": "new", "torch": "1.0"}, [28, 60]),
        "timed alike": ({**row, "commit": "new"}, [60]),
    }
    for case, (kept, measured) in kept_rows.items():
        (out / "cost.json").write_text(json.dumps({"rows": [kept]}))
        sizes.clear()
        study_jobs.run_cost(ctx, job)
        assert sizes == measured, case
        rows = json.loads((out / "cost.json").read_text())["rows"]
        assert {r["commit"] for r in rows} == {"new"} and sorted(r["size"] for r in rows) == [28, 60], case
    # On other nodes (Ray, Slurm) the kept rows' threads are not judged when listing: a job
    # there with other threads measures them all again rather than divide T1 by T2.
    ctx.jobs_here = False
    not_asked = {**row, "commit": "new", "size": 100}  # a size the preset no longer asks for
    (out / "cost.json").write_text(json.dumps({"rows": [{**row, "commit": "new", "threads": 4}, not_asked]}))
    sizes.clear()
    study_jobs.run_cost(ctx, job)
    assert sizes == [28, 60]
    # No row is lost: each one cost.json dropped is in cost-replaced.json, once.
    replaced = json.loads((out / study_jobs.REPLACED_COST).read_text())["rows"]
    assert replaced == [
        {**row, "commit": "old"},
        {**row, "commit": "new", "torch": "1.0"},
        {**row, "commit": "new", "threads": 4},
        not_asked,
    ]
    (out / "cost.json").write_text(json.dumps({"rows": [not_asked, not_asked]}))  # dropped again
    study_jobs.run_cost(ctx, job)
    assert json.loads((out / study_jobs.REPLACED_COST).read_text())["rows"] == replaced
    # A damaged cost-replaced.json is moved aside as it is, and a new one begun.
    (out / study_jobs.REPLACED_COST).write_text("{")
    study_jobs.run_cost(ctx, job)  # cost.json holds no row to drop now: nothing to keep
    (out / "cost.json").write_text(json.dumps({"rows": [not_asked]}))
    study_jobs.run_cost(ctx, job)
    (aside,) = out.glob("cost-replaced-damaged-*.json")
    assert aside.read_text() == "{"
    assert json.loads((out / study_jobs.REPLACED_COST).read_text())["rows"] == [not_asked]


def test_cost_rows_timed_with_other_threads_are_measured_again(tmp_path, monkeypatch):
    # A cost job stopped after one model and resumed under another thread count would divide
    # timings taken at two in the report's ratios.
    preset = load_preset(write_preset(tmp_path / "p.yaml", cost={"models": ["fc"], "sizes": [28]}))
    (job,) = [j for j in build_plan(preset) if j.kind == "cost"]
    (tmp_path / "study").mkdir()
    row = {
        "model": "fc",
        "size": 28,
        "threads": 1,
        "commit": run_commit(),
        **row_settings("fc", 28, device="cpu", batch=64),
    }
    (tmp_path / "study" / "cost.json").write_text(json.dumps({"rows": [row]}))
    monkeypatch.setenv("RAMLAB_THREADS", "1")
    assert study_jobs.is_done(Context(preset, tmp_path / "study"), job)
    monkeypatch.setattr("ramlab.device.available_cpus", lambda: 4)
    monkeypatch.setenv("RAMLAB_THREADS", "2")
    assert not study_jobs.is_done(Context(preset, tmp_path / "study"), job)
    # Jobs on Ray or Slurm nodes: their CPUs, so their threads, are the job's to judge.
    remote = Context(preset, tmp_path / "study")
    remote.jobs_here = False
    assert study_jobs.is_done(remote, job)


def test_a_robustness_sweep_of_other_scenes_is_run_again(tmp_path):
    sweep = {"runs": "all", "shifts": {"rotate": [0, 30]}, "limit": 8}
    ctx = Context(load_preset(write_preset(tmp_path / "p.yaml", robustness=[sweep])), tmp_path / "study")
    (job,) = [j for j in build_plan(ctx.preset) if j.kind == "robustness"]
    path = ctx.run_dir(job.run) / "robustness.json"
    path.parent.mkdir(parents=True)
    done = {
        "format": robustness.FORMAT,
        "limit": 8,
        "sample": False,
        "shifts": {"rotate": {"levels": [0, 30], "error": [1.0, 2.0]}},
    }
    path.write_text(json.dumps(done))
    assert study_jobs.is_done(ctx, job)
    for changed in ({"limit": 16}, {"sample": True}, {"format": 1}):  # format 1 read the first 8 digits
        path.write_text(json.dumps({**done, **changed}))
        assert not study_jobs.is_done(ctx, job), changed
    # Format 5 gave a limited sweep the first 8 digits' random numbers: a RAM's is redone.
    path.write_text(json.dumps({**done, "format": 5, "protocol": "policy mean, one rollout"}))
    assert not study_jobs.is_done(ctx, job)
    # Damaged inside (JSON, but a shift or the shifts not an object): swept again, no traceback.
    # Levels without their errors read as damaged too, as the sweep reads them (they counted as done).
    no_errors = {"shifts": {"rotate": {"levels": [0, 30]}}}
    for damaged in ({"shifts": []}, {"shifts": {"rotate": [0, 30]}}, {"shifts": None}, no_errors):
        path.write_text(json.dumps({**done, **damaged}))
        assert not study_jobs.is_done(ctx, job), damaged


def test_an_evaluation_made_with_other_draws_is_run_again(tmp_path):
    # Before `draws` 2, a limited evaluation and the figures' scenes took the split's first
    # rows' random numbers (a random first glimpse), not their own.
    preset = write_preset(tmp_path / "p.yaml", evaluate={"limit": 8, "glimpses": 2})
    ctx = Context(load_preset(preset), tmp_path / "study")
    job = next(j for j in build_plan(ctx.preset) if j.kind == "eval")
    path = ctx.run_dir(job.run) / "eval.json"
    path.parent.mkdir(parents=True)
    settings = eval_settings(ctx.preset.evaluate)
    path.write_text(json.dumps({"settings": settings}))
    assert study_jobs.is_done(ctx, job)
    path.write_text(json.dumps({"settings": {k: v for k, v in settings.items() if k != "draws"}}))
    assert not study_jobs.is_done(ctx, job)


def test_a_damaged_result_is_not_done_and_its_job_rewrites_it(study_dir, capsys, monkeypatch):
    # a result.json cut short read as done: the study went on without the run's result
    monkeypatch.setenv("RAMLAB_THREADS", "1")
    ctx = Context(load_preset(study_dir / "study.yaml"), study_dir)
    (job,) = [j for j in build_plan(ctx.preset) if j.id == TRAIN]
    assert main([str(study_dir), TRAIN]) == 0
    result = study_dir / "runs" / "ram-translated60-seed0" / "result.json"
    first = json.loads(result.read_text())
    assert study_jobs.is_done(ctx, job)
    result.write_text(result.read_text()[:40])
    assert not study_jobs.is_done(ctx, job)
    capsys.readouterr()
    assert main([str(study_dir), TRAIN]) == 0
    assert f"{result} is damaged: testing best.pt again to rewrite it" in capsys.readouterr().err
    again = json.loads(result.read_text())
    assert {k: again[k] for k in ("test_error", "val_error", "steps")} == {
        k: first[k] for k in ("test_error", "val_error", "steps")
    }
    assert study_jobs.is_done(ctx, job)


def test_list_judges_the_cost_rows_at_the_executors_threads(tmp_path, monkeypatch, capsys):
    # --list judged them at the preset's threads, not --threads-per-job: it could list the
    # cost job done where the run measures it again, or the reverse.
    from ramlab.cli import main as cli

    monkeypatch.setattr("ramlab.device.available_cpus", lambda: 4)
    monkeypatch.setattr("ramlab.execute.resources.available_cpus", lambda: 4)
    monkeypatch.delenv("RAMLAB_THREADS", raising=False)
    preset = write_preset(tmp_path / "p.yaml", cost={"models": ["fc"], "sizes": [28]})
    out = tmp_path / "study"
    out.mkdir()
    row = {
        "model": "fc",
        "size": 28,
        "threads": 2,
        "commit": run_commit(),
        **row_settings("fc", 28, device="cpu", batch=64),
    }
    (out / "cost.json").write_text(json.dumps({"rows": [row]}))

    def cost_listed(*extra: str) -> str:
        assert cli(["study", str(preset), "--out", str(out), "--list", *extra]) == 0
        (line,) = [line for line in capsys.readouterr().out.splitlines() if "cost" in line]
        return line.split()[1]

    assert cost_listed() == "to"  # serially at the preset's 1 thread: "to do"
    assert cost_listed("--executor", "local", "--jobs", "2", "--threads-per-job", "2") == "done"
    assert cost_listed("--executor", "local", "--threads-per-job", "1") == "to"
    assert cost_listed("--threads-per-job", "2") == "done"  # serial, torch's threads given


def test_evaluation_and_sweeps_run_on_the_device_their_group_trains_on(tmp_path, monkeypatch):
    # They took the preset's top-level device only: a group's `train.device` reached its
    # training, not its evaluation or robustness sweep.
    from ramlab import robustness

    groups = [
        {"name": "here", "model": "ram", "data": "translated60", "model_config": TINY_RAM},
        {
            "name": "there",
            "model": "ram",
            "data": "translated60",
            "model_config": TINY_RAM,
            "train": {"device": "cuda:1"},
        },
    ]
    sweep = {"runs": "all", "shifts": ["rotate"], "limit": 8}
    preset = load_preset(
        write_preset(tmp_path / "p.yaml", runs=groups, evaluate={"sampled": True}, robustness=[sweep])
    )
    ctx = Context(preset, tmp_path / "study")
    devices: dict[tuple[str, str], str] = {}
    monkeypatch.setattr(
        study_jobs,
        "evaluate_run_extras",
        lambda run, **kw: devices.__setitem__(("eval", run.name), kw["device"]),
    )
    monkeypatch.setattr(
        robustness,
        "robustness_sweep",
        lambda run, **kw: devices.__setitem__(("sweep", run.name), kw["device"]),
    )
    for job in build_plan(preset):
        if job.kind in ("eval", "robustness"):
            study_jobs.RUNNERS[job.kind](ctx, job)
    assert devices == {
        (kind, run): device
        for kind in ("eval", "sweep")
        for run, device in (("here-translated60-seed0", "cpu"), ("there-translated60-seed0", "cuda:1"))
    }
