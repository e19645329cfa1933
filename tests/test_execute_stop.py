"""Stopping the serial and local executors' commands: however the driver is stopped (Ctrl-C,
SIGTERM, SIGHUP, SIGKILL) each running job gets one SIGTERM, and a command past its time
limit is stopped and fails (the fake commands and helpers: test_execute_local.py)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_execute_local import fake, records

from ramlab.errors import Interrupted
from ramlab.execute import Resources, Task, execute
from ramlab.execute import resources as resources_module

DRIVER = r"""
import signal, sys
from pathlib import Path
# As in a terminal: SIGHUP not ignored (a nohup'ed or CI parent passes its SIG_IGN on, which
# the executor rightly keeps).
signal.signal(signal.SIGHUP, signal.SIG_DFL)
sys.path.insert(0, sys.argv[2])
from test_execute_local import fake
from ramlab.execute import Resources, execute
out = Path(sys.argv[1])
execute([fake(out, "long", sleep=30, mode="RECORD_SIGNALS")], executor=sys.argv[3], resources=Resources(), progress=print, grace_seconds=5)
"""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start_driver(tmp_path: Path, executor: str) -> tuple[subprocess.Popen, int]:
    """A study driver (in a process group of its own, as a terminal's foreground job) running
    one long job under `executor`: the driver and the job's pid, once the job started."""
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path), str(Path(__file__).parent), executor],
        start_new_session=True,
    )
    pid = pid_when_started(tmp_path / "long.pid")
    assert pid is not None
    time.sleep(0.3)  # let the job install its handlers
    return driver, pid


def wait_gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid)


@pytest.mark.parametrize("executor", ["serial", "local"])
@pytest.mark.parametrize(
    ("how", "to_group"),
    [(signal.SIGINT, True), (signal.SIGTERM, False), (signal.SIGHUP, False), (signal.SIGKILL, False)],
)
def test_however_the_driver_is_stopped_its_job_gets_one_sigterm(tmp_path, executor, how, to_group):
    # Ctrl-C: the terminal signals the whole foreground group, the driver and (before) its
    # jobs too, which then also got the driver's SIGTERM, a second signal. kill, a closed
    # terminal (SIGHUP) or SIGKILL reach the driver alone: before, its jobs ran on unseen.
    driver, pid = start_driver(tmp_path, executor)
    try:
        (os.killpg if to_group else os.kill)(driver.pid, how)
        driver.wait(timeout=20)
        assert wait_gone(pid)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert (tmp_path / "long.signals").read_text().split() == ["SIGTERM"]


def pid_when_started(path: Path, timeout: float = 20.0) -> int | None:
    """The pid of the first run of a fake command, once it started (None after `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return int(path.read_text().split()[0])
        time.sleep(0.02)
    return None


@pytest.mark.parametrize("mode", ["", "IGNORE_TERM"])
@pytest.mark.parametrize("executor", ["serial", "local"])
def test_ctrl_c_stops_the_running_commands(tmp_path, executor, mode):
    tasks = [fake(tmp_path, "long", sleep=30, mode=mode), fake(tmp_path, "later", deps=["long"])]
    # Like Ctrl-C: SIGINT to this process once the command runs (and ignores SIGTERM if asked).
    pids: list[int | None] = []

    def interrupt() -> None:
        pids.append(pid_when_started(tmp_path / "long.pid"))
        time.sleep(0.2)  # let the command install its SIGTERM handler
        if pids[0] is not None:
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        execute(
            tasks, executor=executor, resources=Resources(), progress=lambda line: None, grace_seconds=0.5
        )
    assert pids[0] is not None
    with pytest.raises(ProcessLookupError):  # stopped and reaped (SIGKILL when SIGTERM is ignored)
        os.kill(pids[0], 0)
    assert records(tmp_path) == {}  # neither finished, "later" never started


@pytest.mark.parametrize("executor", ["serial", "local"])
def test_a_closed_terminal_does_not_keep_the_commands_running(tmp_path, executor):
    # After a closed terminal's SIGHUP, every write to it fails (EIO). The local executor
    # reported "stopping ..." before it stopped its commands, so the OSError left them running.
    def closed_terminal(line: str) -> None:
        raise OSError(errno.EIO, "Input/output error")

    pids: list[int | None] = []

    def hang_up() -> None:
        pids.append(pid_when_started(tmp_path / "long.pid"))
        time.sleep(0.2)
        if pids[0] is not None:
            os.kill(os.getpid(), signal.SIGTERM)  # as SIGHUP, which a nohup'ed pytest ignores

    threading.Thread(target=hang_up, daemon=True).start()
    with pytest.raises(Interrupted, match="SIGTERM received"):
        execute(
            [fake(tmp_path, "long", sleep=30)],
            executor=executor,
            resources=Resources(),
            progress=closed_terminal,
            grace_seconds=0.5,
        )
    assert pids[0] is not None and wait_gone(pids[0], timeout=5)


@pytest.mark.parametrize("executor", ["serial", "local"])
def test_a_command_past_its_time_limit_is_stopped_and_fails(tmp_path, executor, monkeypatch):
    # timeout_min: SIGTERM once (a training saves and exits 143), recorded as a failure that
    # says why; its dependents are skipped, the other commands go on.
    monkeypatch.setattr(resources_module, "available_cpus", lambda: 8)
    tasks = [
        fake(tmp_path, "hung", sleep=30, mode="RECORD_SIGNALS"),
        fake(tmp_path, "after", deps=["hung"]),
        fake(tmp_path, "quick", sleep=0),
    ]
    lines: list[str] = []
    hung, after, quick = execute(
        tasks,
        executor=executor,
        resources=Resources(jobs=2) if executor == "local" else Resources(),
        progress=lines.append,
        timeout_min=1 / 60,
    )
    assert not hung.ok and hung.returncode == 143
    assert hung.reason.startswith("timed out after 0.0166667 min (stopped with SIGTERM")
    assert hung.seconds >= 1.0  # its limit; stopped, not left to its 30 s (the reason, signals)
    assert (tmp_path / "hung.signals").read_text().split() == ["SIGTERM"]
    assert after.skipped and quick.ok


@pytest.mark.parametrize("executor", ["serial", "local"])
def test_a_command_that_finishes_after_its_time_limit_succeeds(tmp_path, executor):
    # The limit's SIGTERM lands while a training writes its result: it finishes, exits 0,
    # and that is a success (its evaluations may run), not a time-out.
    finishing = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(30)"
    )
    task = Task(id="t", argv=[sys.executable, "-c", finishing], log=tmp_path / "t.log")
    (outcome,) = execute([task], executor=executor, resources=Resources(), timeout_min=1 / 60)
    assert (outcome.ok, outcome.returncode, outcome.reason) == (True, 0, "ok")
