"""The DAG, its bookkeeping and the resources, without running commands."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest

from ramlab.errors import RamlabError
from ramlab.execute import Resources, Task, execute, levels, options, topological_order
from ramlab.execute import resources as resources_module
from ramlab.execute.dag import Tracker, duration
from ramlab.execute.resources import GpuPool, check_cpus, visible_gpus

# The tracker notes a skip in the task's log: under the system's temp folder, not at /.
LOGS = Path(tempfile.gettempdir()) / "ramlab-test-dag-logs"


def task(task_id: str, *deps: str, seconds: float = 60.0, alone: bool = False) -> Task:
    log = LOGS / f"{task_id}.log"
    return Task(id=task_id, argv=["true"], deps=deps, log=log, seconds=seconds, alone=alone)


def test_task_normalises_and_validates():
    t = Task(id="train-a.1", argv=["python", 3], deps=["x"], log="logs/a.log", env={"K": 1})
    assert (t.argv, t.deps, t.log, t.env) == (("python", "3"), ("x",), Path("logs/a.log"), {"K": "1"})
    for bad in ["", "a/b", "../x", "-a", "a b"]:
        with pytest.raises(RamlabError, match="filesystem-safe"):
            task(bad)
    with pytest.raises(RamlabError, match="empty command"):
        Task(id="a", argv=[], log="a.log")
    with pytest.raises(RamlabError, match="depends on itself"):
        task("a", "a")
    with pytest.raises(RamlabError, match="seconds"):
        task("a", seconds=float("nan"))


def test_topological_order_and_levels():
    tasks = [task("e", "c", "d"), task("c", "a"), task("d", "a", "b"), task("a"), task("b")]
    order = [t.id for t in topological_order(tasks)]
    assert order == ["a", "c", "b", "d", "e"]
    assert [[t.id for t in wave] for wave in levels(tasks)] == [["a", "b"], ["c", "d"], ["e"]]


def test_a_task_marked_alone_runs_after_every_other_and_with_none_beside_it():
    # "t" times something (it needs nothing), "u" after it; a and b train, c needs a.
    tasks = [task("t", alone=True), task("u", "t", alone=True), task("a"), task("b"), task("c", "a")]
    assert [[t.id for t in wave] for wave in levels(tasks)] == [["a", "b"], ["c"], ["t"], ["u"]]
    tracker = Tracker(tasks, jobs=4, progress=lambda line: None)
    assert [t.id for t in tracker.ready()] == ["a", "b"]
    tracker.start("a")
    tracker.start("b")
    tracker.end("a", returncode=1)  # c is skipped with it
    assert tracker.ready() == []  # b still runs
    tracker.end("b", returncode=0)
    assert [t.id for t in tracker.ready()] == ["t"]  # nothing running or left: t, alone
    tracker.start("t")
    assert tracker.ready() == []
    tracker.end("t", returncode=0)
    assert [t.id for t in tracker.ready()] == ["u"]
    # (the executors: test_execute_local, test_execute_ray)


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([task("a"), task("a")], "two tasks have the id 'a'"),
        ([task("t", alone=True), task("a", "t")], "a depends on t, which runs alone after every other task"),
        ([task("a", "zzz")], "unknown task\\(s\\): zzz"),
        ([task("a", "c"), task("b", "a"), task("c", "b")], "cycle: a -> c -> b -> a"),
    ],
)
def test_not_a_dag_is_refused(tasks, message):
    with pytest.raises(RamlabError, match=message):
        topological_order(tasks)
    with pytest.raises(RamlabError, match=message):
        execute(tasks, executor="serial", resources=Resources())


def test_tracker_skips_every_dependent_of_a_failure():
    tasks = [task("a"), task("b", "a"), task("c", "b"), task("d", "a", "x"), task("x"), task("y", "x")]
    lines: list[str] = []
    tracker = Tracker(tasks, jobs=2, progress=lines.append)
    assert [t.id for t in tracker.ready()] == ["a", "x"]
    tracker.start("a")
    tracker.start("x")
    assert tracker.ready() == []
    tracker.end("x", returncode=0, seconds=1.0)
    assert [t.id for t in tracker.ready()] == ["y"]
    failed = tracker.end("a", returncode=-9, seconds=2.0, attempts=3)
    assert (failed.ok, failed.reason) == (False, "retried 2 times, then exit -9")
    assert "skipping 3 that need it: b, d, c" in lines[-1]
    assert [t.id for t in tracker.ready()] == ["y"]
    tracker.start("y")
    tracker.end("y", returncode=0, seconds=1.0, attempts=2)
    outcomes = {o.id: o for o in tracker.outcomes()}
    assert outcomes["y"].reason == "ok, retried 1 time"
    assert outcomes["b"].reason == "skipped: needs a, which failed"
    assert outcomes["c"].reason == "skipped: needs b, which was skipped (a failed)"
    assert outcomes["d"].skipped and not outcomes["x"].skipped
    assert [o.id for o in tracker.outcomes()] == ["a", "b", "c", "d", "x", "y"]  # the order given


def test_time_left_is_remaining_estimates_over_jobs_refined_by_measurements():
    now = [0.0]
    tasks = [task(f"t{i}", seconds=100.0) for i in range(5)]
    tracker = Tracker(tasks, jobs=2, progress=lambda line: None, clock=lambda: now[0])
    assert tracker.seconds_left() == pytest.approx(500 / 2)
    tracker.start("t0")
    tracker.start("t1")
    now[0] = 50.0
    tracker.end("t0", returncode=0)  # took 50 s of an estimated 100: the rest is scaled by 0.5
    # pending t2..t4: 3 x 50; running t1: 50 - 50 elapsed = 0
    assert tracker.seconds_left() == pytest.approx(150 / 2)
    tracker.start("t2")
    tracker.start("t3")
    now[0] = 100.0
    for t in ("t1", "t2", "t3"):  # 100 s, 50 s, 50 s
        tracker.end(t, returncode=0)
    ratio = (50 + 100 + 50 + 50) / 400
    assert tracker.seconds_left() == pytest.approx(100 * ratio / 1)  # one task left: one job
    tracker.start("t4")
    tracker.end("t4", returncode=0)
    assert tracker.seconds_left() == 0.0


def test_time_left_learns_nothing_from_a_failed_task():
    now = [0.0]
    tasks = [task(f"t{i}", seconds=100.0) for i in range(3)]
    tracker = Tracker(tasks, jobs=1, progress=lambda line: None, clock=lambda: now[0])
    tracker.start("t0")
    now[0] = 2.0
    tracker.end("t0", returncode=1)  # failed after 2 s of an estimated 100
    assert tracker.seconds_left() == pytest.approx(200)  # the estimates stand
    tracker.start("t1")
    now[0] = 152.0
    tracker.end("t1", returncode=0)  # 150 s of 100: the last one is scaled by 1.5
    assert tracker.seconds_left() == pytest.approx(150)


def test_duration():
    assert [duration(s) for s in (0.04, 9.9, 45, 185, 7440)] == ["0.0s", "9.9s", "45s", "3m05s", "2h04m"]


def test_check_cpus_names_the_numbers_and_the_fix(monkeypatch):
    monkeypatch.setattr(resources_module, "available_cpus", lambda: 4)
    check_cpus(2, 2)
    check_cpus(4, 1)
    with pytest.raises(RamlabError) as error:
        check_cpus(3, 2)
    assert str(error.value) == (
        "--jobs 3 × --threads-per-job 2 = 6 threads, but only 4 CPUs are available: that would "
        "oversubscribe the cores; use --jobs 2 --threads-per-job 2 or --jobs 3 --threads-per-job 1"
    )
    with pytest.raises(RamlabError, match=r"use --jobs 4 --threads-per-job 1$"):
        check_cpus(5, 8)


def test_resources_are_validated():
    for bad in [{"jobs": 0}, {"threads_per_job": 0}, {"gpus_per_job": -1.0}, {"jobs": 1.5}]:
        with pytest.raises(RamlabError):
            Resources(**bad)


def test_gpu_pool_spreads_jobs_over_gpus_before_sharing():
    pool = GpuPool(["0", "1"], 0.25)
    assert pool.slots == 8
    assert [pool.acquire() for _ in range(4)] == ["0", "1", "0", "1"]
    pool.release("0")
    assert pool.acquire() == "0"
    assert GpuPool(["0"], 1 / 3).slots == 3  # despite 1 / (1/3) = 2.9999...
    whole = GpuPool(["0", "1", "2", "3", "4"], 2)
    assert (whole.slots, whole.groups) == (2, ["0,1", "2,3"])
    with pytest.raises(RamlabError, match="needs 3 GPUs per job, but only 2 are visible"):
        GpuPool(["0", "1"], 2.5)


def test_visible_gpus_from_cuda_visible_devices_or_nvidia_smi(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == []
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert visible_gpus() == []  # no nvidia-smi
    smi = tmp_path / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-1)'\n"
        "echo '  MIG 1g.10gb Device 0: (UUID: MIG-2)'\necho 'GPU 1: NVIDIA H100 (UUID: GPU-3)'\n"
    )
    smi.chmod(0o755)
    assert visible_gpus() == ["0", "1"]


def test_unknown_executor_and_option_list_the_valid_ones():
    with pytest.raises(RamlabError, match="unknown executor 'mpi'; valid: local, ray, serial, slurm"):
        execute([task("a")], executor="mpi", resources=Resources())
    with pytest.raises(
        RamlabError, match="unknown option\\(s\\) retries for --executor local; valid: grace_seconds"
    ):
        execute([task("a")], executor="local", resources=Resources(), retries=2)
    assert options("serial") == {"grace_seconds": 60.0, "timeout_min": 0.0}
    for bad in (-1, "10", True, float("nan")):
        with pytest.raises(RamlabError, match="timeout_min must be a number of minutes >= 0"):
            execute([task("a")], executor="local", resources=Resources(), timeout_min=bad)


@pytest.mark.parametrize(("executor", "package"), [("ray", "ray"), ("slurm", "submitit")])
def test_a_missing_optional_package_says_how_to_install_it(monkeypatch, executor, package):
    monkeypatch.setitem(sys.modules, package, None)  # makes `import package` fail
    monkeypatch.delitem(sys.modules, f"ramlab.execute.{executor}_executor", raising=False)
    with pytest.raises(
        RamlabError, match=rf"needs the {package} package: pip install 'ramlab\[{executor}\]'"
    ):
        execute([task("a")], executor=executor, resources=Resources())


def test_no_tasks_is_nothing_to_do():
    assert execute([], executor="local", resources=Resources()) == []
