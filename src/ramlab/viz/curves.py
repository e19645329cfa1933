"""Curves of the study: anytime error, training, robustness, rewards (cost: `cost_plots`).

Every function takes plain data (lists and dicts read from run files, validation curves as
`ramlab.progress.CurvePoint`s), writes one PNG and returns its path. Axes carry their units;
a series keeps its colour across figures when the caller passes the same `styles` (see
`series_styles`); the palette is Okabe–Ito, and past its eight colours series also differ
by line style, so figures stay readable in grey print.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ramlab.progress import CurvePoint
from ramlab.shifts import SHIFTS
from ramlab.sweeps import errors_by_level, training_level
from ramlab.viz.style import PALETTE, plt, save_figure

LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

Style = dict[str, Any]


# Okabe–Ito order with its yellow last: yellow lines are faint on white paper.
COLOURS = tuple(PALETTE[i] for i in (0, 1, 2, 3, 4, 5, 7, 6))


def series_styles(labels: Iterable[str]) -> dict[str, Style]:
    """A colour, line style and marker per label, stable in the order given."""
    styles = {}
    for i, label in enumerate(dict.fromkeys(labels)):
        styles[label] = {
            "color": COLOURS[i % len(COLOURS)],
            "linestyle": LINE_STYLES[(i // len(COLOURS)) % len(LINE_STYLES)],
            "marker": MARKERS[(i + i // len(COLOURS)) % len(MARKERS)],  # label i+8: another marker too
        }
    return styles


def _style(styles: dict[str, Style] | None, label: str, index: int) -> Style:
    if styles and label in styles:
        return styles[label]
    return series_styles([f"#{i}" for i in range(index + 1)])[f"#{index}"]


def _mean_std(rows: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (sample) std over seeds, point by point, as long as the longest series: each
    point over the seeds that reach it (a run that stopped early, a seed evaluated with
    fewer glimpses); std 0 where one seed does."""
    longest = max(len(row) for row in rows)
    array = np.full((len(rows), longest), np.nan)
    for i, row in enumerate(rows):
        array[i, : len(row)] = row
    count = np.sum(~np.isnan(array), axis=0)
    mean = np.nansum(array, axis=0) / count
    spread = np.nansum((array - mean) ** 2, axis=0)
    std = np.where(count > 1, np.sqrt(spread / np.maximum(count - 1, 1)), 0.0)
    return mean, std


def _line(ax, x, y, style: Style, label: str, *, ms: int = 4) -> None:
    """One series in its style: colour, line style and marker."""
    ax.plot(x, y, color=style["color"], ls=style["linestyle"], marker=style["marker"], ms=ms, label=label)


def _mean_band(ax, x, rows: Sequence[Sequence[float]], style: Style, label: str, *, ms: int = 4) -> None:
    """The mean of `rows` against `x`, with a ±1 std band when there are several rows."""
    mean, std = _mean_std(rows)
    _line(ax, x, mean, style, label, ms=ms)
    if len(rows) > 1:
        ax.fill_between(x, mean - std, mean + std, color=style["color"], alpha=0.15, lw=0)


LEGEND_WIDTH = 40
"""Characters a legend line holds: a label of many settings wraps instead of widening the
figure until its plots are slivers."""


def _legend(ax, **kwargs) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        wrapped = [textwrap.fill(label, LEGEND_WIDTH, break_on_hyphens=False) for label in labels]
        ax.legend(handles, wrapped, fontsize=8, **kwargs)


def plot_anytime(
    curves: dict[str, list[list[float]]],
    out: str | Path,
    *,
    title: str = "",
    styles: dict[str, Style] | None = None,
) -> Path:
    """Test error after each glimpse. curves: label -> per-seed lists of per-step error (%).

    A one-step series (a CNN) is drawn as a horizontal reference line.
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    longest = max((len(row) for rows in curves.values() for row in rows), default=1)
    for i, (label, rows) in enumerate(curves.items()):
        if not rows:
            continue
        style = _style(styles, label, i)
        n = f" (n={len(rows)})" if len(rows) > 1 else ""
        if len(rows[0]) == 1:  # a one-shot model: one error whatever the glimpse count
            ax.axhline(
                _mean_std(rows)[0][0], color=style["color"], ls="--", lw=1.2, label=f"{label}{n} (one-shot)"
            )
            continue
        _mean_band(ax, np.arange(1, max(map(len, rows)) + 1), rows, style, f"{label}{n}")
    ax.set_xlabel("glimpses taken")
    ax.set_ylabel("test error (%)")
    ax.set_xticks(range(1, longest + 1))
    ax.set_ylim(bottom=0)
    ax.set_title(title or "Anytime prediction: error after each glimpse", fontsize=10)
    _legend(ax)
    return save_figure(fig, out)


TRAINING_PANELS = (  # (metric, y label with unit, panel title)
    ("train/loss", "loss (per batch)", "training loss (the model's objective)"),
    ("error", "error (%)", "validation (solid) and training (dotted) error"),
    ("policy/reward", "reward (reward units)", "mean total reward per episode"),
    ("policy/location_spread", "std of l (location units)", "spread of glimpse locations"),
)


def _series(records: list[dict], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for record in records:
        value = record.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            xs.append(record.get("epoch", len(xs)))
            ys.append(value)
    return xs, ys


def _smooth(values: list[float], width: int) -> np.ndarray:
    if width <= 1 or len(values) < width:
        return np.asarray(values, dtype=float)
    kernel = np.ones(width) / width
    padded = np.pad(np.asarray(values, dtype=float), (width // 2, width - 1 - width // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")


def plot_training(
    runs: list[tuple[str, list[dict]]],
    out: str | Path,
    *,
    title: str = "",
    styles: dict[str, Style] | None = None,
) -> Path:
    """Training curves from metrics.jsonl records, one line per run (label, records): loss,
    training and validation error, mean return, and where the policy looks (location
    spread; entropy when no spread is logged). Panels with no data say so."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4), squeeze=False)
    # The spread where any run logged it (runs that did not are left out of that panel, not
    # drawn in other units); else the policy's entropy, under its own labels.
    spread_key = "policy/location_spread"
    panels = TRAINING_PANELS
    if not any(_series(records, spread_key)[1] for _, records in runs):
        spread_key = "policy/entropy"
        panels = (*TRAINING_PANELS[:3], (spread_key, "entropy (nats)", "entropy of the location policy"))
    seen: set[str] = set()
    for i, (label, records) in enumerate(runs):
        style = _style(styles, label, i)
        legend = None if label in seen else label
        seen.add(label)
        for ax, (key, _, _) in zip(axes.flat, TRAINING_PANELS, strict=True):
            if key == "error":
                xs, ys = _series(records, "val/error")
                # validation solid whatever the label's line style (dotted is training's)
                ax.plot(
                    xs, ys, color=style["color"], ls="-", marker=style["marker"], ms=3, lw=1.3, label=legend
                )
                xs, ys = _series(records, "train/error")
                ax.plot(xs, _smooth(ys, 5), color=style["color"], ls=":", lw=1.0)
                continue
            if key == "policy/location_spread":
                key = spread_key
            xs, ys = _series(records, key)
            if ys:
                ax.plot(xs, _smooth(ys, 5), color=style["color"], ls=style["linestyle"], lw=1.2, label=legend)
    for ax, (key, ylabel, panel) in zip(axes.flat, panels, strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(panel, fontsize=9)
        if not ax.lines:
            ax.text(0.5, 0.5, "not logged by these models", transform=ax.transAxes, ha="center", color="0.4")
        if key == "error":
            ax.set_ylim(bottom=0)
    _legend(axes[0, 0])
    fig.suptitle(title or "Training curves", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, out)


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def plot_robustness(
    sweeps: dict[str, dict[str, list[dict]]],
    out: str | Path,
    *,
    title: str = "",
    styles: dict[str, Style] | None = None,
    split: str = "test",
) -> Path:
    """Error against shift level, one panel per shift, one line per label: at each level, the
    mean ± std over the seeds swept there (`ramlab.sweeps.errors_by_level`). sweeps: shift ->
    label -> [robustness.json entries], of one kind (`sweep_kind`); every entry's training level
    is marked with a grey band (or line). `split` names the digits in the labels."""
    names = list(sweeps)
    cols = min(3, max(1, len(names)))
    rows_ = math.ceil(max(1, len(names)) / cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(4.3 * cols, 3.4 * rows_), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names, strict=False):
        marked = set()  # each model's training level, each marked once
        for i, (label, entries) in enumerate(sweeps[name].items()):
            per_level = errors_by_level(entries)
            style = _style(styles, label, i)
            levels = np.asarray(list(per_level), dtype=float)
            mean = np.asarray([np.mean(v) for v in per_level.values()])
            std = np.asarray([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in per_level.values()])
            n = f" (n={len(entries)})" if len(entries) > 1 else ""
            _line(ax, levels, mean, style, f"{label}{n}")
            if len(entries) > 1:
                ax.fill_between(levels, mean - std, mean + std, color=style["color"], alpha=0.15, lw=0)
            for trained in {training_level(entry) for entry in entries} - {None} - marked:
                marked.add(trained)
                if isinstance(trained, tuple):
                    ax.axvspan(*trained, color="0.5", alpha=0.15, lw=0)
                else:
                    ax.axvline(trained, color="0.5", ls=":", lw=1.0)
        label = SHIFTS[name].label if name in SHIFTS else name  # today's words, not a file's
        ax.set_xlabel(label)
        ax.set_ylabel(f"{split} error (%)")
        ax.set_ylim(bottom=0)
        ax.set_title(name, fontsize=10)
    if names:
        _legend(axes.flat[0])
    fig.suptitle(
        title or f"Robustness: {split} error under shifts not seen in training (grey: training levels)",
        fontsize=11,
    )
    fig.tight_layout()
    return save_figure(fig, out)


def plot_rewards(
    errors: dict[str, list[float]],
    out: str | Path,
    *,
    val_curves: dict[str, list[list[CurvePoint]]] | None = None,
    inside: dict[str, list[list[float]]] | None = None,
    title: str = "",
    styles: dict[str, Style] | None = None,
) -> Path:
    """Reward structures compared: test error per reward (every seed, mean ± std); learning
    speed (validation error per epoch, mean over seeds); where the glimpses go (% of
    glimpse centres inside the digit's bounding box, per step)."""
    labels = list(errors)
    fig = plt.figure(figsize=(10, 3.2 + 0.35 * len(labels)), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=[0.3 * len(labels) + 0.8, 3.0])
    # Seeds as dots, mean ± std as a bar, one row per reward: long labels stay readable.
    ax = fig.add_subplot(grid[0, :])
    for i, label in enumerate(labels):
        style = _style(styles, label, i)
        values = np.asarray(errors[label], dtype=float)
        ax.plot(
            values,
            np.full(len(values), i),
            ls="none",
            marker=style["marker"],
            color=style["color"],
            alpha=0.6,
            ms=6,
        )
        std = values.std(ddof=1) if len(values) > 1 else 0.0
        ax.errorbar(
            values.mean(), i - 0.25, xerr=std, fmt="|", ms=10, color=style["color"], capsize=4, lw=1.5
        )
    low = min(min(v) for v in errors.values())
    high = max(max(v) for v in errors.values())
    pad = max(0.0, 5.0 - (high - low)) / 2 + 0.5  # a span of >= 5 points: no zoom into seed noise
    ax.set_xlim(max(0.0, low - pad), min(100.0, high + pad))
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels([f"{label} (n={len(errors[label])})" for label in labels], fontsize=8)
    ax.set_ylim(len(labels) - 0.5, -0.7)
    ax.set_xlabel("test error (%)")
    ax.set_title("error per reward: every seed (dots), mean ± std (bar below)", fontsize=9)
    axes = [fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])]
    column = 0
    if val_curves:
        ax = axes[column]
        column += 1
        for i, (label, runs) in enumerate(val_curves.items()):
            style = _style(styles, label, i)
            runs = [run for run in runs if run]
            if not runs:
                continue
            epochs = [point.epoch for point in max(runs, key=len)]
            _mean_band(ax, epochs, [[point.error for point in run] for run in runs], style, label, ms=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation error (%)")
        ax.set_title("learning speed (each epoch: the seeds that trained it)", fontsize=9)
        if not ax.lines:
            ax.text(0.5, 0.5, "no validation curves logged", transform=ax.transAxes, ha="center", color="0.4")
        _legend(ax)
    if inside:
        ax = axes[column]
        column += 1
        for i, (label, runs) in enumerate(inside.items()):
            style = _style(styles, label, i)
            if not runs:
                continue
            mean, _ = _mean_std(runs)
            steps = np.arange(1, len(mean) + 1)
            _line(ax, steps, mean, style, label)
            ax.set_xticks(steps)
        ax.set_xlabel("glimpse")
        ax.set_ylabel("centres inside the digit's box (%)")
        ax.set_ylim(0, 100)
        ax.set_title("where the glimpses go (mean over seeds)", fontsize=9)
    for ax in axes[column:]:
        ax.axis("off")
    fig.suptitle(title or "Reward structures", fontsize=11)
    return save_figure(fig, out)


__all__ = [
    "plot_anytime",
    "plot_rewards",
    "plot_robustness",
    "plot_training",
    "series_styles",
]
