"""`ramlab glimpses RUN_DIR --out FILE.png [--gif FILE.gif] [--count N] [--split val|test]`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "glimpses",
        help="draw an attention model's glimpse trajectories on test scenes (PNG grid, GIF)",
        description="Run a trained attention model once on some test (or validation) scenes of "
        "its dataset, a fixed random subset, and draw where it looked: the path of numbered glimpses, every scale's patch, the digit's "
        "bounding box, the true label and the prediction after each glimpse.",
    )
    p.add_argument("run", metavar="RUN_DIR", help="a run directory of an attention model (e.g. ram)")
    p.add_argument("--out", required=True, metavar="FILE.png", help="where to write the PNG grid")
    p.add_argument(
        "--gif",
        metavar="FILE.gif",
        help="also write an animation, one frame per glimpse (of the first 9 scenes at most)",
    )
    p.add_argument("--count", type=int, default=6, help="number of scenes (default 6)")
    p.add_argument(
        "--split",
        choices=("val", "test"),
        default="test",
        help="scenes of this split (default test; val for a tuning run, whose test split stays unread)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda (default auto)")
    p.set_defaults(handler=cmd_glimpses)


def cmd_glimpses(args: argparse.Namespace) -> int:
    from ramlab.errors import RamlabError
    from ramlab.viz.glimpses import MAX_SCENES, draw_run_glimpses
    from ramlab.viz.style import check_figure_path

    if not 1 <= args.count <= MAX_SCENES:
        raise RamlabError(f"--count must be 1..{MAX_SCENES} (one figure row per scene), got {args.count}")
    check_figure_path(args.out)
    if args.gif and Path(args.gif).suffix.lower() != ".gif":
        raise RamlabError(f"--gif {args.gif}: give a file name ending in .gif")
    if args.gif and Path(args.gif).resolve() == Path(args.out).resolve():
        raise RamlabError("--out and --gif name one file: give each its own")
    draw_run_glimpses(
        args.run, png=args.out, gif=args.gif, count=args.count, split=args.split, device=args.device
    )
    print(args.out)
    if args.gif:
        print(args.gif)
    return 0
