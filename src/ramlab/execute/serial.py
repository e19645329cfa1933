"""The serial executor: one command at a time, in topological order. The reference the other
executors are compared with; Ctrl-C stops the running command and re-raises."""

from __future__ import annotations

from collections.abc import Callable

from ramlab.execute import command
from ramlab.execute.dag import Outcome, Task, Tracker
from ramlab.execute.resources import Resources, check_cpus


def run(
    tasks: list[Task],
    *,
    resources: Resources,
    progress: Callable[[str], None],
    grace_seconds: float = command.GRACE_SECONDS,
    timeout_min: float = 0.0,
) -> list[Outcome]:
    """Run every task whose dependencies succeeded, one after the other (--jobs and
    --gpus-per-job do not apply; each command gets --threads-per-job threads). timeout_min:
    a command still running after that long is stopped and recorded as failed (0: none)."""
    timeout_min = command.check_timeout(timeout_min)
    check_cpus(1, resources.threads_per_job)
    tracker = Tracker(tasks, jobs=1, progress=progress)
    while tracker.ready():
        task = tracker.ready()[0]
        tracker.start(task.id)
        env = command.task_env(task, threads=resources.threads_per_job)
        try:
            returncode, seconds, late = command.run(
                task.argv,
                log=task.log,
                env=env,
                grace=grace_seconds,
                timeout_min=timeout_min,
                new_session=True,  # a Ctrl-C reaches the command once, as our SIGTERM
            )
        except OSError as exc:  # the program does not exist or cannot be executed
            tracker.end(task.id, returncode=None, error=f"could not start: {exc}")
            continue
        error = command.timed_out(timeout_min) if late else ""
        tracker.end(task.id, returncode=returncode, seconds=seconds, error=error)
    return tracker.outcomes()
