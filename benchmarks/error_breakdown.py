"""Where trained models go wrong: the error of each run's best checkpoint (policy mean, one
rollout) by the digit's distance from the canvas centre, by class, by where the scene sits in
the split's file (`--parts K` equal parts: MNIST's test file is ordered by the NIST collection
its digits came from) and, for a RAM, by how many of its glimpses landed in the digit's box;
and, for two or more runs on the same data, how many wrong scenes each pair shares
(`ramlab.breakdown` says why that matters). Validation scenes by default; never the test split
unless asked, since settings are chosen from what this prints.

    python benchmarks/error_breakdown.py RUN_DIR [RUN_DIR ...] [--split val] [--limit N]
        [--offsets 0 5 10 15] [--parts 2] [--json FILE]

`--limit N` reads what a limited evaluation reads: the first N training scenes, or a fixed
random N of the validation or test split (`ramlab.data.datasets.evaluation_subset`).

`--translate PX` reads, in place of the split itself, `ramlab robustness`' translate level of
±PX px on its digits (the sweep's scenes: the same digits and draws), and adds the error by
how far each digit was placed from the centre, max(|dx|, |dy|), in rings between the sweep's
translate levels (and, for a RAM, the share of its glimpses in the digit's box in each ring).
A sweep's wider window still holds digits where training put them (on centred60, trained at
±4, about 7% of the whole canvas's placements); the rings separate the placements never seen.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import asdict

import torch

from ramlab.breakdown import bins, grouped_errors, placement_offsets, rings, scene_outcomes, shared_errors
from ramlab.data.datasets import kept_scenes, load_split, resolve_spec
from ramlab.data.loader import unit_pixels
from ramlab.data.scenes import Subset
from ramlab.errors import RamlabError
from ramlab.provenance import command, run_commit
from ramlab.robustness import SWEEP_SPLITS, shifted_scenes
from ramlab.run import load_run, refuse_unread_test
from ramlab.shifts import SHIFTS, resolve_levels


def table(title: str, rows) -> list[str]:
    lines = [f"  {title:<18s} scenes  wrong  error %"]
    for row in rows:
        if row.scenes:
            lines.append(f"  {row.group:<18s} {row.scenes:6d} {row.wrong:6d} {row.error:8.2f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument(
        "--limit", type=int, default=None, help="N scenes, as a limited evaluation reads them (default: all)"
    )
    parser.add_argument(
        "--offsets",
        type=float,
        nargs="+",
        default=[0, 5, 10, 15],
        help="edges (pixels) of the bins of the digit's distance from the canvas centre",
    )
    parser.add_argument(
        "--parts", type=int, default=2, help="equal parts of the split's file to score apart (default 2)"
    )
    parser.add_argument(
        "--translate",
        type=float,
        metavar="PX",
        help="read the robustness sweep's translate level of ±PX px, with the error by placement ring",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", metavar="FILE", help="also write the tables as JSON")
    args = parser.parse_args()
    if args.parts < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--parts and --limit must be >= 1")
    if sorted(set(args.offsets)) != list(args.offsets):
        parser.error(f"--offsets must be strictly ascending, got {args.offsets}")
    if args.translate is not None and args.translate <= 0:
        parser.error(
            f"--translate must be above 0 px (0 is the centre the rings are measured from), got {args.translate:g}"
        )
    if args.translate is not None and (args.split not in SWEEP_SPLITS or args.limit is not None):
        parser.error(
            "--translate reads a whole validation or test split (as the sweep): no --limit, no train"
        )
    torch.set_num_threads(args.threads)

    report = {
        "command": command(),
        "commit": run_commit(),
        "split": args.split,
        "limit": args.limit,
        "parts": args.parts,
        "offsets": args.offsets,
        "translate": args.translate,
        "protocol": "policy mean, one rollout",
        "runs": {},
    }
    outcomes = {}
    loaded = {}
    for run in args.runs:  # every run loads, on one dataset, before any is scored
        try:
            loaded[run] = load_run(run)
            refuse_unread_test(run, loaded[run][0], args.split)
        except RamlabError as exc:
            parser.error(str(exc))
    datasets = {run: config.data for run, (config, _) in loaded.items()}
    if len(set(datasets.values())) > 1:
        parser.error(f"the runs were trained on different datasets ({datasets}); compare runs of one")
    data_seeds = {run: config.train.data_seed for run, (config, _) in loaded.items()}
    if len(set(data_seeds.values())) > 1:  # other scenes: "wrong in both" would pair strangers
        parser.error(f"the runs' scenes differ (data seeds {data_seeds}); compare runs of one data seed")
    data, data_seed = next(iter(datasets.values())), next(iter(data_seeds.values()))
    if args.translate is not None:  # the sweep's scenes of one level, and the rings' edges
        base, translate = resolve_spec(data), SHIFTS["translate"]
        try:
            resolve_levels(base, {"translate": [args.translate]})
        except RamlabError as exc:
            parser.error(str(exc))
        ring_levels = [
            0,
            *(v for v in translate.default_levels(base) if 0 < v < args.translate),
            args.translate,
        ]

        def level(px: float):
            spec = translate.spec(base, px)
            return shifted_scenes(spec, base=base, seed=data_seed, limit=None, split=args.split)

        scenes, centred = level(args.translate), level(0)
        placed = placement_offsets(torch.from_numpy(centred.bboxes), torch.from_numpy(scenes.bboxes))
    for run, (config, model) in loaded.items():
        if args.translate is None:
            scenes = load_split(data, args.split, seed=data_seed)  # all: the parts need
        total = len(scenes)  # each kept scene's place in the whole file
        keep = kept_scenes(total, args.limit, args.split)  # what load_split's limit keeps
        part = torch.arange(total)[keep] * args.parts // total
        parts = [f"{100 * k // args.parts}-{100 * (k + 1) // args.parts}%" for k in range(args.parts)]
        images = unit_pixels(torch.from_numpy(scenes.images[keep]).unsqueeze(1))
        labels = torch.from_numpy(scenes.labels[keep]).long()
        subset = Subset.kept(keep, of=total)  # a random first glimpse: the whole split's draws
        result = scene_outcomes(model, images, labels, torch.from_numpy(scenes.bboxes[keep]), subset=subset)
        outcomes[run] = result
        offset_bins, offset_names = bins(result.offset_px, args.offsets)
        tables = {
            "offset_px": grouped_errors(result.wrong, offset_bins, offset_names),
            "class": grouped_errors(result.wrong, result.labels, [str(c) for c in range(10)]),
            "part_of_file": grouped_errors(result.wrong, part, parts),
        }
        if result.glimpses_in_box is not None:
            names = [str(k) for k in range(config.model_config.glimpses + 1)]
            tables["glimpses_in_box"] = grouped_errors(result.wrong, result.glimpses_in_box, names)
        in_box = None
        if args.translate is not None:
            ring, ring_names = rings(placed, ring_levels)
            tables["placement_px"] = grouped_errors(result.wrong, ring, ring_names)
            if result.glimpses_in_box is not None:  # % of the ring's glimpses (all T) in the digit's box
                glimpses = config.model_config.glimpses
                in_box = {
                    name: 100.0
                    * result.glimpses_in_box[ring == g].sum().item()
                    / (int((ring == g).sum()) * glimpses)
                    for g, name in enumerate(ring_names)
                    if (ring == g).any()
                }
        wrong = int(result.wrong.sum())
        shifted = "" if args.translate is None else f", translate ±{args.translate:g} px"
        print(
            f"{run} ({config.data}, {args.split}{shifted}, {len(labels)} scenes): {wrong} wrong, "
            f"{100.0 * wrong / len(labels):.2f}%"
        )
        for title, rows in tables.items():
            print("\n".join(table(title, rows)))
        if in_box is not None:
            print(
                "  glimpses in the digit's box by placement ring: "
                + ", ".join(f"{k} px {v:.1f}%" for k, v in in_box.items())
            )
        report["runs"][run] = {
            "data": config.data,
            "scenes": len(labels),
            "wrong": wrong,
            "tables": {
                title: [asdict(row) | {"error": row.error} for row in rows] for title, rows in tables.items()
            },
        }
        if in_box is not None:
            report["runs"][run]["placement_in_box"] = in_box
    pairs = []
    for (a, first), (b, second) in itertools.combinations(outcomes.items(), 2):
        shared = shared_errors(first.wrong, second.wrong)
        pairs.append({"first": a, "second": b} | shared)
        print(
            f"wrong in both {a} and {b}: {shared['both']}; only the first: {shared['first_only']}; "
            f"only the second: {shared['second_only']}"
        )
    report["shared"] = pairs
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
