"""Time to build the retina's block-mean tables: ramlab's against the recurrence it replaced.

    python benchmarks/retina_tables.py [--threads N] [--seconds S]

Up to commit `5c63c87` the tables were built as means of four shifted copies of the previous
scale, re-padded at every scale, then concatenated into one buffer (`means_of_shifted_means`
below). Since `5f385c5` they are block sums over the image with one zero border, each table
written once into its part of the buffer (`Retina.prepare`). Both give the same tables bit
for bit (checked here on every size before timing). Eager, on the CPU, at the image sizes and
scales `ramlab cost` uses; each line is the median of 5 interleaved windows.
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ramlab.device import reuse_freed_memory
from ramlab.models.ram import RAM, RAMConfig
from ramlab.models.retina import Retina

SIZES = ((60, 128), (100, 128), (200, 64), (400, 16), (800, 4))  # (image side, batch)


def means_of_shifted_means(images: torch.Tensor, scales: int) -> torch.Tensor:
    """The tables as ramlab built them before `5f385c5`."""
    b = len(images)
    table = F.pad(images[:, 0], (1, 1, 1, 1))
    parts = [table.reshape(b, -1)]
    for s in range(1, scales):
        half = 2 ** (s - 1)
        ext = F.pad(table, (half, half, half, half))
        pairs = ext[:, :, :-half] + ext[:, :, half:]
        table = (pairs[:, :-half] + pairs[:, half:]).mul_(0.25)
        parts.append(table.reshape(b, -1))
    return torch.cat(parts, dim=1)


def median_ms(calls: dict[str, Callable[[], object]], seconds: float) -> dict[str, float]:
    """Milliseconds per call of each, median over 5 windows taken in turn."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()  # warm-up
    for _ in range(5):
        for name, call in calls.items():
            start, count = time.perf_counter(), 0
            while time.perf_counter() - start < seconds:
                call()
                count += 1
            times[name].append((time.perf_counter() - start) / count * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one timing window")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reuse_freed_memory()  # as the ramlab command does
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}")
    for size, batch in SIZES:
        scales = RAM.config_for_image_size(RAMConfig(), size).scales
        retina = Retina(glimpse_size=RAMConfig().glimpse_size, scales=scales, image_size=(size, size))
        images = torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(size))
        if not torch.equal(retina.prepare(images).flat, means_of_shifted_means(images, scales)):
            raise SystemExit(f"{size} px: the two constructions give different tables")
        ms = median_ms(
            {
                "before": functools.partial(means_of_shifted_means, images, scales),
                "ramlab": functools.partial(retina.prepare, images),
            },
            args.seconds,
        )
        print(
            f"{size:4d} px, {scales} scales, batch {batch:3d}: before {ms['before']:8.3f} ms, "
            f"ramlab {ms['ramlab']:8.3f} ms, {ms['before'] / ms['ramlab']:.2f}x faster"
        )


if __name__ == "__main__":
    main()
