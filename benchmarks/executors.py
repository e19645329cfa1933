"""Wall time of a study run serially (its jobs in the study's process) against `--executor
local --jobs N` (each job its own process, T threads), measured in one run on this machine;
prints each run and the ratio of the medians.

    python benchmarks/executors.py [--preset tiny] [--jobs 2] [--threads-per-job 1] [--rounds 2]

Both sides run the same way, as `ramlab study` commands in a process of their own, so each
pays one start of Python and torch (and the local side one more per job). A first serial run,
not counted, warms what the first run alone would pay for: torch.compile's on-disk cache and
the operating system's file cache. The rounds then alternate the order (serial, local, then
local, serial, ...) so that a drift in the machine's speed falls on both sides. Each run
starts in a fresh temporary folder; the data caches in RAMLAB_HOME are built first. Needs
MNIST (`ramlab data fetch`).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

from ramlab.data.datasets import build_dataset
from ramlab.provenance import command_line
from ramlab.study import Study, load_preset


def timed(argv: list[str]) -> float:
    """Seconds a `ramlab study ...` command takes, in its own process."""
    code = "import sys; from ramlab.cli import main; sys.exit(main(sys.argv[1:]))"
    tick = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *argv], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - tick


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--threads-per-job", type=int, default=1)
    parser.add_argument(
        "--serial-threads", type=int, help="the serial study's threads (default: jobs x threads per job)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="timed runs of each side (default 2)")
    args = parser.parse_args()
    print(command_line(), flush=True)
    preset = load_preset(args.preset)
    for data in sorted({d for group in preset.runs for d in group.data}):
        build_dataset(data, seed=0)
    serial_threads = args.serial_threads or args.jobs * args.threads_per_job
    sides = {
        f"serial, {serial_threads} threads (the study's process)": [
            "--threads-per-job",
            str(serial_threads),
        ],
        f"local --jobs {args.jobs} --threads-per-job {args.threads_per_job} (a process per job)": [
            "--executor",
            "local",
            "--jobs",
            str(args.jobs),
            "--threads-per-job",
            str(args.threads_per_job),
        ],
    }
    times: dict[str, list[float]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        study = ["study", args.preset, "--out"]
        warm = timed([*study, f"{tmp}/warm-up", *next(iter(sides.values()))])
        print(f"warm-up (serial, not counted): {warm:7.1f} s", flush=True)
        for round_ in range(args.rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for side in order:
                seconds = timed([*study, f"{tmp}/{round_}-{list(sides).index(side)}", *sides[side]])
                times[side].append(seconds)
                print(f"round {round_ + 1}: {side}: {seconds:7.1f} s", flush=True)
    jobs = len(Study(preset, "unused", log=lambda _: None).jobs())
    print(f"\npreset {args.preset}: {jobs} jobs; median of {args.rounds} run(s) a side")
    medians = {side: statistics.median(values) for side, values in times.items()}
    for side, median in medians.items():
        print(f"{side}: {median:7.1f} s")
    serial, local = medians.values()
    print(f"serial / local: {serial / local:.2f}x")


if __name__ == "__main__":
    main()
