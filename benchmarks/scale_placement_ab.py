"""A run's error at each scale level under both placements of a resized digit (robustness.json
formats 6 and 7), on the same digits, clutter and random draws:

    python benchmarks/scale_placement_ab.py RUN_DIR [RUN_DIR ...] [--split test] [--levels 0.5 0.75 1 1.3 1.6]

format 7 (`ramlab robustness` since 2026-12-07) resizes each digit about the centre the
dataset's scene gave it; format 6 placed the resized box anywhere in the window it left (a
larger digit nearer the centre, a smaller one out to the edges). The difference between the
two columns is the translation format 6 mixed into its scale curve. It also prints how far the
digits' box centres moved from the dataset's own scenes under each placement (the mean over x
and y of the absolute move, px).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ramlab.data import datasets
from ramlab.data.datasets import resolve_spec
from ramlab.data.loader import SceneLoader
from ramlab.data.scenes import generate_scenes
from ramlab.device import set_threads
from ramlab.evaluate import evaluate
from ramlab.provenance import command_line
from ramlab.run import load_run, refuse_unread_test
from ramlab.shifts import SHIFTS, one_place


def centres(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--levels", nargs="+", type=float, default=[0.5, 0.75, 1.0, 1.3, 1.6])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    set_threads(args.threads)
    print(command_line())
    kind = SHIFTS["scale"]
    for run in args.runs:
        config, model = load_run(run)
        refuse_unread_test(run, config, args.split)
        base = resolve_spec(config.data)
        images, labels = datasets.split_digits(datasets.mnist_digits(), args.split)
        seed = datasets.split_seed(base, config.train.data_seed, args.split)
        own = centres(generate_scenes(base, images, labels, seed=seed).bboxes)
        print(f"{run} ({config.model} on {config.data}), {args.split} error % at each scale level")
        print("   level   format 6   format 7   centre moved per axis (mean px): format 6, format 7")
        for level in args.levels:
            spec = kind.spec(base, level)
            row = []
            for centres_of in (None, None if one_place(base) else base.footprint):
                scenes = generate_scenes(spec, images, labels, seed=seed, centres_of=centres_of)
                loader = SceneLoader(scenes, batch_size=config.train.eval_batch_size)
                moved = np.abs(centres(scenes.bboxes) - own).mean()
                row.append((evaluate(model, loader).error, moved))
            (e6, m6), (e7, m7) = row
            print(f"  {level:6g}   {e6:8.2f}   {e7:8.2f}   {m6:6.2f}, {m7:6.2f}")


if __name__ == "__main__":
    main()
