"""Figures say what they draw (found by a review): no two series of a figure look alike, a
panel's labels name the quantity it plots, an empty panel says so, and a figure is written
whole or not at all."""

from __future__ import annotations

import pytest
from PIL import Image

from ramlab.viz import curves
from ramlab.viz.style import plt, save_figure


def test_sixteen_series_look_different_even_without_their_line_style():
    # labels i and i+8 shared colour and marker: told apart by the dash alone, which the
    # validation line, the error-vs-FLOPs points and the rewards' seed dots do not draw
    styles = curves.series_styles([f"s{i}" for i in range(16)])
    looks = {(s["color"], s["marker"]) for s in styles.values()}
    assert len(looks) == 16


def test_the_spread_panel_names_what_it_plots(tmp_path, monkeypatch):
    drawn = {}
    close = plt.close

    def keep(fig):
        drawn["axes"] = fig.axes
        close(fig)

    monkeypatch.setattr(curves, "save_figure", lambda fig, out: keep(fig) or out)
    spread = [{"epoch": 1, "train/loss": 1.0, "policy/location_spread": 0.3, "policy/entropy": 1.7}]
    entropy_only = [{"epoch": 1, "train/loss": 1.0, "policy/entropy": 1.7}]
    curves.plot_training([("old", entropy_only)], tmp_path / "a.png")
    panel = drawn["axes"][3]
    assert panel.get_ylabel() == "entropy (nats)" and "entropy" in panel.get_title()
    curves.plot_training([("new", spread), ("old", entropy_only)], tmp_path / "b.png")
    panel = drawn["axes"][3]
    assert panel.get_ylabel() == "std of l (location units)"
    assert [list(line.get_ydata()) for line in panel.lines] == [[0.3]]  # not the other run's entropy


def test_an_empty_learning_speed_panel_says_so(tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(curves, "save_figure", lambda fig, out: drawn.setdefault("fig", fig) and out)
    curves.plot_rewards({"a": [10.0], "b": [9.0]}, tmp_path / "r.png", val_curves={"a": [], "b": []})
    panel = drawn["fig"].axes[1]
    assert [t.get_text() for t in panel.texts] == ["no validation curves logged"]
    plt.close(drawn["fig"])


def test_a_figure_is_written_whole_or_not_at_all(tmp_path):
    out = tmp_path / "f.png"
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    save_figure(fig, out)
    before = out.read_bytes()
    fig, ax = plt.subplots()

    def dies(f, **kwargs):
        f.write(b"\x89PNG half")
        raise KeyboardInterrupt

    fig.savefig = dies
    with pytest.raises(KeyboardInterrupt):
        save_figure(fig, out)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]
    with Image.open(out) as image:
        image.verify()


def test_a_long_label_wraps_in_the_legend_and_the_figure_keeps_its_width(tmp_path):
    # A report's label lists every setting that differs: ~30 key=value pairs.
    long = "ram (" + ", ".join(f"setting_{i}={i / 7:.4f}" for i in range(30)) + ")"
    curves.plot_anytime({long: [[50.0, 20.0, 10.0]], "ram": [[40.0, 20.0, 12.0]]}, tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as image:
        width = image.size[0]
    curves.plot_anytime({"short": [[50.0, 20.0, 10.0]], "ram": [[40.0, 20.0, 12.0]]}, tmp_path / "b.png")
    with Image.open(tmp_path / "b.png") as image:
        assert width < 1.3 * image.size[0]  # unwrapped: several times as wide
