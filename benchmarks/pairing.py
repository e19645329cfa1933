"""Paired A/B timing: two versions of one RAM step ("then" and "now") timed against each
other in one process, in interleaved windows (`throughput.windows`), so that the machine's
swings of speed (up to 2x within minutes here) move both alike. Shared by
benchmarks/retina_ab.py and benchmarks/fastpath_ab.py."""

from __future__ import annotations

import argparse
import statistics

import torch
from references import Step
from timing import windows

from ramlab.device import reuse_freed_memory
from ramlab.models.registry import build_model

CPU = torch.device("cpu")


def parser(description: str, *, seconds: float, rounds: int) -> argparse.ArgumentParser:
    """The arguments every paired benchmark takes: --config, --seconds, --rounds, --threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", choices=("paper", "recipe"), default="paper")
    parser.add_argument("--seconds", type=float, default=seconds, help="length of one round's 5 windows")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--threads", type=int, default=2)
    return parser


def set_up(args: argparse.Namespace) -> None:
    """Threads as asked, and malloc as the ramlab command sets it."""
    torch.set_num_threads(args.threads)
    reuse_freed_memory()


def twins(config, image_size: tuple[int, int], name: str = "ram") -> tuple[torch.nn.Module, torch.nn.Module]:
    """Two models with the same weights."""
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(build_model(name, config, image_size=image_size))
    return models[0], models[1]


def ratio_line(label: str, rates: dict[str, list[float]], unit: str) -> str:
    old, new = statistics.median(rates["then"]), statistics.median(rates["now"])
    return f"{label}: then {old:,.0f}, now {new:,.0f} {unit}: {new / old:.3f}x"


def rounds(steps: dict[str, Step], label: str, *, batch: int, rounds: int, seconds: float) -> list[float]:
    """Times steps["then"] against steps["now"] for `rounds` rounds of interleaved windows,
    printing each round's now/then ratio and then their median; returns the ratios."""
    ratios = []
    for _ in range(rounds):
        rates = windows(steps, batch=batch, seconds=seconds, device=CPU, warmup=5)
        ratios.append(statistics.median(rates["now"]) / statistics.median(rates["then"]))
        print(ratio_line(label, rates, "samples/s"), flush=True)
    print(
        f"{label}: median of {rounds} rounds {statistics.median(ratios):.3f}x "
        f"(rounds {min(ratios):.3f}-{max(ratios):.3f}x)",
        flush=True,
    )
    return ratios
