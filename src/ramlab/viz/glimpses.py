"""Glimpse trajectories of an attention model, drawn on test images (PNG grid, animated GIF).

One pass `model(images).rollout` gives every glimpse location l_t (B, T, 2) and the
anytime logits (B, T, C). Glimpse t covers, for each scale s, the square of side g·2^s
starting at pixel floor(c - g·2^s / 2 + 1/2), c = (l_t + 1) / 2 · (W, H): the same
patches the retina reads. Pixel i spans [i - 0.5, i + 0.5] in imshow's coordinates.

`where_glimpses_go` summarises the same rollouts over a whole split: per step, the share of
glimpse centres inside the digit's bounding box and the mean distance to it in pixels.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ramlab.errors import RamlabError
from ramlab.evaluate import EVAL_SEED, passes, protocol_of, split_randomness
from ramlab.files import atomic_write
from ramlab.viz.style import PALETTE, plt, save_figure

PATH_COLOUR, BOX_COLOUR, BBOX_COLOUR = PALETTE[0], PALETTE[3], PALETTE[2]
SCALE_STYLES = ("-", "--", ":", (0, (1, 3)))
BBOX_STYLE = "-."


@dataclass
class Trajectories:
    """What the figures draw: N test scenes and the model's glimpses on them."""

    images: np.ndarray  # (N, H, W) uint8
    labels: np.ndarray  # (N,)
    bboxes: np.ndarray  # (N, 4) x0, y0, x1, y1 in pixels, x1/y1 exclusive
    locations: np.ndarray  # (N, T, 2) (x, y) in [-1, 1]
    predictions: np.ndarray  # (N, T) the anytime prediction after each glimpse
    glimpse_size: int
    scales: int
    # Whether the answers before the last glimpse were trained (ce_all_steps); when not, the
    # figures mark them: the classifier only ever learned to answer after the last glimpse.
    early_answers_trained: bool = True

    @property
    def steps(self) -> int:
        return self.locations.shape[1]

    def centres(self) -> np.ndarray:
        """(N, T, 2) glimpse centres in pixels (continuous; pixel i spans [i, i + 1))."""
        height, width = self.images.shape[1:]
        return (self.locations + 1.0) * 0.5 * np.array([width, height])

    def boxes(self, index: int, step: int) -> list[tuple[int, int, int]]:
        """[(x0, y0, side)] of glimpse `step` of scene `index`, one per scale, in pixels."""
        cx, cy = self.centres()[index, step]
        out = []
        for s in range(self.scales):
            side = self.glimpse_size * 2**s
            out.append((math.floor(cx - side / 2 + 0.5), math.floor(cy - side / 2 + 0.5), side))
        return out


def _retina_of(model) -> tuple[int, int]:
    retina = getattr(model, "retina", None)
    if retina is None:
        raise RamlabError(
            f"glimpse trajectories need an attention model; {type(model).__name__} takes no glimpses"
        )
    return retina.glimpse_size, retina.scales


@torch.no_grad()
def trajectories(model, scenes, *, seed: int = EVAL_SEED) -> Trajectories:
    """Run the model once (policy mean, as in evaluation: the same first locations where they
    are random, and a random policy's same places, drawn on the CPU whatever the device, the
    whole split's evaluation's for a subset of it) on every scene of `scenes`."""
    from ramlab.data.loader import SceneLoader

    glimpse_size, scales = _retina_of(model)
    device = next(model.parameters()).device
    loader = SceneLoader(scenes, batch_size=len(scenes), device=device)
    batch = next(iter(loader))
    was_training = model.training
    model.eval()
    _, out = next(passes(model, batch.images, batch_size=len(batch.images), seed=seed, subset=scenes.subset))
    model.train(was_training)
    if out.rollout is None:
        raise RamlabError(f"{type(model).__name__} returned no rollout: it takes no glimpses")
    return Trajectories(
        images=np.asarray(scenes.images),
        labels=np.asarray(scenes.labels),
        bboxes=np.asarray(scenes.bboxes),
        locations=out.rollout.locations.cpu().numpy(),
        predictions=out.step_logits.argmax(dim=2).cpu().numpy(),
        glimpse_size=glimpse_size,
        scales=scales,
        early_answers_trained=bool(getattr(getattr(model, "config", None), "ce_all_steps", True)),
    )


UNTRAINED_MARK = "†"
UNTRAINED_NOTE = f"{UNTRAINED_MARK} not trained to answer yet (ce_all_steps: false)"


def _pred(traj: Trajectories, i: int, t: int) -> str:
    """'pred k' after glimpse t, marked where that answer was never trained."""
    mark = "" if traj.early_answers_trained or t == traj.steps - 1 else UNTRAINED_MARK
    return f"pred {int(traj.predictions[i, t])}{mark}"


def _draw_scene(ax, traj: Trajectories, i: int, *, upto: int, boxes_at: int | None, fontsize: float) -> None:
    """Scene i with its bbox, the path of glimpses 0..upto (numbered from 1), and every
    scale's box of glimpse `boxes_at` (None: the smallest box of every step)."""
    from matplotlib.patches import Rectangle

    ax.imshow(traj.images[i], cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    height, width = traj.images.shape[1:]
    x0, y0, x1, y1 = traj.bboxes[i].tolist()
    ax.add_patch(
        Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=1.3, ls=BBOX_STYLE, ec=BBOX_COLOUR)
    )
    steps = range(upto + 1) if boxes_at is None else [boxes_at]
    for t in steps:
        for s, (bx, by, side) in enumerate(traj.boxes(i, t)):
            if boxes_at is None and s > 0:
                break
            ax.add_patch(
                Rectangle(
                    (bx - 0.5, by - 0.5),
                    side,
                    side,
                    fill=False,
                    lw=1.0 if boxes_at is None else 1.4,
                    ls=SCALE_STYLES[s % len(SCALE_STYLES)],
                    ec=BOX_COLOUR,
                    alpha=0.5 if boxes_at is None else 0.9,
                )
            )
    centres = traj.centres()[i, : upto + 1] - 0.5  # imshow coordinates
    ax.plot(centres[:, 0], centres[:, 1], "-", color=PATH_COLOUR, lw=1.2)
    for t, (x, y) in enumerate(centres):
        ax.text(
            x,
            y,
            str(t + 1),
            fontsize=fontsize,
            ha="center",
            va="center",
            color="white",
            bbox={"boxstyle": "circle,pad=0.15", "fc": PATH_COLOUR, "ec": "none"},
        )
    # Boxes may reach beyond the canvas; keep the view on the image.
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])


def _verdict(traj: Trajectories, i: int, t: int) -> str:
    label, prediction = int(traj.labels[i]), int(traj.predictions[i, t])
    return f"true {label}, {_pred(traj, i, t)}" + ("" if label == prediction else " (wrong)")


# The PNG grid has a row per scene, 1.6 inches tall: 100 rows is a 160-inch figure, about
# what a viewer opens (and far from matplotlib's 2^16-pixel limit).
MAX_SCENES = 100


def draw_trajectories(traj: Trajectories, out: str | Path, *, title: str = "") -> Path:
    """PNG grid: one row per scene; the whole path first, then each glimpse with every scale."""
    n, steps = len(traj.labels), traj.steps
    cols = steps + 1
    fig, axes = plt.subplots(n, cols, figsize=(1.45 * cols, 1.6 * n), squeeze=False)
    for i in range(n):
        _draw_scene(axes[i, 0], traj, i, upto=steps - 1, boxes_at=None, fontsize=6)
        axes[i, 0].set_title(_verdict(traj, i, steps - 1), fontsize=8)
        for t in range(steps):
            ax = axes[i, t + 1]
            _draw_scene(ax, traj, i, upto=t, boxes_at=t, fontsize=6)
            if i == 0:
                ax.set_title(f"glimpse {t + 1}", fontsize=8)
            ax.text(
                0.03,
                0.03,
                _pred(traj, i, t),
                transform=ax.transAxes,
                fontsize=7,
                color="black",
                bbox={"fc": "white", "ec": "none", "alpha": 0.8, "pad": 1},
            )
    if title:
        fig.suptitle(title, fontsize=10)
    _legend(fig, traj, ncol=min(cols, 3 + traj.scales))
    return save_figure(fig, out)


def _legend(fig, traj: Trajectories, *, ncol: int, anchor=(0.5, 0.04), loc: str = "upper center") -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=PATH_COLOUR, marker="o", lw=1.2, label="glimpse path (numbered)")]
    for s in range(traj.scales):
        side = traj.glimpse_size * 2**s
        handles.append(
            Line2D([], [], color=BOX_COLOUR, ls=SCALE_STYLES[s % len(SCALE_STYLES)], label=f"{side} px patch")
        )
    handles.append(Line2D([], [], color=BBOX_COLOUR, ls=BBOX_STYLE, label="digit bounding box"))
    if not traj.early_answers_trained:
        handles.append(Line2D([], [], ls="none", label=UNTRAINED_NOTE))
    # Below the axes: the tight bounding box of savefig grows to hold it.
    fig.legend(handles=handles, loc=loc, ncol=ncol, fontsize=8, frameon=False, bbox_to_anchor=anchor)


def _frame(traj: Trajectories, t: int, indices: list[int], title: str) -> np.ndarray:
    cols = math.ceil(math.sqrt(len(indices)))
    rows = math.ceil(len(indices) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, indices, strict=False):
        ax.axis("on")
        _draw_scene(ax, traj, i, upto=t, boxes_at=t, fontsize=7)
        ax.set_title(_verdict(traj, i, t), fontsize=9)
    fig.suptitle(f"{title}glimpse {t + 1} of {traj.steps}", fontsize=10)
    _legend(fig, traj, ncol=2, anchor=(0.5, 0.0), loc="lower center")
    height = 2.4 * rows + 0.3  # inches, as in the figsize above
    legend_rows = math.ceil((traj.scales + 2 + (not traj.early_answers_trained)) / 2)
    fig.subplots_adjust(bottom=(0.15 + 0.17 * legend_rows) / height, top=1 - 0.45 / height)
    buffer = io.BytesIO()
    # Not tight: every frame keeps the same size, as a GIF needs.
    fig.savefig(buffer, format="png", dpi=80, bbox_inches=None)
    plt.close(fig)
    buffer.seek(0)
    from PIL import Image

    return np.asarray(Image.open(buffer).convert("RGB"))


def animate_trajectories(
    traj: Trajectories, out: str | Path, *, count: int = 9, title: str = "", ms_per_step: int = 700
) -> Path:
    """Animated GIF: a grid of scenes, one frame per glimpse (all scales' boxes, the path so
    far, the prediction after that glimpse); the last frame is held longer."""
    from PIL import Image

    indices = list(range(min(count, len(traj.labels))))
    prefix = f"{title} · " if title else ""
    frames = [Image.fromarray(_frame(traj, t, indices, prefix)) for t in range(traj.steps)]
    durations = [ms_per_step] * (len(frames) - 1) + [ms_per_step * 3]
    out = Path(out)
    atomic_write(  # a killed process leaves no truncated GIF for a report to show
        out,
        lambda f: frames[0].save(
            f, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0
        ),
    )
    return out


def draw_run_glimpses(
    run_dir: str | Path,
    *,
    png: str | Path,
    gif: str | Path | None = None,
    count: int = 6,
    split: str = "test",
    device: str = "cpu",
) -> Trajectories:
    """Draw the glimpses of a run's best model on `count` scenes of its data's `split` (val or
    test; a fixed random subset, the same for every run)."""
    from ramlab.data.datasets import load_split
    from ramlab.run import load_run, refuse_unread_test

    config, model = load_run(run_dir, device=device)
    refuse_unread_test(run_dir, config, split)
    scenes = load_split(config.data, split, seed=config.train.data_seed, limit=count)
    traj = trajectories(model, scenes)
    title = f"{config.model} on {config.data} ({split}), {traj.steps} glimpses, seed {config.train.seed}"
    draw_trajectories(traj, png, title=title)
    if gif:
        animate_trajectories(traj, gif, count=min(count, 9), title=title)
    return traj


@torch.no_grad()
def where_glimpses_go(model, loader, *, seed: int = EVAL_SEED) -> dict[str, list[float] | int | str]:
    """Per glimpse step over a split: % of centres inside the digit's bbox, and the mean
    distance from centre to bbox in pixels (0 inside), from the rollouts `evaluate` makes (its
    random first locations, drawn on the CPU whatever the device), with the scene count and
    the protocol (`evaluate.protocol_of`: the policy's mean, or a random policy's places, one
    rollout)."""
    _retina_of(model)
    was_training = model.training
    model.eval()
    draws = split_randomness(
        model, loader.num_samples, sample=False, seed=seed, device=loader.device, subset=loader.subset
    )
    inside, distance, count = None, None, 0
    for batch in loader:
        rows = slice(count, count + len(batch))
        randomness = tuple(None if d is None else d[rows] for d in draws)
        rollout = model(batch.images, sample=False, randomness=randomness).rollout
        height, width = rollout.image_size
        centre = (rollout.locations + 1.0) * 0.5 * rollout.locations.new_tensor([width, height])  # (B, T, 2)
        low, high = batch.bboxes[:, None, :2], batch.bboxes[:, None, 2:]
        gap = torch.clamp(low - centre, min=0) + torch.clamp(centre - high, min=0)  # (B, T, 2)
        dist = gap.norm(dim=2)  # (B, T)
        step_inside = (dist == 0).double().sum(0)
        step_distance = dist.double().sum(0)
        inside = step_inside if inside is None else inside + step_inside
        distance = step_distance if distance is None else distance + step_distance
        count += len(batch)
    model.train(was_training)
    return {
        "inside_bbox_percent": (inside * 100.0 / count).tolist(),
        "distance_to_bbox_px": (distance / count).tolist(),
        "count": count,
        "protocol": protocol_of(model, sample=False, rollouts=1),
    }


__all__ = [
    "Trajectories",
    "animate_trajectories",
    "draw_run_glimpses",
    "draw_trajectories",
    "trajectories",
    "where_glimpses_go",
]
