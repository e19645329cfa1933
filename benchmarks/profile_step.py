"""Where the RAM's step spends its time: a torch.profiler breakdown of the training and
inference steps that benchmarks/throughput.py times (same model, batch and steps), eager
or through the compiled fast path, on a CPU or a GPU.

For each mode it prints the step's wall time without the profiler, then, from a profiled run
of the same steps, the time per step by category, each op's (or kernel's) calls per step and
its time per call:
- matrix products: aten::mm / addmm / bmm (or the C++ wrapper's aoti_torch_cpu_ shims for
  them) and their BLAS or cuBLAS kernels;
- glimpse gathers: the ops or kernels that read the retina's tables (names with "gather");
- other fused kernels: inductor's C++ (CPU, `cpp.enable_kernel_profile`) or Triton (GPU);
- other ops: every other aten op run eagerly;
- compiled-region wrappers: the self time of torch.compile's runtime wrappers around a graph;
- outside any op: the step's own self time, Python and dynamo's guards. The optimizer's step
  (`Optimizer.step#Adam.step`) and autograd's per-node wrappers
  (`autograd::engine::evaluate_function: ...`) are events of their own: their self time is
  under other ops.
On a CPU every figure is host time on the calling thread (ops run their intra-op threads
inside it). On CUDA the categories are device time of the GPU kernels, with the kernel count
per step and the idle time between them ("launch gaps": the step's wall time less the time
some kernel was running).
The profiler adds its own overhead, most to the many small ops of an eager step; the
unprofiled wall time comes first for that reason. Prints, never asserts.

    python benchmarks/profile_step.py [--config paper|recipe] [--batch 128] [--steps 30]
        [--threads 2] [--device auto] [--mode train,inference] [--eager] [--top 12] [--json FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch
from references import Step
from throughput import SIZE, provenance, recipe_config, steps_of, synthetic_batch
from timing import cudagraph_note, cudagraph_skips, synchronize

from ramlab.device import resolve_device, reuse_freed_memory
from ramlab.files import write_json
from ramlab.models import build_model

MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::_addmm_activation", "gemm", "cublas", "cutlass")
MATMUL += ("nvjet", "xmma", "gemv")
"""... and Hopper's cuBLAS kernels, many named nvjet_sm90_... (no "gemm" in the name)."""
MATMUL += ("aoti_torch_cpu_mm", "aoti_torch_cpu_addmm", "aoti_torch_cpu_bmm", "aoti_torch_cpu__addmm")
"""... and as inductor's C++ wrapper (the fast path on a CPU) calls them, through its shims."""
GATHER = "gather"
FUSED = ("cpp_fused", "triton_")
WRAPPERS = ("Torch-Compiled Region", "CompiledFunction", "## Call CompiledFxGraph", "## Call")
STEP = "profile_step.py: one step"
CATEGORIES = (
    "matrix products",
    "glimpse gathers",
    "other fused kernels",
    "other ops",
    "compiled-region wrappers",
    "outside any op",
)


def category(name: str) -> str:
    if name == STEP:
        return "outside any op"
    if name.startswith(WRAPPERS):
        return "compiled-region wrappers"
    lower = name.lower()
    if any(key.lower() in lower for key in MATMUL):
        return "matrix products"
    fused = any(key in name for key in FUSED)  # inductor's names: graph_N_cpp_fused_..., triton_...
    if GATHER in lower:  # aten::gather, CUDA's gather kernel, or an inductor kernel fusing one
        return "glimpse gathers"
    return "other fused kernels" if fused else "other ops"


def wall_per_step(step: Step, steps: int, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def busy_time(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of [start, end) intervals."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def profile(step: Step, steps: int, device: torch.device) -> dict[str, Any]:
    """One profiled run of `steps` steps: per-step seconds by category and by op or kernel."""
    from torch.profiler import ProfilerActivity, profile, record_function

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    synchronize(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            with record_function(STEP):
                step()
        synchronize(device)
        wall = (time.perf_counter() - start) / steps
    on_gpu = device.type == "cuda"
    rows: dict[str, dict[str, float]] = {}
    for event in prof.key_averages():
        if on_gpu:  # the kernels alone (an op's device time is its kernels': counted once)
            if event.device_type != torch.autograd.DeviceType.CUDA:
                continue
            seconds = event.self_device_time_total / 1e6
        else:
            seconds = event.self_cpu_time_total / 1e6
        rows[event.key] = {"calls": event.count / steps, "seconds": seconds / steps}
    by_category = dict.fromkeys(CATEGORIES, 0.0)
    for name, row in rows.items():
        by_category[category(name)] += row["seconds"]
    result: dict[str, Any] = {"profiled_wall_s": wall, "by_category_s": by_category, "ops": rows}
    if on_gpu:
        kernels = [
            e for e in prof.events() if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA
        ]
        spans = [(e.time_range.start / 1e6, e.time_range.end / 1e6) for e in kernels]
        result["kernels_per_step"] = len(kernels) / steps
        result["launch_gaps_s"] = max(wall - busy_time(spans) / steps, 0.0)
        del by_category["outside any op"], by_category["compiled-region wrappers"]
    return result


def report(mode: str, path: str, unprofiled: float, result: dict[str, Any], top: int, batch: int) -> None:
    wall = result["profiled_wall_s"]
    print(
        f"\n{mode}, {path}: {unprofiled * 1e3:.2f} ms a step ({batch / unprofiled:,.0f} samples/s); "
        f"profiled {wall * 1e3:.2f} ms"
    )
    if "cudagraph_skips" in result:
        print("  CUDA graphs: " + cudagraph_note(result["cudagraph_skips"]))
    if "kernels_per_step" in result:
        print(
            f"  {result['kernels_per_step']:.0f} GPU kernels a step; idle between them (launch gaps) "
            f"{result['launch_gaps_s'] * 1e3:.2f} ms a step ({result['launch_gaps_s'] / wall:.0%})"
        )
    for name, seconds in result["by_category_s"].items():
        print(f"  {name:26s} {seconds * 1e3:7.2f} ms  {seconds / wall:4.0%}")
    print(f"  top {top} by time a step (calls a step, time a call):")
    ranked = sorted(result["ops"].items(), key=lambda item: -item[1]["seconds"])[:top]
    for name, row in ranked:
        short = name if len(name) <= 60 else name[:57] + "..."
        per_call = row["seconds"] / row["calls"] * 1e6 if row["calls"] else 0.0
        print(
            f"    {short:60s} {row['seconds'] * 1e3:7.3f} ms  {row['calls']:6.1f} calls  "
            f"{per_call:8.1f} us  [{category(name)}]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", choices=("recipe", "paper"), default="recipe")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="steps timed and profiled per mode")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--mode", default="train,inference", help="train, inference or both")
    parser.add_argument("--eager", action="store_true", help="the eager step instead of the compiled one")
    parser.add_argument("--top", type=int, default=12, help="ops or kernels listed per mode")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    modes = [m for m in args.mode.split(",") if m]
    if unknown := set(modes) - {"train", "inference"}:
        sys.exit(f"--mode: unknown {sorted(unknown)}; choose from train, inference")
    reuse_freed_memory()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    compiled = not args.eager
    if compiled and device.type == "cpu":
        torch._inductor.config.cpp.enable_kernel_profile = True  # each C++ kernel a profiler range
    config = recipe_config(None, base=args.config)
    torch.manual_seed(0)
    model = build_model("ram", config, image_size=SIZE).to(device)
    images, labels, bboxes = synthetic_batch(args.batch, device)
    steps = steps_of(model, images, labels, bboxes, compiled=compiled)
    path = "compiled" if compiled else "eager"
    record = {
        "benchmark": "benchmarks/profile_step.py",
        **provenance(device),
        "config": args.config,
        "model_config": config,
        "batch": args.batch,
        "steps": args.steps,
        "path": path,
        "modes": {},
    }
    print(
        f"device {device} ({record['device_name']}), {torch.get_num_threads()} threads, batch {args.batch}, "
        f"{args.steps} steps a mode, torch {torch.__version__}; the RAM of --config {args.config}, {path}"
    )
    for mode in modes:
        step = steps[mode]
        skips = cudagraph_skips()
        for _ in range(5):  # compiles (tens of seconds) and warms up
            step()
        unprofiled = wall_per_step(step, args.steps, device)
        result = profile(step, args.steps, device)
        if compiled and device.type == "cuda":
            result["cudagraph_skips"] = cudagraph_skips() - skips
        report(mode, path, unprofiled, result, args.top, args.batch)
        record["modes"][mode] = {"wall_s": unprofiled, **result}
        if args.json:
            write_json(args.json, record)
    if args.json:
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
