"""Validation error against training wall time and against rollouts seen, one line per run."""

from __future__ import annotations

from pathlib import Path

from ramlab.progress import CurvePoint
from ramlab.viz.curves import _legend, _line, series_styles
from ramlab.viz.style import plt, save_figure


def plot_time_to_accuracy(
    curves: dict[str, list[CurvePoint]],
    out: str | Path,
    *,
    targets: dict[str, float] | None = None,
    title: str = "",
) -> Path:
    """Two panels (wall time in minutes, rollouts in millions), log-scaled error; `targets`
    draws horizontal reference lines (e.g. {"paper": 1.22})."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    styles = series_styles(curves)
    for label, curve in curves.items():
        timed = [p for p in curve if p.seconds is not None]
        counted = [p for p in curve if p.rollouts is not None]
        _line(axes[0], [p.seconds / 60 for p in timed], [p.error for p in timed], styles[label], label, ms=2)
        _line(
            axes[1],
            [p.rollouts / 1e6 for p in counted],
            [p.error for p in counted],
            styles[label],
            label,
            ms=2,
        )
    for ax, xlabel in zip(axes, ("training wall time (min)", "rollouts seen (millions)"), strict=True):
        for name, value in (targets or {}).items():
            ax.axhline(value, color="grey", lw=0.8, ls="--")
            ax.annotate(
                name, (1.0, value), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=8
            )
        ax.set_xlabel(xlabel)
        ax.set_yscale("log")
    axes[0].set_ylabel("validation error (%)")
    _legend(axes[1])
    if title:
        fig.suptitle(title)
    return save_figure(fig, out)
