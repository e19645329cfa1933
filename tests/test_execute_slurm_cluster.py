"""The Slurm executor on a first real cluster: levels within a submit limit, jobs that leave
the queue without a result, and a cancel that lets each training save first (fake Slurm
tools that record what they were asked)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from test_execute_local import fake
from test_execute_slurm import fake_slurm, slurm_executor_in

from ramlab.errors import RamlabError
from ramlab.execute import Resources

pytest.importorskip("submitit")

from ramlab.execute import slurm_executor, slurm_queue
from ramlab.execute.dag import Tracker


def test_a_level_past_max_array_goes_in_arrays_of_that_many(tmp_path, monkeypatch):
    # Every array task counts toward a cluster's per-user limit of submitted jobs: sbatch
    # refuses one array of the paper study's 280 trainings where the limit is 100-200.
    fake_slurm(tmp_path, monkeypatch)
    batches: list[list[str]] = []

    def run_batch(executor, tasks, tracker, *args, **kwargs):
        batches.append([task.id for task in tasks])
        for task in tasks:
            tracker.start(task.id, quiet=True)
            tracker.end(task.id, returncode=0, seconds=1.0, attempts=1)

    monkeypatch.setattr(slurm_executor, "_run_batch", run_batch)
    tasks = [fake(tmp_path, f"t{i}") for i in range(5)] + [fake(tmp_path, "last", deps=["t0"])]
    outcomes = slurm_executor.run(
        tasks, resources=Resources(jobs=3), progress=lambda line: None, folder=tmp_path / "s", max_array=2
    )
    assert batches == [["t0", "t1"], ["t2", "t3"], ["t4"], ["last"]]  # not the 3 of --jobs
    assert all(outcome.ok for outcome in outcomes)
    with pytest.raises(RamlabError, match="max_array must be >= 1"):
        slurm_executor.run(tasks, resources=Resources(jobs=2), progress=print, folder=tmp_path, max_array=0)


def fake_tool(tmp_path, name: str, body: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
    (bin_dir / name).chmod(0o755)


def test_cancelling_signals_the_commands_first_then_cancels_the_jobs(tmp_path, monkeypatch):
    # A plain scancel signals the batch step too, whose srun then SIGKILLs the training
    # before it saves: pending jobs are cancelled (one would start only to be killed), the
    # running commands get SIGTERM alone, and the grace to save; then one scancel for all.
    fake_slurm(tmp_path, monkeypatch)
    fake_tool(tmp_path, "scancel", f'echo "$@" >> {tmp_path}/scancel')
    slept: list[float] = []
    monkeypatch.setattr(slurm_executor, "time", SimpleNamespace(sleep=slept.append))
    jobs = [SimpleNamespace(job_id=i) for i in ("7_0", "7_1")]  # no job.cancel: one scancel
    lines: list[str] = []
    slurm_executor.stop_jobs(jobs, grace=60.0, progress=lines.append)
    asked = (tmp_path / "scancel").read_text().splitlines()
    assert asked == ["--state=PENDING 7_0 7_1", "--signal=TERM 7_0 7_1", "7_0 7_1"]
    assert slept == [60.0]
    assert lines == ["stopping 2 job(s): SIGTERM to their commands, scancel in 60 s", "cancelled 2 job(s)"]

    # A second Ctrl-C during the grace: the jobs are cancelled at once, not left running.
    def interrupted(seconds):
        raise KeyboardInterrupt

    (tmp_path / "scancel").unlink()
    monkeypatch.setattr(slurm_executor, "time", SimpleNamespace(sleep=interrupted))
    slurm_executor.stop_jobs(jobs, grace=60.0, progress=lines.append)
    assert (tmp_path / "scancel").read_text().splitlines()[-1] == "7_0 7_1"
    # A Ctrl-C during the final scancel: it is asked again, not left with jobs queued.
    calls: list[tuple] = []

    def scancel(*args):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(slurm_executor, "_scancel", scancel)
    monkeypatch.setattr(slurm_executor, "time", SimpleNamespace(sleep=slept.append))
    slurm_executor.stop_jobs(jobs, grace=1.0, progress=lines.append)
    assert calls[2:] == [("7_0", "7_1"), ("7_0", "7_1")]
    # submitit's local cluster: each job's own cancel, at once.
    cancelled: list[str] = []
    local = [SimpleNamespace(job_id="1", cancel=lambda check: cancelled.append("1"))]
    slurm_executor.stop_jobs(local, grace=60.0, progress=lines.append, slurm=False)
    assert cancelled == ["1"] and slept == [60.0, 1.0]


def test_a_typed_gpu_comes_from_sbatch_gres_alone(tmp_path, monkeypatch):
    record = fake_slurm(tmp_path, monkeypatch)
    with pytest.raises(RamlabError, match=r"sbatch\.gres and --gpus-per-job 1 both ask for GPUs"):
        slurm_executor_in(tmp_path, Resources(jobs=1, gpus_per_job=1), sbatch={"gres": "gpu:a100:1"})
    with pytest.raises(RamlabError, match=r"sbatch\.gpus-per-task and --gpus-per-job 1 both ask"):
        slurm_executor_in(tmp_path, Resources(jobs=1, gpus_per_job=1), sbatch={"gpus-per-task": "1"})
    with pytest.raises(RamlabError, match=r"sbatch\.clusters: ramlab sets it itself; .*squeue"):
        slurm_executor_in(tmp_path, Resources(jobs=1), sbatch={"clusters": "other"})
    executor = slurm_executor_in(tmp_path, Resources(jobs=1), sbatch={"gres": "gpu:a100:1"})
    slurm_executor.submit_level(executor, [fake(tmp_path, "a")], threads=1, name="ramlab-level0")
    assert "#SBATCH --gres=gpu:a100:1" in (record / "script.sh").read_text()


def test_squeue_says_which_jobs_are_still_queued(tmp_path, monkeypatch):
    from ramlab.execute.slurm_queue import queued

    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    # Asked by array (with --array, every task of it, held by %N or not), answered for the ids
    fake_tool(tmp_path, "squeue", f'echo "$@" > {tmp_path}/asked\necho 5_0\necho " 5_2 "\necho 5_9\necho 6')
    assert queued(["5_0", "5_1", "5_2", "6"]) == {"5_0", "5_2", "6"}
    assert (tmp_path / "asked").read_text().split() == ["--noheader", "--array", "--format=%i", "--jobs=5,6"]
    fake_tool(tmp_path, "squeue", "echo 'slurm_load_jobs error: Invalid job id specified' >&2\nexit 1")
    assert queued(["5_1"]) == set()  # all of them gone from Slurm's memory
    fake_tool(tmp_path, "squeue", "echo 'slurm_load_jobs error: Socket timed out' >&2\nexit 1")
    assert queued(["5_1"]) is None  # cannot say: nothing is judged lost
    (tmp_path / "bin" / "squeue").unlink()
    assert queued(["5_1"]) is None


def test_a_job_out_of_the_queue_without_a_result_is_lost_after_a_while(tmp_path, monkeypatch):
    # submitit waits for ever on PREEMPTED (a cluster that cancels on preemption) and UNKNOWN
    # (no accounting database) jobs; one requeued is listed again within seconds.

    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(slurm_queue, "time", SimpleNamespace(monotonic=lambda: clock.now))
    listed = [{"1_0"}, {"1_0", "1_1"}, {"1_0"}, {"1_0"}, set()]
    monkeypatch.setattr(slurm_queue, "queued", lambda ids: listed.pop(0))
    job = lambda job_id, done=False: SimpleNamespace(job_id=job_id, done=lambda: done)  # noqa: E731
    waiting = {"a": job("1_0"), "b": job("1_1"), "c": job("1_2", done=True)}
    watch = slurm_queue.Vanished(every=60, after=600)
    assert watch.lost(waiting) == {}  # t=0: b is not listed
    clock.now = 30.0
    assert watch.lost(waiting) == {}  # not asked again before `every`
    clock.now = 100.0
    assert watch.lost(waiting) == {}  # b is back (requeued): its clock starts again
    clock.now = 200.0
    assert watch.lost(waiting) == {}  # b missing since 200
    clock.now = 800.0
    assert watch.lost(waiting) == {"b": 600.0}  # c is out of the queue as long, but done
    clock.now = 900.0
    assert watch.lost({"a": waiting["a"]}) == {}  # a missing since 900 only


def test_a_lost_job_is_a_failure_that_says_why_and_skips_its_dependents(tmp_path):

    tasks = [fake(tmp_path, "a"), fake(tmp_path, "b", deps=["a"])]
    tracker = Tracker(tasks, jobs=1, progress=lambda line: None)
    tracker.start("a", quiet=True)
    cancelled: list[bool] = []
    job = SimpleNamespace(
        job_id="9_0",
        done=lambda: False,
        state="PREEMPTED",
        paths=SimpleNamespace(stdout="/s/9_0_0_log.out"),
        cancel=lambda check: cancelled.append(check),
    )
    watch = SimpleNamespace(lost=lambda waiting: {"a": 660.0})
    waiting = {"a": job}
    slurm_executor.wait(waiting, tracker, {"a": 0}, 0.0, watch=watch)
    assert waiting == {} and cancelled == [False]  # squeue may have missed it: no stray copy
    a, b = tracker.outcomes()
    assert not a.ok and a.returncode is None
    assert "Slurm job 9_0: out of the queue for 11 min with no result (state PREEMPTED)" in a.reason
    assert "PreemptMode=CANCEL" in a.reason and "/s/9_0_0_log.out" in a.reason
    assert not b.ok and b.reason.startswith("skipped")


def test_jobs_submitted_before_slurm_command_moved_still_unpickle():
    # submitit pickles each job's callable by module path: a job submitted by an older driver
    # names ramlab.execute.slurm_executor.SlurmCommand, and is requeued after an upgrade.
    import pickle

    from ramlab.execute.slurm_command import SlurmCommand

    assert pickle.loads(b"cramlab.execute.slurm_executor\nSlurmCommand\n.") is SlurmCommand
