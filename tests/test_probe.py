"""The location probe: box centres, the ridge regression, and the probe on known states."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ramlab.cli import main
from ramlab.errors import RamlabError
from ramlab.models.ram import RAM, RAMConfig
from ramlab.probe import box_centres, location_probe, ridge_fit, ridge_predict

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "location_probe.py"


def test_box_centres_in_location_units_by_hand() -> None:
    boxes = torch.tensor([[0, 0, 60, 60], [0, 0, 30, 30], [45, 15, 60, 45]])
    centres = box_centres(boxes, (60, 60))
    # (x0 + x1) / W - 1: the whole canvas is centred at 0; its top-left quarter at -0.5.
    expected = [0.0, 0.0, -0.5, -0.5, 105 / 60 - 1, 0.0]  # (x, y) per box
    assert centres.flatten().tolist() == pytest.approx(expected)
    # Non-square: x over the width (100), y over the height (60).
    assert box_centres(torch.tensor([[10, 20, 20, 40]]), (60, 100)).flatten().tolist() == pytest.approx(
        [-0.7, 0.0]
    )


def test_ridge_fit_by_hand() -> None:
    x = torch.tensor([[1.0], [-1.0]])
    y = torch.tensor([[2.0], [0.0]])  # y = x + 1
    # Gram [[2, 0], [0, 2]], X^T y = [2, 2]: w = 2 / (2 + penalty), bias 1 (not penalised).
    assert ridge_fit(x, y, 0.0).flatten().tolist() == pytest.approx([1.0, 1.0])
    assert ridge_fit(x, y, 2.0).flatten().tolist() == pytest.approx([0.5, 1.0])
    assert ridge_predict(ridge_fit(x, y, 2.0), torch.tensor([[3.0]])).item() == pytest.approx(2.5)


class CentroidModel(nn.Module):
    """States = the centroid of each image's lit pixels, in location units (what a perfect
    state would hold); locations: x = 0.25 t at step t (the first glimpse at the centre)."""

    steps = 3

    def draw_randomness(self, images, *, sample, generator) -> tuple:
        return ()  # draws nothing

    def forward(self, images: torch.Tensor, *, sample: bool, randomness=None) -> SimpleNamespace:
        _, _, height, width = images.shape
        ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
        mass = images[:, 0].sum((1, 2))
        cx = (images[:, 0] * xs).sum((1, 2)) / mass * 2 / width - 1
        cy = (images[:, 0] * ys).sum((1, 2)) / mass * 2 / height - 1
        state = torch.stack([cx, cy], 1)[:, None].expand(-1, self.steps, -1)
        locations = torch.zeros(len(images), self.steps, 2)
        locations[:, :, 0] = 0.25 * torch.arange(self.steps)
        return SimpleNamespace(rollout=SimpleNamespace(states=state, locations=locations))


def test_a_state_that_holds_the_centre_probes_exactly_and_the_policy_is_scored_by_hand() -> None:
    generator = torch.Generator().manual_seed(0)
    n, side = 50, 20
    corner = torch.randint(0, side - 6, (n, 2), generator=generator)
    boxes = torch.cat([corner, corner + torch.randint(2, 7, (n, 2), generator=generator)], 1)
    images = torch.zeros(n, 1, side, side)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        images[i, 0, y0:y1, x0:x1] = 1.0
    rows = location_probe(CentroidModel(), images, boxes, fit_fraction=0.8, penalty=1e-9)
    assert [row.step for row in rows] == [1, 2, 3]
    assert all(row.probe_px == pytest.approx(0.0, abs=1e-6) for row in rows)
    # The state after glimpse t is scored by where glimpse t+1 looks: its distance to each
    # held-out box centre, in pixels (x = 0.25 (t+1) in location units, 2.5 (t+1) px right).
    centres_px = (boxes[40:, :2] + boxes[40:, 2:]).double() / 2
    for t in (0, 1):
        looks = torch.tensor([side / 2 + 0.25 * (t + 1) * side / 2, side / 2], dtype=torch.float64)
        expected = (centres_px - looks).norm(dim=1).median().item()
        assert rows[t].policy_px == pytest.approx(expected)
    assert rows[2].policy_px is None  # no glimpse after the last
    guess = box_centres(boxes[:40], (side, side)).mean(0) * side / 2
    expected_guess = ((box_centres(boxes[40:], (side, side)) * side / 2) - guess).norm(dim=1).median().item()
    assert rows[0].mean_guess_px == pytest.approx(expected_guess)


def test_the_probe_runs_on_a_ram_and_refuses_too_few_scenes() -> None:
    config = RAMConfig(glimpses=4, glimpse_size=4, scales=2, hidden=16, glimpse_hidden=8, location_hidden=8)
    model = RAM(config=config, image_size=(16, 16))
    images = torch.rand(20, 1, 16, 16)
    boxes = torch.tensor([[2, 3, 10, 12]]).repeat(20, 1)
    rows = location_probe(model.train(), images, boxes, batch_size=7)
    assert model.training  # left in the mode it was given in
    assert len(rows) == 4 and rows[-1].policy_px is None
    for row in rows[:-1]:  # distances in pixels on a 16 px canvas: finite, within its diagonal
        assert 0 <= row.probe_px <= 16 * 2**0.5 and 0 <= row.policy_px <= 16 * 2**0.5
    with pytest.raises(RamlabError, match="too few"):
        location_probe(model, images[:3], boxes[:3])


def test_the_script_probes_a_tiny_run_on_validation_and_refuses_its_unread_test_split(
    fake_mnist, tmp_path, monkeypatch, capsys
) -> None:
    run = tmp_path / "run"
    tiny = ["--data", "translated60", "--train-limit", "16", "--epochs", "1", "--batch-size", "8",
            "--glimpses", "2", "--glimpse-size", "8", "--scales", "2", "--glimpse-hidden", "8",
            "--location-hidden", "4", "--hidden", "12", "--device", "cpu", "--threads", "1",
            "--progress", "false", "--test", "false", "--out", str(run)]  # fmt: skip
    assert main(["train", "ram", *tiny]) == 0
    report = tmp_path / "probe.json"
    monkeypatch.setattr(sys, "argv", ["location_probe.py", str(run), "--json", str(report)])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    data = json.loads(report.read_text())
    assert data["split"] == "val"
    rows = data["runs"][str(run)]["rows"]
    assert len(rows) == 2  # one row per glimpse
    capsys.readouterr()
    # A tuning run's test split stays unread: refused before anything is probed.
    report.unlink()
    monkeypatch.setattr(
        sys, "argv", ["location_probe.py", str(run), "--split", "test", "--json", str(report)]
    )
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert stop.value.code == 2 and "trained with test: false (a tuning run)" in capsys.readouterr().err
    assert not report.exists()
