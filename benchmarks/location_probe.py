"""Location probe of trained RAM runs: how well a linear readout of the core's state after
each glimpse finds the digit's centre, against where the policy sends the next glimpse
(`ramlab.probe` says how and why). Validation scenes by default; never the test split unless
asked, since hyperparameters are chosen from what this prints.

    python benchmarks/location_probe.py RUN_DIR [RUN_DIR ...] [--split val] [--limit 5000]
        [--json FILE]
"""

from __future__ import annotations

import argparse
import json

import torch

from ramlab.data.datasets import load_split
from ramlab.data.loader import unit_pixels
from ramlab.errors import RamlabError
from ramlab.probe import location_probe, probe_rows
from ramlab.provenance import command, run_commit
from ramlab.run import load_run, refuse_unread_test


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--limit", type=int, default=5000, help="scenes (the first 80%% fit, the rest score)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    report = {
        "command": command(),
        "commit": run_commit(),
        "split": args.split,
        "limit": args.limit,
        "runs": {},
    }
    loaded = {}
    for run in args.runs:  # every run loads before any is probed
        try:
            loaded[run] = load_run(run)
            refuse_unread_test(run, loaded[run][0], args.split)
        except RamlabError as exc:
            parser.error(str(exc))
    for run, (config, model) in loaded.items():
        scenes = load_split(config.data, args.split, seed=config.train.data_seed, limit=args.limit)
        images = unit_pixels(torch.from_numpy(scenes.images).unsqueeze(1))
        rows = location_probe(model, images, torch.from_numpy(scenes.bboxes), subset=scenes.subset)
        report["runs"][run] = {"data": config.data, "rows": probe_rows(rows)}
        print(f"{run} ({config.data}, {args.split}, {len(images)} scenes: 80% fit, 20% scored)")
        print(
            f"  median distance to the digit's centre, pixels; guessing the average centre: {rows[0].mean_guess_px:.1f}"
        )
        print("  after glimpse   probe of h_t   policy's next glimpse")
        for row in rows:
            policy = "-" if row.policy_px is None else f"{row.policy_px:.1f}"
            print(f"  {row.step:13d}   {row.probe_px:12.1f}   {policy:>21s}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
