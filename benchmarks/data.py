"""Time to build every split of each named dataset from real MNIST (no cache).

    python benchmarks/data.py [--from DIR] [--threads N] [--repeat R] [--warped]

MNIST is loaded once (fetched from `--from DIR` first if given, else from the ramlab cache);
then each split is generated with `load_split(name, split, cache=False)`, so the numbers are
the generator alone: no disk, no npz. The best of `--repeat` runs is reported.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from ramlab.data.datasets import DATASETS, SPLITS, load_split, mnist_digits, resolve_spec
from ramlab.data.mnist import fetch
from ramlab.provenance import command_line

#: A robustness-style variant that exercises the affine warp (torch grid_sample) and noise.
WARPED = resolve_spec("translated60", rotation=(-30.0, 30.0), scale=(0.8, 1.2), noise=0.1)


def time_split(data, split: str, repeat: int) -> tuple[float, int, int]:
    """Best wall time in seconds over `repeat` builds; scene count; bytes of the images."""
    best, count, nbytes = float("inf"), 0, 0
    for _ in range(repeat):
        start = time.perf_counter()
        scenes = load_split(data, split, cache=False)
        best = min(best, time.perf_counter() - start)
        count, nbytes = len(scenes), scenes.images.nbytes
        del scenes
    return best, count, nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", metavar="DIR", help="fetch MNIST from DIR first")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--repeat", type=int, default=1, help="builds per split; best is shown")
    parser.add_argument("--warped", action="store_true", help="also time a rotated, scaled, noisy variant")
    args = parser.parse_args()
    print(command_line(), flush=True)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}; "
        f"cpu_count {os.cpu_count()}, torch threads {torch.get_num_threads()} "
        f"(interop {torch.get_num_interop_threads()})"
    )

    if args.source:
        fetch(args.source, quiet=True)
    start = time.perf_counter()
    digits = mnist_digits()
    print(
        f"MNIST loaded and verified in {time.perf_counter() - start:.2f} s: "
        f"{len(digits.train_labels)} train, {len(digits.test_labels)} test digits\n"
    )

    rows = [(name, spec) for name, spec in DATASETS.items()]
    if args.warped:
        rows.append(("translated60 warped*", WARPED))
    header = f"{'dataset':<21}{'canvas':>7}{'clutter':>8}"
    header += "".join(f"{split + ' s':>9}" for split in SPLITS)
    header += f"{'total s':>9}{'scenes/s':>10}{'MB':>8}"
    print(header)
    print("-" * len(header))
    for name, spec in rows:
        data = spec if name.endswith("*") else name
        times, count, nbytes = [], 0, 0
        for split in SPLITS:
            seconds, n, size = time_split(data, split, args.repeat)
            times.append(seconds)
            count += n
            nbytes += size
        total = sum(times)
        clutter = f"{spec.clutter_count}×{spec.clutter_size}" if spec.clutter_count else "-"
        line = f"{name:<21}{spec.canvas:>7}{clutter:>8}"
        line += "".join(f"{t:>9.2f}" for t in times)
        line += f"{total:>9.2f}{count / total:>10,.0f}{nbytes / 2**20:>8.0f}"
        print(line)
    if args.warped:
        print("* rotation ±30°, scale 0.8–1.2, noise 0.1 (not a named dataset)")


if __name__ == "__main__":
    main()
