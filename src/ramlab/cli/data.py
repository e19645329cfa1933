"""`ramlab data fetch|build|show`."""

from __future__ import annotations

import argparse

from ramlab.data.datasets import DATASETS, SPLITS, build_dataset, load_split
from ramlab.data.mnist import fetch
from ramlab.errors import RamlabError
from ramlab.viz.scenes import MAX_SCENES, draw_scenes
from ramlab.viz.style import check_figure_path


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="fetch MNIST, build and show scene datasets")
    cmds = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = cmds.add_parser("fetch", help="obtain, verify (SHA-256) and cache the MNIST files")
    p.add_argument(
        "--from",
        dest="source",
        metavar="DIR",
        help="folder with the four IDX files (gzipped or not)",
    )
    p.set_defaults(handler=cmd_fetch)

    names = ", ".join(DATASETS)
    p = cmds.add_parser("build", help="build (or find) every split of a dataset; print its cache paths")
    p.add_argument("name", metavar="NAME", help=f"dataset: {names}")
    p.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    p.set_defaults(handler=cmd_build)

    p = cmds.add_parser("show", help="draw a grid of scenes with labels and bounding boxes")
    p.add_argument("name", metavar="NAME", help=f"dataset: {names}")
    p.add_argument("--out", required=True, metavar="FILE.png", help="where to write the PNG")
    p.add_argument("--split", default="test", choices=SPLITS, help="split (default test)")
    p.add_argument("--seed", type=int, default=0, help="scene seed (default 0)")
    p.add_argument("--count", type=int, default=16, help="number of scenes (default 16)")
    p.set_defaults(handler=cmd_show)
    cmds.metavar = f"ACTION ({', '.join(cmds.choices)})"  # a missing one lists them


def cmd_fetch(args: argparse.Namespace) -> int:
    print(fetch(args.source))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    for split, path in build_dataset(args.name, seed=args.seed).items():
        print(f"{split}\t{path}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= MAX_SCENES:
        raise RamlabError(f"--count must be 1..{MAX_SCENES} (scenes in one figure), got {args.count}")
    check_figure_path(args.out)
    scenes = load_split(args.name, args.split, seed=args.seed)
    out = draw_scenes(scenes, args.out, count=args.count, title=f"{args.name} ({args.split})")
    print(out)
    return 0
