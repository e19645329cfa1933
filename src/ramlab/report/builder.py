"""The report assembled: its introduction (what it was made from, what is missing or
damaged), then every section; `write_report` writes report.md and report.html."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ramlab.errors import RamlabError
from ramlab.files import atomic_write
from ramlab.report.doc import Doc
from ramlab.report.inputs import ReportInputs
from ramlab.report.sections import SECTIONS

TITLE = "ramlab study report"


def build_report(inputs: ReportInputs) -> Doc:
    """The whole report of the folder `inputs` was read from."""
    doc = Doc(inputs.root)
    doc.heading(1, TITLE)
    description = inputs.study.get("description")
    if description:
        doc.plain(" ".join(str(description).split()))
    doc.para(
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} from the files in `{inputs.root}`: "
        f"{len(inputs.runs)} finished run(s) on {', '.join(inputs.datasets) or 'no dataset'}"
        + (f", {len(inputs.cost_rows)} cost measurement(s)" if inputs.cost_rows else "")
        + ". Errors are test errors in % (lower is better), mean ± sample std over seeds; "
        "each row names its runs, linked to their config, seed, commit and command under Provenance."
    )
    unfinished = [r for r in inputs.all_runs if not r.finished]
    if unfinished:
        doc.para(
            "No result.json (training, stopped or failed; left out of the tables): "
            + ", ".join(f"`{r.name}`" for r in unfinished)
            + "."
        )
    if inputs.skipped:
        doc.para(
            "**Skipped runs and files**: a file could not be read or lacks what the report needs, a "
            "run repeats another's experiment and seed, or a run is not in the study's plan (a seed "
            "of an earlier `--seeds`, a group since removed), so these are left out of every table "
            "and figure (the reason says which; a damaged file: fix or delete it, then rerun its job):"
        )
        doc.table(["left out", "why"], [[f"`{s.name}`", s.reason] for s in inputs.skipped])
    for section in SECTIONS:
        section(doc, inputs)
    return doc


def write_report(root: str | Path) -> Path:
    """Write DIR/report.md and DIR/report.html (figures in DIR/report_files); return report.md.
    Damaged runs and files are left out, listed in the report and warned about on stderr."""
    root = Path(root)
    if not root.is_dir():
        raise RamlabError(f"{root}: {'a file, not a folder' if root.exists() else 'no such folder'}")
    inputs = ReportInputs(root)
    for skipped in inputs.skipped:
        print(f"warning: report skips {skipped.name}: {skipped.reason}", file=sys.stderr)
    if not inputs.all_runs and not inputs.cost_rows and not inputs.skipped:
        raise RamlabError(
            f"{root}: no run directories (config.yaml with result.json) and no cost.json under it"
        )
    doc = build_report(inputs)
    md = root / "report.md"
    atomic_write(md, lambda f: f.write(doc.markdown()), mode="w")
    page = doc.html(TITLE)
    atomic_write(root / "report.html", lambda f: f.write(page), mode="w")
    return md
