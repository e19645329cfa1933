"""The local executor: up to N commands at once on this machine, as subprocesses.

Each command gets T threads (OMP_NUM_THREADS, MKL_NUM_THREADS, RAMLAB_THREADS) and N × T may
not exceed the CPUs available. With GPUs visible and F > 0, each command also gets a GPU slot
through CUDA_VISIBLE_DEVICES (F = 0.25: four slots per GPU) and N is capped by the slots;
with none visible, F is ignored with a note. Without a slot (F = 0) a command sees no GPU
(CUDA_VISIBLE_DEVICES empty, as Ray does), rather than all N piling onto the first one.
A command starts once all its dependencies succeeded; a failure skips its dependents and
everything else goes on. With `timeout_min`, a command running longer is stopped (as
Ctrl-C stops it) and recorded as failed; running the study again resumes it. Ctrl-C stops the
running commands (SIGTERM, SIGKILL after a grace period) and re-raises KeyboardInterrupt;
the commands run in sessions of their own, so the terminal's SIGINT does not reach them too.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from ramlab.execute import command
from ramlab.execute.dag import Outcome, Task, Tracker
from ramlab.execute.resources import GpuPool, Resources, check_cpus, visible_gpus

POLL_SECONDS = 0.05


@dataclass
class _Running:
    process: subprocess.Popen
    gpus: str | None
    started: float
    stopping: float | None = None  # when it was stopped for its time limit


def plan(resources: Resources, progress: Callable[[str], None]) -> tuple[int, GpuPool | None]:
    """The jobs to run at once and the GPU slots (None: no GPU), with a note for each
    request that cannot be met as asked; a RamlabError if the cores would be oversubscribed."""
    jobs, pool = resources.jobs, None
    if resources.gpus_per_job == 0 and visible_gpus():
        progress("note: the jobs run without a GPU (--gpus-per-job 0); --gpus-per-job F shares them")
    if resources.gpus_per_job > 0:
        devices = visible_gpus()
        if not devices:
            progress(f"note: no GPU visible; --gpus-per-job {resources.gpus_per_job:g} ignored")
        else:
            pool = GpuPool(devices, resources.gpus_per_job)
            if pool.slots < jobs:
                progress(f"note: --jobs {jobs} capped at {pool.slots}: {pool.describe()}")
                jobs = pool.slots
    check_cpus(jobs, resources.threads_per_job)
    return jobs, pool


def run(
    tasks: list[Task],
    *,
    resources: Resources,
    progress: Callable[[str], None],
    grace_seconds: float = command.GRACE_SECONDS,
    timeout_min: float = 0.0,
) -> list[Outcome]:
    """Run the tasks, up to N at once, each as soon as its dependencies succeeded.
    timeout_min: a command still running after that long is stopped (SIGTERM, SIGKILL after
    the grace) and recorded as failed (0: none)."""
    timeout_min = command.check_timeout(timeout_min)
    jobs, pool = plan(resources, progress)
    tracker = Tracker(tasks, jobs=jobs, progress=progress)
    running: dict[str, _Running] = {}
    try:
        while not tracker.finished:
            for task in tracker.ready()[: jobs - len(running)]:
                gpus = pool.acquire() if pool else None
                env = command.task_env(task, threads=resources.threads_per_job, gpus=gpus or "")
                tracker.start(task.id)
                try:
                    process = command.start(task.argv, log=task.log, env=env, new_session=True)
                except OSError as exc:  # the program does not exist or cannot be executed
                    if pool and gpus is not None:
                        pool.release(gpus)
                    tracker.end(task.id, returncode=None, error=f"could not start: {exc}")
                    continue
                running[task.id] = _Running(process, gpus, started=time.monotonic())
            time.sleep(POLL_SECONDS)
            for task_id, job in list(running.items()):
                returncode = job.process.poll()
                if returncode is None:
                    _enforce_timeout(task_id, job, timeout_min, grace_seconds, progress)
                    continue
                del running[task_id]
                if pool and job.gpus is not None:
                    pool.release(job.gpus)
                late = job.stopping is not None and returncode != 0  # 0: it was finishing
                error = command.timed_out(timeout_min) if late else ""
                tracker.end(task_id, returncode=returncode, error=error)
    except BaseException:
        if running:  # stopped first: the report may fail (a closed terminal)
            command.stop([job.process for job in running.values()], grace=grace_seconds)
            progress(f"stopped {len(running)} running command(s): {', '.join(running)}")
        raise
    return tracker.outcomes()


def _enforce_timeout(
    task_id: str, job: _Running, timeout_min: float, grace: float, progress: Callable[[str], None]
) -> None:
    """SIGTERM a running command past its time limit, SIGKILL it `grace` seconds later."""
    now = time.monotonic()
    if job.stopping is None and timeout_min > 0 and now - job.started >= 60 * timeout_min:
        progress(f"{task_id}: past its time limit of {timeout_min:g} min; stopping it")
        job.process.terminate()
        job.stopping = now
    elif job.stopping is not None and now - job.stopping >= grace:
        job.process.kill()
