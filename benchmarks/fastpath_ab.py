"""The compiled fast path with its own inductor options against other options, paired.

    python benchmarks/fastpath_ab.py [--against '{"cpp_wrapper": false}'] [--config paper|recipe]
        [--seconds 10] [--rounds 4] [--threads 2]

Separate runs of benchmarks/throughput.py on a noisy machine differ by more than a compiler
option moves the step, so this compiles two copies of the same RAM (same seed, same weights)
in one process: "then" with the inductor options of `--against` (by default the fast path's
CPU options with the C++ wrapper off: inductor's Python wrapper, which the fast path used up
to `0127fa4`), "now" with the fast path's own (`ramlab.fastpath.inductor_options`). It first
checks one training step (loss and gradients) and one inference pass (logits and locations)
of the two against each other and prints the largest difference (0 when they agree bit for
bit). Then it times their training and inference steps at batch 128 (`throughput.steps_of`)
in interleaved windows (`throughput.windows`), one now/then ratio a round, and the median
ratio over the rounds. Prints, never asserts: machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch
from retina_ab import ratio_line
from throughput import SIZE, recipe_config, steps_of, synthetic_batch, windows

from ramlab.device import reuse_freed_memory
from ramlab.fastpath import CompiledForward, TrainingStep, inductor_options
from ramlab.models.registry import build_model

CPU = torch.device("cpu")
BEFORE = {**inductor_options(CPU), "cpp_wrapper": False}
"""The default of `--against`: the fast path's CPU options as they were, Python wrapper."""


def twins(config, image_size: tuple[int, int]) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Two RAMs with the same weights."""
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(build_model("ram", config, image_size=image_size))
    return models[0], models[1]


def outputs(model, images, labels, bboxes, options: dict | None) -> dict[str, torch.Tensor]:
    """One compiled training step's loss and gradients and one compiled inference pass's
    logits and locations, with inductor `options` (None: the fast path's own)."""
    model.train().zero_grad(set_to_none=True)
    _, objective = TrainingStep(model, compiled=True, options=options)(
        images, labels, bboxes, torch.Generator().manual_seed(1)
    )
    objective.loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    model.zero_grad(set_to_none=True)
    with torch.inference_mode():
        out = CompiledForward(model.eval(), options=options)(  # its first location may be drawn
            images, sample=False, generator=torch.Generator().manual_seed(2)
        )
    return {
        "loss": objective.loss.detach(),
        "gradients": grads,
        "logits": out.logits,
        "locations": out.rollout.locations,
    }


def largest_differences(then: dict[str, torch.Tensor], now: dict[str, torch.Tensor]) -> dict[str, float]:
    """name -> the largest absolute difference between the two runs' tensors."""
    return {name: float((then[name] - now[name]).abs().max()) for name in then}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=json.loads, default=BEFORE, help="inductor options as JSON")
    parser.add_argument("--config", choices=("paper", "recipe"), default="paper")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of one round's 5 windows")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reuse_freed_memory()
    print(
        f"{args.threads} threads, torch {torch.__version__}, the {args.config} RAM at batch 128; "
        f"then: options {args.against}, now: the fast path's {inductor_options(CPU)}"
    )
    old, new = twins(recipe_config(base=args.config), SIZE)
    images, labels, bboxes = synthetic_batch(128, CPU)
    differences = largest_differences(
        outputs(old, images, labels, bboxes, args.against), outputs(new, images, labels, bboxes, None)
    )
    print("largest differences, then against now:", ", ".join(f"{k} {v:g}" for k, v in differences.items()))
    steps = {
        "then": steps_of(old, images, labels, bboxes, compiled=True, options=args.against),
        "now": steps_of(new, images, labels, bboxes, compiled=True),
    }
    for mode in ("train", "inference"):
        ratios = []
        for _ in range(args.rounds):
            rates = windows(
                {k: s[mode] for k, s in steps.items()}, batch=128, seconds=args.seconds, device=CPU, warmup=5
            )
            ratios.append(statistics.median(rates["now"]) / statistics.median(rates["then"]))
            print(ratio_line(f"compiled, {mode}", rates, "samples/s"), flush=True)
        print(
            f"compiled, {mode}: median of {args.rounds} rounds {statistics.median(ratios):.3f}x "
            f"(rounds {min(ratios):.3f}-{max(ratios):.3f}x)",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
