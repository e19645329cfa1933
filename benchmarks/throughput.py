"""RAM throughput on translated60: training and deterministic inference samples/s.

The paper's 60×60 set-up: 6 glimpses of 12×12 at 3 scales, batch 128, 2 CPU threads by
default. In the same process it also times
- the step's matrix products alone (recorded from one step, replayed on operands of the
  same sizes and strides): the bound the model's own arithmetic sets on this machine;
- the same model with a per-sample-loop retina (the usual way public implementations
  extract glimpses), and prints the ratios.
Each line is the median of 5 timing windows (their range in brackets). Prints, never
asserts: machines are noisy.

    python benchmarks/throughput.py [--threads 2] [--batch 128] [--seconds 5] [--device auto]
        [--core rnn|lstm]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from ramlab.device import resolve_device, reuse_freed_memory
from ramlab.models import build_model
from ramlab.models.retina import Pyramid, Retina


class PerSampleRetina(Retina):
    """The same glimpses, extracted one sample and one scale at a time (pad, crop, pool)."""

    def prepare(self, images: torch.Tensor) -> Pyramid:
        return Pyramid(flat=images[:, 0], height=images.shape[2], width=images.shape[3])

    def glimpse(self, pyramid: Pyramid, location: torch.Tensor) -> torch.Tensor:
        g, pad = self.glimpse_size, self.glimpse_size * 2 ** (self.scales - 1)
        out = []
        for image, loc in zip(pyramid.flat, location, strict=True):
            padded = F.pad(image, (pad, pad, pad, pad))
            cx = (loc[0].item() + 1) / 2 * pyramid.width
            cy = (loc[1].item() + 1) / 2 * pyramid.height
            parts = []
            for s in range(self.scales):
                size = g * 2**s
                x0 = max(-pad, min(pyramid.width, int(torch.floor(torch.tensor(cx - size / 2 + 0.5)))))
                y0 = max(-pad, min(pyramid.height, int(torch.floor(torch.tensor(cy - size / 2 + 0.5)))))
                crop = padded[y0 + pad : y0 + pad + size, x0 + pad : x0 + pad + size]
                parts.append(F.avg_pool2d(crop[None, None], 2**s).reshape(-1))
            out.append(torch.cat(parts))
        return torch.stack(out)


class MatmulRecorder(TorchDispatchMode):
    """Records the matrix products (linear, mm, addmm) an operation runs, with their
    operands' sizes and strides, so that they can be replayed alone."""

    OPS = (
        torch.ops.aten.linear.default,  # kept whole in inference mode
        torch.ops.aten.mm.default,
        torch.ops.aten.addmm.default,
        torch.ops.aten.addmm_.default,
    )

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.OPS:
            self.calls.append(
                (func, [(a.size(), a.stride()) if isinstance(a, torch.Tensor) else a for a in args])
            )
        return func(*args, **(kwargs or {}))


def matmul_replay(step, device: torch.device):
    """A function running only the matrix products of one `step`, on operands of the same
    sizes and strides: the time the step would take if everything else were free."""
    with MatmulRecorder() as recorder:
        step()

    def operand(spec):
        if isinstance(spec, tuple):  # (size, stride) of a tensor
            return torch.empty_strided(*spec, device=device).normal_()
        return spec

    calls = [(func, [operand(spec) for spec in specs]) for func, specs in recorder.calls]

    def replay() -> None:
        for func, args in calls:
            func(*args)

    return replay, len(calls)


def windows(step, *, batch: int, seconds: float, count: int = 5) -> list[float]:
    """samples/s in `count` windows of seconds/count each, after a warm-up."""
    for _ in range(3):
        step()
    rates = []
    for _ in range(count):
        steps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / count:
            step()
            steps += 1
        rates.append(steps * batch / (time.perf_counter() - start))
    return rates


def steps_of(model, images, labels, bboxes):
    """The two timed steps: a training step (sampled rollout, hybrid loss, backward, Adam)
    and a deterministic inference step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    generator = torch.Generator(device=images.device).manual_seed(0)

    def train_step() -> None:
        model.train()
        out = model(images, sample=True, generator=generator)
        loss = model.objective(out, labels, bboxes).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.inference_mode()
    def infer_step() -> None:
        model.eval()
        model(images, sample=False, generator=generator)

    return {"train": train_step, "inference": infer_step}


def summary(rates: list[float]) -> str:
    return f"{statistics.median(rates):9,.0f} samples/s (windows {min(rates):,.0f}-{max(rates):,.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measured line")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-naive", action="store_true", help="skip the per-sample retina")
    parser.add_argument("--core", default="rnn", choices=("rnn", "lstm"), help="the RAM's core (default rnn)")
    args = parser.parse_args()
    reuse_freed_memory()  # as the ramlab command does
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    size = (60, 60)
    config = {"glimpses": 6, "glimpse_size": 12, "scales": 3, "core": args.core}
    images = torch.zeros(args.batch, 1, *size, device=device)
    xy = torch.randint(0, 60 - 28, (args.batch, 2))
    for i, (x, y) in enumerate(xy.tolist()):  # a bright 28×28 block somewhere, like a digit
        images[i, 0, y : y + 28, x : x + 28] = torch.rand(28, 28)
    labels = torch.randint(0, 10, (args.batch,), device=device)
    bboxes = torch.cat([xy, xy + 28], dim=1).float().to(device)

    model = build_model("ram", config, image_size=size).to(device)
    print(
        f"device {device}, {torch.get_num_threads()} threads, batch {args.batch}, torch {torch.__version__}"
    )
    print(f"model: RAM, {model.num_parameters():,} parameters, {config}")
    print(f"median of 5 timing windows over {args.seconds:g} s per line (range in brackets)")
    steps = steps_of(model, images, labels, bboxes)
    rates = {name: windows(step, batch=args.batch, seconds=args.seconds) for name, step in steps.items()}
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for name, r in rates.items():
        print(f"ramlab            {name:9s} {summary(r)}")
    for name, step in steps.items():
        replay, calls = matmul_replay(step, device)
        bound = windows(replay, batch=args.batch, seconds=args.seconds)
        share = statistics.median(rates[name]) / statistics.median(bound)
        print(
            f"its {calls:3d} matrix products alone {summary(bound)}: the step runs at "
            f"{share:.0%} of that bound"
        )
    if not args.skip_naive:
        naive = build_model("ram", config, image_size=size).to(device)
        naive.load_state_dict(model.state_dict())
        naive.retina = PerSampleRetina(glimpse_size=12, scales=3, image_size=size)
        for name, step in steps_of(naive, images, labels, bboxes).items():
            r = windows(step, batch=args.batch, seconds=args.seconds)
            ratio = statistics.median(rates[name]) / statistics.median(r)
            print(f"per-sample retina {name:9s} {summary(r)}: ramlab is {ratio:.1f}x faster")
    print(f"peak resident memory of this process (before the per-sample runs): {peak_mib:,.0f} MiB")


if __name__ == "__main__":
    main()
