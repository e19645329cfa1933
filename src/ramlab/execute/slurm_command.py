"""What each Slurm job runs (`SlurmCommand`): a task's command as a subprocess, stopped and
requeued through submitit's checkpointing on preemption and time-out (the executor's
docstring, `ramlab.execute.slurm_executor`)."""

from __future__ import annotations

import copy
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from submitit.helpers import Checkpointable, DelayedSubmission

from ramlab.execute import command

# How long a job whose command Slurm stopped waits for Slurm to end it (KillWait, 30 s by
# default, or a partition's preemption GraceTime) before it reports the exit.
END_WAIT_SECONDS = 300.0


def preempt_signal() -> int:
    """submitit's preemption/time-out signal (USR2 unless SUBMITIT_PREEMPT_SIGNAL says)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


def stopped_by_sigterm(returncode: int) -> bool:
    """Whether a command ended on SIGTERM: killed by it, or (a training) saved and exited
    with the shell's 128 + 15."""
    return returncode in (-signal.SIGTERM, 128 + signal.SIGTERM)


class SlurmCommand(Checkpointable):
    """What each Slurm job runs: a task's command, as a subprocess that ignores the
    preemption signal (submitit handles it here: `checkpoint` stops the command, then the job
    is requeued with a fresh `SlurmCommand`).

    grace: seconds `checkpoint` gives the command to save and exit after its SIGTERM, before
    the job is requeued (the stop that follows would signal it again, which stops a training
    at once, without its checkpoint). end_wait: a command ended by a SIGTERM this job did not
    send came from Slurm itself (a preemption on a cluster that sends no user signal, an
    `scancel`, the time limit): Slurm ends this job too within its grace time, and a requeued
    job resumes the command. So the job waits up to end_wait seconds for that rather than
    write a failure the requeue would contradict (the driver would record the task failed
    while Slurm runs it again); it reports the exit only if nothing ended it meanwhile."""

    def __init__(
        self,
        *,
        task_id: str,
        argv: list[str],
        env: Mapping[str, str],
        log: str,
        grace: float = command.GRACE_SECONDS,
        end_wait: float = END_WAIT_SECONDS,
    ) -> None:
        self.task_id = task_id
        self.argv = list(argv)
        self.env = dict(env)
        self.log = str(log)
        self.grace = float(grace)
        self.end_wait = float(end_wait)
        self._process = None

    def __call__(self) -> float:
        began = time.monotonic()
        self._process = command.start(
            self.argv, log=Path(self.log), env=self.env, preexec_fn=command.ignore_signal(preempt_signal())
        )
        returncode = command.wait(self._process, grace=self.grace)
        seconds = time.monotonic() - began
        if returncode != 0 and stopped_by_sigterm(returncode) and os.environ.get("SLURM_JOB_ID"):
            time.sleep(self.end_wait)  # Slurm's SIGKILL (or submitit's requeue) ends it here
        if returncode != 0:
            raise command.CommandFailed(returncode, seconds)
        return seconds

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        if self._process is not None:
            if self._process.returncode is None:
                self._process.terminate()
            # Let it save and exit (reaped in __call__, which submitit's SystemExit ends).
            command.exited(self._process, self.grace)
        return DelayedSubmission(copy.copy(self))  # the same settings, no process (__getstate__)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_process": None}
