"""`ramlab robustness RUN_DIR [--shift S ...] [--levels ...] [--split val|test] [--json FILE]`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ramlab.config import add_policy_args, add_threads_arg
from ramlab.errors import RamlabError
from ramlab.robustness import SHIFTS, SWEEP_SPLITS


def register(sub: argparse._SubParsersAction) -> None:
    lines = [f"{name}: {kind.label}" for name, kind in SHIFTS.items()]
    p = sub.add_parser(
        "robustness",
        help="test a trained run on scenes shifted beyond its training data",
        description="Evaluate a run's best model on its test digits (or, --split val, its "
        "validation digits) with one scene parameter shifted, level by level. Shifts: "
        + "; ".join(lines)
        + ".",
    )
    p.add_argument("run", metavar="RUN_DIR", help="a run directory written by ramlab train")
    p.add_argument(
        "--shift",
        action="append",
        choices=list(SHIFTS),
        help="shift to sweep (repeat for several; default: all)",
    )
    p.add_argument(
        "--levels",
        nargs="+",
        metavar="LEVEL",
        help="levels of the (single) --shift; default: translate 0..whole canvas, rotate 0-60, "
        "scale 0.5-1.6, noise 0-0.5, clutter 0-16",
    )
    p.add_argument(
        "--limit",
        type=int,
        help="use N of the split's digits, a fixed random subset (the same for every run and "
        "level; default: all)",
    )
    p.add_argument(
        "--split",
        choices=SWEEP_SPLITS,
        default="test",
        help="digits to shift: test (default; a final model's) or val (a model still being "
        "chosen, whose test split must stay unread)",
    )
    add_policy_args(p)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    p.add_argument("--json", metavar="FILE", help="write the sweep as JSON (resumes a partial file)")
    add_threads_arg(p)
    p.set_defaults(handler=cmd_robustness)


def cmd_robustness(args: argparse.Namespace) -> int:
    from ramlab.device import set_threads
    from ramlab.robustness import format_sweep, robustness_sweep

    names = args.shift or list(SHIFTS)
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise RamlabError(f"--shift {', '.join(twice)} given more than once: give each shift once")
    if args.levels is not None and len(names) != 1:
        raise RamlabError("--levels needs exactly one --shift (levels differ between shifts)")
    if args.limit is not None and args.limit < 1:
        raise RamlabError(f"--limit must be >= 1, got {args.limit}")
    if args.rollouts < 1:
        raise RamlabError(f"--rollouts must be >= 1, got {args.rollouts}")
    if args.json and Path(args.json).is_dir():  # before a sweep of minutes, not at its first write
        raise RamlabError(
            f"--json {args.json} is a folder: give a file path (such as {Path(args.json) / 'robustness.json'})"
        )
    shifts = {name: args.levels for name in names}
    set_threads(args.threads)
    result = robustness_sweep(
        args.run,
        shifts=shifts,
        limit=args.limit,
        sample=args.sample,
        rollouts=args.rollouts,
        split=args.split,
        device=args.device,
        json_path=Path(args.json) if args.json else None,
        command=shlex.join(["ramlab", *sys.argv[1:]]),
        progress=lambda text: print(text, file=sys.stderr),
    )
    print(format_sweep(result))
    return 0
