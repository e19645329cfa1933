"""Section: the glimpse trajectories the study's evaluation drew (glimpses.png and .gif)."""

from __future__ import annotations

from ramlab.report.doc import Doc
from ramlab.report.inputs import ReportInputs
from ramlab.report.runs import by_label


def glimpses_section(doc: Doc, inputs: ReportInputs) -> None:
    doc.heading(2, "Glimpse trajectories", "glimpses")
    shown = 0
    for data in inputs.datasets:
        for label, runs in by_label(r for r in inputs.runs if r.data == data).items():
            drawn = [r for r in runs if (r.path / "glimpses.png").is_file()]
            if not drawn:
                continue
            run = drawn[0]  # the first seed that has them
            png, gif = run.path / "glimpses.png", run.path / "glimpses.gif"
            doc.heading(3, f"`{label}` on {data}")
            doc.figure(
                png,
                f"Glimpses of {run.link()} on a fixed random subset of {data}'s test scenes, the same "
                f"for every run (seed {run.seed}).",
            )
            if gif.is_file():
                doc.figure(gif, f"The same, glimpse by glimpse ({run.link()}).")
            shown += 1
    if not shown:
        doc.para("No run has glimpse figures (they are drawn by the study's evaluation of attention models).")
