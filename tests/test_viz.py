"""Figures: glimpse boxes are the retina's patches, the PNG grid and the GIF, where glimpses go,
and every curve function writes a PNG without layout warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tiny
import torch
from PIL import Image

from ramlab.data.datasets import load_split
from ramlab.data.loader import SceneLoader
from ramlab.errors import RamlabError
from ramlab.models import build_model
from ramlab.progress import val_curve
from ramlab.viz import cost_plots, curves
from ramlab.viz.glimpses import animate_trajectories, draw_trajectories, trajectories, where_glimpses_go

TINY_RAM = {**tiny.TINY_RAM, "glimpses": 3}


@pytest.fixture
def ram():
    torch.manual_seed(0)
    return build_model("ram", TINY_RAM, image_size=(60, 60)).eval()


@pytest.fixture
def scenes(fake_mnist):
    return load_split("translated60", "test", limit=4)


def test_drawn_boxes_are_the_patches_the_retina_reads(ram, scenes):
    traj = trajectories(ram, scenes)
    assert traj.locations.shape == (4, 3, 2) and traj.predictions.shape == (4, 3)
    images = torch.from_numpy(scenes.images).float()[:, None] / 255.0  # (B, 1, H, W)
    pyramid = ram.retina.prepare(images)
    for t in range(3):
        location = torch.from_numpy(traj.locations[:, t]).float()
        seen = ram.retina.glimpse(pyramid, location).reshape(4, 2, 8, 8)  # (B, k, g, g)
        for i in range(4):
            x0, y0, side = traj.boxes(i, t)[0]  # the smallest scale: pixels as they are
            padded = np.pad(images[i, 0].numpy(), 8)
            crop = padded[y0 + 8 : y0 + 8 + side, x0 + 8 : x0 + 8 + side]
            np.testing.assert_allclose(seen[i, 0].numpy(), crop, atol=1e-6)
            assert traj.boxes(i, t)[1][2] == 16  # the next scale is twice as wide


def test_png_grid_and_gif(ram, scenes, tmp_path):
    traj = trajectories(ram, scenes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = draw_trajectories(traj, tmp_path / "g.png", title="tiny")
        gif = animate_trajectories(traj, tmp_path / "g.gif", count=4)
    assert png.read_bytes()[:4] == b"\x89PNG"
    with Image.open(gif) as image:
        assert image.n_frames == 3  # one frame per glimpse
        sizes = set()
        for frame in range(image.n_frames):
            image.seek(frame)
            sizes.add(image.size)
        assert len(sizes) == 1


def test_where_glimpses_go_counts_centres_inside_the_box(ram, scenes):
    loader = SceneLoader(scenes, batch_size=3)
    where = where_glimpses_go(ram, loader)
    assert where["count"] == 4
    assert where["protocol"] == "policy mean, one rollout"  # how the places were read, recorded
    assert len(where["inside_bbox_percent"]) == len(where["distance_to_bbox_px"]) == 3
    traj = trajectories(ram, scenes)
    centres = traj.centres()  # (N, T, 2)
    boxes = scenes.bboxes[:, None, :].astype(float)
    inside = (
        (centres[..., 0] >= boxes[..., 0])
        & (centres[..., 0] <= boxes[..., 2])
        & (centres[..., 1] >= boxes[..., 1])
        & (centres[..., 1] <= boxes[..., 3])
    )
    np.testing.assert_allclose(where["inside_bbox_percent"], inside.mean(axis=0) * 100, atol=1e-6)
    # The distance from each centre to its box (0 inside): x and y gaps outside the box's
    # edges, their Euclidean norm, averaged over the scenes at each glimpse.
    gap_x = np.maximum(boxes[..., 0] - centres[..., 0], 0) + np.maximum(centres[..., 0] - boxes[..., 2], 0)
    gap_y = np.maximum(boxes[..., 1] - centres[..., 1], 0) + np.maximum(centres[..., 1] - boxes[..., 3], 0)
    distance = np.hypot(gap_x, gap_y)
    assert (distance > 0).any()  # some glimpse lands off its digit, so the distances are tested
    np.testing.assert_allclose(where["distance_to_bbox_px"], distance.mean(axis=0), rtol=1e-5, atol=1e-5)


def test_a_model_without_glimpses_is_refused(scenes):
    resnet = build_model("resnet", {"widths": [4], "depths": [1], "strides": [1]}, image_size=(60, 60))
    with pytest.raises(RamlabError, match="takes no glimpses"):
        trajectories(resnet, scenes)


def test_every_curve_writes_a_png_without_warnings(tmp_path):
    styles = curves.series_styles(["a", "b"])
    assert styles["a"]["color"] != styles["b"]["color"]
    records = [
        {
            "epoch": 0.5,
            "train/loss": 2.0,
            "train/error": 80.0,
            "policy/reward": 0.1,
            "policy/location_spread": 0.3,
        },
        {"epoch": 1, "val/error": 60.0},
    ]
    sweep = {"levels": [0, 30], "error": [10.0, 20.0], "trained": [0.0, 0.0], "label": "rotation (degrees)"}
    cost = [
        {"model": m, "size": s, "flops": f, "latency_ms": 1.0, "peak_memory_mb": 0.5}
        for m, s, f in (("ram", 28, 1e6), ("ram", 60, 2e6), ("resnet", 28, 3e6), ("resnet", 60, 1.3e7))
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = [
            curves.plot_anytime(
                {"a": [[30.0, 20.0], [32.0, 18.0]], "b": [[15.0]]}, tmp_path / "1.png", styles=styles
            ),
            curves.plot_training([("a", records), ("b", records[1:])], tmp_path / "2.png", styles=styles),
            cost_plots.plot_cost(cost, tmp_path / "3.png"),
            curves.plot_robustness({"rotate": {"a": [sweep, sweep]}}, tmp_path / "4.png", styles=styles),
            curves.plot_rewards(
                {"a": [10.0, 12.0], "b": [9.0]},
                tmp_path / "5.png",
                val_curves={
                    "a": [val_curve([{"epoch": 1, "val/error": 50.0}, {"epoch": 2, "val/error": 40.0}])]
                },
                inside={"a": [[10.0, 60.0]]},
                styles=styles,
            ),
            cost_plots.plot_error_vs_flops([("a", 1e6, [10.0, 12.0])], tmp_path / "6.png", styles=styles),
        ]
    for path in paths:
        assert path.read_bytes()[:4] == b"\x89PNG"


def test_glimpses_cli(fake_mnist, tmp_path, capsys):
    from ramlab.cli import main
    from ramlab.runconfig import RunConfig
    from ramlab.trainer import Trainer

    train = {"epochs": 1, "batch_size": 8, "train_limit": 8, "eval_limit": 4, "threads": 1, "progress": False}
    for model, config in (("ram", TINY_RAM), ("resnet", {"widths": [4], "depths": [1], "strides": [1]})):
        run = RunConfig.from_dict(
            {"model": model, "data": "translated60", "train": train, "model_config": config}
        )
        Trainer(run, tmp_path / model, command="test").fit()

    png, gif = tmp_path / "g.png", tmp_path / "g.gif"
    args = ["glimpses", str(tmp_path / "ram"), "--out", str(png), "--gif", str(gif), "--count", "2"]
    assert main(args) == 0
    assert capsys.readouterr().out.split() == [str(png), str(gif)]
    assert png.read_bytes()[:4] == b"\x89PNG" and gif.read_bytes()[:4] == b"GIF8"
    assert main(["glimpses", str(tmp_path / "resnet"), "--out", str(png)]) == 2
    assert "takes no glimpses" in capsys.readouterr().err
    for bad, message in (
        (["--out", str(tmp_path / "g.txt")], "g.txt: give a file name ending in one of .avif, .eps"),
        (["--out", str(png), "--gif", str(tmp_path / "g.mp4")], "g.mp4: give a file name ending in .gif"),
        (["--out", str(gif), "--gif", str(gif)], "--out and --gif name one file: give each its own"),
        (["--out", str(png), "--count", "0"], "--count must be 1..100 (one figure row per scene), got 0"),
        (["--out", str(png), "--count", "101"], "--count must be 1..100 (one figure row per scene), got 101"),
    ):
        assert main(["glimpses", str(tmp_path / "ram"), *bad]) == 2
        assert message in capsys.readouterr().err


def test_mean_std_over_seeds_of_different_lengths_is_taken_point_by_point():
    # A seed that stopped early (or took fewer glimpses) counts where it has points.
    from ramlab.viz.curves import _mean_std

    mean, std = _mean_std([[1.0, 2.0, 3.0], [3.0, 4.0]])
    assert mean.tolist() == [2.0, 3.0, 3.0]
    assert std.tolist() == pytest.approx([2**0.5, 2**0.5, 0.0])
    mean, std = _mean_std([[5.0]])
    assert mean.tolist() == [5.0] and std.tolist() == [0.0]


def test_glimpse_figures_and_where_they_go_share_evaluates_random_first_locations(scenes):
    # They drew the first location from a generator on the model's device, evaluate from one
    # on the CPU: the same on a CPU, other locations on a GPU (tests/test_gpu.py checks there).
    from ramlab.evaluate import evaluate

    torch.manual_seed(0)
    ram = build_model("ram", {**TINY_RAM, "first_location": "random"}, image_size=(60, 60)).eval()
    where = where_glimpses_go(ram, SceneLoader(scenes, batch_size=3))
    evaluation = evaluate(ram, SceneLoader(scenes, batch_size=2))
    np.testing.assert_allclose(where["inside_bbox_percent"], evaluation.in_box, atol=1e-9)
    assert np.ptp(trajectories(ram, scenes).locations[:, 0]) > 0.1  # random, not the centre


def test_line_styles_never_contradict_the_captions(tmp_path, monkeypatch):
    # Labels 8-15 take the dashed style and 16+ the dotted: a RAM's validation curve read as a
    # one-shot model ("dashed: one-shot") or as a training curve ("training (dotted)").
    from ramlab.viz import curves

    figures = []
    monkeypatch.setattr(curves, "save_figure", lambda fig, out: figures.append(fig) or out)
    labels = [f"run{i}" for i in range(18)]
    styles = curves.series_styles(labels)
    assert styles["run9"]["linestyle"] != "-" and styles["run17"]["linestyle"] != "-"
    records = [
        {"epoch": 1, "val/error": 3.0, "train/error": 2.0},
        {"epoch": 2, "val/error": 2.0, "train/error": 1.0},
    ]
    curves.plot_training([(label, records) for label in labels], tmp_path / "t.png", styles=styles)
    error_panel = figures[-1].axes[1]
    validation = [line for line in error_panel.lines if line.get_label() in labels]
    assert len(validation) == 18 and {line.get_linestyle() for line in validation} == {"-"}
    curves.plot_anytime({"run9": [[5.0, 3.0]], "cnn": [[4.0]]}, tmp_path / "a.png", styles=styles)
    legend = [text.get_text() for text in figures[-1].axes[0].get_legend().get_texts()]
    assert legend == ["run9", "cnn (one-shot)"]


@pytest.mark.parametrize("ce_all_steps", [False, True])
def test_answers_before_the_last_glimpse_are_marked_where_training_never_asked_for_them(
    scenes, tmp_path, monkeypatch, ce_all_steps
):
    from matplotlib.text import Text

    from ramlab.viz import glimpses

    torch.manual_seed(0)
    model = build_model("ram", {**TINY_RAM, "ce_all_steps": ce_all_steps}, image_size=(60, 60)).eval()
    traj = trajectories(model, scenes)
    assert traj.early_answers_trained is ce_all_steps
    drawn: list[str] = []
    real = glimpses.save_figure

    def keep_texts(fig, out):
        drawn.extend(text.get_text() for text in fig.findobj(Text))
        return real(fig, out)

    monkeypatch.setattr(glimpses, "save_figure", keep_texts)
    draw_trajectories(traj, tmp_path / "g.png")
    answers = [text for text in drawn if text.startswith("pred ")]
    assert len(answers) == 4 * 3  # one per scene and glimpse
    marked = [text for text in answers if text.endswith(glimpses.UNTRAINED_MARK)]
    assert len(marked) == (0 if ce_all_steps else 4 * 2)  # all but the last glimpse's
    assert (glimpses.UNTRAINED_NOTE in drawn) is not ce_all_steps
    # The row's verdict is the last glimpse's answer: trained either way, never marked.
    verdicts = [text for text in drawn if text.startswith("true ")]
    assert len(verdicts) == 4 and not any(glimpses.UNTRAINED_MARK in text for text in verdicts)
