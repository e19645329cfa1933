"""The Ray executor: each task a Ray task that runs its command as a subprocess on a worker.

Each Ray task asks for num_cpus=T and num_gpus=F (Ray sets CUDA_VISIBLE_DEVICES; F = 0.25
puts four on one GPU). At most N are in flight (fewer while the cluster's CPUs and GPUs hold
fewer such jobs, looked at again as it runs: a cluster may grow), each submitted once its
dependencies succeeded; a failure's dependents
are skipped, never submitted. A job no node can hold is refused on a Ray started here, and
noted on a cluster (an autoscaler may add a node). A non-zero exit raises CommandFailed, which Ray retries up to `retries` times
(`max_retries`, `retry_exceptions`); the log keeps every attempt.

Connects to the cluster at `address` or `RAY_ADDRESS` when given; otherwise, unless Ray is
already initialised, starts a local Ray with N × T CPUs (checked against the CPUs available)
and shuts it down at the end. Ctrl-C cancels the Ray tasks (their commands get SIGTERM, and
SIGKILL after the grace period) and re-raises KeyboardInterrupt.

On a cluster every node runs the commands itself: ramlab must be installed on every node at
the driver's path (a command names the driver's Python, `sys.executable`), every node's
`ray start` run from that environment (each task imports this module in the Python that
started its node; a probe task on every node checks it, and the driver's Python, before any
job is submitted: `check_workers`), and
the study directory (commands, logs, checkpoints) must be on storage every node sees.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import ray
from ray.exceptions import RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ramlab.errors import RamlabError
from ramlab.execute import command
from ramlab.execute.dag import Outcome, Task, Tracker
from ramlab.execute.resources import Resources, check_cpus, visible_gpus

# After a soft cancel, how much longer than the grace the task gets before it is killed: its
# command's own stop (SIGTERM, SIGKILL after the grace) must end first, not be orphaned.
CANCEL_MARGIN = 5.0
# How often, while the tasks in flight run on, the cluster's size is looked at again (one that
# grows, an autoscaler's or a head started with no CPUs, then takes more at once).
CAPACITY_SECONDS = 10.0
# How long a probe task of no CPU gets to run on a cluster before the study starts.
PROBE_SECONDS = 120.0


@contextlib.contextmanager
def keeping_signal_handlers() -> Iterator[None]:
    """ray.init replaces the SIGTERM handler with its own exit: keep the driver's (which stops
    the jobs and exits 143 with the command that resumes, `execute.signals_interrupt`)."""
    names = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, n)]
    main = threading.current_thread() is threading.main_thread()
    saved = {s: signal.getsignal(s) for s in names} if main else {}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if handler is not None:
                signal.signal(signum, handler)


def _run_command(argv: list[str], env: dict[str, str], log: str, grace: float) -> float:
    """The body of each Ray task."""
    return command.run_or_raise(argv, log=Path(log), env=env, grace=grace)


def _worker_check(driver_python: str) -> bool:
    """On a node: whether the driver's Python is there (the jobs run it). A task that runs at
    all imported ramlab in the Python that started the node."""
    return os.path.exists(driver_python)


def check_workers(address: str, *, timeout: float = PROBE_SECONDS) -> int:
    """Run a task of no CPU on every alive node of the cluster, before any job is submitted;
    the number of nodes, or a RamlabError naming the first node that cannot run the jobs:
    each task imports this module in the Python that started its node (`ray start`), and each
    job runs the driver's Python, so either missing on a node fails every job sent there."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    probe = ray.remote(num_cpus=0)(_worker_check)
    refs = [
        probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(
            sys.executable
        )
        for node in nodes
    ]
    for node, ref in zip(nodes, refs, strict=True):
        where = f"node {node.get('NodeManagerAddress') or node['NodeID']} of the Ray cluster at {address}"
        try:
            found = ray.get(ref, timeout=timeout)
        except ray.exceptions.GetTimeoutError as exc:
            raise RamlabError(
                f"a probe task on {where} did not run in {timeout:.0f} s: is it up (`ray status`)?"
            ) from exc
        except ray.exceptions.RayError as exc:
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise RamlabError(
                f"a probe task on {where} failed ({first}): run every node's `ray start` from an "
                f"environment with ramlab installed at the driver's path ({sys.executable})"
            ) from exc
        if not found:
            raise RamlabError(
                f"{where} has no {sys.executable}: the jobs run the driver's Python, so install "
                "ramlab at the same path on every node"
            )
    return len(nodes)


def run(
    tasks: list[Task],
    *,
    resources: Resources,
    progress: Callable[[str], None],
    retries: int = 0,
    address: str | None = None,
    grace_seconds: float = command.GRACE_SECONDS,
) -> list[Outcome]:
    """Run the tasks on Ray.

    retries: further attempts after a non-zero exit. address: a Ray cluster (default
    `RAY_ADDRESS`; neither: a local Ray unless one is initialised). grace_seconds: after
    Ctrl-C, how long cancelled tasks get to stop their commands before they are killed."""
    started_here = local_ray = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            progress(f"connecting to the Ray cluster at {address}")
            try:
                with keeping_signal_handlers():
                    ray.init(address=address)
            except ConnectionError as exc:
                raise RamlabError(
                    f"cannot reach the Ray cluster at {address} ({exc}); start it (`ray start "
                    "--head` on its head node) or check the address, or leave address and "
                    "RAY_ADDRESS unset for a local Ray"
                ) from exc
            try:
                progress(f"{check_workers(address)} Ray node(s) run ramlab and have {sys.executable}")
            except BaseException:  # a Ctrl-C during the probe too: no connection left open
                ray.shutdown()
                raise
        else:
            local_ray = True
            check_cpus(resources.jobs, resources.threads_per_job)
            cpus = resources.jobs * resources.threads_per_job
            progress(f"starting a local Ray with {cpus} CPUs")
            with keeping_signal_handlers():
                # address "local": a new Ray here, even where `ray start` runs one already
                ray.init(
                    address="local", num_cpus=cpus, num_gpus=len(visible_gpus()), include_dashboard=False
                )
        started_here = True
    try:
        return _run(
            tasks,
            resources=resources,
            progress=progress,
            retries=retries,
            grace=grace_seconds,
            local_ray=local_ray,
        )
    finally:
        if started_here:
            ray.shutdown()


def jobs_that_fit(cluster: dict[str, float], threads: int, gpus: float) -> int:
    """How many jobs of `threads` CPUs and `gpus` GPUs (a fraction shares one) the cluster's
    resources (`ray.cluster_resources()`) hold together."""
    fits = int(cluster.get("CPU", 0) // threads)
    if gpus > 0:  # not //: 1 // 0.2 is 4.0 in floating point, where Ray fits five
        fits = min(fits, math.floor(cluster.get("GPU", 0) / gpus + 1e-9))
    return fits


def _run(
    tasks: list[Task],
    *,
    resources: Resources,
    progress: Callable[[str], None],
    retries: int,
    grace: float,
    local_ray: bool,
) -> list[Outcome]:
    cluster = ray.cluster_resources()
    gpus = resources.gpus_per_job
    if gpus > 0 and not cluster.get("GPU"):
        progress(f"note: the Ray cluster has no GPU; --gpus-per-job {gpus:g} ignored")
        gpus = 0.0
    if gpus > 1:  # Ray takes fractions of one GPU or whole GPUs
        gpus = float(math.ceil(gpus - 1e-9))
    threads = resources.threads_per_job
    check_fits(threads, gpus, local_ray=local_ray, progress=progress)
    held = [0]  # the jobs the cluster held at the last look: noted when it changes

    def at_once() -> int:
        """--jobs, or fewer while the cluster holds fewer (it may grow: looked at each pass)."""
        fits = jobs_that_fit(ray.cluster_resources(), threads, gpus)
        if fits != held[0]:
            held[0] = fits
            each = f"{threads} CPUs" + (f" and {gpus:g} GPUs" if gpus else "")
            what = f"{fits} job{'' if fits == 1 else 's'} of {each}"
            if fits < resources.jobs:
                progress(f"note: the Ray cluster holds {what} now; at most that many at once")
            elif fits > resources.jobs:
                progress(
                    f"note: the Ray cluster holds {what}; --jobs {resources.jobs} runs that many at once"
                )
        return max(1, min(resources.jobs, fits))

    tracker = Tracker(tasks, jobs=at_once(), progress=progress)
    remote = ray.remote(_run_command)
    offsets: dict[str, int] = {}
    waiting: dict[ray.ObjectRef, str] = {}

    def submit(task: Task) -> None:
        offsets[task.id] = command.log_size(task.log)
        tracker.start(task.id, quiet=True)
        ref = remote.options(
            name=task.id,
            num_cpus=threads,
            num_gpus=gpus,
            max_retries=retries,
            retry_exceptions=[command.CommandFailed],
        ).remote(
            list(task.argv),
            # A job without a GPU sees none (Ray leaves CUDA_VISIBLE_DEVICES alone at 0 GPUs).
            command.task_env(task, threads=threads, gpus="" if gpus == 0 else None),
            str(task.log),
            grace,
        )
        waiting[ref] = task.id
        progress(f"submitted {task.label} | {tracker.status()}")

    def settle(task_id: str, ref: ray.ObjectRef) -> None:
        attempts = max(1, command.attempts_since(tracker.by_id[task_id].log, offsets[task_id]))
        try:
            seconds = ray.get(ref)
        except RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, command.CommandFailed):
                tracker.end(task_id, returncode=cause.returncode, seconds=cause.seconds, attempts=attempts)
            else:
                tracker.end(task_id, returncode=None, attempts=attempts, error=f"{cause!r}")
        except ray.exceptions.RayError as exc:  # a worker or node lost, an object lost, ...
            tracker.end(task_id, returncode=None, attempts=attempts, error=f"Ray: {exc}")
        else:
            tracker.end(task_id, returncode=0, seconds=seconds, attempts=attempts)

    # At most N in flight, each submitted once its dependencies succeeded (a failure skips
    # its dependents, which are never submitted); a task marked alone once all else ended.
    try:
        while not tracker.finished:
            tracker.jobs = at_once()
            # none while more are in flight than the cap (a node lost): a negative slice
            # end would submit nearly every ready task
            for task in tracker.ready()[: max(0, tracker.jobs - len(waiting))]:
                submit(task)
            done, _ = ray.wait(list(waiting), num_returns=1, timeout=CAPACITY_SECONDS)
            for ref in done:
                settle(waiting.pop(ref), ref)
    except BaseException:
        if waiting:  # cancelled first: the report may fail (a closed terminal)
            for ref in waiting:
                ray.cancel(ref)  # a KeyboardInterrupt in the task, which stops its command
            _, left = ray.wait(list(waiting), num_returns=len(waiting), timeout=grace + CANCEL_MARGIN)
            for ref in left:
                ray.cancel(ref, force=True)
            progress(f"cancelled {len(waiting)} Ray task(s)")
        raise
    return tracker.outcomes()


def check_fits(threads: int, gpus: float, *, local_ray: bool, progress: Callable[[str], None]) -> None:
    """A job that no Ray node can hold would wait forever: a RamlabError on the local Ray
    started here (its resources are all there will be), a note on a cluster (an autoscaler
    may add a node)."""
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if any(r.get("CPU", 0) >= threads and r.get("GPU", 0) >= gpus for r in nodes):
        return
    need = f"{threads} CPUs" + (f" and {gpus:g} GPUs" if gpus else "")
    have = "; ".join(f"{r.get('CPU', 0):g} CPUs, {r.get('GPU', 0):g} GPUs" for r in nodes) or "none"
    if local_ray:
        raise RamlabError(
            f"no Ray node has the {need} a job asks for (nodes: {have}): lower --threads-per-job "
            "or --gpus-per-job"
        )
    progress(
        f"note: no Ray node has the {need} a job asks for now (nodes: {have}); the jobs wait until one joins"
    )
