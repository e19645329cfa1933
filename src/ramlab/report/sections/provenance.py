"""Section: where every number comes from: each run's config, seed, commit and command."""

from __future__ import annotations

import yaml

from ramlab.report.doc import Doc, link_target
from ramlab.report.inputs import ReportInputs


def provenance_section(doc: Doc, inputs: ReportInputs) -> None:
    doc.heading(2, "Provenance", "provenance")
    doc.para(
        "Every number above comes from these run directories: `result.json` (test error, params, "
        "time), `metrics.jsonl` (curves), `eval.json` (sampled error, glimpse statistics, FLOPs), "
        "`robustness.json` and the study's `cost.json`. Each run's full config is its `config.yaml`."
    )
    runs = sorted(inputs.all_runs, key=lambda r: r.name)
    rows = []
    for run in runs:
        result = run.result or {}
        rows.append(
            [
                f"{{#{run.anchor}}}`{run.name}`",
                f"`{run.model}`",
                run.data,
                str(run.seed),
                f"`{str(result.get('commit') or '—')[:12]}`",
                f"`{result.get('command', '—')}`" if result else "unfinished",
                f"[config.yaml]({link_target((run.path / 'config.yaml').relative_to(inputs.root).as_posix())})",
            ]
        )
    doc.table(["run", "model", "data", "seed", "commit", "command", "config"], rows)
    for run in runs:
        doc.details(f"config of {run.name}", yaml.safe_dump(run.config, sort_keys=False))
    source = inputs.cost_source
    if inputs.cost_rows:
        line = f"`cost.json`: {source}; " if source else "`cost.json`: "
        doc.para(line + "each row holds the model config it measured.")
    if inputs.study:
        doc.details("the study preset (study.yaml)", yaml.safe_dump(inputs.study, sort_keys=False))
