"""Section: each run's error under scene shifts it was not trained on (robustness.json)."""

from __future__ import annotations

from ramlab.report.doc import Doc
from ramlab.report.formatting import fmt_mean_std
from ramlab.report.inputs import ReportInputs
from ramlab.report.paper import data_key
from ramlab.report.runs import by_label, links


def robustness_section(doc: Doc, inputs: ReportInputs) -> None:
    from ramlab.viz.curves import plot_robustness

    doc.heading(2, "Robustness to shifts not seen in training", "robustness")
    swept = [r for r in inputs.runs if r.robustness]
    if not swept:
        doc.para("No run has a `robustness.json` (run `ramlab robustness RUN_DIR --json ...`).")
        return
    first_n = sorted(
        {r.name for r in swept if r.robustness.get("limit") and r.robustness.get("format", 1) < 2}
    )
    doc.para(
        "Each run's best model on its own test digits, with one scene parameter changed "
        "(the same digits at every level): all of them, or, where the count is lower, a fixed "
        "random subset, the same for every run. Error in %, mean over seeds."
        + (
            f" Older sweeps read the first N digits of MNIST's test file instead, whose first half is "
            f"the harder one: {', '.join(f'`{name}`' for name in first_n)}."
            if first_n
            else ""
        )
    )
    for data in sorted({r.data for r in swept}, key=data_key):
        groups = by_label(r for r in swept if r.data == data)
        sweeps: dict[str, dict[str, list[dict]]] = {}
        for label, runs in groups.items():
            for run in runs:
                for name, entry in run.robustness["shifts"].items():
                    sweeps.setdefault(name, {}).setdefault(label, []).append(entry)
        doc.heading(3, f"{data}")
        path = plot_robustness(sweeps, inputs.fig_path(f"robustness-{data}"), styles=inputs.styles)
        doc.figure(path, f"Test error under each shift, runs trained on {data} (grey: the training level).")
        for name, per_label in sweeps.items():
            first = next(iter(per_label.values()))[0]
            levels = first["levels"]
            rows = []
            for label, entries in per_label.items():
                same = [e for e in entries if e["levels"] == levels]
                cells = [fmt_mean_std([e["error"][i] for e in same], 1) for i in range(len(levels))]
                rows.append([f"`{label}`", *cells, links(groups[label])])
            doc.para(
                f"**{name}**: {first.get('label', name)}; count {first.get('count', '?')} test scenes per level."
            )
            doc.table(["model", *(f"{v:g}" for v in levels), "runs"], rows)
