"""Run directories read back: a `Run` per folder holding config.yaml and a trainer's files.

    runs, skipped = read_runs(DIR)    every run under DIR, and the ones left out (damaged or copies)

A run's files (config.yaml, result.json, metrics.jsonl, eval.json, robustness.json) are
checked as they are read (`ramlab.report.checks`); a run with a damaged config, result or
metrics file is left out whole, as a `Skipped` that says why, so one bad file never stops a
report (a damaged eval.json or robustness.json, made after training, is left out alone). A second run with
the same experiment and seed (a copied folder, or a rerun) is left out too, so that it does
not count as one more seed.

Runs are grouped by dataset and model; within a group, runs whose configs differ only in
the seed share a label, and a label shows the config fields that differ from the other
runs of that model on that dataset (e.g. `ram (reward=sparse+bbox)`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from ramlab.config import HOW_IT_RAN, flatten
from ramlab.metrics import read_metrics
from ramlab.report.checks import (
    Damaged,
    check_config,
    check_evaluation,
    check_metrics,
    check_result,
    check_robustness,
    parse_json,
    parse_yaml,
    read,
)

# Config fields that never make two runs different experiments: the seed, and how it ran.
NOT_EXPERIMENT = {"train.seed", *(f"train.{field}" for field in HOW_IT_RAN)}


@dataclass
class Run:
    """One run directory, read back."""

    path: Path
    name: str  # path relative to the report's folder
    config: dict
    result: dict | None
    metrics: list[dict]
    evaluation: dict | None
    robustness: dict | None
    label: str = ""

    @cached_property
    def settings(self) -> dict[str, Any]:
        """`experiment(self.config)`, read once (it builds the run's config: a few ms)."""
        return experiment(self.config)

    @property
    def model(self) -> str:
        return self.config["model"]

    @property
    def data(self) -> str:
        return self.config["data"]

    @property
    def takes_glimpses(self) -> bool:
        """A RAM (a policy, read as its result says), not a model that reads the whole image
        in one pass (fc, convnet, resnet): only the former has `glimpses` in its config."""
        return "glimpses" in self.config.get("model_config", {})

    @property
    def test_flops(self) -> float | None:
        """FLOPs per test image as its test error was measured: one rollout's (eval.json)
        times the rollouts averaged (`eval_rollouts`); None without eval.json's count."""
        flops = (self.evaluation or {}).get("flops")
        if not flops:
            return None
        rollouts = self.config.get("train", {}).get("eval_rollouts") or 1
        if not isinstance(rollouts, int) or isinstance(rollouts, bool) or rollouts < 1:
            return None  # a config edited by hand: no count rather than a wrong one
        return flops * (rollouts if self.takes_glimpses else 1)

    @property
    def seed(self) -> int:
        return self.config.get("train", {}).get("seed", 0)

    @property
    def finished(self) -> bool:
        return self.result is not None

    @property
    def anchor(self) -> str:
        return "run-" + re.sub(r"[^A-Za-z0-9_-]+", "-", self.name).strip("-")

    def link(self) -> str:
        return f"[{self.path.name}](#{self.anchor})"


@dataclass(frozen=True)
class Skipped:
    """A run directory or a file the report leaves out, and why."""

    name: str  # path relative to the report's folder
    reason: str


REMADE_BY = {  # a run's files made after its training, and how to make each again
    "eval.json": "`ramlab study` again (its eval job)",
    "robustness.json": "`ramlab study` again, or the `ramlab robustness RUN --json ...` it was made with",
}


def read_run(folder: Path, name: str) -> tuple[Run, list[Skipped]]:
    """The run in `folder`, and its files left out: raises Damaged when its config, result or
    metrics cannot be used; a damaged eval.json or robustness.json (made after training) is
    left out alone, the run read without it."""
    left_out = []

    def extra(file: str, check) -> dict | None:
        try:
            return read(folder / file, parse_json, check)
        except Damaged as exc:
            fix = f"the run's other files are read; delete it and run {REMADE_BY[file]} to make it again"
            left_out.append(Skipped(f"{name}/{file}", f"{exc} ({fix})"))
            return None

    run = Run(
        path=folder,
        name=name,
        config=read(folder / "config.yaml", parse_yaml, check_config),
        result=read(folder / "result.json", parse_json, check_result),
        metrics=read(folder / "metrics.jsonl", read_metrics, check_metrics) or [],
        evaluation=extra("eval.json", check_evaluation),
        robustness=extra("robustness.json", check_robustness),
    )
    return run, left_out


PLAN = "plan.json"
"""A study's list of its runs (`ramlab.study`): a report of its folder takes those only."""


def read_runs(root: Path) -> tuple[list[Run], list[Skipped]]:
    """Every run directory under `root` (a folder with config.yaml and a trainer's files),
    labelled, and the run directories left out: a file of theirs damaged, or, in a study's
    folder, not among the runs its plan.json lists (a seed of an earlier `--seeds`, a group
    since removed from the preset)."""
    runs, skipped = [], []
    planned = _planned(root)
    for config_path in sorted(root.rglob("config.yaml")):
        folder = config_path.parent
        if not ((folder / "metrics.jsonl").exists() or (folder / "result.json").exists()):
            continue
        name = str(folder.relative_to(root))
        if planned is not None and name not in planned:
            skipped.append(Skipped(name, f"not a run of this study's plan ({PLAN}: the preset as last run)"))
            continue
        try:
            run, left_out = read_run(folder, name)
        except Damaged as exc:
            skipped.append(Skipped(name, str(exc)))
            continue
        runs.append(run)
        skipped += left_out
    # Finished runs are labelled among themselves: a run still training with another config
    # does not change the labels in the tables.
    _label([r for r in runs if r.finished])
    _label([r for r in runs if not r.finished])
    runs, copies = _one_per_seed(runs)
    return runs, skipped + copies


def _planned(root: Path) -> set[str] | None:
    """The run folders (relative to `root`) a study's plan.json lists; None without one, or
    with one that cannot be read (then every run counts, as before studies wrote it)."""
    try:
        runs = json.loads((root / PLAN).read_text(encoding="utf-8"))["runs"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None
    return {str(r) for r in runs} if isinstance(runs, list) else None


def _one_per_seed(runs: list[Run]) -> tuple[list[Run], list[Skipped]]:
    """The runs less any that repeat an earlier run's experiment and seed (a copied folder, or a
    rerun), which would count as one more seed; those are left out, naming the run kept."""
    kept: dict[tuple, Run] = {}
    copies = []
    for run in runs:
        key = (run.finished, run.seed, repr(sorted(run.settings.items())))
        first = kept.setdefault(key, run)
        if first is not run:
            copies.append(
                Skipped(
                    run.name,
                    f"the same experiment and seed as {first.name} (one seed counts once; "
                    "delete or move the copy, or give the rerun another seed)",
                )
            )
    first_ids = {id(r) for r in kept.values()}
    return [r for r in runs if id(r) in first_ids], copies


def find_runs(root: Path) -> list[Run]:
    """Every readable run directory under `root`, labelled (see `read_runs`)."""
    return read_runs(root)[0]


def experiment(config: dict) -> dict[str, Any]:
    """The config as dotted keys, less the fields that never make two runs different experiments.
    A field the config lacks takes this version's default (`with_defaults`)."""
    return {k: v for k, v in flatten(with_defaults(config)).items() if k not in NOT_EXPERIMENT}


def with_defaults(config: dict) -> dict:
    """The config with this version's defaults for the fields it lacks: a run trained before a
    field existed has its default's behaviour (an option is added with the old behaviour as its
    default), so that run and a newer one of the same experiment share a label (`policy` is
    missing from the one, `learned` in the other). As read where this version cannot read it."""
    from ramlab.runconfig import RunConfig

    try:
        return RunConfig.from_dict(config).to_dict()
    except Exception:  # a hand-edited file may fail in any way: it must never stop a report
        return config


def _label(runs: list[Run]) -> None:
    """Label each run by its model and the config fields that set it apart on its dataset."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.data, run.model), []).append(run)
    for (_, model), members in groups.items():
        flats = [r.settings for r in members]
        keys = sorted({k for f in flats for k in f if len({repr(g.get(k)) for g in flats}) > 1})
        for run, flat in zip(members, flats, strict=True):
            parts = [f"{k.split('.')[-1]}={_value(flat.get(k))}" for k in keys]
            run.label = f"{model} ({', '.join(parts)})" if parts else model


def _value(value: Any) -> str:
    if isinstance(value, tuple):
        return "-".join(map(str, value))
    return str(value)


def by_label(runs: Iterable[Run]) -> dict[str, list[Run]]:
    """Runs grouped by label, in order of model, label and seed."""
    groups: dict[str, list[Run]] = {}
    for run in sorted(runs, key=lambda r: (r.model, r.label, r.seed)):
        groups.setdefault(run.label, []).append(run)
    return groups


def links(runs: list[Run]) -> str:
    """Links to the runs' provenance rows."""
    return ", ".join(r.link() for r in runs)
