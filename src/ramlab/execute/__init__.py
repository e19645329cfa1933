"""Executors of a DAG of commands: `execute(tasks, executor=..., resources=..., progress=...)`.

A study's jobs are each one command line (the same entry point, resumable), with the ids of
the jobs it needs. An executor only runs commands, in dependency order; a failed command's
dependents are skipped, everything else goes on; each task's output is appended to its log.

    serial   one command at a time, in topological order (the reference)
    local    up to N subprocesses at once on this machine, T threads each, GPU slots
    ray      Ray tasks on a local Ray or a cluster (pip install 'ramlab[ray]'), with retries
    slurm    Slurm job arrays per dependency level via submitit (pip install 'ramlab[slurm]')

Each returns one `Outcome` per task, in the order given. Executor-specific options are
keyword arguments of `execute` (see `options(executor)`).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping

from ramlab.errors import Interrupted, RamlabError, unknown_name
from ramlab.execute.dag import Outcome, Task, levels, topological_order
from ramlab.execute.resources import Resources

__all__ = [
    "EXECUTORS",
    "Outcome",
    "Resources",
    "Task",
    "check_options",
    "execute",
    "levels",
    "options",
    "topological_order",
]

# name -> (module, the package its extra installs, or None for the standard library only)
EXECUTORS: dict[str, tuple[str, str | None]] = {
    "serial": ("ramlab.execute.serial", None),
    "local": ("ramlab.execute.local", None),
    "ray": ("ramlab.execute.ray_executor", "ray"),
    "slurm": ("ramlab.execute.slurm_executor", "submitit"),
}
NOT_OPTIONS = {"tasks", "resources", "progress"}


def _runner(executor: str) -> Callable[..., list[Outcome]]:
    if executor not in EXECUTORS:
        raise unknown_name("executor", executor, EXECUTORS)
    module, package = EXECUTORS[executor]
    try:
        return importlib.import_module(module).run
    except ModuleNotFoundError as exc:
        if package is None or exc.name != package:
            raise
        raise RamlabError(
            f"--executor {executor} needs the {package} package: pip install 'ramlab[{executor}]'"
        ) from exc


def options(executor: str) -> dict[str, object]:
    """The options an executor takes, with their defaults."""
    parameters = inspect.signature(_runner(executor)).parameters
    return {name: p.default for name, p in parameters.items() if name not in NOT_OPTIONS}


def check_options(executor: str, given: Mapping[str, object]) -> None:
    """A RamlabError, listing the valid ones, for an option `executor` does not take (or an
    unknown executor, or one whose package is missing)."""
    valid = options(executor)
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise RamlabError(
            f"unknown option(s) {', '.join(unknown)} for --executor {executor}; "
            f"valid: {', '.join(sorted(valid)) or 'none'}"
        )
    for key, value in given.items():
        _check_value(key, value, valid[key])


def _check_value(key: str, value: object, default: object) -> None:
    """An option's value is of its default's kind: a number >= 0 (a whole one where the
    default is, but for timeout_min), or text; checked before a study starts, and by --list."""
    if key == "timeout_min":
        from ramlab.execute.command import check_timeout

        check_timeout(value)  # type: ignore[arg-type]
        return
    if isinstance(default, bool) or default is None:
        return
    if isinstance(default, (int, float)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        whole = isinstance(default, float) or isinstance(value, int)
        if not (number and whole and value >= 0):
            kind = "a number" if isinstance(default, float) else "a whole number"
            raise RamlabError(f"--option {key}={value!r}: {kind} >= 0 expected (default {default})")
    elif isinstance(default, str) and not isinstance(value, str):
        raise RamlabError(f"--option {key}={value!r}: text expected (default {default!r})")


def _stderr(line: str) -> None:
    print(f"ramlab: {line}", file=sys.stderr, flush=True)


def execute(
    tasks: Iterable[Task],
    *,
    executor: str,
    resources: Resources,
    progress: Callable[[str], None] = _stderr,
    **executor_options: object,
) -> list[Outcome]:
    """Run every task whose dependencies succeeded; one Outcome per task, in the order given.

    A RamlabError for an unknown executor (listing the valid ones) or option, a missing
    optional package, tasks that do not form a DAG, or resources this machine lacks.
    KeyboardInterrupt (Ctrl-C) stops the running commands and propagates."""
    tasks = list(tasks)
    run = _runner(executor)
    check_options(executor, executor_options)
    topological_order(tasks)  # fail fast on duplicate ids, unknown dependencies, cycles
    if not tasks:
        return []
    with signals_interrupt():
        return run(tasks, resources=resources, progress=best_effort(progress), **executor_options)


def best_effort(progress: Callable[[str], None]) -> Callable[[str], None]:
    """`progress` that never raises OSError: after a closed terminal or SSH session (SIGHUP)
    a write to it fails (EIO), and that must not keep the executor from stopping its jobs."""

    def report(line: str) -> None:
        with contextlib.suppress(OSError):
            progress(line)

    return report


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """While the executor runs: SIGTERM and SIGHUP (a `kill`, a closed terminal or SSH
    session) raise `Interrupted` as Ctrl-C does, so the executor stops its commands (each
    runs in a session of its own and would otherwise outlive this process) or cancels its
    jobs. A signal this process ignores stays ignored (`nohup` ignores SIGHUP); only the main
    thread can take signals, elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        raise Interrupted(f"{name} received; stopping the running jobs", exit_code=128 + signum)

    previous = {}
    for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
