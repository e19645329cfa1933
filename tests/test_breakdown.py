"""The error breakdown: groups and bins by hand, outcomes of a model whose answers are known,
and the script end to end on a tiny trained run."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_cli_train import TINY
from torch import nn

from ramlab.breakdown import bins, grouped_errors, placement_offsets, rings, scene_outcomes, shared_errors
from ramlab.cli import main
from ramlab.data.datasets import resolve_spec
from ramlab.data.loader import SceneLoader
from ramlab.data.scenes import Scenes
from ramlab.evaluate import evaluate
from ramlab.models.ram import RAM, RAMConfig
from ramlab.robustness import robustness_sweep, shifted_scenes
from ramlab.shifts import SHIFTS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "error_breakdown.py"


def test_grouped_errors_by_hand() -> None:
    wrong = torch.tensor([True, False, False, True, True, False])
    groups = torch.tensor([0, 0, 1, 1, 1, 2])
    rows = grouped_errors(wrong, groups, ["a", "b", "c", "d"])
    assert [(r.group, r.scenes, r.wrong) for r in rows] == [
        ("a", 2, 1),
        ("b", 3, 2),
        ("c", 1, 0),
        ("d", 0, 0),
    ]
    assert rows[0].error == pytest.approx(50.0) and rows[1].error == pytest.approx(200 / 3)
    assert rows[3].error != rows[3].error  # an empty group has no error rate (nan)


def test_bins_are_half_open_with_an_open_last_bin() -> None:
    index, names = bins(torch.tensor([0.0, 4.99, 5.0, 9.0, 10.0, 30.0, -1.0]), [0, 5, 10])
    assert index.tolist() == [0, 0, 1, 1, 2, 2, 0]
    assert names == ["0-5", "5-10", "10+"]
    with pytest.raises(ValueError, match="ascending"):
        bins(torch.tensor([1.0]), [0, 5, 5])
    # On the values' device (a GPU's split): the edges were built on the CPU, an error there
    # (test_gpu.py runs it on CUDA; here a spy checks where the edges are made).
    seen = []
    bucketize = torch.bucketize

    def spy(values, edges, **options):
        seen.append((values.device, edges.device))
        return bucketize(values, edges, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "bucketize", spy)
        bins(torch.zeros(3, device="meta"), [0, 5, 10])
    assert seen == [(torch.device("meta"), torch.device("meta"))]


def test_shared_errors_by_hand() -> None:
    first = torch.tensor([True, True, False, False, True])
    second = torch.tensor([True, False, True, False, True])
    assert shared_errors(first, second) == {"both": 2, "first_only": 1, "second_only": 1}
    with pytest.raises(ValueError, match="different scenes"):
        shared_errors(first, second[:3])


class FixedModel(nn.Module):
    """Predicts class 3 for every scene and looks at the canvas centre, then at (x, y) = (0.5, 0.5)."""

    def draw_randomness(self, images, *, sample, generator) -> tuple:
        return ()  # draws nothing (as a model with its first glimpse at the centre)

    def forward(self, images: torch.Tensor, *, sample: bool, randomness=None) -> SimpleNamespace:
        logits = torch.zeros(len(images), 2, 10)
        logits[:, :, 3] = 1.0
        locations = torch.tensor([[0.0, 0.0], [0.5, 0.5]]).expand(len(images), -1, -1)
        return SimpleNamespace(step_logits=logits, rollout=SimpleNamespace(locations=locations))


def test_scene_outcomes_of_a_model_with_known_answers() -> None:
    images = torch.zeros(3, 1, 20, 20)
    labels = torch.tensor([3, 1, 3])
    # Boxes (x0, y0, x1, y1): around the centre (10, 10); around (15, 15), where (0.5, 0.5)
    # lands on a 20-px canvas; and in the top-left corner, centred at (2, 2).
    bboxes = torch.tensor([[8, 8, 12, 12], [13, 13, 17, 17], [0, 0, 4, 4]])
    model = FixedModel().train()
    out = scene_outcomes(model, images, labels, bboxes, batch_size=2)
    assert model.training  # its mode is restored
    assert out.wrong.tolist() == [False, True, False]
    assert out.offset_px.tolist() == pytest.approx([0.0, 50**0.5, 128**0.5])
    assert out.glimpses_in_box.tolist() == [1, 1, 0]
    assert out.labels.tolist() == [3, 1, 3]


def test_the_script_breaks_down_two_tiny_runs(fake_mnist, tmp_path, monkeypatch, capsys) -> None:
    tiny = ["--data", "translated60", "--train-limit", "16", "--epochs", "1", "--batch-size", "8",
            "--glimpses", "2", "--glimpse-size", "8", "--scales", "2", "--glimpse-hidden", "8",
            "--location-hidden", "4", "--hidden", "12", "--device", "cpu", "--threads", "1",
            "--progress", "false", "--test", "false"]  # fmt: skip
    runs = [tmp_path / "a", tmp_path / "b"]
    for seed, run in enumerate(runs):  # a final model (its test split read once) and a tuning run
        final = ["--test", "true"] if seed == 0 else []
        assert main(["train", "ram", *tiny, *final, "--seed", str(seed), "--out", str(run)]) == 0
    capsys.readouterr()
    report = tmp_path / "breakdown.json"
    monkeypatch.setattr(
        sys, "argv", ["error_breakdown.py", *map(str, runs), "--offsets", "0", "10", "--json", str(report)]
    )
    runpy.run_path(str(SCRIPT), run_name="__main__")
    printed = capsys.readouterr().out
    data = json.loads(report.read_text())
    assert data["split"] == "val" and data["protocol"] == "policy mean, one rollout"
    assert "error_breakdown.py" in data["command"] and data["offsets"] == [0, 10] and data["parts"] == 2
    for run in map(str, runs):
        tables = data["runs"][run]["tables"]
        scenes = data["runs"][run]["scenes"]  # the fake validation split: 8 scenes
        assert scenes == 8
        # Every grouping covers every scene once, and the groups' wrong add up to the run's.
        for rows in tables.values():
            assert sum(row["scenes"] for row in rows) == scenes
            assert sum(row["wrong"] for row in rows) == data["runs"][run]["wrong"]
        assert [row["group"] for row in tables["offset_px"]] == ["0-10", "10+"]
        assert [row["group"] for row in tables["glimpses_in_box"]] == ["0", "1", "2"]
        assert [(row["group"], row["scenes"]) for row in tables["part_of_file"]] == [
            ("0-50%", 4),
            ("50-100%", 4),
        ]
        assert f"{run} (translated60, val, 8 scenes)" in printed
    (pair,) = data["shared"]
    wrong_a, wrong_b = data["runs"][str(runs[0])]["wrong"], data["runs"][str(runs[1])]["wrong"]
    assert pair["both"] + pair["first_only"] == wrong_a and pair["both"] + pair["second_only"] == wrong_b

    # A limit reads what a limited evaluation reads: of the fake test split's 20 scenes, the
    # fixed subset 3, 7, 9, 11, 15, which falls in its quarters 1, 2, 1 and 1 times.
    argv = ["error_breakdown.py", str(runs[0]), "--split", "test", "--limit", "5", "--parts", "4"]
    monkeypatch.setattr(sys, "argv", [*argv, "--json", str(report)])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    rows = json.loads(report.read_text())["runs"][str(runs[0])]["tables"]["part_of_file"]
    assert [(row["group"], row["scenes"]) for row in rows] == [
        ("0-25%", 1),
        ("25-50%", 2),
        ("50-75%", 1),
        ("75-100%", 1),
    ]


def test_the_script_refuses_a_missing_run_and_runs_on_two_datasets(
    fake_mnist, tmp_path, monkeypatch, capsys
) -> None:
    tiny = ["--train-limit", "16", "--epochs", "1", "--batch-size", "8", "--glimpses", "2",
            "--glimpse-size", "8", "--scales", "2", "--glimpse-hidden", "8", "--location-hidden", "4",
            "--hidden", "12", "--device", "cpu", "--threads", "1", "--progress", "false", "--test", "false"]  # fmt: skip
    runs = {"translated60": tmp_path / "t60", "cluttered60": tmp_path / "c60"}
    for data, run in runs.items():
        assert main(["train", "ram", "--data", data, *tiny, "--out", str(run)]) == 0
    other_scenes = tmp_path / "t60-data-seed1"
    assert (
        main(
            ["train", "ram", "--data", "translated60", *tiny, "--data-seed", "1", "--out", str(other_scenes)]
        )
        == 0
    )
    for argv, says in (
        ([str(tmp_path / "nope")], "nope: no such folder"),
        ([str(runs["translated60"]), str(runs["cluttered60"])], "different datasets"),
        ([str(runs["translated60"]), str(other_scenes)], "the runs' scenes differ (data seeds"),
        ([str(runs["translated60"]), "--offsets", "10", "0"], "--offsets must be strictly ascending"),
        ([str(runs["translated60"]), "--split", "test"], "trained with test: false (a tuning run)"),
    ):
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["error_breakdown.py", *argv])
        with pytest.raises(SystemExit) as stop:
            runpy.run_path(str(SCRIPT), run_name="__main__")
        out = capsys.readouterr()
        assert stop.value.code == 2 and says in out.err
        assert "wrong" not in out.out  # refused before any run was scored


def test_scene_outcomes_add_up_to_the_evaluation_with_a_random_first_glimpse() -> None:
    torch.manual_seed(0)
    sizes = {"glimpse_size": 4, "scales": 2, "hidden": 16, "glimpse_hidden": 8, "location_hidden": 8}
    model = RAM(config=RAMConfig(glimpses=3, first_location="random", **sizes), image_size=(16, 16))
    pixels = (torch.rand(20, 16, 16) * 255).to(torch.uint8)
    labels, boxes = torch.randint(0, 10, (20,)), torch.tensor([[2, 3, 10, 12]]).repeat(20, 1)
    scenes = Scenes(pixels.numpy(), labels.numpy(), boxes.int().numpy())
    evaluation = evaluate(model, SceneLoader(scenes, batch_size=6))
    images = pixels.unsqueeze(1).float().mul_(1.0 / 255.0)
    outcomes = scene_outcomes(model, images, labels, boxes.float(), batch_size=7)
    assert outcomes.wrong.sum().item() * 100.0 / 20 == pytest.approx(evaluation.error)
    in_box = outcomes.glimpses_in_box.sum().item() * 100.0 / (20 * 3)
    assert in_box == pytest.approx(sum(evaluation.in_box) / 3)


def test_placement_offsets_and_rings_by_hand() -> None:
    centred = torch.tensor([[10, 10, 20, 22], [10, 10, 20, 22], [12, 11, 18, 20]])
    moved = torch.tensor([[14, 7, 24, 19], [1, 10, 11, 22], [12, 11, 18, 20]])
    assert placement_offsets(centred, moved).tolist() == [4, 9, 0]  # max(|4|, |-3|), |-9|, unmoved
    with pytest.raises(ValueError, match="different scenes"):
        placement_offsets(centred, moved[:2])
    index, names = rings(torch.tensor([0, 4, 5, 8, 9, 12, 13, 16]), [0, 4, 8, 12, 16])
    assert names == ["0-4", "5-8", "9-12", "13-16"]
    assert index.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]  # each ring's top edge belongs to it
    index, names = rings(torch.tensor([0, 6, 7]), [0, 6])
    assert names == ["0-6"] and index.tolist() == [0, 0, 0]  # past the last level: the last ring
    for bad in ([0], [4, 0], [0, 4, 4]):
        with pytest.raises(ValueError, match="strictly ascending"):
            rings(torch.tensor([1]), bad)


def test_the_script_splits_a_translate_level_into_rings_that_add_up_to_the_sweep(
    fake_mnist, tmp_path, monkeypatch, capsys
) -> None:
    run = tmp_path / "run"
    assert main(["train", "ram", "--data", "centred60", *TINY, "--test", "false", "--out", str(run)]) == 0
    report = tmp_path / "rings.json"
    argv = ["error_breakdown.py", str(run), "--translate", "16", "--json", str(report)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(SCRIPT), run_name="__main__")
    printed = capsys.readouterr().out
    data = json.loads(report.read_text())
    assert data["translate"] == 16 and data["split"] == "val"
    entry = data["runs"][str(run)]
    rows = entry["tables"]["placement_px"]
    assert [row["group"] for row in rows] == ["0-4", "5-8", "9-12", "13-16"]  # the sweep's levels
    assert sum(row["scenes"] for row in rows) == entry["scenes"] == 8  # all 8 validation scenes
    assert sum(row["wrong"] for row in rows) == entry["wrong"]
    # Each scene in the ring of its placement: its ink box's move from the centred scene (the
    # sweep's translate 0), counted here with numpy from the sweep's own scenes.
    base = resolve_spec("centred60")
    moved, centred = (
        shifted_scenes(SHIFTS["translate"].spec(base, px), base=base, seed=0, limit=None, split="val")
        for px in (16, 0)
    )
    offset = np.abs(moved.bboxes[:, :2].astype(int) - centred.bboxes[:, :2]).max(axis=1)
    counts = np.bincount(np.digitize(offset, [4.5, 8.5, 12.5]), minlength=4).tolist()
    assert [row["scenes"] for row in rows] == counts
    # The same scenes the sweep reads at ±16 px: the same error.
    sweep = robustness_sweep(run, shifts={"translate": [16]}, split="val", device="cpu")
    assert 100.0 * entry["wrong"] / 8 == pytest.approx(sweep["shifts"]["translate"]["error"][0])
    in_box = entry["placement_in_box"]
    assert set(in_box) == {row["group"] for row in rows if row["scenes"]}
    assert all(0.0 <= share <= 100.0 for share in in_box.values())
    assert "translate ±16 px, 8 scenes" in printed and "by placement ring" in printed
    for extra, says in (
        (["--translate", "0"], "--translate must be above 0 px"),
        (["--translate", "4", "--limit", "4"], "no --limit"),
        (["--translate", "40"], "translate"),  # past the whole canvas: the sweep's own refusal
    ):
        monkeypatch.setattr(sys, "argv", ["error_breakdown.py", str(run), *extra])
        with pytest.raises(SystemExit) as stop:
            runpy.run_path(str(SCRIPT), run_name="__main__")
        assert stop.value.code == 2 and says in capsys.readouterr().err
