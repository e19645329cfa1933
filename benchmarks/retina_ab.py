"""The RAM with this checkout's retina against the retina of an earlier commit, paired.

    python benchmarks/retina_ab.py --against COMMIT [--config paper|recipe] [--seconds 15] [--rounds 2]

Separate runs of benchmarks/throughput.py on a noisy machine differ by more than a retina
change moves the step, so this times both retinas in one process: two copies of the same RAM
(same seed, same weights), one given `COMMIT`'s `Retina` (read with `git show`), the other
this checkout's, checked first to give the same logits and locations for a shared generator.
Then, in interleaved windows (`pairing.rounds`), each round printing one ratio (the compiled
steps also the median over rounds):
- the compiled fast path's training and inference steps at batch 128 (`throughput.steps_of`);
- the eager forward pass of `ramlab cost`'s RAM (no gradient, the policy mean) at 60 and 100 px
  and batch 256, 800 px and batch 4, and 60 px at batch 1.
Prints, never asserts: machines are noisy.
"""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import pairing
import torch
from pairing import CPU, twins
from throughput import SIZE, recipe_config, steps_of, synthetic_batch
from timing import windows

from ramlab.models.registry import model_class
from ramlab.provenance import command_line

EAGER_SIZES = ((60, 256), (100, 256), (800, 4), (60, 1))  # (image side, batch)


def retina_class_of(commit: str) -> type:
    """The `Retina` class as it was at `commit`."""
    source = subprocess.run(
        ["git", "show", f"{commit}:src/ramlab/models/retina.py"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "retina_then.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("retina_then", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module.Retina


def pair(config, image_size: tuple[int, int], then: type, name: str = "ram") -> tuple:
    """(model with the old retina, model with this checkout's), the same weights."""
    old, new = twins(config, image_size, name)
    old.retina = then(glimpse_size=old.retina.glimpse_size, scales=old.retina.scales, image_size=image_size)
    return old, new


def main() -> None:
    parser = pairing.parser(__doc__.splitlines()[0], seconds=15.0, rounds=2)
    parser.add_argument("--against", required=True, help="the commit whose retina is compared")
    args = parser.parse_args()
    print(command_line(), flush=True)
    pairing.set_up(args)
    then = retina_class_of(args.against)
    print(
        f"{args.threads} threads, torch {torch.__version__}; retina of {args.against} (then) against this checkout's (now)"
    )

    config = recipe_config(base=args.config)
    old, new = pair(config, SIZE, then)
    images, labels, bboxes = synthetic_batch(128, CPU)
    for mode in ("eval", "train"):
        a, b = (
            getattr(m, mode)()(images, sample=True, generator=torch.Generator().manual_seed(3))
            for m in (old, new)
        )
        same = torch.equal(a.logits, b.logits) and torch.equal(a.rollout.locations, b.rollout.locations)
        print(f"{mode}: the same logits and locations: {same}")
    steps = {
        "then": steps_of(old, images, labels, bboxes, compiled=True),
        "now": steps_of(new, images, labels, bboxes, compiled=True),
    }
    for mode in ("inference", "train"):
        label = f"compiled {args.config} RAM, {mode}, batch 128"
        pairing.rounds(
            {k: s[mode] for k, s in steps.items()}, label, batch=128, rounds=args.rounds, seconds=args.seconds
        )

    cls = model_class("ram")
    for size, batch in EAGER_SIZES:
        old, new = pair(cls.config_for_image_size(cls.config_class(), size), (size, size), then)
        scenes = torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(size))

        @torch.no_grad()
        def forward(model: torch.nn.Module, scenes: torch.Tensor = scenes) -> None:
            model.eval()(scenes)

        calls = {"then": functools.partial(forward, old), "now": functools.partial(forward, new)}
        rates = windows(calls, batch=batch, seconds=args.seconds / 3, device=CPU, warmup=3)
        print(pairing.ratio_line(f"eager forward, {size} px, batch {batch}", rates, "images/s"), flush=True)


if __name__ == "__main__":
    sys.exit(main())
