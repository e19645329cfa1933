"""How many CPUs this process may keep busy: its affinity mask (which Slurm, taskset and
cpusets narrow) and its cgroup's CPU quota (`docker --cpus 2`, Kubernetes CPU limits),
whichever is smaller. A quota does not shrink the affinity mask, so a container limited to
2 CPUs on a 64-core host sees 64; torch's spinning OpenMP threads beyond the quota are
throttled in turns, far slower than threads that fit it.

Quotas are read from cgroup v2 (`cpu.max`: "QUOTA PERIOD" or "max PERIOD") and v1
(`cpu.cfs_quota_us`, -1 for none, over `cpu.cfs_period_us`), at every level of this
process's cgroup path (a parent's quota bounds its children), below the mount at
/sys/fs/cgroup. A fractional quota rounds down (1.5 CPUs keep 1 thread busy without
throttling), never below 1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # pragma: no cover - macOS, Windows


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _levels(base: Path, cgroup_path: str) -> list[Path]:
    """The folders from `base` down to this process's cgroup under it (those that exist: in a
    container the mount often shows only its own cgroup, at `base`)."""
    parts = [p for p in cgroup_path.split("/") if p]
    return [d for d in (base.joinpath(*parts[:i]) for i in range(len(parts) + 1)) if d.is_dir()]


def _quota_v2(folder: Path) -> float | None:
    text = _read(folder / "cpu.max")
    if not text:
        return None
    fields = text.split()
    try:
        if fields[0] == "max":
            return None
        quota, period = int(fields[0]), int(fields[1]) if len(fields) > 1 else 100_000
    except (ValueError, IndexError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _quota_v1(folder: Path) -> float | None:
    try:
        quota = int(_read(folder / "cpu.cfs_quota_us") or "-1")
        period = int(_read(folder / "cpu.cfs_period_us") or "0")
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPUs this process's cgroup quota allows (the smallest along its path), or None
    without a quota (or without cgroups)."""
    limits: list[float] = []
    for line in (_read(proc_cgroup) or "").splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        hierarchy, controllers, cgroup_path = fields
        if hierarchy == "0" and controllers == "":  # cgroup v2, the unified hierarchy
            bases, quota = [root], _quota_v2
        elif "cpu" in controllers.split(","):  # cgroup v1, mounted as cpu,cpuacct or cpu
            bases, quota = [root / controllers, root / "cpu"], _quota_v1
        else:
            continue
        for base in bases:
            limits += [q for q in map(quota, _levels(base, cgroup_path)) if q is not None]
    return min(limits) if limits else None


def available_cpus() -> int:
    """CPUs this process may keep busy: its affinity mask, capped by its cgroup's quota."""
    cpus = affinity_cpus()
    limit = cgroup_cpu_limit()
    if limit is not None:
        cpus = min(cpus, max(1, math.floor(limit + 1e-9)))
    return cpus
