"""The serial and local executors on a small DAG of fake commands (Python one-liners that
record when they ran and what environment they saw); the helpers are shared with the Ray and
Slurm tests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ramlab.errors import RamlabError
from ramlab.execute import Outcome, Resources, Task, execute
from ramlab.execute import resources as resources_module

# Appends its pid to OUT/<id>.pid when it starts and records one JSON line per run in
# OUT/<id>.jsonl: start, end, pid and the variables the
# executors set; sleeps, then exits with CODE. With FLAKY, the first run (no marker file)
# exits 3 and later runs succeed; with SLOW_FIRST, the first run sleeps 30 s. With
# IGNORE_TERM, SIGTERM is ignored; with RECORD_SIGNALS, each signal is noted. With
# SAVE_ON_TERM it stops as a training does: the first SIGTERM ends the sleep, then 0.5 s
# later it notes "saved" and exits 143; a second SIGTERM notes "second" and exits 130 at once.
FAKE = r"""
import json, os, signal, sys, time
out, task_id, sleep, code = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
mode = sys.argv[5] if len(sys.argv) > 5 else ""
if mode == "IGNORE_TERM":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "RECORD_SIGNALS":  # note each signal in OUT/<id>.signals; SIGTERM ends it
    def note(signum, frame):
        with open(os.path.join(out, task_id + ".signals"), "a") as f:
            f.write(signal.Signals(signum).name + "\n")
        if signum == signal.SIGTERM:
            sys.exit(143)
    signal.signal(signal.SIGINT, note)
    signal.signal(signal.SIGTERM, note)
terms = []
def save_on_term(signum, frame):
    if terms:
        with open(os.path.join(out, task_id + ".signals"), "a") as f:
            f.write("second\n")
        os._exit(130)
    terms.append(signum)
if mode == "SAVE_ON_TERM":
    signal.signal(signal.SIGTERM, save_on_term)
keys = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAMLAB_THREADS", "CUDA_VISIBLE_DEVICES", "EXTRA")
with open(os.path.join(out, task_id + ".pid"), "a") as f:
    f.write(f"{os.getpid()}\n")
start = time.time()
marker = os.path.join(out, task_id + ".marker")
if mode in ("FLAKY", "SLOW_FIRST") and not os.path.exists(marker):
    open(marker, "w").close()
    code, sleep = (3, sleep) if mode == "FLAKY" else (code, 30)
if mode == "SAVE_ON_TERM":
    while not terms and time.time() < start + sleep:
        time.sleep(0.01)
    if terms:
        time.sleep(0.5)  # the step it finishes and the checkpoint it writes
        with open(os.path.join(out, task_id + ".signals"), "a") as f:
            f.write("saved\n")
        sys.exit(143)
time.sleep(sleep)
record = {"id": task_id, "start": start, "end": time.time(), "pid": os.getpid(),
          "env": {k: os.environ.get(k) for k in keys}}
with open(os.path.join(out, task_id + ".jsonl"), "a") as f:
    f.write(json.dumps(record) + "\n")
print(f"fake {task_id}: exit {code}")
sys.exit(code)
"""
SLEEP = 0.3


def fake(out: Path, task_id: str, *, deps=(), code=0, sleep=SLEEP, mode="", **fields) -> Task:
    argv = [sys.executable, "-c", FAKE, str(out), task_id, str(sleep), str(code)] + ([mode] if mode else [])
    return Task(id=task_id, argv=argv, deps=tuple(deps), log=out / "logs" / f"{task_id}.log", **fields)


def small_dag(out: Path) -> list[Task]:
    """a, b -> c(a), d(a, b) -> e(c, d); f exits 3 -> g(f) -> h(g, a) are skipped. a runs
    longest, so slots are free while c and d wait for it."""
    out.mkdir(parents=True, exist_ok=True)
    return [
        fake(out, "a", title="first root", sleep=0.6),
        fake(out, "b", env={"EXTRA": "b-only"}, sleep=0.1),
        fake(out, "c", deps=["a"], sleep=0.2),
        fake(out, "d", deps=["a", "b"], sleep=0.2),
        fake(out, "e", deps=["c", "d"], sleep=0.1),
        fake(out, "f", code=3, sleep=0.1),
        fake(out, "g", deps=["f"]),
        fake(out, "h", deps=["g", "a"]),
    ]


def records(out: Path) -> dict[str, list[dict]]:
    return {
        path.stem: [json.loads(line) for line in path.read_text().splitlines()]
        for path in sorted(out.glob("*.jsonl"))
    }


def max_overlap(runs: list[dict]) -> int:
    """The most runs going on at one instant."""
    return max((sum(r["start"] <= s["start"] < r["end"] for r in runs) for s in runs), default=0)


def alone_dag(out: Path) -> list[Task]:
    """t times something, so it runs alone after a, b, c; u (alone too) needs t. Given first."""
    out.mkdir(parents=True, exist_ok=True)
    return [
        fake(out, "t", alone=True, sleep=0.1),
        fake(out, "u", deps=["t"], alone=True, sleep=0.1),
        fake(out, "a", sleep=0.3),
        fake(out, "b", sleep=0.1),
        fake(out, "c", deps=["b"], sleep=0.1),
    ]


def check_alone_dag(outcomes: list[Outcome], out: Path) -> None:
    assert all(o.ok for o in outcomes)
    runs = {task_id: lines[-1] for task_id, lines in records(out).items()}
    others = [runs[task_id]["end"] for task_id in "abc"]
    assert runs["t"]["start"] >= max(others), "t started beside other tasks"
    assert runs["u"]["start"] >= runs["t"]["end"]


def check_small_dag(tasks: list[Task], outcomes: list[Outcome], out: Path, *, jobs: int) -> dict:
    """What every executor must do with `small_dag`; returns the records."""
    by_id = {o.id: o for o in outcomes}
    assert [o.id for o in outcomes] == [t.id for t in tasks]  # the order given
    for task_id in "abcde":
        assert by_id[task_id].ok and by_id[task_id].returncode == 0 and by_id[task_id].reason.startswith("ok")
    assert (by_id["f"].ok, by_id["f"].returncode, by_id["f"].reason) == (False, 3, "exit 3")
    assert by_id["g"].reason == "skipped: needs f, which failed"
    assert by_id["h"].reason == "skipped: needs g, which was skipped (f failed)"
    for task_id in "gh":
        assert (by_id[task_id].ok, by_id[task_id].returncode, by_id[task_id].skipped) == (False, None, True)
    ran = records(out)
    assert sorted(ran) == list("abcdef")  # g and h never ran
    runs = {task_id: lines[-1] for task_id, lines in ran.items()}
    for task in tasks:
        for dep in task.deps if task.id in runs else ():
            assert runs[task.id]["start"] >= runs[dep]["end"], f"{task.id} started before {dep} ended"
    assert max_overlap(list(runs.values())) <= jobs
    for task in tasks:
        if task.id in runs:
            assert f"fake {task.id}: exit" in task.log.read_text()
    return runs


def test_local_runs_the_dag_two_at_a_time(tmp_path):
    tasks = small_dag(tmp_path)
    lines: list[str] = []
    outcomes = execute(tasks, executor="local", resources=Resources(jobs=2), progress=lines.append)
    runs = check_small_dag(tasks, outcomes, tmp_path, jobs=2)
    assert max_overlap(list(runs.values())) == 2  # it did run two at once
    assert all(r["env"]["OMP_NUM_THREADS"] == "1" for r in runs.values())
    assert runs["b"]["env"]["EXTRA"] == "b-only" and runs["a"]["env"]["EXTRA"] is None
    started = [line for line in lines if line.startswith("started")]
    assert len(started) == 6 and started[0].startswith("started a (first root) | 0/8 done | running 1: a")
    assert any(
        line.startswith("FAILED f: exit 3") and "skipping 2 that need it: g, h" in line for line in lines
    )
    assert lines[-1].endswith("| 8/8 done | 1 failed | 2 skipped")
    assert "left" in started[0] and "left" not in lines[-1]


def test_serial_runs_one_at_a_time_with_the_same_outcomes(tmp_path):
    tasks = small_dag(tmp_path)
    outcomes = execute(tasks, executor="serial", resources=Resources(jobs=2), progress=lambda line: None)
    check_small_dag(tasks, outcomes, tmp_path, jobs=1)


@pytest.mark.parametrize("executor", ["serial", "local"])
def test_a_task_marked_alone_runs_last_with_nothing_beside_it(tmp_path, executor):
    resources = Resources(jobs=2) if executor == "local" else Resources()
    check_alone_dag(execute(alone_dag(tmp_path), executor=executor, resources=resources), tmp_path)


def test_threads_and_gpu_slots_reach_each_job(tmp_path, monkeypatch):
    monkeypatch.setattr(resources_module, "available_cpus", lambda: 8)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    tasks = [fake(tmp_path, f"t{i}") for i in range(8)]
    resources = Resources(jobs=4, threads_per_job=2, gpus_per_job=0.5)  # 2 GPUs x 2 slots
    outcomes = execute(tasks, executor="local", resources=resources, progress=lambda line: None)
    assert all(o.ok for o in outcomes)
    runs = [lines[0] for lines in records(tmp_path).values()]
    assert len(runs) == 8
    for run in runs:
        assert [run["env"][k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAMLAB_THREADS")] == ["2"] * 3
    assert {r["env"]["CUDA_VISIBLE_DEVICES"] for r in runs} == {"0", "1"}  # one GPU each, both used
    for gpu in "01":
        assert max_overlap([r for r in runs if r["env"]["CUDA_VISIBLE_DEVICES"] == gpu]) <= 2
    assert max_overlap(runs) <= 4


def test_whole_gpus_cap_the_jobs(tmp_path, monkeypatch):
    monkeypatch.setattr(resources_module, "available_cpus", lambda: 8)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    tasks = [fake(tmp_path, f"t{i}") for i in range(4)]
    lines: list[str] = []
    outcomes = execute(
        tasks, executor="local", resources=Resources(jobs=4, gpus_per_job=1.0), progress=lines.append
    )
    assert all(o.ok for o in outcomes)
    assert lines[0] == "note: --jobs 4 capped at 2: 2 GPU slot(s): GPU(s) 0, 1, 1 job(s) each"
    runs = [lines[0] for lines in records(tmp_path).values()]
    for gpu in "01":
        assert max_overlap([r for r in runs if r["env"]["CUDA_VISIBLE_DEVICES"] == gpu]) == 1


def test_no_gpu_ignores_gpus_per_job_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    lines: list[str] = []
    outcomes = execute(
        [fake(tmp_path, "a", sleep=0)],
        executor="local",
        resources=Resources(gpus_per_job=0.25),
        progress=lines.append,
    )
    assert outcomes[0].ok
    assert lines[0] == "note: no GPU visible; --gpus-per-job 0.25 ignored"
    assert records(tmp_path)["a"][0]["env"]["CUDA_VISIBLE_DEVICES"] == ""


def test_more_threads_than_cpus_is_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(resources_module, "available_cpus", lambda: 2)
    with pytest.raises(RamlabError) as error:
        execute(
            small_dag(tmp_path),
            executor="local",
            resources=Resources(jobs=2, threads_per_job=2),
            progress=lambda line: None,
        )
    message = str(error.value)
    assert "--jobs 2 × --threads-per-job 2 = 4 threads, but only 2 CPUs" in message
    assert "--jobs 1 --threads-per-job 2 or --jobs 2 --threads-per-job 1" in message
    assert records(tmp_path) == {}


def test_a_missing_program_fails_its_task_only(tmp_path):
    tasks = [
        Task(id="missing", argv=[str(tmp_path / "no-such-program")], log=tmp_path / "missing.log"),
        Task(id="after", argv=[sys.executable, "-c", ""], deps=["missing"], log=tmp_path / "after.log"),
        fake(tmp_path, "other", sleep=0),
    ]
    missing, after, other = execute(
        tasks, executor="local", resources=Resources(), progress=lambda line: None
    )
    assert not missing.ok and missing.returncode is None and missing.reason.startswith("could not start:")
    assert after.reason == "skipped: needs missing, which failed"
    assert other.ok


def test_without_a_gpu_slot_a_job_sees_no_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr(resources_module, "available_cpus", lambda: 8)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    lines: list[str] = []
    tasks = [fake(tmp_path, f"t{i}", sleep=0) for i in range(2)]
    outcomes = execute(tasks, executor="local", resources=Resources(jobs=2), progress=lines.append)
    assert all(o.ok for o in outcomes)
    assert [runs[0]["env"]["CUDA_VISIBLE_DEVICES"] for runs in records(tmp_path).values()] == ["", ""]
    assert "note: the jobs run without a GPU (--gpus-per-job 0)" in lines[0]
