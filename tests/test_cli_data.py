"""Smoke tests of `ramlab data build|show`, run in-process on the synthetic `fake_mnist`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ramlab.cli import main
from ramlab.data import datasets

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_build_prints_the_cache_path_of_every_split(fake_mnist, capsys):
    assert main(["data", "build", "cluttered60", "--seed", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["train", "val", "test"]
    sizes = {"train": 40, "val": 8, "test": 20}
    for line in lines:
        split, path = line.split("\t")
        path = Path(path)
        assert path.parent == datasets.ramlab_home() / "scenes"
        assert "-seed3-" in path.name
        with np.load(path) as z:
            assert z["images"].shape == (sizes[split], 60, 60)
            assert z["bboxes"].shape == (sizes[split], 4)


def test_build_twice_finds_the_cache(fake_mnist, capsys):
    assert main(["data", "build", "mnist"]) == 0
    first = capsys.readouterr().out
    stamps = [Path(line.split("\t")[1]).stat().st_mtime_ns for line in first.splitlines()]
    assert main(["data", "build", "mnist"]) == 0
    second = capsys.readouterr().out
    assert second == first
    assert [Path(line.split("\t")[1]).stat().st_mtime_ns for line in second.splitlines()] == stamps


def test_show_writes_a_png(fake_mnist, tmp_path, capsys):
    out = tmp_path / "figs" / "scenes.png"
    args = ["data", "show", "translated60", "--out", str(out), "--split", "val", "--count", "6"]
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert main(["data", "show", "translated60", "--out", str(tmp_path / "scenes.txt")]) == 2
    assert "scenes.txt: give a file name ending in one of" in capsys.readouterr().err
    # pgf needs TeX: refused at once, not after the scenes are drawn
    assert main(["data", "show", "translated60", "--out", str(tmp_path / "scenes.pgf")]) == 2
    err = capsys.readouterr().err
    assert "scenes.pgf: give a file name ending in one of" in err and ".pgf" not in err.split("one of")[1]


@pytest.mark.parametrize("action", ["build", "show"])
def test_unknown_dataset_exits_2_and_lists_valid_names(action, fake_mnist, capsys, tmp_path):
    out = tmp_path / "x.png"
    args = ["data", action, "nope"] + (["--out", str(out)] if action == "show" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("ramlab: error: unknown dataset 'nope'; valid: ")
    for name in datasets.DATASETS:
        assert name in err
    assert "Traceback" not in err
    assert not out.exists()
    assert not (datasets.ramlab_home() / "scenes").exists()


@pytest.mark.parametrize("count", ["0", "401"])
def test_show_refuses_a_count_outside_one_figure(fake_mnist, tmp_path, capsys, count) -> None:
    out = tmp_path / "grid.png"
    assert main(["data", "show", "translated60", "--out", str(out), "--count", count]) == 2
    assert f"--count must be 1..400 (scenes in one figure), got {count}" in capsys.readouterr().err
    assert not out.exists()


def test_a_negative_scene_seed_is_refused_before_anything_is_built(fake_mnist, capsys):
    for argv in (["build", "translated60"], ["show", "translated60", "--out", "x.png"]):
        assert main(["data", *argv, "--seed", "-1"]) == 2
        assert "scene seed must be >= 0 (a run's data_seed), got -1" in capsys.readouterr().err
    assert not list((datasets.ramlab_home() / "scenes").glob("*seed-1*"))


def test_a_dataset_that_draws_nothing_has_one_file_for_every_seed(fake_mnist, capsys):
    # 28×28 MNIST has no placement, clutter, warp or noise to draw: seed 5 wrote a copy before
    assert main(["data", "build", "mnist", "--seed", "5"]) == 0
    paths = [Path(line.split("\t")[1]) for line in capsys.readouterr().out.splitlines()]
    assert all("-seed0-" in path.name for path in paths)
    assert sorted(p.name for p in paths[0].parent.iterdir()) == sorted(p.name for p in paths)
    first = datasets.load_split("mnist", "val", seed=0, cache=False)
    other = datasets.load_split("mnist", "val", seed=5, cache=False)
    assert np.array_equal(first.images, other.images) and np.array_equal(first.bboxes, other.bboxes)


@pytest.mark.parametrize(
    ("spec", "draws_nothing"),
    [
        (dict(canvas=28), True),
        (dict(canvas=60, max_offset=0), True),  # centred: (60 - 28) / 2 = 16, one place
        (dict(canvas=61, max_offset=0), False),  # 16.5: either neighbour, a draw
        (dict(canvas=60, max_offset=1), False),
        (dict(canvas=60), False),
        (dict(canvas=28, clutter_count=1), False),
        (dict(canvas=28, noise=0.1), False),
        (dict(canvas=28, rotation=(0, 0), scale=(0.9, 1.0)), False),
    ],
)
def test_draws_nothing_only_when_every_seed_gives_the_same_scenes(fake_mnist, spec, draws_nothing):
    from ramlab.data.scenes import SceneSpec

    spec = SceneSpec(**spec)
    assert spec.draws_nothing is draws_nothing
    scenes = [datasets.load_split(spec, "test", seed=s, cache=False) for s in (0, 1)]
    same = all(np.array_equal(getattr(scenes[0], a), getattr(scenes[1], a)) for a in ("images", "bboxes"))
    assert same is draws_nothing
