"""Time to build the retina's tables: ramlab's against the two constructions it replaced.

    python benchmarks/retina_tables.py [--threads N] [--seconds S]

Up to commit `5c63c87` the tables were block means built as means of four shifted copies of
the previous scale, re-padded at every scale, then concatenated into one buffer
(`means_of_shifted_means` below). From `5f385c5` they were block sums over the image with one
zero border, each scaled to means by a `mul` written into its part of the buffer
(`block_means_in_one_buffer`). Now the buffer holds the block sums themselves, the image's
border written in place and each scale's last add written into the buffer (`Retina.prepare`);
the glimpse divides by the block's area as it reads. All three give the same block means bit
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
from ramlab.models.retina import Pyramid, Retina
from ramlab.provenance import command_line

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


def block_means_in_one_buffer(images: torch.Tensor, scales: int) -> torch.Tensor:
    """The tables as ramlab built them from `5f385c5` to `b81a2f5`."""
    b, _, h, w = images.shape
    pad = 2 ** (scales - 1)
    sums = F.pad(images[:, 0], (pad, pad, pad, pad))
    flat = images.new_empty(b, sum((h + 2**s + 1) * (w + 2**s + 1) for s in range(scales)))
    offset = 0
    for s in range(scales):
        q = 2**s
        if s:
            half = q // 2
            pairs = sums[:, :, :-half] + sums[:, :, half:]
            sums = pairs[:, :-half] + pairs[:, half:]
        rows, cols = h + q + 1, w + q + 1
        table = flat[:, offset : offset + rows * cols].view(b, rows, cols)
        torch.mul(sums[:, pad - q : pad - q + rows, pad - q : pad - q + cols], 1.0 / q**2, out=table)
        offset += rows * cols
    return flat


def flat_means(retina: Retina, pyramid: Pyramid) -> torch.Tensor:
    """The block means the glimpse reads from ramlab's tables, in the layout of the two above."""
    return torch.cat([table.reshape(len(table), -1) for table in retina.mean_tables(pyramid)], dim=1)


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
    print(command_line(), flush=True)
    torch.set_num_threads(args.threads)
    reuse_freed_memory()  # as the ramlab command does
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}")
    for size, batch in SIZES:
        scales = RAM.config_for_image_size(RAMConfig(), size).scales
        retina = Retina(glimpse_size=RAMConfig().glimpse_size, scales=scales, image_size=(size, size))
        images = torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(size))
        means = means_of_shifted_means(images, scales)
        if not (
            torch.equal(block_means_in_one_buffer(images, scales), means)
            and torch.equal(flat_means(retina, retina.prepare(images)), means)
        ):
            raise SystemExit(f"{size} px: the three constructions give different tables")
        ms = median_ms(
            {
                "5c63c87": functools.partial(means_of_shifted_means, images, scales),
                "5f385c5": functools.partial(block_means_in_one_buffer, images, scales),
                "ramlab": functools.partial(retina.prepare, images),
            },
            args.seconds,
        )
        print(
            f"{size:4d} px, {scales} scales, batch {batch:3d}: up to 5c63c87 {ms['5c63c87']:7.3f} ms, "
            f"5f385c5-b81a2f5 {ms['5f385c5']:7.3f} ms, now {ms['ramlab']:7.3f} ms: "
            f"{ms['5c63c87'] / ms['ramlab']:.2f}x and {ms['5f385c5'] / ms['ramlab']:.2f}x faster"
        )


if __name__ == "__main__":
    main()
