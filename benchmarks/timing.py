"""Timing for the benchmarks: steps timed in interleaved windows (a window of each in turn,
five rounds, so a drift of the machine's speed moves them alike), their peak GPU memory, and
a Figure per step with its rates and its ratios to others of the same rounds. Shared by
throughput.py and the scripts built on it."""

from __future__ import annotations

import gc
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from references import Step


def cudagraph_skips() -> int:
    """How many compiled graphs torch.compile has run without CUDA graphs in this process (it
    skips them for a graph with a CPU tensor, a mutated input or an op a graph cannot hold;
    `TORCH_LOGS=cudagraphs` prints why)."""
    from torch._dynamo.utils import counters

    return counters["inductor"]["cudagraph_skips"]


def cudagraph_note(skips: int) -> str:
    """What `skips` (a difference of `cudagraph_skips`) says about the compiled graphs."""
    return f"SKIPPED for {skips} graph(s) (TORCH_LOGS=cudagraphs says why)" if skips else "none skipped"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; a CPU needs nothing)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def windows(
    steps: dict[str, Step], *, batch: int, seconds: float, device: torch.device, warmup: int = 3
) -> dict[str, list[float]]:
    """samples/s of each step in 5 rounds, after `warmup` steps of each; a round times every
    step for seconds/5 in turn, so a machine whose speed drifts (this one's does, by 30%)
    slows them alike and their ratios hold. Every window ends when the device has finished
    the steps it launched."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    synchronize(device)
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(5):
        for name, step in steps.items():
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / 5:
                step()
                count += 1
            synchronize(device)
            rates[name].append(count * batch / (time.perf_counter() - start))
    return rates


def peak_memory(step: Step, device: torch.device) -> tuple[float | None, float | None]:
    """CUDA: (MiB allocated before, peak MiB allocated during) two runs of `step` in steady
    state, after two uncounted ones (a compiled path compiles and records its CUDA graphs
    there); (None, None) on a CPU."""
    if device.type != "cuda":
        return None, None
    for _ in range(2):
        step()
    gc.collect()
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    held = torch.cuda.memory_allocated(device) / 2**20
    for _ in range(2):
        step()
    synchronize(device)
    return held, torch.cuda.max_memory_allocated(device) / 2**20


@dataclass
class Figure:
    """One measured line: samples/s of a (model, mode, batch, path) and its peak memory."""

    model: str  # ram, resnet
    mode: str  # train, inference
    batch: int
    path: str  # eager, compiled, matmul-bound, per-sample-retina
    rates: list[float]  # samples/s of each timing window
    peak_memory_mib: float | None = None  # CUDA: max allocated during the line (None on CPU)
    held_before_mib: float | None = None  # CUDA: allocated when the line started
    process_max_rss_mib: float = 0.0  # the process's peak resident memory so far (all lines)
    ratios: dict[str, float] = field(default_factory=dict)
    cudagraph_skips: int | None = None  # CUDA, compiled: graphs torch.compile ran without CUDA graphs
    rollouts_per_image: int = 1  # a RAM's training step of M rollouts an image: a sample is a rollout

    @property
    def images_per_s(self) -> float:
        return self.median / self.rollouts_per_image

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    def share_of(self, other: Figure, name: str, *, per_image: bool = False) -> float:
        """The median over timing rounds of this figure's rate over `other`'s in the same
        round (windows timed in turn, see `windows`), kept in `ratios` as `name` with the
        rounds' lowest and highest as `name`_low and `name`_high. `per_image`: images/s, not
        samples/s (another model's sample is an image, a RAM's training sample a rollout)."""
        scale = other.rollouts_per_image / self.rollouts_per_image if per_image else 1.0
        ratios = [scale * mine / theirs for mine, theirs in zip(self.rates, other.rates, strict=True)]
        self.ratios[f"{name}_low"], self.ratios[f"{name}_high"] = min(ratios), max(ratios)
        self.ratios[name] = share = statistics.median(ratios)
        return share

    def share_range(self, name: str, *, times: bool = False) -> str:
        """The rounds' range of ratio `name`: as shares (84%), or with `times` as factors (4.1x)."""
        low, high = self.ratios[f"{name}_low"], self.ratios[f"{name}_high"]
        return f"rounds {low:.1f}x-{high:.1f}x" if times else f"rounds {low:.0%}-{high:.0%}"

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["samples_per_s"] = self.median
        row["images_per_s"] = self.images_per_s
        row["window_range"] = [min(self.rates), max(self.rates)]
        return row

    def line(self, label: str) -> str:
        text = f"{label:30s} {self.mode:9s} {self.median:10,.0f} samples/s (windows {min(self.rates):,.0f}-{max(self.rates):,.0f})"
        if self.rollouts_per_image > 1:
            text += f" = {self.images_per_s:,.0f} images/s at {self.rollouts_per_image} rollouts an image"
        if self.peak_memory_mib is not None:
            text += f", peak {self.peak_memory_mib:,.0f} MiB"
        return text


def measure(
    steps: dict[str, Step], *, device: torch.device, seconds: float, warmup: int = 3, **key: Any
) -> dict[str, Figure]:
    """A Figure per path of `steps` ({path: step}), timed in interleaved windows (see
    `windows`); on CUDA with each path's peak memory, measured before the timing."""
    memory = {path: peak_memory(step, device) for path, step in steps.items()}
    rates = windows(steps, batch=key["batch"], seconds=seconds, device=device, warmup=warmup)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        path: Figure(
            **key,
            path=path,
            rates=rates[path],
            held_before_mib=memory[path][0],
            peak_memory_mib=memory[path][1],
            process_max_rss_mib=rss,
        )
        for path in steps
    }
