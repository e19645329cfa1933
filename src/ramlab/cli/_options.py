"""Command-line options that several commands share."""

from __future__ import annotations

import argparse


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0: torch's default), got {value}")
    return value


def add_threads(parser: argparse.ArgumentParser) -> None:
    """`--threads N`: torch's CPU threads (applied with `ramlab.device.set_threads`)."""
    parser.add_argument(
        "--threads",
        type=_threads,
        default=0,
        help="CPU threads for torch (0: torch's default; 1 is steadier beside another job)",
    )
