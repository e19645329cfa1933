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
in interleaved windows (`pairing.rounds`), one now/then ratio a round, and the median
ratio over the rounds. Prints, never asserts: machines are noisy.
"""

from __future__ import annotations

import json
import sys

import pairing
import torch
from pairing import CPU, twins
from throughput import SIZE, recipe_config, steps_of, synthetic_batch

from ramlab.fastpath import CompiledForward, TrainingStep, inductor_options
from ramlab.provenance import command_line

BEFORE = {**inductor_options(CPU), "cpp_wrapper": False}
"""The default of `--against`: the fast path's CPU options as they were, Python wrapper."""


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
    parser = pairing.parser(__doc__.splitlines()[0], seconds=10.0, rounds=4)
    parser.add_argument("--against", type=json.loads, default=BEFORE, help="inductor options as JSON")
    args = parser.parse_args()
    print(command_line(), flush=True)
    pairing.set_up(args)
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
        pairing.rounds(
            {k: s[mode] for k, s in steps.items()},
            f"compiled, {mode}",
            batch=128,
            rounds=args.rounds,
            seconds=args.seconds,
        )


if __name__ == "__main__":
    sys.exit(main())
