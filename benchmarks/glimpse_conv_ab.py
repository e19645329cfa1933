"""The convolutional glimpse network's convolution as a gather and a matrix product (this
checkout's `conv3x3_relu_pool`) against torch's conv2d and max_pool2d, paired.

    python benchmarks/glimpse_conv_ab.py [--channels 16] [--seconds 10] [--rounds 3] [--threads 2]

Three copies of the translated60 recipe's RAM (same seed), timed in one process in
interleaved windows (`pairing.rounds`) through the compiled fast path at batch 128
(`throughput.steps_of`), training and inference:
- "library conv" (then) against "gather conv" (now): the same weights, `--glimpse-conv C`,
  the first with `GlimpseNetwork.what_input` replaced by conv2d -> ReLU -> max_pool2d; their
  logits, loss and gradients are first checked against each other (the largest difference
  is printed);
- "fully connected" (then, the recipe's glimpse network, `glimpse_conv` 0) against "gather
  conv" (now): what the convolution costs.
Prints, never asserts: machines are noisy.
"""

from __future__ import annotations

import sys
import types

import pairing
import torch
from pairing import CPU
from throughput import SIZE, recipe_config, steps_of, synthetic_batch

from ramlab.fastpath import TrainingStep
from ramlab.models.registry import build_model


def library_what_input(self, glimpse: torch.Tensor) -> torch.Tensor:
    """GlimpseNetwork.what_input with torch's conv2d and max_pool2d."""
    patches = glimpse.view(len(glimpse), self.patches, self.side, self.side)
    return torch.nn.functional.max_pool2d(self.conv(patches).relu(), 2).flatten(1)


def model(config: dict, channels: int, *, library: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    ram = build_model("ram", {**config, "glimpse_conv": channels}, image_size=SIZE)
    if library:
        ram.glimpse.what_input = types.MethodType(library_what_input, ram.glimpse)
    return ram


def largest_difference(a: torch.nn.Module, b: torch.nn.Module, batch: tuple) -> float:
    """The largest absolute difference between two models' eager training loss and gradients
    for one shared sample of locations."""
    values = []
    for ram in (a, b):
        ram.train().zero_grad(set_to_none=True)
        _, objective = TrainingStep(ram, compiled=False)(*batch, torch.Generator().manual_seed(1))
        objective.loss.backward()
        grads = [p.grad.flatten() for p in ram.parameters() if p.grad is not None]
        values.append(torch.cat([objective.loss.detach().view(1), *grads]))
        ram.zero_grad(set_to_none=True)
    return float((values[0] - values[1]).abs().max())


def main() -> None:
    parser = pairing.parser(__doc__.splitlines()[0], seconds=10.0, rounds=3)
    parser.add_argument("--channels", type=int, default=16)
    parser.set_defaults(config="recipe")
    args = parser.parse_args()
    pairing.set_up(args)
    config = recipe_config(base=args.config)
    print(
        f"{args.threads} threads, torch {torch.__version__}, the {args.config} RAM at batch 128 "
        f"(rollouts {config.get('rollouts', 1)}), glimpse_conv {args.channels}"
    )
    batch = synthetic_batch(128, CPU)
    library, gather = model(config, args.channels, library=True), model(config, args.channels)
    difference = largest_difference(library, gather, batch)
    print(f"largest difference of loss and gradients, library against gather: {difference:g}")
    steps = {
        "library conv": steps_of(library, *batch, compiled=True),
        "gather conv": steps_of(gather, *batch, compiled=True),
        "fully connected": steps_of(model(config, 0), *batch, compiled=True),
    }
    for then in ("library conv", "fully connected"):
        for mode in ("train", "inference"):
            pairing.rounds(
                {"then": steps[then][mode], "now": steps["gather conv"][mode]},
                f"gather conv against {then}, compiled, {mode}",
                batch=128,
                rounds=args.rounds,
                seconds=args.seconds,
            )


if __name__ == "__main__":
    sys.exit(main())
