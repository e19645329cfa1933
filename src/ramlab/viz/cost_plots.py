"""Figures of compute cost: cost against image size (log–log), and test error against
FLOPs per image. Plain data in, one PNG out (as `ramlab.viz.curves`, whose styles they share)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import NullLocator

from ramlab.viz.curves import Style, _legend, _line, _positive, _style
from ramlab.viz.style import plt, save_figure

COST_PANELS = (
    ("flops", "FLOPs per image"),
    ("latency_ms", "latency at batch 1 (ms)"),
    ("peak_memory_mb", "peak memory (MiB)"),
)


def plot_cost(
    rows: list[dict],
    out: str | Path,
    *,
    title: str = "",
    styles: dict[str, Style] | None = None,
) -> Path:
    """Cost against image side, log–log: FLOPs, latency and peak memory, one line per model."""
    models = list(dict.fromkeys(row["model"] for row in rows))
    panels = [p for p in COST_PANELS if any(_positive(row.get(p[0])) for row in rows)]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 3.6), squeeze=False)
    for ax, (key, ylabel) in zip(axes.flat, panels, strict=False):
        for i, model in enumerate(models):
            style = _style(styles, model, i)
            points = sorted(
                (row["size"], row[key]) for row in rows if row["model"] == model and _positive(row.get(key))
            )
            if points:
                xs, ys = zip(*points, strict=True)
                _line(ax, xs, ys, style, model)
        ax.set_xscale("log")
        ax.set_yscale("log")
        sizes = sorted({row["size"] for row in rows})
        ax.set_xticks(sizes)
        ax.set_xticklabels([str(size) for size in sizes])
        ax.xaxis.set_minor_locator(NullLocator())  # the sizes are the x ticks; y keeps its minor
        # ticks, which carry the numbers on a panel spanning less than a decade
        ax.set_xlabel("image side (px)")
        ax.set_ylabel(ylabel)
    _legend(axes[0, 0])
    fig.suptitle(title or "Inference cost against image size (log–log)", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_error_vs_flops(
    points: list[tuple[str, float, list[float]]],
    out: str | Path,
    *,
    title: str = "",
    styles: dict[str, Style] | None = None,
) -> Path:
    """Accuracy per FLOP: test error (mean ± std over seeds) against FLOPs per image, log x."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for i, (label, flops, errs) in enumerate(points):
        style = _style(styles, label, i)
        values = np.asarray(errs, dtype=float)
        std = values.std(ddof=1) if len(values) > 1 else 0.0
        ax.errorbar(
            flops, values.mean(), yerr=std, fmt=style["marker"], color=style["color"], capsize=3, label=label
        )
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs per image (log scale)")
    ax.set_ylabel("test error (%)")
    ax.set_ylim(bottom=0)
    ax.set_title(title or "Error against compute", fontsize=10)
    _legend(ax, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside: points may be anywhere
    return save_figure(fig, out)


__all__ = ["plot_cost", "plot_error_vs_flops"]
