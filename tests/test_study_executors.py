"""The tiny study under the parallel executors: each job its own process (with the tests'
synthetic digits, via tests/fake_data_job.py), in dependency order, at most N at once; a
crash fails only its job and what needs it, and a rerun resumes it; the report is the
serial run's."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from test_study import TINY_RAM, write_preset

from ramlab.errors import RamlabError
from ramlab.execute import Resources
from ramlab.study import Study, load_preset

FAKE_JOB = (sys.executable, str(Path(__file__).parent / "fake_data_job.py"))
CRASH = "train-ram-translated60-seed0"
SMALL = {  # five jobs: two trainings, their evaluations, a cost measurement
    "runs": [
        {"name": "ram", "model": "ram", "data": "translated60", "model_config": TINY_RAM},
        {"name": "fc", "model": "fc", "data": "translated60", "model_config": {"hidden": 8}},
    ],
    "evaluate": {"glimpses": 0, "sampled": False},
    "cost": {"models": ["fc"], "sizes": [28], "batch": 2, "configs": {"fc": {"hidden": 8}}},
}


def study(out: Path, preset: str | Path = "tiny") -> Study:
    return Study(load_preset(preset), out, command="ramlab study", job_command=FAKE_JOB, log=lambda _: None)


@pytest.fixture
def small(tmp_path) -> Path:
    return write_preset(tmp_path / "small.yaml", **SMALL)


def times(path: Path) -> dict[str, dict]:
    return {line["id"]: line for line in map(json.loads, path.read_text().splitlines())}


def content(report: Path) -> str:
    """report.md without what two runs of the same study measure differently: wall times,
    and the cost section's latency, throughput and memory (its parameters and FLOPs stay)."""
    before, cost = report.read_text().split("\n## Compute cost\n")
    cost, after = cost.split("\n## ", 1)
    kept = [
        " | ".join(cells[:4] + cells[7:])
        for cells in (line.split(" | ") for line in cost.splitlines() if line.startswith("| `"))
    ]
    text = "\n".join([before, *kept, after]).replace(str(report.parent), "DIR")
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d", "DATE", text)
    return re.sub(r"\| \d+(\.\d+)? (s|min|h) \|", "| T |", text)


def test_local_runs_two_jobs_at_once_in_dependency_order_and_reports_as_serial(
    fake_mnist, tmp_path, monkeypatch
):
    serial = study(tmp_path / "serial")
    serial.run()
    monkeypatch.setenv("RAMLAB_TEST_TIMES", str(tmp_path / "times.jsonl"))
    local = study(tmp_path / "local")
    local.run(executor="local", resources=Resources(jobs=2, threads_per_job=1))

    ran = times(tmp_path / "times.jsonl")
    jobs = local.jobs()
    assert set(ran) == {job.id for job in jobs} and all(r["code"] == 0 for r in ran.values())
    events = sorted([(r["start"], 1) for r in ran.values()] + [(r["end"], -1) for r in ran.values()])
    running = [sum(step for _, step in events[: i + 1]) for i in range(len(events))]
    assert max(running) == 2  # two at once, never more
    for job in jobs:
        for dep in job.deps:
            assert ran[job.id]["start"] >= ran[dep]["end"], (job.id, dep)
    # The cost job times the models: it ran alone, after every other job had ended.
    assert "cost" in ran
    assert all(ran["cost"]["start"] >= r["end"] for job_id, r in ran.items() if job_id != "cost")
    assert content(tmp_path / "local" / "report.md") == content(tmp_path / "serial" / "report.md")


def test_a_crashed_job_fails_alone_and_a_rerun_resumes_it(fake_mnist, tmp_path, monkeypatch, small):
    monkeypatch.setenv("RAMLAB_TEST_CRASH_JOB", CRASH)
    monkeypatch.setenv("RAMLAB_TEST_CRASH_MARK", str(tmp_path / "crashed"))
    out = tmp_path / "study"
    with pytest.raises(RamlabError, match=r"1 job\(s\) of the study failed") as info:
        study(out, small).run(executor="local", resources=Resources(jobs=2))
    assert f"train ram-translated60-seed0: exit 3 (log: {out / 'logs' / CRASH}.log)" in str(info.value)
    first = [json.loads(line)["id"] for line in (out / "jobs.jsonl").read_text().splitlines()]
    assert sorted(first) == ["cost", "eval-fc-translated60-seed0", "train-fc-translated60-seed0"]
    assert (out / "runs" / CRASH[6:] / "last.pt").exists()  # it crashed after its first epoch

    study(out, small).run(executor="local", resources=Resources(jobs=2))
    records = [json.loads(line)["id"] for line in (out / "jobs.jsonl").read_text().splitlines()]
    assert sorted(records) == sorted(job.id for job in study(out, small).jobs())  # each job once
    epochs = [
        json.loads(line)["epoch"]
        for line in (out / "runs" / CRASH[6:] / "metrics.jsonl").read_text().splitlines()
        if "val/error" in line
    ]
    assert epochs == [1, 2]  # resumed after epoch 1, not restarted


def test_ray_retries_the_crashed_job(fake_mnist, tmp_path, monkeypatch, small):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAMLAB_TEST_CRASH_JOB", CRASH)
    monkeypatch.setenv("RAMLAB_TEST_CRASH_MARK", str(tmp_path / "crashed"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # workers inherit the env
    try:
        out = tmp_path / "study"
        study(out, small).run(executor="ray", resources=Resources(jobs=2), options={"retries": 1})
    finally:
        ray.shutdown()
    assert (tmp_path / "crashed").exists()  # it did crash once
    assert (out / "report.md").exists()
    records = [json.loads(line)["id"] for line in (out / "jobs.jsonl").read_text().splitlines()]
    assert sorted(records) == sorted(job.id for job in study(out, small).jobs())


def test_jobs_get_the_study_folder_absolute_and_the_cache_the_driver_was_given(
    tmp_path, monkeypatch, small
) -> None:
    # A Ray worker on another node starts in its own directory without the driver's variables.
    captured = []
    monkeypatch.setattr("ramlab.study.runner.execute", lambda tasks, **_: captured.extend(tasks) or [])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAMLAB_HOME", "cache")  # relative, as a user may give it
    study(Path("rel") / "out", small).run(report=False, executor="ray")
    assert captured
    for task in captured:
        assert task.argv[-2] == str(tmp_path / "rel" / "out") and task.log.is_absolute()
        assert task.env["RAMLAB_HOME"] == str(tmp_path / "cache")
    # ~ expanded, as ramlab_home() does; an empty value is unset (the jobs find the default)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for value, expected in (("~/cache", str(tmp_path / "home" / "cache")), ("", None)):
        captured.clear()
        monkeypatch.setenv("RAMLAB_HOME", value)
        study(Path("rel") / "out", small).run(report=False, executor="ray")
        assert {task.env.get("RAMLAB_HOME") for task in captured} == {expected}
    # The user's XDG cache goes along too (a Ray job lacks it: a second cache, built again);
    # a relative XDG_CACHE_HOME is ignored, as the XDG spec says.
    for value, expected in (
        (str(tmp_path / "xdg"), str(tmp_path / "xdg" / "ramlab")),
        ("xdg", str(tmp_path / "home" / ".cache" / "ramlab")),
    ):
        captured.clear()
        monkeypatch.setenv("XDG_CACHE_HOME", value)
        study(Path("rel") / "out", small).run(report=False, executor="ray")
        assert {task.env.get("RAMLAB_HOME") for task in captured} == {expected}


def test_an_unknown_executor_option_is_refused_before_the_study_folder_is_made(tmp_path):
    out = tmp_path / "study"
    with pytest.raises(RamlabError, match=r"unknown option\(s\) foo for --executor local; valid: "):
        study(out).run(executor="local", resources=Resources(jobs=1), options={"foo": 1})
    assert not out.exists()
