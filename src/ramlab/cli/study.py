"""`ramlab study PRESET|FILE.yaml [--out DIR] [--seeds N] [--list]` and `ramlab report DIR`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from ramlab.study import preset_names

    presets = ", ".join(preset_names())
    p = sub.add_parser(
        "study",
        help="run a whole study (training, evaluation, robustness, cost) and write its report",
        description="Run every job of a preset that is not done yet, then write the report. "
        "Finished jobs are skipped and an interrupted study resumes where it stopped, so the "
        f"same command continues it. Packaged presets: {presets}.",
    )
    p.add_argument("preset", metavar="PRESET", help=f"a packaged preset ({presets}) or a YAML file")
    p.add_argument("--out", metavar="DIR", help="study folder (default: studies/<preset name>)")
    p.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        help="seeds per run group (replaces the preset's `seeds`; groups with their own keep it)",
    )
    p.add_argument("--list", action="store_true", help="list the jobs and which are done; run nothing")
    p.set_defaults(handler=cmd_study)

    p = sub.add_parser(
        "report",
        help="write report.md and report.html for a study (or any folder of runs)",
        description="Read the run directories under DIR (and DIR/cost.json) and write "
        "DIR/report.md and a self-contained DIR/report.html. Reads files only.",
    )
    p.add_argument("dir", metavar="DIR", help="a study folder, or any folder holding run directories")
    p.set_defaults(handler=cmd_report)


def cmd_study(args: argparse.Namespace) -> int:
    from ramlab.study import Study, load_preset

    preset = load_preset(args.preset, seeds=args.seeds)
    out = Path(args.out) if args.out else Path("studies") / preset.name
    study = Study(preset, out, command=shlex.join(["ramlab", *sys.argv[1:]]))
    if args.list:
        jobs = study.jobs()
        for i, job in enumerate(jobs, start=1):
            state = "done" if study.is_done(job) else "to do"
            print(f"{i:>4}  {state:<6} {job.title}")
        return 0
    path = study.run()
    print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ramlab.report import write_report

    path = write_report(args.dir)
    print(f"{path}\n{path.with_suffix('.html')}")
    return 0
