"""The DAG of commands and its bookkeeping, shared by every executor.

A `Task` is one command with the ids it depends on. `topological_order` checks a list of
tasks (unique ids, known dependencies, no cycle) and orders it so that every task comes after
its dependencies; `levels` groups it into waves whose tasks depend only on earlier waves.
A task marked `alone` (a measurement of speed) runs after every other task has ended, with
nothing beside it: each in a wave of its own, at the end.

A `Tracker` follows one execution: which tasks may start (all dependencies succeeded), which
run, how each ended (an `Outcome`). When a task fails, every task that needs it, directly or
through others, is skipped at once. Each start and end is one progress line: what runs, how
many are done of the total, the failures so far and the time left, estimated as

    left = (Σ pending estimates × r + Σ running max(estimate × r − elapsed, 0)) / min(N, active)

where r = (measured seconds) / (estimated seconds) over the tasks that ended (1 before any),
N the jobs run at once and active the tasks pending or running.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ramlab.errors import RamlabError

TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
RUNNING_SHOWN = 8  # ids of running tasks named in a progress line


@dataclass(frozen=True, kw_only=True)
class Task:
    """One command of the DAG."""

    id: str
    """Unique and filesystem-safe (letters, digits, `_.+-`)."""
    argv: tuple[str, ...]
    """The command that runs it (no shell)."""
    log: Path
    """File for its stdout and stderr, appended to; parent folders are created."""
    deps: tuple[str, ...] = ()
    """Ids of the tasks that must succeed before it starts."""
    title: str = ""
    """What it does, for progress lines."""
    seconds: float = 60.0
    """Estimated duration, for the time-left estimate."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment variables (the executor's thread and GPU variables win over these)."""
    alone: bool = False
    """Run after every other task has ended, with nothing beside it (it times something)."""

    def __post_init__(self) -> None:
        # Accept lists and strings where tuples and paths are meant; copy env so a caller's
        # later edits of its dict do not change the task.
        object.__setattr__(self, "argv", tuple(str(a) for a in self.argv))
        object.__setattr__(self, "deps", tuple(self.deps))
        object.__setattr__(self, "log", Path(self.log))
        object.__setattr__(self, "env", {str(k): str(v) for k, v in dict(self.env).items()})
        if not TASK_ID.match(self.id):
            raise RamlabError(f"task id {self.id!r} is not filesystem-safe: use letters, digits and _.+-")
        if not self.argv:
            raise RamlabError(f"task {self.id}: empty command")
        if self.id in self.deps:
            raise RamlabError(f"task {self.id} depends on itself")
        if not self.seconds >= 0:
            raise RamlabError(f"task {self.id}: estimated seconds must be >= 0, got {self.seconds}")

    @property
    def label(self) -> str:
        return f"{self.id} ({self.title})" if self.title else self.id


@dataclass
class Outcome:
    """How a task ended."""

    id: str
    ok: bool
    returncode: int | None
    """The command's exit code (negative: killed by that signal); None if it never ran."""
    seconds: float
    """Wall time of its last attempt (0 if it never ran)."""
    reason: str
    """"ok", "exit 1", "skipped: needs train-x, which failed", "retried 1 time, then exit 3"..."""
    log: Path
    attempts: int = 1
    """Times the command was started (0 if skipped)."""

    @property
    def skipped(self) -> bool:
        return self.attempts == 0


def topological_order(tasks: Iterable[Task]) -> list[Task]:
    """The tasks, each after its dependencies (otherwise in the given order); a RamlabError
    for a duplicate id, an unknown dependency, a cycle, or a dependency on a task marked alone
    from one that is not."""
    tasks = list(tasks)
    by_id: dict[str, Task] = {}
    for task in tasks:
        if task.id in by_id:
            raise RamlabError(f"two tasks have the id {task.id!r}")
        by_id[task.id] = task
    for task in tasks:
        unknown = [d for d in task.deps if d not in by_id]
        if unknown:
            raise RamlabError(f"task {task.id} depends on unknown task(s): {', '.join(unknown)}")
        alone = [d for d in task.deps if by_id[d].alone and not task.alone]
        if alone:
            raise RamlabError(
                f"task {task.id} depends on {alone[0]}, which runs alone after every other task; "
                f"mark {task.id} alone too"
            )
    order: list[Task] = []
    state: dict[str, str] = {}  # "visiting" while on the stack, "done" once ordered

    def visit(task: Task, path: list[str]) -> None:
        if state.get(task.id) == "done":
            return
        if state.get(task.id) == "visiting":
            cycle = [*path[path.index(task.id) :], task.id]
            raise RamlabError(f"the tasks depend on each other in a cycle: {' -> '.join(cycle)}")
        state[task.id] = "visiting"
        for dep in task.deps:
            visit(by_id[dep], [*path, task.id])
        state[task.id] = "done"
        order.append(task)

    for task in tasks:
        visit(task, [])
    return order


def levels(tasks: Iterable[Task]) -> list[list[Task]]:
    """Waves of tasks: level 0 has no dependencies, level k depends on levels < k only; then
    each task marked alone in a wave of its own."""
    level: dict[str, int] = {}
    waves: list[list[Task]] = []
    ordered = topological_order(tasks)
    for task in (t for t in ordered if not t.alone):
        k = 1 + max((level[d] for d in task.deps), default=-1)
        level[task.id] = k
        if k == len(waves):
            waves.append([])
        waves[k].append(task)
    return waves + [[task] for task in ordered if task.alone]


def duration(seconds: float) -> str:
    """0.3s, 45s, 3m05s, 2h04m."""
    if seconds < 9.95:
        return f"{max(seconds, 0.0):.1f}s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Tracker:
    """The state of one execution: pending, running and ended tasks, and the progress lines."""

    def __init__(
        self,
        tasks: Iterable[Task],
        *,
        jobs: int,
        progress: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        given = list(tasks)
        self.tasks = topological_order(given)
        self.given_order = [task.id for task in given]
        self.by_id = {task.id: task for task in self.tasks}
        self.jobs = max(1, jobs)
        self.progress = progress
        self.clock = clock
        self.pending: dict[str, Task] = dict(self.by_id)  # in topological order
        self.running: dict[str, float] = {}  # id -> start time
        self.ended: dict[str, Outcome] = {}
        self.dependents: dict[str, list[str]] = {task.id: [] for task in self.tasks}
        for task in self.tasks:
            for dep in task.deps:
                self.dependents[dep].append(task.id)

    # ---- queries ----------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return not self.pending and not self.running

    def ready(self) -> list[Task]:
        """Pending tasks whose dependencies all succeeded, in topological order; a task
        marked alone only once nothing else is running or left, and one at a time."""
        ready = [
            task
            for task in self.pending.values()
            if all(d in self.ended and self.ended[d].ok for d in task.deps)
        ]
        others = [task for task in ready if not task.alone]
        if others or self.running or any(not task.alone for task in self.pending.values()):
            return others
        return ready[:1]

    def outcomes(self) -> list[Outcome]:
        """One outcome per task, in the order given (every task must have ended)."""
        assert self.finished, f"tasks not ended: {sorted([*self.pending, *self.running])}"
        return [self.ended[task_id] for task_id in self.given_order]

    def seconds_left(self) -> float:
        # Tasks that ran to success: a failure after 2 s says nothing about how long tasks take.
        ran = [o for o in self.ended.values() if o.ok and self.by_id[o.id].seconds > 0]
        estimated = sum(self.by_id[o.id].seconds for o in ran)
        ratio = sum(o.seconds for o in ran) / estimated if estimated else 1.0
        now = self.clock()
        left = sum(task.seconds * ratio for task in self.pending.values())
        left += sum(
            max(self.by_id[i].seconds * ratio - (now - start), 0.0) for i, start in self.running.items()
        )
        active = len(self.pending) + len(self.running)
        return left / min(self.jobs, active) if active else 0.0

    def status(self) -> str:
        failed = sum(not o.ok and not o.skipped for o in self.ended.values())
        skipped = sum(o.skipped for o in self.ended.values())
        parts = [f"{len(self.ended)}/{len(self.tasks)} done"]
        if failed:
            parts.append(f"{failed} failed")
        if skipped:
            parts.append(f"{skipped} skipped")
        if self.running:
            names = [*self.running][:RUNNING_SHOWN] + (["..."] if len(self.running) > RUNNING_SHOWN else [])
            parts.append(f"running {len(self.running)}: {', '.join(names)}")
        if not self.finished:
            parts.append(f"~{duration(self.seconds_left())} left")
        return " | ".join(parts)

    # ---- events -----------------------------------------------------------------------------
    def start(self, task_id: str, *, quiet: bool = False) -> None:
        """A task started (`quiet`: without a progress line, for a batch the caller reports)."""
        task = self.pending.pop(task_id)
        self.running[task_id] = self.clock()
        if not quiet:
            self.progress(f"started {task.label} | {self.status()}")

    def end(
        self,
        task_id: str,
        *,
        returncode: int | None,
        seconds: float | None = None,
        attempts: int = 1,
        error: str = "",
    ) -> Outcome:
        """Record how a started (or, for executors that cannot see starts, pending) task ended:
        by its exit code, or by `error` when it failed without one (could not start, lost
        job). A failure skips its dependents."""
        task = self.by_id[task_id]
        start = self.running.pop(task_id, None)
        self.pending.pop(task_id, None)
        if seconds is None:
            seconds = self.clock() - start if start is not None else 0.0
        ok = returncode == 0 and not error
        reason = error or ("ok" if ok else f"exit {returncode}")
        if attempts > 1:
            retried = f"retried {attempts - 1} time{'s' if attempts > 2 else ''}"
            reason = f"ok, {retried}" if ok else f"{retried}, then {reason}"
        outcome = Outcome(
            id=task_id,
            ok=ok,
            returncode=returncode,
            seconds=seconds,
            reason=reason,
            log=task.log,
            attempts=attempts,
        )
        self.ended[task_id] = outcome
        skipped = [] if ok else self._skip_dependents(task_id)
        if ok:
            line = f"finished {task.label} in {duration(seconds)}"
        else:
            line = f"FAILED {task.label}: {reason} after {duration(seconds)}; log: {task.log}"
            if skipped:
                line += f"; skipping {len(skipped)} that need it: {', '.join(skipped)}"
        self.progress(f"{line} | {self.status()}")
        return outcome

    def _skip_dependents(self, failed: str) -> list[str]:
        skipped: list[str] = []
        queue = [(d, failed) for d in self.dependents[failed]]
        while queue:
            task_id, needs = queue.pop(0)
            if task_id not in self.pending:
                continue
            task = self.pending.pop(task_id)
            why = "which failed" if needs == failed else f"which was skipped ({failed} failed)"
            self.ended[task_id] = Outcome(
                id=task_id,
                ok=False,
                returncode=None,
                seconds=0.0,
                reason=f"skipped: needs {needs}, {why}",
                log=task.log,
                attempts=0,
            )
            skipped.append(task_id)
            queue.extend((d, task_id) for d in self.dependents[task_id])
        return skipped
