"""Wall time of a study run serially (in this process) against `--executor local --jobs N`
(each job its own process, T threads), measured in one run on this machine; prints the ratio.

    python benchmarks/executors.py [--preset tiny] [--jobs 2] [--threads-per-job 1]

Each run starts in a fresh temporary folder (the data caches in RAMLAB_HOME are built first,
so neither run pays for them). Needs MNIST (`ramlab data fetch`).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ramlab.data.datasets import build_dataset
from ramlab.execute import Resources
from ramlab.study import Study, load_preset


def timed(preset, out: Path, **run) -> float:
    tick = time.perf_counter()
    Study(preset, out, command="benchmarks/executors.py", log=lambda _: None).run(**run)
    return time.perf_counter() - tick


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads-per-job", type=int, default=1)
    args = parser.parse_args()
    preset = load_preset(args.preset)
    for data in sorted({d for group in preset.runs for d in group.data}):
        build_dataset(data, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        serial = timed(preset, Path(tmp) / "serial")
        resources = Resources(jobs=args.jobs, threads_per_job=args.threads_per_job)
        local = timed(preset, Path(tmp) / "local", executor="local", resources=resources)
    jobs = len(Study(preset, "unused", log=lambda _: None).jobs())
    print(f"preset {args.preset}: {jobs} jobs")
    print(f"serial (one process):                          {serial:7.1f} s")
    print(
        f"local --jobs {args.jobs} --threads-per-job {args.threads_per_job} (a process per job): {local:7.1f} s"
    )
    print(f"serial / local: {serial / local:.2f}x")


if __name__ == "__main__":
    main()
