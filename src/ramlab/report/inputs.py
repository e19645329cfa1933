"""Everything a report is made from, read once from its folder.

    inputs = ReportInputs(DIR)
    inputs.runs         finished runs (the tables);  inputs.all_runs   finished or not
    inputs.cost_rows    DIR/cost.json's rows;  inputs.jobs  DIR/jobs.jsonl;  inputs.study  DIR/study.yaml
    inputs.skipped      runs, files and cost rows left out (damaged, or a run's copy), and why

The sections read these and draw their figures into DIR/report_files (`fig_path`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ramlab.cost_rows import read_cost_rows
from ramlab.errors import RamlabError
from ramlab.report.checks import (
    Damaged,
    check_cost_row,
    check_mapping,
    check_records,
    parse_jsonl,
    parse_yaml,
    read,
)
from ramlab.report.paper import data_key
from ramlab.report.runs import Skipped, read_runs

FIGURES = "report_files"


class ReportInputs:
    """The run directories, cost rows, jobs and preset under one folder (see the module)."""

    def __init__(self, root: Path) -> None:
        from ramlab.viz.curves import series_styles

        self.root = root
        self.figures = root / FIGURES
        self.all_runs, self.skipped = read_runs(root)
        self.runs = [r for r in self.all_runs if r.finished]
        self.cost_rows = self._cost_rows()
        self.jobs: list[dict] = self._read(root / "jobs.jsonl", parse_jsonl, check_records) or []
        self.study: dict = self._read(root / "study.yaml", parse_yaml, check_mapping) or {}
        self.styles = series_styles(
            [r.label for r in sorted(self.runs, key=lambda r: (r.model, r.label))]
            + list(dict.fromkeys(row["model"] for row in self.cost_rows))
        )
        self.datasets = sorted({r.data for r in self.runs}, key=data_key)

    def _read(self, path: Path, parse: Callable[[Path], Any], check: Callable[[Any], None]) -> Any:
        """A study file, or None (and a note in `skipped`) when it is damaged."""
        try:
            return read(path, parse, check)
        except Damaged as exc:
            self.skipped.append(Skipped(path.name, str(exc).removeprefix(f"{path.name}: ")))
            return None

    def _cost_rows(self) -> list[dict]:
        path = self.root / "cost.json"
        try:
            rows = read_cost_rows(path)
        except RamlabError as exc:
            self.skipped.append(Skipped(path.name, str(exc).removeprefix(f"{path}: ")))
            return []
        usable = []
        for row in rows:
            try:
                check_cost_row(row)
            except Damaged as exc:
                self.skipped.append(Skipped(f"{path.name}, {row['model']} at {row['size']} px", str(exc)))
            else:
                usable.append(row)
        return usable

    @property
    def cost_job(self) -> dict | None:
        """The job that measured cost.json last, from jobs.jsonl."""
        return next((j for j in reversed(self.jobs) if j.get("kind") == "cost"), None)

    @property
    def cost_source(self) -> str | None:
        """Who measured cost.json, in words: the last cost job's command and commit, or, where
        the rows name commits of their own (a resumed or widened cost job measures only the rows
        it lacks), the rows measured at each. None without a cost job in jobs.jsonl."""
        job = self.cost_job
        if job is None:
            return None
        counts: dict[str, int] = {}
        for row in self.cost_rows:
            commit = row.get("commit") if isinstance(row.get("commit"), str) else None
            key = f"`{commit}`" if commit else "unrecorded"
            counts[key] = counts.get(key, 0) + 1
        command = f"`{job.get('command', '?')}`"
        if not counts or set(counts) == {"unrecorded"}:
            return f"measured by {command} at commit `{job.get('commit')}`"
        if len(counts) == 1:  # every row at one commit (the last cost job may have measured none)
            return f"measured by {command} at commit {next(iter(counts))}"
        each = ", ".join(f"{n} at {key}" for key, n in counts.items())
        return f"measured by cost jobs ({command} the last) over several commits: rows {each}"

    def fig_path(self, name: str) -> Path:
        return self.figures / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
