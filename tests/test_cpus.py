"""The CPUs a process may keep busy: affinity capped by a cgroup quota, on fake cgroup trees."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ramlab import cpus, device
from ramlab.device import set_threads
from ramlab.errors import RamlabError
from ramlab.execute import resources as resources_module
from ramlab.execute.resources import check_cpus


def tree(root: Path, files: dict[str, str], proc: str) -> tuple[Path, Path]:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "proc").write_text(proc)
    return root / "fs", root / "proc"


@pytest.mark.parametrize(
    ("files", "proc", "limit"),
    [
        # cgroup v2 inside a container (cgroup namespace: its own cgroup is the mount's root)
        ({"fs/cpu.max": "200000 100000\n"}, "0::/\n", 2.0),
        ({"fs/cpu.max": "max 100000\n"}, "0::/\n", None),
        ({"fs/cpu.max": "150000 100000\n"}, "0::/\n", 1.5),
        # v2 on a host: the parent's quota (3) is tighter than the job's (4)
        (
            {"fs/cpu.max": "max 100000", "fs/a/cpu.max": "300000 100000", "fs/a/b/cpu.max": "400000 100000"},
            "0::/a/b\n",
            3.0,
        ),
        # v2 path missing under the mount (not namespaced): the mount's own file still counts
        ({"fs/cpu.max": "50000 100000"}, "0::/system.slice/docker-1.scope\n", 0.5),
        # cgroup v1, cpu and cpuacct mounted together; -1 is no quota
        (
            {"fs/cpu,cpuacct/cpu.cfs_quota_us": "400000", "fs/cpu,cpuacct/cpu.cfs_period_us": "100000"},
            "4:memory:/x\n2:cpu,cpuacct:/\n",
            4.0,
        ),
        (
            {"fs/cpu,cpuacct/cpu.cfs_quota_us": "-1", "fs/cpu,cpuacct/cpu.cfs_period_us": "100000"},
            "2:cpu,cpuacct:/\n",
            None,
        ),
        # no cgroup file at all, or a damaged one
        ({}, "0::/\n", None),
        ({"fs/cpu.max": "garbage"}, "0::/\n", None),
    ],
)
def test_cgroup_cpu_limit(tmp_path, files, proc, limit):
    root, proc_file = tree(tmp_path, files, proc)
    assert cpus.cgroup_cpu_limit(root, proc_file) == limit


def test_no_proc_cgroup_is_no_limit(tmp_path):
    assert cpus.cgroup_cpu_limit(tmp_path, tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("affinity", "limit", "expected"), [(64, 2.0, 2), (64, 1.5, 1), (64, 0.5, 1), (2, 8.0, 2), (4, None, 4)]
)
def test_available_cpus_is_the_affinity_capped_by_the_quota(monkeypatch, affinity, limit, expected):
    monkeypatch.setattr(cpus, "affinity_cpus", lambda: affinity)
    monkeypatch.setattr(cpus, "cgroup_cpu_limit", lambda: limit)
    assert cpus.available_cpus() == expected


def test_a_quota_caps_the_plan_and_torch(monkeypatch, capsys):
    # A container allowed 1 CPU on a machine with more cores: 2 jobs are refused, and torch's
    # default thread count comes down to the quota.
    monkeypatch.setattr(cpus, "cgroup_cpu_limit", lambda: 1.0)
    monkeypatch.setattr(resources_module, "available_cpus", cpus.available_cpus)
    with pytest.raises(RamlabError, match="only 1 CPUs are available"):
        check_cpus(2, 1)
    before = torch.get_num_threads()
    monkeypatch.setattr(device, "TORCH_DEFAULT_THREADS", 2)
    try:
        assert set_threads(0) == 1 == torch.get_num_threads()
        assert (
            "torch's default of 2 threads is more than the 1 CPUs available; using 1"
            in capsys.readouterr().err
        )
        assert set_threads(3) == 1
    finally:
        torch.set_num_threads(before)


def test_zero_threads_is_torchs_default_not_the_last_jobs_count(monkeypatch):
    # a serial study's job with threads 0 ran on the thread count of the job before it
    monkeypatch.setattr(cpus, "cgroup_cpu_limit", lambda: None)
    monkeypatch.setattr(device, "TORCH_DEFAULT_THREADS", 1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # an earlier job's --threads 2
        assert set_threads(0) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
