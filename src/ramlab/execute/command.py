"""One task's command as a subprocess: its environment, its log, and how it is stopped.

The command's stdout and stderr are appended to the task's log, after a header line (the
command, the time, the host); executors that retry count these headers to tell how many
times a command ran. Stopping is SIGTERM (a training run finishes its step, writes last.pt
there and exits, `ramlab.stop_signal`), then SIGKILL for whatever still runs after a grace
period (a second Ctrl-C skips the grace).
"""

from __future__ import annotations

import ctypes
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path

from ramlab.errors import RamlabError
from ramlab.execute.dag import Task
from ramlab.execute.resources import thread_env

HEADER = b"==> ramlab.execute: "
# A stopped command's time to save and exit before SIGKILL. A training stops after its step
# in progress, but a signal during an epoch's validation (or its last step) waits for that
# validation and its checkpoint: 5,000 cluttered100 scenes at one thread, or averaged
# rollouts, can take over 10 s, and a SIGKILL then loses the epoch. A command that exits
# sooner is not kept waiting.
GRACE_SECONDS = 60.0
POLL_SECONDS = 0.05


class CommandFailed(Exception):
    """A command exited non-zero; raised where the executor retries on an exception (Ray,
    Slurm). Picklable: its args are its fields."""

    def __init__(self, returncode: int, seconds: float) -> None:
        super().__init__(returncode, seconds)
        self.returncode = returncode
        self.seconds = seconds

    def __str__(self) -> str:
        return f"exit {self.returncode} after {self.seconds:.2f} s"


def task_env(task: Task, *, threads: int, gpus: str | None = None) -> dict[str, str]:
    """The variables a task's command gets on top of its worker's environment."""
    env = {**task.env, **thread_env(threads)}
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    return env


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return None


_PRCTL = _libc_prctl()  # resolved here: the child between fork and exec only calls it
_PR_SET_PDEATHSIG = 1


def _dies_with_caller(then: Callable[[], None] | None) -> Callable[[], None] | None:
    """A preexec_fn (Linux) asking the kernel to SIGTERM the command when the thread that
    started it ends, however it ends (SIGKILL, out of memory): a command in a session of its
    own would otherwise run on, unseen, beside the jobs a rerun starts."""
    if _PRCTL is None:
        return then
    parent = os.getpid()

    def preexec() -> None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the caller died before the request
            os.kill(os.getpid(), signal.SIGTERM)
        if then is not None:
            then()

    return preexec


def start(
    argv: Iterable[str],
    *,
    log: Path,
    env: Mapping[str, str],
    preexec_fn: Callable[[], None] | None = None,
    new_session: bool = False,
) -> subprocess.Popen:
    """Start a command with `env` over this process's environment, output appended to `log`.
    `new_session`: outside the terminal's process group, so that a Ctrl-C reaches only the
    caller, which then stops the command once (a second signal would stop a training at
    once, without its checkpoint); and, on Linux, stopped (SIGTERM) if the calling thread
    dies, which the terminal's signal no longer does."""
    argv = list(argv)
    if new_session:
        preexec_fn = _dies_with_caller(preexec_fn)
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        out.write(HEADER + f"{shlex.join(argv)} | {stamp} on {socket.gethostname()}\n".encode())
        out.flush()
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            preexec_fn=preexec_fn,
            start_new_session=new_session,
        )


def stop(processes: Iterable[subprocess.Popen], *, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM to each process still running, SIGKILL to those left after `grace` seconds."""
    live = [p for p in processes if p.poll() is None]
    for process in live:
        process.terminate()
    deadline = time.monotonic() + grace
    try:
        for process in live:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
    except KeyboardInterrupt:
        for process in live:
            if process.poll() is None:
                process.kill()
        raise
    finally:
        for process in live:
            if process.poll() is None:
                process.wait()


def wait(
    process: subprocess.Popen, *, grace: float = GRACE_SECONDS, deadline: float = math.inf
) -> int | None:
    """Wait for a command to end: its exit code, or None once `deadline` (a time.monotonic()
    time) has passed with the command still running. Interrupted (Ctrl-C, a cancelled Ray
    task, submitit's SystemExit on requeue), it stops the command before re-raising."""
    try:
        # Poll rather than block in waitpid: an interruption that is not a signal (Ray's
        # cancel) is only seen between bytecodes, and a signal handler that itself stops the
        # process (submitit's checkpoint) must not find Popen's wait lock taken.
        while (returncode := process.poll()) is None:
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_SECONDS)
    except BaseException:
        stop([process], grace=grace)
        raise
    return returncode


def run(
    argv: Iterable[str],
    *,
    log: Path,
    env: Mapping[str, str],
    grace: float = GRACE_SECONDS,
    timeout_min: float = 0.0,
    new_session: bool = False,
) -> tuple[int, float, bool]:
    """Run a command to its end: (exit code, seconds, whether it failed by its time limit);
    see `wait` for interruptions, `start` for `new_session`. With `timeout_min` > 0 a
    command still running after that long is stopped as Ctrl-C stops it (SIGTERM, SIGKILL
    after `grace`); one that then still exits 0 (it was finishing) did not fail."""
    began = time.monotonic()
    process = start(argv, log=log, env=env, new_session=new_session)
    deadline = began + 60 * timeout_min if timeout_min > 0 else math.inf
    returncode = wait(process, grace=grace, deadline=deadline)
    timed_out = returncode is None
    if timed_out:
        stop([process], grace=grace)
        returncode = process.wait()
    return returncode, time.monotonic() - began, timed_out and returncode != 0


def check_timeout(timeout_min: float) -> float:
    """`timeout_min` as a number of minutes >= 0 (0: none), or a RamlabError."""
    if isinstance(timeout_min, bool) or not isinstance(timeout_min, int | float) or not timeout_min >= 0:
        raise RamlabError(f"timeout_min must be a number of minutes >= 0 (0: none), got {timeout_min!r}")
    return float(timeout_min)


def timed_out(timeout_min: float) -> str:
    """The reason recorded for a command stopped at its time limit."""
    return (
        f"timed out after {timeout_min:g} min (stopped with SIGTERM: a training saves its "
        "checkpoint, and running the study again resumes it)"
    )


def run_or_raise(
    argv: Iterable[str], *, log: Path, env: Mapping[str, str], grace: float = GRACE_SECONDS
) -> float:
    """Run a command; its seconds, or CommandFailed on a non-zero exit."""
    returncode, seconds, _ = run(argv, log=log, env=env, grace=grace)
    if returncode != 0:
        raise CommandFailed(returncode, seconds)
    return seconds


def log_size(log: Path) -> int:
    try:
        return Path(log).stat().st_size
    except FileNotFoundError:
        return 0


def attempts_since(log: Path, offset: int) -> int:
    """How many times a command started since its log was `offset` bytes long."""
    try:
        with Path(log).open("rb") as f:
            f.seek(offset)
            return sum(line.startswith(HEADER) for line in f)
    except FileNotFoundError:
        return 0


def exited(process: subprocess.Popen, timeout: float) -> bool:
    """Wait up to `timeout` seconds for a command to end, without reaping it: whether it ended.
    Safe in a signal handler that interrupted Popen's own poll (whose lock would make `poll`
    answer "running" for the whole wait): the exit is read with WNOWAIT, and Popen reaps it
    later."""
    deadline = time.monotonic() + timeout
    while True:
        if process.returncode is not None:
            return True
        try:
            if hasattr(os, "waitid"):
                if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    return True
            elif process.poll() is not None:  # no waitid (macOS): Popen's poll
                return True
        except ChildProcessError:  # reaped meanwhile
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)


def ignore_signal(signum: int) -> Callable[[], None]:
    """A preexec_fn making the child ignore `signum` (an ignored signal stays ignored across
    exec, unlike a handled one)."""

    def preexec() -> None:
        signal.signal(signum, signal.SIG_IGN)

    return preexec
