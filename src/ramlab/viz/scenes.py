"""A grid of scenes with their labels and digit bounding boxes."""

from __future__ import annotations

import math
from pathlib import Path

from ramlab.data.scenes import Scenes
from ramlab.viz.style import PALETTE, plt, save_figure

# 400 scenes make a 20 × 20 grid, a 38 × 40-inch figure; beyond it a figure is no longer
# something to look at (and matplotlib draws every axes one by one).
MAX_SCENES = 400


def draw_scenes(scenes: Scenes, out: str | Path, *, count: int = 16, title: str = "") -> Path:
    """Save a PNG grid of the first `count` scenes, each with its label and bbox."""
    from matplotlib.patches import Rectangle

    count = min(count, len(scenes))
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.0 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= count:
            continue
        ax.imshow(scenes.images[i], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        x0, y0, x1, y1 = scenes.bboxes[i].tolist()
        # Pixel i covers [i - 0.5, i + 0.5] in imshow's coordinates.
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=1.2, ec=PALETTE[1]))
        ax.set_title(f"label {int(scenes.labels[i])}", fontsize=9)
    if title:
        fig.suptitle(title)
    return save_figure(fig, out)
