"""The report of a study: `report.md` and a self-contained `report.html` from files only.

    write_report(DIR)  reads every run directory under DIR (config.yaml, result.json,
                       metrics.jsonl, eval.json, robustness.json, glimpses.png/.gif), and
                       DIR/cost.json, DIR/study.yaml, DIR/jobs.jsonl when present

Sections: test error per dataset and model (mean ± std over seeds) beside the paper's
numbers, anytime and training curves; compute cost; robustness; reward structures (with a
permutation test of each against the sparse reward alone over seeds, at its own sparse weight
where that trained, and at the other weights: the scale control; and of each study group against its
reference across datasets); glimpse trajectories;
provenance (config, seed, commit and command of every run). A table row names the runs its
numbers come from, linked to their provenance. It never trains or runs a model, so it can
be rewritten at any time, also while a study is running. A run with a damaged file (not
UTF-8, not parseable, a field missing, NaN where a number is needed), or in a study's folder
a run its plan.json does not list, is left out and listed under "Skipped runs and files",
with a warning on stderr; the rest of the report is written.

    runs.py       Run, read_runs / find_runs, labels      checks.py   what each file must hold
    inputs.py     everything read from the folder         doc.py      Markdown and HTML
    paper.py      the paper's numbers                     stats.py    the permutation tests
    formatting.py numbers as printed                      sections/   one module per section
    builder.py    build_report, write_report              pooled.py   a group across datasets
"""

from ramlab.report.builder import build_report, write_report
from ramlab.report.doc import Doc
from ramlab.report.inputs import FIGURES, ReportInputs
from ramlab.report.paper import PAPER, paper_error
from ramlab.report.runs import Run, Skipped, find_runs, read_runs

__all__ = [
    "FIGURES",
    "PAPER",
    "Doc",
    "ReportInputs",
    "Run",
    "Skipped",
    "build_report",
    "find_runs",
    "paper_error",
    "read_runs",
    "write_report",
]
