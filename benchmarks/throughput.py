"""RAM throughput on translated60: training and deterministic inference samples/s.

The paper's 60×60 set-up: 6 glimpses of 12×12 at 3 scales, batch 128, 2 CPU threads by
default. In the same process it times the same model with a per-sample-loop retina (the
usual way public implementations extract glimpses) and prints the ratios. Prints, never
asserts: machines are noisy.

    python benchmarks/throughput.py [--threads 2] [--batch 128] [--seconds 5] [--device auto]
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from ramlab.device import resolve_device
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


def samples_per_second(step, batch: int, seconds: float) -> float:
    for _ in range(3):
        step()  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        count += 1
    return count * batch / (time.perf_counter() - start)


def measure(model, images, labels, bboxes, *, seconds: float) -> tuple[float, float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    generator = torch.Generator(device=images.device).manual_seed(0)

    def train_step() -> None:
        out = model(images, sample=True, generator=generator)
        loss = model.objective(out, labels, bboxes).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.no_grad()
    def infer_step() -> None:
        model(images, sample=False, generator=generator)

    model.train()
    train = samples_per_second(train_step, len(images), seconds)
    model.eval()
    infer = samples_per_second(infer_step, len(images), seconds)
    return train, infer


def profile_matmuls(model, images, labels, bboxes, *, steps: int = 10) -> None:
    """Milliseconds per step in matrix products (mm, addmm) against the whole step."""
    from torch.profiler import profile

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)

    def train_step() -> None:
        loss = model.objective(model(images, sample=True), labels, bboxes).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def infer_step() -> None:
        with torch.no_grad():
            model(images)

    for name, step in (("train", train_step), ("inference", infer_step)):
        for _ in range(3):
            step()
        with profile() as prof:
            for _ in range(steps):
                step()
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events) / steps / 1000
        matmul = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm"))
        matmul = matmul / steps / 1000
        print(
            f"{name:9s} step: {total:6.2f} ms profiled, of which matrix products {matmul:6.2f} ms "
            f"(a bound of {len(images) / matmul * 1000:,.0f} samples/s from them alone)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=5.0, help="timing window per measurement")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-naive", action="store_true", help="skip the per-sample retina")
    parser.add_argument(
        "--profile", action="store_true", help="also print where a step's time goes (torch.profiler)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    size = (60, 60)
    config = {"glimpses": 6, "glimpse_size": 12, "scales": 3}
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
    train, infer = measure(model, images, labels, bboxes, seconds=args.seconds)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ramlab retina      train {train:9,.0f} samples/s   inference {infer:9,.0f} samples/s")
    if not args.skip_naive:
        naive = build_model("ram", config, image_size=size).to(device)
        naive.load_state_dict(model.state_dict())
        naive.retina = PerSampleRetina(glimpse_size=12, scales=3, image_size=size)
        n_train, n_infer = measure(naive, images, labels, bboxes, seconds=args.seconds)
        print(f"per-sample retina  train {n_train:9,.0f} samples/s   inference {n_infer:9,.0f} samples/s")
        print(f"ratio (ramlab / per-sample): train {train / n_train:.1f}x, inference {infer / n_infer:.1f}x")
    print(f"peak resident memory of this process: {peak_mib:,.0f} MiB")
    if args.profile:
        profile_matmuls(model, images, labels, bboxes)


if __name__ == "__main__":
    main()
