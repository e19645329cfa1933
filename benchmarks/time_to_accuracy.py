"""Time to accuracy: training wall time and rollouts until a run's validation error first
reaches given targets (by default the paper's 6-glimpse test error for the run's dataset,
and twice it), read from each run's metrics.jsonl; optionally a plot of the curves.

    python benchmarks/time_to_accuracy.py RUN [LABEL=RUN ...] [--targets 1.22 2.44]
        [--plot FILE.png]

RUN is a run directory or a committed curve `results/recipes/[tuning/]NAME-val.jsonl` (its
config and resume history are read from the files beside it: `ramlab.progress.RunFiles`).

Wall time is the trainer's `perf/train_seconds` (training steps only, validation excluded),
as measured on the machine that trained the run; each run's config names its threads, and
its history.jsonl the threads of each resume (`threads 1 -> 2`: a resume changed them).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ramlab.config import load_yaml
from ramlab.errors import RamlabError
from ramlab.metrics import read_metrics
from ramlab.progress import RunFiles, best, labelled_run, read_val_curve, setting_over_resumes, time_to
from ramlab.provenance import command_line
from ramlab.report import PAPER


def read_config(path: Path | None) -> dict:
    """A run's config: a config.yaml, or the `config` inside a result.json."""
    if path is None:
        return {}
    if path.suffix == ".json":
        return json.loads(path.read_text()).get("config", {})
    return load_yaml(path)


def describe(seconds: float | None, rollouts: int | None, epoch: float) -> str:
    wall = "?" if seconds is None else f"{seconds / 60:7.1f} min"
    seen = "?" if rollouts is None else f"{rollouts / 1e6:7.2f} M"
    return f"{wall}  {seen} rollouts  (epoch {epoch:g})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", metavar="[LABEL=]RUN")
    parser.add_argument("--targets", type=float, nargs="+", help="validation errors (%%) to reach")
    parser.add_argument("--plot", metavar="FILE.png", help="also plot error against wall time and rollouts")
    args = parser.parse_args()

    curves, datasets = {}, set()
    print(command_line())
    print(f"machine: {os.cpu_count()} CPU cores visible to this process")
    for label, path in map(labelled_run, args.runs):
        if label in curves:
            parser.error(f"two runs labelled {label!r}: name them apart (LABEL=RUN)")
        try:
            files = RunFiles.find(path)
            curves[label] = read_val_curve(files.curve)
            history = read_metrics(files.history) if files.history else []
        except RamlabError as exc:  # no such run, or a damaged line in its log
            parser.error(str(exc))
        config = read_config(files.config)
        if config.get("data") is not None:  # a run without a config beside it names none
            datasets.add(config["data"])
        threads = "?"  # no config beside the curve: unknown, not torch's default
        if files.config is not None:
            threads = " -> ".join(
                str(value or "torch default")
                for value in setting_over_resumes(config.get("train", {}).get("threads"), history, "threads")
            )
        device = config.get("train", {}).get("device", "?")
        print(f"{label}: {config.get('data', '?')}, device {device}, threads {threads}, {path}")
    paper = PAPER.get(next(iter(datasets)) if len(datasets) == 1 else None, {}).get("ram/6")
    targets = args.targets or ([paper, 2 * paper] if paper else [])
    for target in targets:
        print(f"\nvalidation error <= {target:g}%:")
        for label, curve in curves.items():
            point = time_to(curve, target)
            reached = "not reached" if point is None else describe(point.seconds, point.rollouts, point.epoch)
            print(f"  {label:32s} {reached}")
    print("\nbest validation error:")
    for label, curve in curves.items():
        point = best(curve)
        if point is not None:
            print(
                f"  {label:32s} {point.error:.2f}% at {describe(point.seconds, point.rollouts, point.epoch)}"
            )
    if args.plot:
        from ramlab.viz.progress import plot_time_to_accuracy

        names = {f"paper {paper:g}%": paper} if paper else {}
        names |= {f"{target:g}%": target for target in targets if target != paper}
        print(plot_time_to_accuracy(curves, args.plot, targets=names))


if __name__ == "__main__":
    main()
