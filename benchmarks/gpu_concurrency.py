"""Aggregate RAM training samples/s of 1, 2, 4 and 8 training processes sharing one device.

Each process (this script with `--worker`) builds the translated60 recipe's RAM on synthetic
60×60 scenes (benchmarks/throughput.py's), trains a few warm-up steps (compiling first with
`--compile`), says it is ready and waits; when every process is ready the parent names a
common start time, and each trains from it for `--seconds` and prints its samples/s (and,
on CUDA, its peak allocated memory) as one JSON line. The parent sums them and prints, per
count, the aggregate, the mean per process and the ratio to one process:

    python benchmarks/gpu_concurrency.py [--device auto] [--counts 1,2,4,8] [--seconds 10]
        [--batch 128] [--threads 1] [--compile] [--json FILE]

Every worker has `--threads` CPU threads (1 by default), so on a CPU the count is also the
number of cores asked for. On a GPU the processes share it by time slicing (no MPS is
started), each with its own CUDA context. Prints, never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from throughput import provenance, recipe_config, steps_of, synthetic_batch
from timing import synchronize

from ramlab.config import positive_int_list
from ramlab.device import resolve_device, reuse_freed_memory
from ramlab.files import write_json
from ramlab.models import build_model

WARMUP_STEPS = 5


def worker(args: argparse.Namespace) -> None:
    """One training process: warm up, signal `--ready`, wait for the start time in `--go`,
    train for the window, print {"samples_per_s", "steps", "seconds", "peak_memory_mib"}."""
    reuse_freed_memory()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(args.index)
    model = build_model("ram", recipe_config(), image_size=(60, 60)).to(device)
    train = steps_of(model, *synthetic_batch(args.batch, device), compiled=args.compile)["train"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(WARMUP_STEPS):
        train()
    synchronize(device)
    Path(args.ready).write_text("ready")
    go, parent, waited = Path(args.go), os.getppid(), time.time()
    while not go.exists():
        if time.time() - waited > args.ready_timeout or os.getppid() != parent:  # orphaned
            raise SystemExit(f"worker {args.index}: no start signal")
        time.sleep(0.02)
    start = float(go.read_text())
    time.sleep(max(0.0, start - time.time()))
    steps = 0
    while time.time() - start < args.seconds:
        train()
        steps += 1
    synchronize(device)
    seconds = time.time() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    result = {"samples_per_s": steps * args.batch / seconds, "steps": steps, "seconds": seconds}
    print(json.dumps({**result, "peak_memory_mib": peak}), flush=True)


def run_count(args: argparse.Namespace, count: int, folder: Path) -> dict[str, Any]:
    """Start `count` workers, release them together once all are ready, collect their lines."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    go = folder / "go"
    procs, logs = [], []
    for i in range(count):
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            *("--index", str(i), "--device", args.device, "--batch", str(args.batch)),
            *("--seconds", str(args.seconds), "--threads", str(args.threads)),
            *("--ready", str(folder / f"ready{i}"), "--go", str(go)),
            *("--ready-timeout", str(args.ready_timeout)),
            *(["--compile"] if args.compile else []),
        ]
        out, err = (folder / f"worker{i}.out").open("w"), (folder / f"worker{i}.err").open("w")
        logs.append((out, err))
        procs.append(subprocess.Popen(command, stdout=out, stderr=err, env=env))
    try:
        began = time.time()
        while not all((folder / f"ready{i}").exists() for i in range(count)):
            if any(p.poll() not in (None, 0) for p in procs):
                raise RuntimeError("a worker failed before it was ready")
            if time.time() - began > args.ready_timeout:
                raise RuntimeError(f"the workers were not ready in {args.ready_timeout:g} s")
            time.sleep(0.05)
        tmp = folder / "go.tmp"
        tmp.write_text(repr(time.time() + 0.5))
        tmp.rename(go)  # atomic: no worker reads a half-written time
        codes = [p.wait(timeout=args.seconds + args.ready_timeout) for p in procs]
        if any(codes):
            raise RuntimeError(f"worker exit codes {codes}")
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        errors = [(folder / f"worker{i}.err").read_text()[-2000:] for i in range(count)]
        return {"processes": count, "error": f"{exc}; stderr tails: {errors}"}
    finally:
        for out, err in logs:
            out.close()
            err.close()
    results = [json.loads((folder / f"worker{i}.out").read_text().splitlines()[-1]) for i in range(count)]
    rates = [r["samples_per_s"] for r in results]
    peaks = [r["peak_memory_mib"] for r in results]
    return {
        "processes": count,
        "aggregate_samples_per_s": sum(rates),
        "mean_per_process_samples_per_s": sum(rates) / count,
        "per_process_samples_per_s": rates,
        "steps": [r["steps"] for r in results],
        "peak_memory_mib": peaks if peaks[0] is not None else None,
        "error": None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--counts", type=positive_int_list, default=[1, 2, 4, 8], help="process counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="training window of every process")
    parser.add_argument("--batch", type=int, default=128, help="batch size of every process")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of every process")
    parser.add_argument("--compile", action="store_true", help="train through the compiled fast path")
    parser.add_argument("--ready-timeout", type=float, default=900.0, help="seconds to wait for warm-up")
    parser.add_argument("--json", metavar="FILE", help="write the table as JSON")
    worker_args = parser.add_argument_group("worker (internal)")
    worker_args.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    worker_args.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    worker_args.add_argument("--ready", help=argparse.SUPPRESS)
    worker_args.add_argument("--go", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    device = resolve_device(args.device)
    args.device = str(device)  # every worker on the same device
    torch.set_num_threads(args.threads)  # recorded as the workers' thread count
    record = {
        "benchmark": "benchmarks/gpu_concurrency.py",
        **provenance(device),
        "batch": args.batch,
        "seconds": args.seconds,
        "compiled": args.compile,
        "model_config": recipe_config(),
        "rows": [],
    }
    print(
        f"device {device} ({record['device_name']}), torch {torch.__version__}, batch {args.batch}, ", end=""
    )
    print(f"{args.threads} thread(s) per process, {args.seconds:g} s window, compiled {args.compile}")
    print(
        f"{'processes':>9s} {'aggregate samples/s':>20s} {'per process':>12s} {'x one':>6s}  peak MiB (largest process)"
    )
    one = None
    for count in args.counts:
        with tempfile.TemporaryDirectory(prefix="ramlab-concurrency-") as tmp:
            row = run_count(args, count, Path(tmp))
        if row["error"] is None:
            if count == 1:
                one = row["aggregate_samples_per_s"]
            row["ratio_to_one"] = row["aggregate_samples_per_s"] / one if one else None
            ratio = f"{row['ratio_to_one']:6.2f}" if one else f"{'-':>6s}"
            peak = f"{max(row['peak_memory_mib']):,.0f}" if row["peak_memory_mib"] else "-"
            print(
                f"{count:9d} {row['aggregate_samples_per_s']:20,.0f} "
                f"{row['mean_per_process_samples_per_s']:12,.0f} {ratio}  {peak}",
                flush=True,
            )
        else:
            print(f"{count:9d} failed: {row['error']}", flush=True)
        record["rows"].append(row)
        if args.json:
            write_json(args.json, record)
    if args.json:
        print(f"wrote {args.json}")
    if any(row["error"] for row in record["rows"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
