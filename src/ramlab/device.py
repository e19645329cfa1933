"""Device and thread selection (`--device auto` uses CUDA when present), and the CPU
memory allocator."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import sys

import torch

from ramlab.cpus import available_cpus
from ramlab.errors import RamlabError

DEVICES = ("auto", "cpu", "cuda")
TORCH_DEFAULT_THREADS = torch.get_num_threads()  # OMP_NUM_THREADS, else the cores; read at import
_TOLD: set[int] = set()  # the CPU counts the cap on torch's default was printed for


def is_device_name(name: object) -> bool:
    """Whether `name` is a device `resolve_device` knows (auto, cpu, cuda, cuda:N), whether
    or not this machine has it (a study may be planned on one machine and run on another)."""
    return isinstance(name, str) and re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", name) is not None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if is_device_name(name) and name.startswith("cuda"):
        if not torch.cuda.is_available():
            hidden = (
                " (CUDA_VISIBLE_DEVICES is empty, which hides every GPU: a study's jobs get one "
                "with --gpus-per-job F)"
                if os.environ.get("CUDA_VISIBLE_DEVICES") == ""
                else ""
            )
            raise RamlabError(
                f"device {name!r} requested but CUDA is not available{hidden}; use --device cpu"
            )
        index, count = torch.device(name).index, torch.cuda.device_count()
        if index is not None and index >= count:
            raise RamlabError(
                f"device {name!r} requested but this process sees {count} GPU(s), cuda:0..cuda:{count - 1} "
                "(CUDA_VISIBLE_DEVICES numbers the GPUs it shows from 0; a study's jobs see only their "
                "own): use --device cuda"
            )
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise RamlabError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N")


def threads_given(threads: int) -> int:
    """How many threads `set_threads(threads)` gives torch (pure: sets nothing)."""
    cpus = available_cpus()
    return min(TORCH_DEFAULT_THREADS if threads <= 0 else threads, cpus)


def set_threads(threads: int) -> int:
    """Give torch `threads` CPU threads (0: torch's default), at most the CPUs this process
    may use (`ramlab.cpus`: torch crashes far beyond them, and threads beyond a cgroup quota
    are throttled; torch's default counts cores, not the quota); says so when it caps.
    Returns the count."""
    cpus = available_cpus()
    if threads <= 0:
        # torch's own default, not whatever an earlier job of this process set (a serial study)
        if cpus < TORCH_DEFAULT_THREADS and cpus not in _TOLD:  # once a process, not every job
            _TOLD.add(cpus)
            print(
                f"ramlab: torch's default of {TORCH_DEFAULT_THREADS} threads is more than the "
                f"{cpus} CPUs available; using {cpus}",
                file=sys.stderr,
            )
    elif threads > cpus:
        print(
            f"ramlab: --threads {threads} is more than the {cpus} CPUs available; using {cpus}",
            file=sys.stderr,
        )
    given = threads_given(threads)  # the one rule, which a study's cost rows are judged by
    torch.set_num_threads(given)
    return given


def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks of up to 32 MiB for reuse.

    By default glibc returns big blocks to the system on free and maps fresh pages on the
    next allocation, so every batch pays page faults on its activations: the RAM trained
    about 1.2-1.4x slower so (benchmarks/throughput.py). Returns whether it applied (only on
    glibc; elsewhere the allocator is left alone).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # no libc found, or not glibc (musl has no mallopt)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 1 << 30))
