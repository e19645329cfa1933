"""What Slurm's queue says of a study's jobs (squeue): the jobs that left it without a result
(`Vanished`), which submitit alone would wait for for ever."""

from __future__ import annotations

import subprocess
import time

import submitit

VANISHED_SECONDS = 600.0  # a job out of the queue this long with no result is lost


class Vanished:
    """Finds jobs that left Slurm's queue without a result: submitit counts a PREEMPTED job
    (a cluster that cancels on preemption) and an UNKNOWN one (no accounting database, which
    also hides why a job died) as unfinished, so without this the driver would wait for them
    for ever. squeue is asked at most every `every` seconds; a job it has not listed for
    `after` seconds is lost (a requeued job is listed again within seconds)."""

    def __init__(self, *, every: float = 60.0, after: float = VANISHED_SECONDS) -> None:
        self.every, self.after = every, after
        self.asked: float | None = None
        self.missing: dict[str, float] = {}  # task id -> when squeue first did not list it

    def lost(self, waiting: dict[str, submitit.Job]) -> dict[str, float]:
        """{task id: seconds out of the queue} for the jobs of `waiting` lost by now."""
        now = time.monotonic()
        if not waiting or (self.asked is not None and now - self.asked < self.every):
            return {}
        self.asked = now
        listed = queued([job.job_id for job in waiting.values()])
        if listed is None:  # squeue cannot say: nothing is judged lost
            return {}
        for task_id, job in waiting.items():
            if job.job_id in listed:
                self.missing.pop(task_id, None)
            else:
                self.missing.setdefault(task_id, now)
        return {
            task_id: now - since
            for task_id, since in self.missing.items()
            if task_id in waiting and now - since >= self.after and not waiting[task_id].done()
        }


def queued(job_ids: list[str]) -> set[str] | None:
    """Which of `job_ids` (array tasks as 123_4) squeue still lists, pending or running, or
    None when squeue cannot say (not there, failed, timed out)."""
    arrays = sorted({job_id.split("_")[0] for job_id in job_ids})  # with --array: all its tasks
    try:
        out = subprocess.run(
            ["squeue", "--noheader", "--array", "--format=%i", f"--jobs={','.join(arrays)}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        # every id asked for has left Slurm's memory (MinJobAge): none is queued
        return set() if "invalid job id" in out.stderr.lower() else None
    return {line.strip() for line in out.stdout.splitlines() if line.strip()} & set(job_ids)
