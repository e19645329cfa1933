"""What each job gets: N jobs at once, T threads each, a fraction F of a GPU each.

Threads reach a job through `OMP_NUM_THREADS`, `MKL_NUM_THREADS` and `RAMLAB_THREADS`; a
GPU through `CUDA_VISIBLE_DEVICES`. On one machine the cores are never oversubscribed:
N × T must be at most the CPUs this process may use (`ramlab.cpus`: affinity and cgroup
quota). GPUs are counted without importing
torch: the devices listed in `CUDA_VISIBLE_DEVICES` where it is set, else the lines of
`nvidia-smi -L`, else none. F ≤ 1 puts floor(1/F) jobs on each GPU; F > 1 gives each job
ceil(F) whole GPUs.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from dataclasses import dataclass

from ramlab.cpus import available_cpus
from ramlab.errors import RamlabError

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAMLAB_THREADS")


@dataclass(frozen=True, kw_only=True)
class Resources:
    """The share of the machine (or cluster) each job gets."""

    jobs: int = 1
    """N: jobs run at once."""
    threads_per_job: int = 1
    """T: CPU threads of each job (OMP_NUM_THREADS, MKL_NUM_THREADS, RAMLAB_THREADS)."""
    gpus_per_job: float = 0.0
    """F: GPUs of each job; 0.25 puts four jobs on one GPU, 0 uses none."""

    def __post_init__(self) -> None:
        if not (isinstance(self.jobs, int) and self.jobs >= 1):
            raise RamlabError(f"--jobs must be an integer >= 1, got {self.jobs!r}")
        if not (isinstance(self.threads_per_job, int) and self.threads_per_job >= 1):
            raise RamlabError(f"--threads-per-job must be an integer >= 1, got {self.threads_per_job!r}")
        if not (math.isfinite(self.gpus_per_job) and self.gpus_per_job >= 0):
            raise RamlabError(f"--gpus-per-job must be a number >= 0, got {self.gpus_per_job!r}")


def thread_env(threads: int) -> dict[str, str]:
    return dict.fromkeys(THREAD_VARIABLES, str(threads))


def check_cpus(jobs: int, threads: int) -> None:
    """A RamlabError, with the fix, if `jobs` × `threads` is more than the CPUs available."""
    cpus = available_cpus()
    if jobs * threads <= cpus:
        return
    fixes = [f"--jobs {cpus // threads} --threads-per-job {threads}"] if threads <= cpus else []
    fixes.append(f"--jobs {min(jobs, cpus)} --threads-per-job {max(1, cpus // min(jobs, cpus))}")
    raise RamlabError(
        f"--jobs {jobs} × --threads-per-job {threads} = {jobs * threads} threads, but only {cpus} "
        f"CPUs are available: that would oversubscribe the cores; use {' or '.join(dict.fromkeys(fixes))}"
    )


def visible_gpus() -> list[str]:
    """The GPUs jobs may use, as the ids `CUDA_VISIBLE_DEVICES` takes."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        devices = [d.strip() for d in listed.split(",") if d.strip()]
        # CUDA stops at the first invalid id; "-1" is the usual way to hide every GPU.
        return [] if devices[:1] == ["-1"] else devices
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    count = sum(line.startswith("GPU ") for line in out.stdout.splitlines())
    return [str(i) for i in range(count)]


class GpuPool:
    """Slots on GPUs for jobs that take a fraction (or several) of a GPU each.

    `acquire` gives the value of `CUDA_VISIBLE_DEVICES` for the next job, on the device (or
    group of devices) with the fewest jobs, so that jobs spread over the GPUs before they
    share one; `release` gives it back."""

    def __init__(self, devices: list[str], gpus_per_job: float) -> None:
        if gpus_per_job <= 0 or not devices:
            raise ValueError("GpuPool needs GPUs and gpus_per_job > 0")
        self.whole = gpus_per_job > 1
        if not self.whole:
            # A small tolerance so that 1/3 of a GPU gives 3 slots despite rounding.
            self.per_device = math.floor(1 / gpus_per_job + 1e-9)
            self.groups = list(devices)
        else:
            width = math.ceil(gpus_per_job - 1e-9)
            if width > len(devices):
                raise RamlabError(
                    f"--gpus-per-job {gpus_per_job} needs {width} GPUs per job, but only "
                    f"{len(devices)} are visible ({','.join(devices)})"
                )
            self.per_device = 1
            self.groups = [
                ",".join(devices[i : i + width]) for i in range(0, len(devices) - width + 1, width)
            ]
        self.in_use = dict.fromkeys(self.groups, 0)

    @property
    def slots(self) -> int:
        return self.per_device * len(self.groups)

    def acquire(self) -> str:
        group = min(self.groups, key=lambda g: self.in_use[g])
        if self.in_use[group] >= self.per_device:
            raise RuntimeError("no free GPU slot")  # the executor never starts more jobs than slots
        self.in_use[group] += 1
        return group

    def release(self, group: str) -> None:
        self.in_use[group] -= 1

    def describe(self) -> str:
        if self.whole:
            return f"{self.slots} GPU slot(s): groups of GPUs {'; '.join(self.groups)}, one job each"
        return f"{self.slots} GPU slot(s): GPU(s) {', '.join(self.groups)}, {self.per_device} job(s) each"
