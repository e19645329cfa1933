"""The Slurm executor (through submitit): job arrays, dependency level by level.

The driver goes level by level (`dag.levels`): it submits the tasks of a level whose
dependencies all succeeded as a job array, `--array=0-K%N` (at most N run at once; a level of
more than `max_array` tasks as several, one after the other), waits for the whole array, then
submits the next. Level by level rather than `afterok`
dependencies: a failed job then simply leaves its dependents unsubmitted, instead of pending
forever with DependencyNeverSatisfied, and the driver sees every outcome. The price: a level
waits for its slowest job.

Each job asks for `--cpus-per-task=T`; with F > 0, ceil(F) whole GPUs (`--gpus-per-node`:
Slurm does not share a GPU between jobs). Its time limit is `timeout_min`. Preemption and
time-outs use submitit's signal (`--signal=USR2@signal_delay_s`) and `--requeue`: the job
runs a `SlurmCommand`, a `submitit.helpers.Checkpointable`, whose `checkpoint()` stops the
command (SIGTERM once, then half the signal's delay for it to save) and resubmits the same
command, which resumes from its own checkpoint (the study's job entry point resumes). A
cluster that preempts with SIGTERM alone stops the command directly; the job then waits for
Slurm to end and requeue it instead of reporting a failure (`SlurmCommand`). Extra `#SBATCH` options (partition, account, qos, mem, ...) come
from the `sbatch` dict. `cluster="local"` runs the same on this machine (submitit's
LocalExecutor, which has no array parallelism: a level goes in batches of N), for tests.
A job's outcome comes from submitit's result file; a job that dies without one (killed, out
of memory, node lost) is a failure with submitit's message, and its log says more.

A level of more than `max_array` jobs goes in arrays of that many, each waited for (every
array task counts toward a cluster's per-user limit of submitted jobs). A job that leaves the
queue with no result and does not come back (a cluster that cancels on preemption, or one
without accounting, where submitit can only say UNKNOWN) is a failure after 10 minutes
(`slurm_queue.Vanished`), not waited for for ever.

The driver must stay up until the end. Ctrl-C (or SIGTERM, SIGHUP) stops the running level:
`scancel --signal=TERM` to the jobs' commands, which save their checkpoints, then `scancel`
half the signal delay later (a second Ctrl-C: at once); a plain `scancel` would let srun kill
the command before it saves. The study directory and the submitit `folder` must be on
storage every node sees, and ramlab installed at the same path on every node (jobs run this
Python, `sys.executable`). Preemption with SIGTERM alone reaches the command only if the
partition's GraceTime is over 0 (with 0, Slurm's SIGTERM to the batch step makes srun kill
the command at once): ask for GraceTime >= 60 s or `PreemptParameters=send_user_signal`.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import submitit

from ramlab.errors import RamlabError
from ramlab.execute import command
from ramlab.execute.dag import Outcome, Task, Tracker, levels
from ramlab.execute.resources import Resources, visible_gpus
from ramlab.execute.slurm_command import SlurmCommand  # also what older job pickles name here
from ramlab.execute.slurm_queue import Vanished

CLUSTERS = ("slurm", "local")
POLL_SECONDS = 10.0
# sbatch options that ask for GPUs besides --gpus-per-job's --gpus-per-node
GPU_SBATCH = {"gres", "gpus", "gpus-per-task", "gpus_per_task", "gpus-per-socket", "gpus_per_socket"}
MAX_ARRAY = 100  # jobs submitted at once: a common per-user limit of submitted jobs is 100-1000
# #SBATCH options ramlab writes itself (an --option sbatch.KEY would override them unseen by
# submitit, whose time-out count reads its own): what to use instead.
OWN_SBATCH = {
    "time": "use --option timeout_min=MINUTES (each job's time limit)",
    "signal": "the signal before a time limit is submitit's: USR2, signal_delay_s=SECONDS before it",
    "requeue": "jobs are always requeued on preemption and time-out (max_requeues=N caps time-outs)",
    "array": "each dependency level goes in arrays of at most max_array jobs, --jobs N at once",
    "cpus-per-task": "use --threads-per-job T",
    "cpus_per_task": "use --threads-per-job T",
    "gpus-per-node": "use --gpus-per-job F",
    "gpus_per_node": "use --gpus-per-job F",
    "clusters": "the driver watches its jobs with squeue on this cluster: run it on the one you want",
    **dict.fromkeys(
        ("output", "error", "open-mode", "job-name", "wckey"),
        "submitit names each job and reads its logs where it wrote them",
    ),
}
FAILED = re.compile(r"CommandFailed: exit (-?\d+) after ([0-9.]+) s")
TRACE = re.compile(r"with trace:\n-+\n(.*?)\n-+\n", re.DOTALL)  # submitit's FailedJobError
STATE = re.compile(r"has not produced any output \(state: ([^)]*)\)")  # its UncompletedJobError


def make_executor(
    *,
    folder: Path,
    cluster: str,
    resources: Resources,
    timeout_min: float,
    max_requeues: int,
    signal_delay_s: int,
    sbatch: Mapping[str, Any],
    progress: Callable[[str], None],
) -> submitit.SlurmExecutor | submitit.LocalExecutor:
    """A submitit executor with the parameters every level shares."""
    gpus = resources.gpus_per_job
    whole_gpus = math.ceil(gpus - 1e-9) if gpus > 0 else 0
    owned = sorted(set(sbatch) & set(OWN_SBATCH))
    if owned:
        raise RamlabError(
            "--option "
            + ", ".join(f"sbatch.{key}" for key in owned)
            + ": ramlab sets it itself; "
            + "; ".join(OWN_SBATCH[key] for key in owned)
        )
    doubled = sorted(GPU_SBATCH & set(sbatch)) if whole_gpus else []
    if doubled:  # a typed GPU (gres=gpu:a100:1) comes from sbatch.gres alone
        raise RamlabError(
            f"--option sbatch.{doubled[0]} and --gpus-per-job {gpus:g} both ask for GPUs: give "
            "one (sbatch.gres=gpu:TYPE:N for a GPU type, without --gpus-per-job)"
        )
    if cluster == "slurm":
        try:
            executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=max_requeues)
        except RuntimeError as exc:  # no srun on PATH
            raise RamlabError(
                f"--executor slurm needs a Slurm cluster (sbatch, srun on PATH): {exc}"
            ) from exc
        if whole_gpus and whole_gpus != gpus:
            progress(f"note: Slurm gives whole GPUs: each job gets {whole_gpus} (--gpus-per-job {gpus:g})")
        executor.update_parameters(
            time=math.ceil(timeout_min),
            cpus_per_task=resources.threads_per_job,
            array_parallelism=resources.jobs,
            signal_delay_s=int(signal_delay_s),
            stderr_to_stdout=True,
            additional_parameters={"requeue": True, **sbatch},
            # Slurm 22.05-23.02 does not pass sbatch's --cpus-per-task on to srun: the step
            # would be pinned to one CPU
            srun_args=[f"--cpus-per-task={resources.threads_per_job}"],
            **({"gpus_per_node": whole_gpus} if whole_gpus else {}),
        )
        return executor
    if cluster != "local":
        raise RamlabError(f"unknown Slurm cluster {cluster!r}; valid: {', '.join(CLUSTERS)}")
    executor = submitit.LocalExecutor(folder=folder, max_num_timeout=max_requeues)
    if whole_gpus and not visible_gpus():
        progress(f"note: no GPU visible; --gpus-per-job {gpus:g} ignored")
        whole_gpus = 0
    executor.update_parameters(
        timeout_min=timeout_min,
        signal_delay_s=int(signal_delay_s),
        stderr_to_stdout=True,
        **({"gpus_per_node": whole_gpus} if whole_gpus else {}),
    )
    return executor


def submit_level(
    executor: submitit.Executor,
    tasks: list[Task],
    *,
    threads: int,
    name: str,
    grace: float = command.GRACE_SECONDS,
) -> list[submitit.Job]:
    """Submit tasks as one job array (one job when alone); the jobs, in the tasks' order."""
    executor.update_parameters(job_name=name)
    try:
        return _submit(executor, tasks, threads=threads, grace=grace)
    except submitit.core.utils.FailedJobError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise RamlabError(
            f"sbatch refused the jobs: {first}. Check the --option sbatch.* values (partition, "
            "account, qos, ...) against your cluster's `sinfo` and `sacctmgr show assoc`"
        ) from exc


def _submit(
    executor: submitit.Executor, tasks: list[Task], *, threads: int, grace: float
) -> list[submitit.Job]:
    with executor.batch():
        jobs = [
            executor.submit(
                SlurmCommand(
                    task_id=task.id,
                    argv=list(task.argv),
                    env=command.task_env(task, threads=threads),
                    log=str(task.log),
                    grace=grace,
                )
            )
            for task in tasks
        ]
    return jobs


def settle(tracker: Tracker, task_id: str, job: submitit.Job, offset: int) -> Outcome:
    """Record how a finished job ended."""
    attempts = max(1, command.attempts_since(tracker.by_id[task_id].log, offset))
    error = job.exception()
    if error is None:
        return tracker.end(task_id, returncode=0, seconds=job.result(), attempts=attempts)
    failed = FAILED.search(str(error))
    if failed:
        returncode, seconds = int(failed.group(1)), float(failed.group(2))
        return tracker.end(task_id, returncode=returncode, seconds=seconds, attempts=attempts)
    return tracker.end(
        task_id,
        returncode=None,
        attempts=attempts,
        error=f"Slurm job {job.job_id}: {failure_summary(error)}; submitit's log: {job.paths.stdout}",
    )


def failure_summary(error: BaseException) -> str:
    """What a job that ended without a command's exit code died of, in one line: submitit's
    messages begin with a header ("Job (task=0) failed during processing with trace:"), the
    reason is the trace's last line, or the Slurm state of a job that left no result."""
    text = str(error)
    trace = TRACE.search(text)
    if trace:
        lines = [line.strip() for line in trace.group(1).splitlines() if line.strip()]
        if lines:
            return lines[-1]
    state = STATE.search(text)
    if state:
        return f"no result (Slurm state {state.group(1)})"
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def run(
    tasks: list[Task],
    *,
    resources: Resources,
    progress: Callable[[str], None],
    folder: str | Path | None = None,
    cluster: str = "slurm",
    timeout_min: float = 240,
    max_requeues: int = 5,
    signal_delay_s: int = 120,
    sbatch: Mapping[str, Any] | None = None,
    max_array: int = MAX_ARRAY,
    poll_seconds: float = POLL_SECONDS,
) -> list[Outcome]:
    """Run the tasks as Slurm job arrays, level by level.

    folder: submitit's files (scripts, pickles, its logs); default `submitit/` in the common
        folder of the tasks' logs. cluster: "slurm", or "local" for this machine.
    timeout_min: each job's time limit (`--time`). max_requeues: time-outs after which a job
        is no longer requeued (preemptions do not count). signal_delay_s: seconds between
        the signal and the kill; the command gets half of them to save and exit before the
        job is requeued. sbatch: extra `#SBATCH` options, e.g. {"partition": "gpu",
        "mem": "16G"}. max_array: the most jobs submitted at once (a level of more goes in
        arrays of that many, each waited for): every array task counts toward a cluster's
        per-user limit of submitted jobs (`sacctmgr show assoc user=$USER format=MaxSubmit`),
        and sbatch refuses an array past it. poll_seconds: how often the driver looks for
        finished jobs."""
    timeout_min = command.check_timeout(timeout_min)
    if not timeout_min:
        raise RamlabError("timeout_min must be > 0 under Slurm: it is each job's time limit (--time)")
    if max_array < 1:
        raise RamlabError(f"max_array must be >= 1 (jobs submitted at once), got {max_array}")
    if not tasks:
        return []
    if folder is None:
        folder = Path(os.path.commonpath([str(Path(t.log).parent.absolute()) for t in tasks])) / "submitit"
    executor = make_executor(
        folder=Path(folder),
        cluster=cluster,
        resources=resources,
        timeout_min=timeout_min,
        max_requeues=max_requeues,
        signal_delay_s=signal_delay_s,
        sbatch=dict(sbatch or {}),
        progress=progress,
    )
    tracker = Tracker(tasks, jobs=resources.jobs, progress=progress)
    for depth, wave in enumerate(levels(tracker.tasks)):
        todo = [task for task in wave if task.id in tracker.pending]
        # Slurm caps an array's parallelism (%N); submitit's local cluster has no such cap,
        # so there a level goes in batches of N.
        batch = min(len(todo), max_array) if cluster == "slurm" else resources.jobs
        for first in range(0, len(todo), max(1, batch)):
            _run_batch(
                executor,
                todo[first : first + batch],
                tracker,
                resources,
                depth,
                poll_seconds,
                grace=signal_delay_s / 2,
                slurm=cluster == "slurm",
            )
    return tracker.outcomes()


def _run_batch(
    executor: submitit.Executor,
    tasks: list[Task],
    tracker: Tracker,
    resources: Resources,
    depth: int,
    poll_seconds: float,
    *,
    grace: float,
    slurm: bool,
) -> None:
    """Submit tasks of one level and wait for all of them."""
    offsets = {task.id: command.log_size(task.log) for task in tasks}
    jobs = submit_level(
        executor, tasks, threads=resources.threads_per_job, name=f"ramlab-level{depth}", grace=grace
    )
    waiting = {task.id: job for task, job in zip(tasks, jobs, strict=True)}
    try:
        for task in tasks:
            tracker.start(task.id, quiet=True)
        array = jobs[0].job_id.split("_")[0]
        tracker.progress(f"level {depth}: submitted {len(jobs)} job(s) as job {array} | {tracker.status()}")
        wait(waiting, tracker, offsets, poll_seconds, watch=Vanished() if slurm else None)
    except BaseException:  # cancelled first: the report may fail (a closed terminal)
        stop_jobs(list(waiting.values()), grace=grace, progress=tracker.progress, slurm=slurm)
        raise


def wait(
    waiting: dict[str, submitit.Job],
    tracker: Tracker,
    offsets: dict[str, int],
    poll_seconds: float,
    *,
    watch: Vanished | None,
) -> None:
    """Settle each job as it finishes (a job `watch` finds gone from the queue without a
    result, as lost), until none is left; `waiting` loses each job it settles."""
    while waiting:
        for task_id, job in list(waiting.items()):
            if job.done():
                del waiting[task_id]
                settle(tracker, task_id, job, offsets[task_id])
        if watch is not None:
            for task_id, gone in watch.lost(waiting).items():
                job = waiting.pop(task_id)
                job.cancel(check=False)  # squeue may not see it (another cluster): no stray copy
                attempts = max(1, command.attempts_since(tracker.by_id[task_id].log, offsets[task_id]))
                tracker.end(
                    task_id,
                    returncode=None,
                    attempts=attempts,
                    error=(
                        f"Slurm job {job.job_id}: out of the queue for {gone / 60:.0f} min with no "
                        f"result (state {job.state}): preempted on a cluster that cancels "
                        "(PreemptMode=CANCEL; ramlab needs REQUEUE), or lost where no accounting "
                        f"says why; submitit's log: {job.paths.stdout}"
                    ),
                )
        if waiting:
            time.sleep(poll_seconds)


def stop_jobs(
    jobs: list[submitit.Job], *, grace: float, progress: Callable[[str], None], slurm: bool = True
) -> None:
    """Cancel jobs, their commands first: the pending ones are cancelled (one would start
    only to be killed), `scancel --signal=TERM` signals only the running jobs' steps, so each
    training saves its checkpoint and exits, and `grace` seconds later `scancel` ends the
    jobs. A plain `scancel` also signals the batch step, whose srun then kills the command at
    once (SIGKILL), before it saves. grace 0: at once (a second Ctrl-C during the wait too).
    Under Slurm one scancel for all, in a session of its own (a Ctrl-C at the terminal does
    not reach it); elsewhere (submitit's local cluster) each job's own cancel."""
    if not jobs:
        return
    ids = [job.job_id for job in jobs]
    try:
        if slurm and grace > 0:
            progress(f"stopping {len(jobs)} job(s): SIGTERM to their commands, scancel in {grace:.0f} s")
            _scancel("--state=PENDING", *ids)
            _scancel("--signal=TERM", *ids)
            time.sleep(grace)
    except KeyboardInterrupt:
        pass  # cancel them now
    finally:
        if slurm:
            for _ in range(2):  # again if a Ctrl-C cut the first short
                try:
                    _scancel(*ids)
                    break
                except KeyboardInterrupt:
                    continue
        else:
            for job in jobs:
                job.cancel(check=False)
        progress(f"cancelled {len(jobs)} job(s)")


def _scancel(*args: str) -> None:
    """scancel ARGS, its failures ignored (a job already ended), in a session of its own."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            ["scancel", *args], capture_output=True, check=False, timeout=60, start_new_session=True
        )
