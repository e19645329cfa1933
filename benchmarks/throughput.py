"""RAM throughput on translated60: training and deterministic inference samples/s, on a CPU
or a GPU, at one or several batch sizes.

The model is the translated60 recipe's RAM (6 glimpses of 12×12 at 3 scales, LSTM core;
`--core rnn` swaps the core; `--config paper`: the RAM's defaults, the paper's ReLU RNN,
as this script timed before), 2 CPU threads by default. For each batch size, in the same
process, it also times
- the step's matrix products alone (recorded from one step, replayed on operands of the
  same sizes and strides): the bound the model's own arithmetic sets on this machine (on a
  GPU it is mostly kernel launches, which CUDA graphs remove: the compiled step may beat it);
- with `--compile`, the compiled fast path (ramlab.fastpath; CUDA graphs on a GPU), with its
  ratios to the eager step and to that bound (issue #11's CPU targets: training >= 70% and
  inference >= 65% of the bound);
- the ResNet baseline (default config, 60×60): forward, cross-entropy, backward, Adam;
- the same RAM with a per-sample-loop retina (the usual way public implementations extract
  glimpses); skipped on CUDA unless `--per-sample-on-cuda` (a launch per sample and scale and
  a host sync per sample: minutes per step at large batches).
A batch is the rollouts of one step (samples/s are rollouts/s): the recipe's two rollouts of
each image (`rollouts: 2`) at `--batch-size 64` are batch 128 here. The timed step is the
forward, the objective, backward and Adam; the trainer's gradient clipping and moving average
of the weights (a few element-wise passes over the weights) are left out.
Each line is the median of 5 timing windows (their range in brackets). The RAM's eager step,
its matrix products alone and its compiled step are timed in interleaved windows (a window
of each in turn, five rounds), so a drift of the machine's speed moves all three alike; a
share of the bound is the median of the five rounds' own ratios (their range in brackets),
each taken between windows seconds apart, so the machine's swings (up to 2x within minutes
here) cancel in it. On CUDA the device is synchronised around every window and each line's
peak of `torch.cuda.max_memory_allocated` is measured over two steps before the timing, after
two uncounted ones (compilation, CUDA-graph recording): steady state.
Prints, never asserts: machines are noisy.

    python benchmarks/throughput.py [--threads 2] [--batch 128[,512,...]] [--seconds 5]
        [--device auto] [--config recipe|paper] [--core rnn|lstm] [--compile] [--skip-naive]
        [--json FILE] [--cpu-reference CPU.json]

`--json` writes every figure with the device, torch, threads, command and commit (rewritten
after each batch size, so an interrupted run keeps what it measured); `--cpu-reference` reads
such a file written on a CPU and adds each figure's ratio to the CPU's (same model, mode and
path; the closest batch size present), timing the RAM the reference timed (with a note
where --config and --core would give another: the recipe may have changed since).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
from pathlib import Path
from typing import Any

import torch
from references import PerSampleRetina, Step, matmul_replay
from timing import Figure, cudagraph_note, cudagraph_skips, measure

from ramlab.config import load_yaml, positive_int_list
from ramlab.device import resolve_device, reuse_freed_memory
from ramlab.fastpath import CompiledForward, TrainingStep
from ramlab.files import write_json
from ramlab.models import build_model
from ramlab.provenance import command, run_commit
from ramlab.runconfig import config_path

SIZE = (60, 60)
RECIPE = "translated60"
TARGETS = {"train": 0.70, "inference": 0.65}
"""Issue #11's CPU targets: the compiled step's share of its matrix products' bound."""


def recipe_config(core: str | None = None, *, base: str = "recipe") -> dict[str, Any]:
    """The translated60 recipe's RAM config, or with base "paper" the RAM's defaults at that
    recipe's glimpses (`core` replaces the core when given)."""
    config = dict(load_yaml(config_path(RECIPE))["model_config"])
    if base == "paper":
        config = {key: config[key] for key in ("glimpses", "glimpse_size", "scales")}
    if core:
        config["core"] = core
    return config


def synthetic_batch(batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """images (B, 1, 60, 60) each with a bright 28×28 block somewhere, like a digit; labels
    (B,); the blocks' boxes (B, 4) as (x0, y0, x1, y1)."""
    images = torch.zeros(batch, 1, *SIZE)
    xy = torch.randint(0, SIZE[1] - 28, (batch, 2))
    for i, (x, y) in enumerate(xy.tolist()):
        images[i, 0, y : y + 28, x : x + 28] = torch.rand(28, 28)
    labels = torch.randint(0, 10, (batch,))
    bboxes = torch.cat([xy, xy + 28], dim=1).float()
    return images.to(device), labels.to(device), bboxes.to(device)


def steps_of(
    model, images, labels, bboxes, *, compiled: bool = False, options: dict | None = None
) -> dict[str, Step]:
    """The two timed steps: a training step (sampled rollout, the model's objective,
    backward, Adam) and a deterministic inference step; eager, or through the fast path
    (compiled with inductor `options` when given, else the fast path's own)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    generator = torch.Generator(device=images.device).manual_seed(0)
    training = TrainingStep(model, compiled=compiled, options=options)
    forward = CompiledForward(model, options=options) if compiled else model

    def train_step() -> None:
        model.train()
        _, objective = training(images, labels, bboxes, generator)
        optimizer.zero_grad(set_to_none=True)
        objective.loss.backward()
        optimizer.step()

    @torch.inference_mode()
    def infer_step() -> None:
        model.eval()
        forward(images, sample=False, generator=generator)

    return {"train": train_step, "inference": infer_step}


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device: torch.device) -> dict[str, Any]:
    """What produced a measurement: device, versions, threads, command and commit (from git,
    else $RAMLAB_COMMIT)."""
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "command": command(),
        "commit": run_commit(),
    }


def compare_to_cpu(figure: Figure, reference: list[dict[str, Any]]) -> str:
    """Store (and describe) `figure`'s ratio to the CPU reference's figure of the same model,
    mode and path at the closest batch size; "" when the reference has none."""
    same = [
        r for r in reference if (r["model"], r["mode"], r["path"]) == (figure.model, figure.mode, figure.path)
    ]
    if not same:
        return ""
    cpu = min(same, key=lambda r: (abs(math.log(r["batch"] / figure.batch)), r["batch"]))
    figure.ratios["of_cpu"] = figure.median / cpu["samples_per_s"]
    figure.ratios["cpu_batch"] = cpu["batch"]
    figure.ratios["cpu_samples_per_s"] = cpu["samples_per_s"]
    return f"; {figure.ratios['of_cpu']:.1f}x the CPU's {cpu['samples_per_s']:,.0f} (batch {cpu['batch']})"


def measure_batch(args: argparse.Namespace, batch: int, device: torch.device, config: dict) -> list[Figure]:
    """Every figure at one batch size, printed as it is measured."""
    figures: list[Figure] = []
    reference = args.reference["figures"] if args.reference else []

    def report(figure: Figure, label: str, extra: str = "") -> Figure:
        print(figure.line(label) + extra + compare_to_cpu(figure, reference), flush=True)
        figures.append(figure)
        return figure

    images, labels, bboxes = synthetic_batch(batch, device)
    torch.manual_seed(0)
    model = build_model("ram", config, image_size=SIZE).to(device)
    common = {"device": device, "seconds": args.seconds, "batch": batch}
    print(f"\n== batch {batch} ==", flush=True)
    steps = steps_of(model, images, labels, bboxes)
    compiled = steps_of(model, images, labels, bboxes, compiled=True) if args.compile else {}
    if compiled:
        print("compiling the fast path (tens of seconds per batch size and mode) ...", flush=True)
    eager = {}
    for mode, step in steps.items():
        replay, calls = matmul_replay(step, device)
        group = {"eager": step, "matmul-bound": replay, **({"compiled": compiled[mode]} if compiled else {})}
        skips = cudagraph_skips()
        figures_of = measure(group, model="ram", mode=mode, warmup=5, **common)
        skips = cudagraph_skips() - skips
        if mode == "train":  # each image's M rollouts are M samples of the batch
            for figure in figures_of.values():
                figure.rollouts_per_image = model.training_copies
        eager[mode], bound = figures_of["eager"], figures_of["matmul-bound"]
        share = eager[mode].share_of(bound, "of_matmul_bound")
        report(eager[mode], "ramlab")
        report(
            bound,
            f"its {calls:3d} matrix products alone",
            f": the step runs at {share:.0%} of that bound ({eager[mode].share_range('of_matmul_bound')})",
        )
        if compiled:
            figure = figures_of["compiled"]
            figure.share_of(eager[mode], "of_eager")
            share = figure.share_of(bound, "of_matmul_bound")
            verdict = "met" if share >= TARGETS[mode] else "NOT met"
            graphs = ""
            if device.type == "cuda":
                figure.cudagraph_skips = skips
                graphs = "; CUDA graphs: " + cudagraph_note(skips)
            report(
                figure,
                "ramlab compiled",
                f": {figure.ratios['of_eager']:.2f}x eager; {share:.0%} of the matrix-products bound "
                f"({figure.share_range('of_matmul_bound')}; issue #11's CPU target >= {TARGETS[mode]:.0%}: {verdict})"
                + graphs,
            )
    if compiled:
        torch.compiler.reset()  # frees the graphs (and CUDA graph pools) of this batch size
    torch.manual_seed(0)
    resnet = build_model("resnet", None, image_size=SIZE).to(device)
    for mode, step in steps_of(resnet, images, labels, bboxes).items():
        # timed in turn with the RAM's eager step again: a ratio of the same rounds (this
        # machine's speed drifts between windows timed minutes apart)
        paired = measure({"eager": step, "ram": steps[mode]}, model="resnet", mode=mode, **common)
        if mode == "train":
            paired["ram"].rollouts_per_image = eager[mode].rollouts_per_image
        figure = paired["eager"]
        ratio = paired["ram"].share_of(figure, "ram_over_resnet", per_image=True)
        figure.ratios.update(paired["ram"].ratios)
        report(
            figure,
            "resnet",
            f": the RAM is {ratio:.1f}x faster in images/s ({paired['ram'].share_range('ram_over_resnet', times=True)})",
        )
    del resnet
    naive = not args.skip_naive and (device.type != "cuda" or args.per_sample_on_cuda)
    if naive:
        slow = build_model("ram", config, image_size=SIZE).to(device)
        slow.load_state_dict(model.state_dict())
        slow.retina = PerSampleRetina(
            glimpse_size=config["glimpse_size"], scales=config["scales"], image_size=SIZE
        )
        for mode, step in steps_of(slow, images, labels, bboxes).items():
            paired = measure(
                {"per-sample-retina": step, "ramlab": steps[mode]}, model="ram", mode=mode, **common
            )
            figure = paired["per-sample-retina"]
            ratio = paired["ramlab"].share_of(figure, "ramlab_over_this")
            figure.ratios.update(paired["ramlab"].ratios)
            report(
                figure,
                "per-sample retina",
                f": ramlab is {ratio:.1f}x faster ({paired['ramlab'].share_range('ramlab_over_this', times=True)})",
            )
    elif not args.skip_naive:
        print(
            "per-sample retina: skipped on CUDA (a launch per sample and scale, a host sync per sample); --per-sample-on-cuda times it"
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--batch", type=positive_int_list, default=[128], help="batch size(s), e.g. 128,512,2048"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measured line")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-naive", action="store_true", help="skip the per-sample retina")
    parser.add_argument(
        "--per-sample-on-cuda", action="store_true", help="time the per-sample retina on CUDA too"
    )
    parser.add_argument(
        "--config",
        choices=("recipe", "paper"),
        default="recipe",
        help="the RAM: the translated60 recipe's (default), or the RAM's defaults (the paper's)",
    )
    parser.add_argument("--core", choices=("rnn", "lstm"), help="the RAM's core (default: the config's)")
    parser.add_argument("--compile", action="store_true", help="also time the compiled fast path")
    parser.add_argument("--json", metavar="FILE", help="write every figure as JSON")
    parser.add_argument("--cpu-reference", metavar="FILE", help="a --json file of this script run on a CPU")
    args = parser.parse_args()
    args.reference = json.loads(Path(args.cpu_reference).read_text()) if args.cpu_reference else None
    reuse_freed_memory()  # as the ramlab command does
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    config = recipe_config(args.core, base=args.config)
    if args.reference and args.reference.get("model_config") != config:
        # A ratio of two models' speeds says nothing: time the RAM the reference timed.
        config = dict(args.reference["model_config"])
        print(
            f"note: --cpu-reference {args.cpu_reference} timed another RAM than --config {args.config}"
            f"{f' --core {args.core}' if args.core else ''} gives; timing the reference's, for like ratios"
        )
    record = {
        "benchmark": "benchmarks/throughput.py",
        **provenance(device),
        "batches": args.batch,
        "seconds_per_line": args.seconds,
        "model_config_from": args.config,
        "model_config": config,
        "cpu_reference": args.cpu_reference,
        "figures": [],
    }
    params = build_model("ram", config, image_size=SIZE).num_parameters()
    print(
        f"device {device} ({record['device_name']}), {torch.get_num_threads()} threads, batches {args.batch}, torch {torch.__version__}"
    )
    source = f"the {RECIPE} recipe's config" if args.config == "recipe" else "the RAM's defaults but"
    print(f"model: RAM, {params:,} parameters, {source} {config}")
    print(
        f"median of 5 timing windows over {args.seconds:g} s per line (range in brackets); "
        "a share: the median of the 5 rounds' own ratios"
    )
    if args.reference:
        print(f"ratios to the CPU figures of {args.cpu_reference} ({args.reference.get('device_name')})")
    for batch in args.batch:
        figures = measure_batch(args, batch, device, config)
        record["figures"] += [f.to_dict() for f in figures]
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if args.json:
            write_json(args.json, record)
    compiled = [f for f in record["figures"] if f["path"] == "compiled"]
    if compiled:
        print("\nissue #11's CPU targets, the compiled step's share of its matrix products alone:")
        for f in compiled:
            share, target = f["ratios"]["of_matmul_bound"], TARGETS[f["mode"]]
            verdict = "met" if share >= target else "NOT met"
            print(f"  batch {f['batch']:5d} {f['mode']:9s} {share:4.0%} (target >= {target:.0%}: {verdict})")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory of this process: {peak_mib:,.0f} MiB")
    if args.json:
        write_json(args.json, {**record, "peak_rss_mib": peak_mib})
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
