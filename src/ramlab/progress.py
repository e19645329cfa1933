"""A run's progress: when its validation error first reached a target, and its means over
windows of epochs.

A run's metrics.jsonl has one `val/error` line per epoch, with the training wall time so far
(`perf/train_seconds`: the steps and each epoch's fresh scenes; validation and checkpoints
excluded; a resumed run's compilation counted again) and the rollouts seen so far (`train/rollouts`:
images x M rollouts). `val_curve` turns those lines into points; `time_to` finds the first
point at or below a target error; `window_mean` averages a validation metric over epochs A-B
and `train_by_epoch` a metric of the logged training steps of each epoch. Pure functions of the
records, so they are tested on hand-written ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ramlab.errors import RamlabError
from ramlab.metrics import read_metrics


@dataclass(frozen=True)
class CurvePoint:
    epoch: float
    seconds: float | None  # training wall time so far; None in logs that predate it
    rollouts: int | None  # rollouts seen so far; None in logs that predate it
    error: float  # validation error (%)


def val_curve(records: list[dict]) -> list[CurvePoint]:
    """The validation points of a metrics log, in order."""
    return [
        CurvePoint(
            epoch=r.get("epoch", 0),
            seconds=r.get("perf/train_seconds"),
            rollouts=r.get("train/rollouts"),
            error=float(r["val/error"]),
        )
        for r in records
        if "val/error" in r
    ]


@dataclass(frozen=True)
class RunFiles:
    """Where a run's curve, config and resume history are: in a run directory
    (metrics.jsonl, config.yaml, history.jsonl), or beside a committed curve `NAME-val.jsonl`
    or `NAME-val-partial.jsonl` (NAME-config.yaml, else the config inside NAME-result.json or
    NAME.json, else NAME.yaml; NAME-history.jsonl), as
    results/recipes/ keeps finished runs. A config or history that is not there is None; a
    missing curve is an error that says what to give."""

    curve: Path
    config: Path | None
    history: Path | None

    @classmethod
    def find(cls, path: str | Path) -> RunFiles:
        path = Path(path)
        if path.name == "metrics.jsonl" and path.is_file():  # a run directory's own curve
            path = path.parent
        if path.is_dir():
            names = (path / "metrics.jsonl", [path / "config.yaml"], path / "history.jsonl")
        else:
            stem = curve_stem(path.name)
            names = (
                path,
                # as results/ names them: a config, else the config a result or NAME.yaml holds
                [
                    path.with_name(f"{stem}{end}")
                    for end in ("-config.yaml", "-result.json", ".json", ".yaml")
                ],
                path.with_name(f"{stem}-history.jsonl"),
            )
        curve, configs, history = names
        if not curve.is_file():
            if path.is_dir():
                raise RamlabError(f"{path} has no metrics.jsonl (yet): has its run started?")
            raise RamlabError(
                f"{path}: no such run: give a run directory (with its metrics.jsonl) or a "
                "committed curve NAME-val.jsonl, e.g. results/recipes/translated60-val.jsonl"
            )
        config = next((c for c in configs if c.is_file()), None)
        return cls(curve=curve, config=config, history=history if history.is_file() else None)


def labelled_run(text: str) -> tuple[str, Path]:
    """`LABEL=PATH` -> (LABEL, PATH); a bare PATH is labelled with its name (a committed
    curve `NAME-val.jsonl` with NAME)."""
    label, sep, path = text.partition("=")
    return (label, Path(path)) if sep else (curve_stem(Path(text).name), Path(text))


def curve_stem(name: str) -> str:
    """NAME of a committed curve `NAME-val.jsonl` or `NAME-val-partial.jsonl` (a run that did
    not finish), whose config and history sit beside it as NAME-config.yaml, NAME-history.jsonl."""
    for suffix in ("-val.jsonl", "-val-partial.jsonl"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def read_val_curve(run_dir: str | Path) -> list[CurvePoint]:
    path = Path(run_dir)
    return val_curve(read_metrics(path / "metrics.jsonl" if path.is_dir() else path))


def time_to(curve: list[CurvePoint], target: float) -> CurvePoint | None:
    """The first point whose validation error is at or below `target` (%), or None."""
    return next((point for point in curve if point.error <= target), None)


def best(curve: list[CurvePoint]) -> CurvePoint | None:
    return min(curve, key=lambda point: point.error, default=None)


def setting_over_resumes(initial: object, history: list[dict], key: str) -> list:
    """The values a run's `train` setting `key` took, in order, from its config's value and its
    history.jsonl lines (each resume's `changed: {key: [old, new]}`): `[1, 2]` for a run
    started at 1 thread and resumed at 2. With no change, `[initial]`."""
    changes = [line["changed"][key] for line in history if key in line.get("changed", {})]
    if not changes:
        return [initial]
    return [changes[0][0]] + [new for _, new in changes]


def val_by_epoch(records: list[dict], key: str = "val/error") -> dict[int, float]:
    """Each epoch's validation `key` (the last line of an epoch wins), from a log's lines."""
    return {int(r["epoch"]): float(r[key]) for r in records if "val/error" in r and key in r}


def train_by_epoch(records: list[dict], key: str = "train/error") -> dict[int, float]:
    """Each epoch's mean of its logged training lines' `key` (`train/error`: the policy
    sampled, the raw weights; or a loss, a reward or a gradient norm: `loss/reinforce`,
    `policy/reward`, `grad/core`). Epochs are numbered as validation numbers them: the steps
    logged while epoch 1 ran (fractional epochs above 0, up to and including its last step at
    1.0) belong to epoch 1."""
    steps: dict[int, list[float]] = {}
    for r in records:
        if key in r and "val/error" not in r:
            steps.setdefault(max(1, math.ceil(r["epoch"])), []).append(float(r[key]))
    return {epoch: sum(values) / len(values) for epoch, values in steps.items()}


def window_mean(by_epoch: dict[int, float], first: int, last: int) -> float | None:
    """The plain mean of a per-epoch value over epochs first..last (both included), skipping
    epochs the run has no value for; None when it has none in the window."""
    values = [by_epoch[epoch] for epoch in range(first, last + 1) if epoch in by_epoch]
    return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class EarlyStop:
    stop: int | None  # the epoch training ends after; None: the curve ends before the rule says stop
    best_epoch: int
    best_error: float  # the validation error of the checkpoint kept (%)


def training_ends(
    epoch: int,
    best_epoch: int,
    *,
    patience: int,
    epochs: int,
    train_seconds: float = 0.0,
    budget_minutes: float = 0.0,
) -> str | None:
    """The trainer's rule after epoch `epoch` (the epoch of the strictly lowest validation error
    so far `best_epoch`, 0 before any): "epochs" when every epoch is done, "early_stop" after
    `patience` epochs without a better error (0: never early), "time_budget" once
    `train_seconds` reach `budget_minutes` (0: no budget), None to go on."""
    if epoch >= epochs:
        return "epochs"
    if patience > 0 and best_epoch > 0 and epoch - best_epoch >= patience:
        return "early_stop"
    if budget_minutes > 0 and train_seconds >= 60 * budget_minutes:
        return "time_budget"
    return None


def early_stop_at(by_epoch: dict[int, float], patience: int, epochs: int) -> EarlyStop | None:
    """Where a run with this validation curve ends under `early_stop: patience` (0: never
    early) and `epochs`, by the trainer's rule (`training_ends`). The checkpoint kept
    is that lowest error's. `stop` is None when the curve ends before either happens (a run
    stopped by hand: what it would have done next is unknown); None for an empty curve."""
    best_error, best_epoch = math.inf, 0
    for epoch in sorted(by_epoch):
        if epoch > epochs:
            break
        if by_epoch[epoch] < best_error:
            best_error, best_epoch = by_epoch[epoch], epoch
        if training_ends(epoch, best_epoch, patience=patience, epochs=epochs):
            return EarlyStop(epoch, best_epoch, best_error)
    return EarlyStop(None, best_epoch, best_error) if best_epoch else None
