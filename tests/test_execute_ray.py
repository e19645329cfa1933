"""The Ray executor on a local Ray with 2 CPUs (started once for the module)."""

from __future__ import annotations

import os
import signal
import threading
import time
from types import SimpleNamespace

import pytest
from test_execute_local import (
    alone_dag,
    check_alone_dag,
    check_small_dag,
    fake,
    max_overlap,
    records,
    small_dag,
)
from test_execute_stop import pid_alive, pid_when_started

from ramlab.execute import Resources, execute

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_runs_the_dag_two_at_a_time(tmp_path):
    tasks = small_dag(tmp_path)
    lines: list[str] = []
    outcomes = execute(tasks, executor="ray", resources=Resources(jobs=2), progress=lines.append)
    runs = check_small_dag(tasks, outcomes, tmp_path, jobs=2)
    assert max_overlap(list(runs.values())) == 2
    assert all(r["env"]["OMP_NUM_THREADS"] == "1" for r in runs.values())
    assert runs["b"]["env"]["EXTRA"] == "b-only"
    # no GPU asked for: none seen (Ray leaves CUDA_VISIBLE_DEVICES alone at 0 GPUs)
    assert all(r["env"]["CUDA_VISIBLE_DEVICES"] == "" for r in runs.values())
    # each submitted once its dependencies succeeded; the failure's dependents never
    assert sorted(line.split()[1] for line in lines if line.startswith("submitted ")) == list("abcdef")
    assert lines[-1].endswith("| 8/8 done | 1 failed | 2 skipped")


def test_ray_runs_at_most_jobs_at_once_on_a_cluster_with_more_cpus(tmp_path):
    # On a running Ray (a cluster) every task was submitted at once: --jobs was ignored, and
    # as many ran as the cluster's CPUs held (here 2).
    tasks = small_dag(tmp_path)
    lines: list[str] = []
    outcomes = execute(tasks, executor="ray", resources=Resources(jobs=1), progress=lines.append)
    runs = check_small_dag(tasks, outcomes, tmp_path, jobs=1)
    assert max_overlap(list(runs.values())) == 1
    assert "note: the Ray cluster holds 2 jobs of 1 CPUs; --jobs 1 runs that many at once" in lines


def test_ray_takes_more_at_once_as_the_cluster_grows(tmp_path, monkeypatch):
    # The cap was read once, at the start: a cluster that began small (a head with no CPUs,
    # an autoscaler) stayed at one job at a time. Here it holds 1 job until 3 tasks ended.
    tasks = small_dag(tmp_path)
    lines: list[str] = []
    real = ray.cluster_resources

    def growing() -> dict:
        ended = sum(line.startswith(("finished", "FAILED")) for line in lines)
        return {**real(), "CPU": 1.0 if ended < 3 else 2.0}

    monkeypatch.setattr(ray, "cluster_resources", growing)
    outcomes = execute(tasks, executor="ray", resources=Resources(jobs=2), progress=lines.append)
    runs = check_small_dag(tasks, outcomes, tmp_path, jobs=2)
    notes = [line for line in lines if line.startswith("note: the Ray cluster holds")]
    assert notes == ["note: the Ray cluster holds 1 job of 1 CPUs now; at most that many at once"]
    first = sorted(runs.values(), key=lambda r: r["start"])[:3]
    assert max_overlap(first) == 1  # one at a time while it held one


def test_ray_keeps_its_cap_as_the_cluster_shrinks(tmp_path, monkeypatch):
    # A node lost with --jobs 2 and 2 in flight: the cap fell to 1 and the slice
    # ready()[: 1 - 2] submitted every ready task but the last (4 in flight).
    tasks = [fake(tmp_path, name, sleep=0.3) for name in "pqrst"]
    lines: list[str] = []
    real = ray.cluster_resources

    def in_flight() -> int:
        ended = sum(line.startswith(("finished", "FAILED")) for line in lines)
        return sum(line.startswith("submitted ") for line in lines) - ended

    def shrinking() -> dict:
        ever = sum(line.startswith("submitted ") for line in lines)
        return {**real(), "CPU": 2.0 if ever < 2 else 1.0}

    most = [0]

    def seen(line: str) -> None:
        lines.append(line)
        most[0] = max(most[0], in_flight())

    monkeypatch.setattr(ray, "cluster_resources", shrinking)
    monkeypatch.setattr("ramlab.execute.ray_executor.CAPACITY_SECONDS", 0.05)  # looks again while 2 run
    outcomes = execute(tasks, executor="ray", resources=Resources(jobs=2), progress=seen)
    assert all(o.ok for o in outcomes)
    assert most[0] == 2  # 2 before the node was lost, never more
    assert "note: the Ray cluster holds 1 job of 1 CPUs now; at most that many at once" in lines


def test_the_jobs_a_ray_cluster_holds_count_gpu_fractions_as_ray_does():
    from ramlab.execute.ray_executor import jobs_that_fit

    assert jobs_that_fit({"CPU": 16.0, "GPU": 1.0}, 2, 0.2) == 5  # 1 // 0.2 == 4.0 said 4
    assert jobs_that_fit({"CPU": 16.0, "GPU": 4.0}, 1, 0.2) == 16  # the CPUs bound it (20 by GPU)
    assert jobs_that_fit({"CPU": 16.0, "GPU": 1.0}, 1, 0.3) == 3
    assert jobs_that_fit({"CPU": 7.0}, 2, 0.0) == 3
    assert jobs_that_fit({}, 1, 0.5) == 0


def test_a_job_no_ray_node_can_hold_is_refused_on_a_local_ray_and_noted_on_a_cluster():
    # It waited forever: Ray keeps a task no node can hold pending (the fixture's one node has
    # 2 CPUs and no GPU).
    from ramlab.errors import RamlabError
    from ramlab.execute.ray_executor import check_fits

    lines: list[str] = []
    check_fits(2, 0.0, local_ray=True, progress=lines.append)
    assert lines == []
    with pytest.raises(
        RamlabError, match=r"no Ray node has the 3 CPUs a job asks for \(nodes: 2 CPUs, 0 GPUs\)"
    ):
        check_fits(3, 0.0, local_ray=True, progress=lines.append)
    with pytest.raises(RamlabError, match=r"1 CPUs and 0\.5 GPUs"):
        check_fits(1, 0.5, local_ray=True, progress=lines.append)
    check_fits(3, 0.0, local_ray=False, progress=lines.append)
    assert lines == [
        "note: no Ray node has the 3 CPUs a job asks for now (nodes: 2 CPUs, 0 GPUs); the jobs wait until one joins"
    ]


def test_ray_runs_a_task_marked_alone_last_with_nothing_beside_it(tmp_path):
    check_alone_dag(execute(alone_dag(tmp_path), executor="ray", resources=Resources(jobs=2)), tmp_path)


def test_ray_retries_a_failed_command(tmp_path):
    tasks = [
        fake(tmp_path, "flaky", mode="FLAKY", sleep=0),  # exits 3 the first time, then 0
        fake(tmp_path, "after", deps=["flaky"], sleep=0),
        fake(tmp_path, "broken", code=3, sleep=0),  # exits 3 every time
    ]
    flaky, after, broken = execute(
        tasks, executor="ray", resources=Resources(jobs=2), progress=lambda line: None, retries=1
    )
    assert (flaky.ok, flaky.attempts, flaky.reason) == (True, 2, "ok, retried 1 time")
    assert after.ok and after.attempts == 1
    assert (broken.ok, broken.returncode, broken.reason) == (False, 3, "retried 1 time, then exit 3")
    ran = records(tmp_path)
    assert (len(ran["flaky"]), len(ran["after"]), len(ran["broken"])) == (2, 1, 2)
    assert tasks[0].log.read_text().count("==> ramlab.execute: ") == 2


def test_ray_gives_each_task_its_threads(tmp_path):
    outcomes = execute(
        [fake(tmp_path, "a", sleep=0)],
        executor="ray",
        resources=Resources(jobs=1, threads_per_job=2),
        progress=lambda line: None,
    )
    assert outcomes[0].ok
    env = records(tmp_path)["a"][0]["env"]
    assert (env["OMP_NUM_THREADS"], env["MKL_NUM_THREADS"], env["RAMLAB_THREADS"]) == ("2", "2", "2")


def test_ctrl_c_cancels_the_ray_tasks_and_stops_their_commands(tmp_path, monkeypatch):
    tasks = [fake(tmp_path, "long", sleep=30, mode="RECORD_SIGNALS"), fake(tmp_path, "later", deps=["long"])]
    pids: list[int | None] = []
    forced: list[bool] = []
    cancel = ray.cancel

    def noting_cancel(ref, *, force=False, **options):
        forced.append(force)
        return cancel(ref, force=force, **options)

    monkeypatch.setattr(ray, "cancel", noting_cancel)

    def interrupt() -> None:
        pids.append(pid_when_started(tmp_path / "long.pid"))
        if pids[0] is not None:
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        execute(tasks, executor="ray", resources=Resources(), progress=lambda line: None, grace_seconds=20)
    assert forced == [False]  # the cancelled task stopped its command: no force needed
    assert pids[0] is not None
    deadline = time.monotonic() + 10  # the command is the Ray worker's child: wait until it is gone
    while time.monotonic() < deadline and pid_alive(pids[0]):
        time.sleep(0.05)
    assert not pid_alive(pids[0])
    assert (tmp_path / "long.signals").read_text().split() == ["SIGTERM"]  # one, from the cancel
    assert records(tmp_path) == {}


def test_an_unreachable_cluster_is_a_ramlab_error_saying_what_to_do(tmp_path, monkeypatch):
    from ramlab.errors import RamlabError

    def refuse(**_):
        raise ConnectionError("could not connect to 10.0.0.9:6379")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(RamlabError, match=r"cannot reach the Ray cluster at 10\.0\.0\.9:6379 \(could not"):
        execute([fake(tmp_path, "a")], executor="ray", resources=Resources(), address="10.0.0.9:6379")


def test_ray_init_keeps_the_drivers_signal_handlers():
    # ray.init installs its own SIGTERM handler (sys.exit): a killed driver then exited 15
    # without stopping its jobs the executor's way or saying how to resume.
    from ramlab.execute.ray_executor import keeping_signal_handlers

    def ours(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, ours)
    try:
        with keeping_signal_handlers():
            signal.signal(signal.SIGTERM, lambda signum, frame: None)  # what ray.init does
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_cluster_whose_nodes_cannot_run_the_jobs_is_refused_before_any_job(tmp_path, monkeypatch):
    # Every task imports ramlab in the Python that started its node, and every job runs the
    # driver's Python: a node without either would fail every job sent there, one by one.
    from ramlab.errors import RamlabError
    from ramlab.execute.ray_executor import check_workers

    assert check_workers("local", timeout=60) == 1  # the test session's Ray: one node, all there
    n1, n2, n3 = ("11" * 28, "22" * 28, "33" * 28)  # Ray's node ids: 28 bytes in hex
    nodes = [
        {"NodeID": n1, "Alive": True, "NodeManagerAddress": "10.0.0.1"},
        {"NodeID": n2, "Alive": True, "NodeManagerAddress": "10.0.0.2"},
        {"NodeID": n3, "Alive": False},
    ]
    sent: list[str] = []

    class Probe:
        def options(self, scheduling_strategy):
            assert scheduling_strategy.soft is False  # on that node, not wherever Ray likes
            sent.append(scheduling_strategy.node_id)
            return SimpleNamespace(remote=lambda python: scheduling_strategy.node_id)

    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    monkeypatch.setattr(ray, "remote", lambda **options: lambda function: Probe())
    monkeypatch.setattr(ray, "get", lambda node, timeout: node != n2)  # n2 lacks the Python
    with pytest.raises(RamlabError, match=r"node 10\.0\.0\.2 of the Ray cluster at c:1 has no .*same path"):
        check_workers("c:1")
    assert sent == [n1, n2]  # every alive node

    def fails(node, timeout):
        raise ray.exceptions.RaySystemError("ModuleNotFoundError: No module named 'ramlab'")

    monkeypatch.setattr(ray, "get", fails)
    with pytest.raises(
        RamlabError, match=r"node 10\.0\.0\.1 .* failed \(.*No module named 'ramlab'\).*`ray start`"
    ):
        check_workers("c:1")

    def hangs(node, timeout):
        raise ray.exceptions.GetTimeoutError("timed out")

    monkeypatch.setattr(ray, "get", hangs)
    with pytest.raises(RamlabError, match=r"did not run in 120 s: is it up"):
        check_workers("c:1")
    # From execute: refused after connecting, and the connection closed again.
    shut: list[bool] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **_: None)
    monkeypatch.setattr(ray, "shutdown", lambda: shut.append(True))
    monkeypatch.setattr(ray, "get", fails)
    with pytest.raises(RamlabError, match="No module named 'ramlab'"):
        execute([fake(tmp_path, "a")], executor="ray", resources=Resources(), address="c:1")
    assert shut == [True] and records(tmp_path) == {}
