"""The Slurm executor: end to end on submitit's local cluster, and what it would submit to a
real Slurm (a fake sbatch that records its input)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import SimpleNamespace

import pytest
from test_execute_local import check_small_dag, fake, records, small_dag
from test_execute_stop import pid_alive, pid_when_started

from ramlab.errors import RamlabError
from ramlab.execute import Resources, execute

submitit = pytest.importorskip("submitit")

from ramlab.execute import command, slurm_command  # noqa: E402
from ramlab.execute.slurm_command import SlurmCommand  # noqa: E402
from ramlab.execute.slurm_executor import make_executor, submit_level  # noqa: E402


def test_local_cluster_runs_the_dag_level_by_level(tmp_path):
    tasks = small_dag(tmp_path)
    lines: list[str] = []
    outcomes = execute(
        tasks,
        executor="slurm",
        resources=Resources(jobs=2),
        progress=lines.append,
        cluster="local",
        folder=tmp_path / "submitit",
        poll_seconds=0.05,
    )
    runs = check_small_dag(tasks, outcomes, tmp_path, jobs=2)
    assert all(r["env"]["OMP_NUM_THREADS"] == "1" for r in runs.values())
    # level 0 (a, b, f) in batches of 2, then c, d (g skipped), then e (h skipped)
    submitted = [line.split(" |")[0] for line in lines if " submitted " in line]
    assert [s.split(":")[0] for s in submitted] == ["level 0", "level 0", "level 1", "level 2"]
    assert [int(s.split("submitted ")[1].split()[0]) for s in submitted] == [2, 1, 2, 1]


def test_a_timed_out_job_is_checkpointed_requeued_and_resumes(tmp_path):
    # submitit's local cluster sends the time-out signal (USR2) 1 s before its 3 s limit: the
    # job's checkpoint() stops the command and requeues it, and the command runs again.
    task = fake(tmp_path, "slow", mode="SLOW_FIRST", sleep=0)
    lines: list[str] = []
    (outcome,) = execute(
        [task],
        executor="slurm",
        resources=Resources(),
        progress=lines.append,
        cluster="local",
        folder=tmp_path / "submitit",
        timeout_min=3 / 60,
        signal_delay_s=1,
        max_requeues=1,
        poll_seconds=0.05,
    )
    assert (outcome.ok, outcome.attempts, outcome.reason) == (True, 2, "ok, retried 1 time")
    assert len(records(tmp_path)["slow"]) == 1  # the first run was stopped before it recorded
    first, _ = map(int, (tmp_path / "slow.pid").read_text().split())
    assert not pid_alive(first)
    assert task.log.read_text().count("==> ramlab.execute: ") == 2


def fake_slurm(tmp_path, monkeypatch) -> tuple:
    """sbatch that records its arguments and script and answers job 4242; srun that exists."""
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\necho "$@" >> {record}/args\ncat "$1" > {record}/script.sh\necho "Submitted batch job 4242"\n'
    )
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return record


def slurm_executor_in(tmp_path, resources: Resources, *, sbatch=None, signal_delay_s: int = 120):
    """A Slurm executor writing under tmp_path: 60-minute jobs, 3 requeues."""
    return make_executor(
        folder=tmp_path / "submitit",
        cluster="slurm",
        resources=resources,
        timeout_min=60,
        max_requeues=3,
        signal_delay_s=signal_delay_s,
        sbatch=sbatch or {},
        progress=lambda line: None,
    )


def test_submission_of_a_level_as_an_array(tmp_path, monkeypatch):
    record = fake_slurm(tmp_path, monkeypatch)
    lines: list[str] = []
    executor = make_executor(
        folder=tmp_path / "submitit",
        cluster="slurm",
        resources=Resources(jobs=2, threads_per_job=3, gpus_per_job=0.5),
        timeout_min=90,
        max_requeues=4,
        signal_delay_s=120,
        sbatch={"partition": "gpu", "account": "lab"},
        progress=lines.append,
    )
    tasks = [fake(tmp_path, f"t{i}") for i in range(3)]
    jobs = submit_level(executor, tasks, threads=3, name="ramlab-level0")

    assert [job.job_id for job in jobs] == ["4242_0", "4242_1", "4242_2"]
    assert (record / "args").read_text().count("\n") == 1  # one sbatch for the whole level
    script = (record / "script.sh").read_text().splitlines()
    for flag in [
        "--array=0-2%2",  # 3 jobs, at most 2 at once
        "--cpus-per-task=3",
        "--gpus-per-node=1",
        "--signal=USR2@120",
        "--requeue",
        "--time=90",
        "--job-name=ramlab-level0",
        "--partition=gpu",
        "--account=lab",
        "--open-mode=append",
    ]:
        assert f"#SBATCH {flag}" in script, flag
    srun = next(line for line in script if line.startswith("srun ") and "submitit.core._submit" in line)
    # Slurm 22.05-23.02 do not pass sbatch's CPUs on to srun: the step gets them itself
    assert "--cpus-per-task=3" in srun.split()
    assert lines == ["note: Slurm gives whole GPUs: each job gets 1 (--gpus-per-job 0.5)"]
    # the pickled callable of each array element: the task's command, with T threads
    for task, job in zip(tasks, jobs, strict=True):
        function = job.submission().function
        assert isinstance(function, SlurmCommand)
        assert (function.task_id, function.argv, function.log) == (task.id, list(task.argv), str(task.log))
        assert function.env["OMP_NUM_THREADS"] == "3"
        assert job.submission()._timeout_countdown == 4  # requeues left after time-outs


@pytest.mark.parametrize(
    ("key", "fix"),
    [("time", "timeout_min=MINUTES"), ("cpus-per-task", "--threads-per-job"), ("requeue", "max_requeues")],
)
def test_sbatch_options_ramlab_sets_itself_are_refused_with_the_option_to_use(
    tmp_path, monkeypatch, key, fix
):
    # An #SBATCH --time override went unseen by submitit's own time-out count.
    fake_slurm(tmp_path, monkeypatch)
    with pytest.raises(RamlabError, match=rf"--option sbatch\.{key}: ramlab sets it itself; .*{fix}"):
        slurm_executor_in(tmp_path, Resources(jobs=1), sbatch={key: "10:00:00", "partition": "gpu"})


def test_a_single_task_is_a_plain_job(tmp_path, monkeypatch):
    record = fake_slurm(tmp_path, monkeypatch)
    executor = slurm_executor_in(tmp_path, Resources(jobs=4), signal_delay_s=90)
    (job,) = submit_level(executor, [fake(tmp_path, "only")], threads=1, name="ramlab-level1")
    assert job.job_id == "4242"
    script = (record / "script.sh").read_text()
    assert "--array" not in script and "--gpus-per-node" not in script
    assert "#SBATCH --cpus-per-task=1" in script and "#SBATCH --requeue" in script


def test_a_refused_submission_is_a_ramlab_error_naming_the_options(tmp_path, monkeypatch):
    fake_slurm(tmp_path, monkeypatch)
    (tmp_path / "bin" / "sbatch").write_text(
        "#!/bin/sh\necho 'sbatch: error: invalid partition specified: gpux' >&2\nexit 1\n"
    )
    with pytest.raises(RamlabError) as refused:
        execute(
            [fake(tmp_path, "a")],
            executor="slurm",
            resources=Resources(),
            folder=tmp_path / "s",
            sbatch={"partition": "gpux"},
        )
    message = str(refused.value)
    assert message.startswith("sbatch refused the jobs: ") and "invalid partition specified: gpux" in message
    assert "Check the --option sbatch.* values" in message


@pytest.mark.parametrize("bad", ["abc", -5, 0])
def test_a_bad_time_limit_is_a_ramlab_error(tmp_path, monkeypatch, bad):
    fake_slurm(tmp_path, monkeypatch)
    with pytest.raises(RamlabError, match="timeout_min must be"):
        execute([fake(tmp_path, "a")], executor="slurm", resources=Resources(), timeout_min=bad)


def test_no_slurm_on_path_is_a_ramlab_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RamlabError, match="--executor slurm needs a Slurm cluster"):
        execute([fake(tmp_path, "a")], executor="slurm", resources=Resources(), folder=tmp_path / "s")


def test_checkpoint_stops_the_command_and_resubmits_it(tmp_path):
    task = fake(tmp_path, "long", sleep=30)
    job = SlurmCommand(task_id=task.id, argv=list(task.argv), env={"EXTRA": "x"}, log=str(task.log))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            job()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    pid = pid_when_started(tmp_path / "long.pid")
    assert pid is not None
    # The command ignores the preemption signal: submitit handles it in the job's process.
    job._process.send_signal(signal.SIGUSR2)
    time.sleep(0.3)
    assert job._process.poll() is None
    resubmitted = job.checkpoint()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert isinstance(errors[0], command.CommandFailed) and errors[0].returncode == -signal.SIGTERM
    again = resubmitted.function
    assert isinstance(again, SlurmCommand) and again is not job
    assert (again.argv, again.env, again.log, again._process) == (job.argv, job.env, job.log, None)
    assert "_process" in again.__getstate__() and again.__getstate__()["_process"] is None
    assert records(tmp_path) == {}


def test_slurm_command_returns_seconds_or_raises_the_exit_code(tmp_path):
    ok = fake(tmp_path, "ok", sleep=0)
    assert SlurmCommand(task_id="ok", argv=list(ok.argv), env={}, log=str(ok.log))() >= 0
    bad = fake(tmp_path, "bad", sleep=0, code=5)
    with pytest.raises(command.CommandFailed, match="exit 5 after"):
        SlurmCommand(task_id="bad", argv=list(bad.argv), env={}, log=str(bad.log))()
    assert sys.executable in ok.log.read_text()


def test_checkpoint_lets_the_command_save_before_the_job_exits(tmp_path):
    # As on Slurm: the preemption signal reaches the job's process, whose handler (submitit's)
    # calls checkpoint() and then exits the job. The command, SIGTERMed once by checkpoint(),
    # finishes its save: the stop that follows the exit finds it ended and sends no second
    # SIGTERM (which would stop a training at once, without its checkpoint).
    task = fake(tmp_path, "train", sleep=30, mode="SAVE_ON_TERM")
    job = SlurmCommand(task_id=task.id, argv=list(task.argv), env={}, log=str(task.log), grace=20)
    resubmitted = []

    def preempted(signum, frame):
        resubmitted.append(job.checkpoint())
        raise SystemExit(-1)

    def signal_once_started() -> None:
        if pid_when_started(tmp_path / "train.pid") is not None:
            os.kill(os.getpid(), signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, preempted)
    try:
        threading.Thread(target=signal_once_started, daemon=True).start()
        with pytest.raises(SystemExit):
            job()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert (tmp_path / "train.signals").read_text().splitlines() == ["saved"]
    assert job._process.returncode == 143
    assert resubmitted[0].function.grace == 20


@pytest.mark.parametrize(
    ("code", "in_slurm", "waits"),
    [(143, True, True), (-signal.SIGTERM, True, True), (143, False, False), (5, True, False)],
)
def test_a_command_slurm_stopped_waits_for_slurm_to_end_the_job(tmp_path, monkeypatch, code, in_slurm, waits):
    # A SIGTERM the job did not send came from Slurm (preemption without a user signal,
    # scancel): the job waits for Slurm to end it (and requeue it) instead of writing a
    # failure; it reports the exit only if it outlives the wait. Other exits, and the same
    # exit outside a Slurm job, are reported at once.
    if in_slurm:
        monkeypatch.setenv("SLURM_JOB_ID", "4242")
    else:
        monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    slept: list[float] = []
    monkeypatch.setattr(slurm_command, "time", SimpleNamespace(monotonic=time.monotonic, sleep=slept.append))
    argv = [
        sys.executable,
        "-c",
        "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
        if code < 0
        else f"raise SystemExit({code})",
    ]
    job = SlurmCommand(task_id="t", argv=argv, env={}, log=str(tmp_path / "t.log"), end_wait=30)
    with pytest.raises(command.CommandFailed, match=f"exit {code} after"):
        job()
    assert slept == ([30.0] if waits else [])


def test_exited_waits_without_reaping(tmp_path):
    process = command.start(
        [sys.executable, "-c", "import time; time.sleep(0.2)"], log=tmp_path / "l", env={}
    )
    assert not command.exited(process, 0)
    assert command.exited(process, 10)
    assert process.returncode is None  # not reaped: Popen still can
    assert process.wait(timeout=5) == 0
    assert command.exited(process, 0)


def test_a_job_that_died_without_an_exit_code_says_why_and_where_its_log_is() -> None:
    # Only the first line of submitit's error was kept: "Job (task=0) failed during
    # processing with trace:", the same for every failure, naming no reason.
    from submitit.core.utils import FailedJobError, UncompletedJobError

    from ramlab.execute.slurm_executor import failure_summary

    failed = FailedJobError(
        "Job (task=0) failed during processing with trace:\n----------------------\n"
        'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
        "FileNotFoundError: [Errno 2] No such file or directory: '/opt/venv/bin/python'\n"
        "----------------------\nYou can check full logs with 'job.stderr(0)' and 'job.stdout(0)'"
        "or at paths:\n  - /s/logs/1_0_log.err\n  - /s/logs/1_0_log.out"
    )
    assert failure_summary(failed) == (
        "FileNotFoundError: [Errno 2] No such file or directory: '/opt/venv/bin/python'"
    )
    timed_out = UncompletedJobError(
        "Job 123_4 (task: 0) with path /s/123_4_result.pkl\nhas not produced any output "
        "(state: TIMEOUT)\nNo output/error stream produced ! Check: /s/123_4_log.out"
    )
    assert failure_summary(timed_out) == "no result (Slurm state TIMEOUT)"
    assert failure_summary(RuntimeError("lost\nmore")) == "lost"
    assert failure_summary(RuntimeError()) == "RuntimeError"
