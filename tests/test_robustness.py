"""Robustness sweeps on a tiny trained run (synthetic digits): levels, JSON shape, same test
digits at every level, resuming a partial sweep, the CLI and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tiny

from ramlab import robustness
from ramlab.cli import main
from ramlab.data.datasets import dataset_spec, evaluation_subset, load_split, resolve_spec
from ramlab.errors import RamlabError
from ramlab.models.ram import RAMConfig
from ramlab.robustness import (
    SHIFTS,
    read_robustness,
    resolve_levels,
    robustness_sweep,
    same_sweep,
    shifted_scenes,
)
from ramlab.run import evaluate_run
from ramlab.runconfig import RunConfig, TrainConfig
from ramlab.trainer import Trainer

TINY_RAM = RAMConfig(**tiny.TINY_RAM, glimpses=2)


@pytest.fixture(autouse=True)
def fresh_scene_memo():
    """The sweep keeps shifted scenes in memory; each test starts from its own digits."""
    robustness._SCENES.clear()
    yield
    robustness._SCENES.clear()


@pytest.fixture
def run_dir(fake_mnist, tmp_path):
    """A RAM trained for one epoch on centred60 (digits within ±4 px of the centre)."""
    train = TrainConfig(
        epochs=1,
        batch_size=8,
        train_limit=16,
        device="cpu",
        threads=1,
        progress=False,
    )
    config = RunConfig(model="ram", data="centred60", train=train, model_config=TINY_RAM)
    out = tmp_path / "run"
    Trainer(config, out, command="test").fit()
    return out


def test_default_levels_span_the_issue_ranges():
    centred = dataset_spec("centred60")
    levels = resolve_levels(centred, dict.fromkeys(SHIFTS))
    assert levels["translate"] == [0, 4, 8, 12, 16]  # 16 px: the whole 60 px canvas for a 28 px digit
    assert levels["rotate"][0] == 0 and levels["rotate"][-1] == 60
    assert levels["scale"][0] == 0.5 and levels["scale"][-1] == 1.6
    assert levels["noise"][0] == 0 and levels["noise"][-1] == 0.5
    assert levels["clutter"][0] == 0 and levels["clutter"][-1] == 16
    # On 28×28 MNIST a digit cannot grow, nor move.
    small = resolve_levels(dataset_spec("mnist"), {"scale": None, "translate": None})
    assert max(small["scale"]) == 1.0 and small["translate"] == [0]


def test_a_level_given_twice_is_refused():
    with pytest.raises(RamlabError, match=r"robustness rotate: level 0 is given twice"):
        resolve_levels(dataset_spec("translated60"), {"rotate": [0, 0, 30]})


def test_a_level_that_does_not_fit_names_shift_and_level():
    with pytest.raises(RamlabError, match=r"robustness scale level 3\.0: .*needs 84 px"):
        resolve_levels(dataset_spec("translated60"), {"scale": [1.0, 3.0]})
    with pytest.raises(RamlabError, match="unknown robustness shift 'blur'; valid: "):
        resolve_levels(dataset_spec("translated60"), {"blur": None})


def test_a_level_that_repeats_another_is_refused():
    # 16 px is the whole 60 px canvas for a 28 px digit: a window of 1000 would be the same
    # scenes labelled as a wider shift; a rotation of 270 degrees is one of -90.
    spec = dataset_spec("translated60")
    assert resolve_levels(spec, {"translate": [0, 16], "rotate": [-180, 180]})["translate"] == [0, 16]
    with pytest.raises(RamlabError, match=r"translate level 17: .* at most ±16 px .*; levels 0\.\.16"):
        resolve_levels(spec, {"translate": [8, 17]})
    with pytest.raises(RamlabError, match=r"rotate level 270\.0: give degrees in -180\.\.180"):
        resolve_levels(spec, {"rotate": [270]})


@pytest.mark.parametrize(("split", "limit"), [("test", None), ("test", 6), ("val", None), ("val", 5)])
def test_every_level_holds_the_same_digits_of_its_split(fake_mnist, split, limit):
    base = dataset_spec("centred60")
    kind = SHIFTS["translate"]
    scenes = [
        shifted_scenes(kind.spec(base, level), base=base, seed=0, limit=limit, split=split)
        for level in (0, 8, 16)
    ]
    # The fake splits: val is the last 8 of the 48 training digits, test the 20 test digits.
    labels = fake_mnist.test_labels if split == "test" else fake_mnist.train_labels[40:]
    assert len(scenes[0]) == (limit or len(labels))
    kept = evaluation_subset(len(labels), limit, split)  # all, or a spread sample
    assert np.array_equal(scenes[0].labels, labels[kept])
    for other in scenes[1:]:
        assert np.array_equal(other.labels, scenes[0].labels)
        assert not np.array_equal(other.images, scenes[0].images)
    # The window grows: at level 0 every digit's 28 px square sits at the canvas's centre
    # (16 px in from each side: its ink box that far from the digit's own), at 16 they spread.
    digits = (fake_mnist.test_images if split == "test" else fake_mnist.train_images[40:])[kept]
    ink = np.stack([digits.any(axis=1).argmax(axis=1), digits.any(axis=2).argmax(axis=1)], axis=1)
    assert (scenes[0].bboxes[:, :2] - ink == 16).all()
    assert np.ptp(scenes[2].bboxes[:, :2] - ink) > 0


def test_sweep_json_shape_and_training_level_matches_the_test_error(run_dir, tmp_path):
    path = tmp_path / "rob.json"
    shifts = {"translate": None, "rotate": [0, 30, 60], "noise": [0.0, 0.5]}
    result = robustness_sweep(
        run_dir, shifts=shifts, device="cpu", json_path=path, command="test", commit="aaa"
    )
    saved = read_robustness(path)
    assert saved == json.loads(json.dumps(result))
    assert saved["model"] == "ram" and saved["data"] == "centred60"
    assert list(saved["shifts"]) == ["translate", "rotate", "noise"]
    for name, entry in saved["shifts"].items():
        assert len(entry["error"]) == len(entry["levels"]) == len(entry["per_step_error"])
        # % wrong of the 20 test scenes: a whole number of them at every level
        assert all(0 <= e <= 100 and (e / 5) == pytest.approx(round(e / 5)) for e in entry["error"])
        assert all(len(steps) == TINY_RAM.glimpses for steps in entry["per_step_error"])
        assert entry["count"] == 20  # the whole fake test split
        assert entry["parameter"] == SHIFTS[name].field
    assert saved["shifts"]["translate"]["levels"] == [0, 4, 8, 12, 16]
    assert saved["shifts"]["translate"]["trained"] == 4
    assert saved["shifts"]["rotate"]["levels"] == [0, 30, 60]
    # Noise 0 on the whole split is the run's own test set (same spec, same seed): the
    # trainer's test error, exactly.
    trained = json.loads((run_dir / "result.json").read_text())
    assert saved["shifts"]["noise"]["error"][0] == pytest.approx(trained["test_error"])
    limited = robustness_sweep(run_dir, shifts={"noise": [0.0, 0.5]}, limit=8, device="cpu")
    assert limited["shifts"]["noise"]["count"] == 8
    # The protocol is recorded whether or not a shift was swept here (kept shifts, a random
    # policy: format_sweep reads it rather than assuming the policy mean).
    kept = robustness_sweep(
        run_dir, shifts={"rotate": [0, 30, 60], "clutter": [0]}, device="cpu", json_path=path, commit="bbb"
    )
    assert kept["protocol"] == saved["protocol"] == "policy mean, one rollout"
    # Each shift names the commit that measured it; the file's is the last run's.
    assert kept["shifts"]["rotate"]["commit"] == kept["shifts"]["noise"]["commit"] == "aaa"
    assert kept["shifts"]["clutter"]["commit"] == kept["commit"] == "bbb"
    random = {**saved, "protocol": "random glimpse locations, one rollout"}
    assert "(random glimpse locations, one rollout; 20 scenes a level)" in robustness.format_sweep(random)


def test_a_validation_sweep_reads_the_validation_split_and_not_the_test_split(run_dir, monkeypatch):
    # Noise 0 on the whole validation split is the run's own validation set: the best
    # checkpoint's validation error, exactly; and no test digit is touched.
    read = []
    original = robustness.generate_scenes
    monkeypatch.setattr(
        robustness,
        "generate_scenes",
        lambda spec, images, labels, **k: read.append(len(labels)) or original(spec, images, labels, **k),
    )
    result = robustness_sweep(run_dir, shifts={"noise": [0.0, 0.5]}, split="val", device="cpu")
    assert result["split"] == "val" and read == [8, 8]
    assert result["shifts"]["noise"]["count"] == 8
    trained = json.loads((run_dir / "result.json").read_text())
    assert result["shifts"]["noise"]["error"][0] == pytest.approx(trained["val_error"])
    assert robustness.format_sweep(result).startswith(
        f"{run_dir} (ram on centred60), validation error % (policy mean, one rollout; 8 scenes a level)\n"
    )
    with pytest.raises(RamlabError, match="unknown robustness split 'train'; valid: test, val"):
        robustness_sweep(run_dir, shifts={"noise": [0.0]}, split="train", device="cpu")


def test_a_partial_sweep_resumes_without_redoing_shifts(run_dir, tmp_path, monkeypatch):
    path = tmp_path / "rob.json"
    robustness_sweep(run_dir, shifts={"rotate": [0, 45]}, limit=8, device="cpu", json_path=path)
    calls = []
    original = robustness.evaluate
    monkeypatch.setattr(robustness, "evaluate", lambda *a, **k: calls.append(1) or original(*a, **k))
    result = robustness_sweep(
        run_dir, shifts={"rotate": [0, 45], "clutter": [0, 4]}, limit=8, device="cpu", json_path=path
    )
    assert len(calls) == 2  # only the two clutter levels
    assert list(result["shifts"]) == ["rotate", "clutter"]
    # Other levels that would drop saved ones are refused, naming the levels to ask for; asked
    # for with them, the shift is swept again.
    with pytest.raises(
        RamlabError,
        match=r"holds rotate at levels 0, 45; this sweep asks for 0, 15 and would drop 45: ask for "
        r"all of them \(--shift rotate --levels 0 15 45\)",
    ):
        robustness_sweep(run_dir, shifts={"rotate": [0, 15]}, limit=8, device="cpu", json_path=path)
    assert len(calls) == 2 and read_robustness(path)["shifts"]["rotate"]["levels"] == [0, 45]
    robustness_sweep(run_dir, shifts={"rotate": [0, 15, 45]}, limit=8, device="cpu", json_path=path)
    assert len(calls) == 5
    # A sweep of the other split would replace the file's: refused, the file kept, unless the
    # caller's own file is to be replaced (a study's, whose preset changed).
    before = path.read_text()
    with pytest.raises(
        RamlabError, match=r"holds another sweep of .*\(test split, 8 digits.*this one: val split"
    ):
        robustness_sweep(
            run_dir, shifts={"rotate": [0, 15]}, limit=8, split="val", device="cpu", json_path=path
        )
    assert path.read_text() == before and len(calls) == 5
    for limit in (None, 4):  # nor another number of digits
        with pytest.raises(RamlabError, match="holds another sweep"):
            robustness_sweep(run_dir, shifts={"rotate": [0, 15]}, limit=limit, device="cpu", json_path=path)
    robustness_sweep(
        run_dir,
        shifts={"rotate": [0, 15]},
        limit=8,
        split="val",
        device="cpu",
        json_path=path,
        replace_stale=True,
    )
    assert len(calls) == 7 and read_robustness(path)["split"] == "val"
    robustness_sweep(
        run_dir, shifts={"rotate": [0, 15]}, limit=8, device="cpu", json_path=path, replace_stale=True
    )
    assert len(calls) == 9
    # So is a sweep of the older format, whose limit read the first test digits.
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "format": 1}))
    robustness_sweep(
        run_dir, shifts={"rotate": [0, 15]}, limit=8, device="cpu", json_path=path, replace_stale=True
    )
    assert len(calls) == 11 and read_robustness(path)["format"] == robustness.FORMAT
    # ... and a sweep of other weights (the run trained on since): never merged.
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "weights": "0123456789abcdef"}))
    with pytest.raises(
        RamlabError, match=rf"weights 0123456789abcdef, format {robustness.FORMAT}; this one: .*weights"
    ):
        robustness_sweep(run_dir, shifts={"rotate": [0, 15]}, limit=8, device="cpu", json_path=path)


def test_cli_writes_json_and_prints_a_table(run_dir, tmp_path, capsys):
    out = tmp_path / "sweep.json"
    args = ["--shift", "scale", "--levels", "0.5", "1", "1.6", "--limit", "8", "--device", "cpu"]
    code = main(["robustness", str(run_dir), *args, "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "scale" in printed and "1.6" in printed
    saved = json.loads(out.read_text())
    assert list(saved["shifts"]) == ["scale"]
    assert saved["shifts"]["scale"]["levels"] == [0.5, 1.0, 1.6]
    assert saved["limit"] == 8 and saved["split"] == "test"
    # The validation sweep would throw the test one away: refused; into its own file it runs.
    assert main(["robustness", str(run_dir), *args, "--split", "val", "--json", str(out)]) == 2
    assert "holds another sweep" in capsys.readouterr().err
    assert json.loads(out.read_text())["split"] == "test"
    val = tmp_path / "sweep-val.json"
    code = main(["robustness", str(run_dir), *args, "--split", "val", "--json", str(val)])
    assert code == 0 and "validation error %" in capsys.readouterr().out
    assert json.loads(val.read_text())["split"] == "val"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--shift", "rotate", "--shift", "noise", "--levels", "0", "1"],
            "--levels needs exactly one --shift",
        ),
        (["--shift", "clutter", "--levels", "2.5"], "robustness clutter: levels are whole numbers"),
        (["--shift", "rotate", "--levels", "ten"], "robustness rotate: level 'ten' is not a number"),
        (["--rollouts", "0"], "--rollouts must be >= 1, got 0"),
        (["--shift", "rotate", "--levels", "nan"], "robustness rotate: level 'nan' is not a finite number"),
    ],
)
def test_cli_errors_exit_2(run_dir, args, message, capsys):
    assert main(["robustness", str(run_dir), *args]) == 2
    assert message in capsys.readouterr().err


def test_monte_carlo_rollouts_as_ramlab_eval_and_a_resume_keeps_only_a_like_sweep(run_dir, tmp_path):
    path = tmp_path / "mc.json"
    sweep = robustness_sweep(
        run_dir, shifts={"noise": [0.0]}, rollouts=3, device="cpu", json_path=path, command="test"
    )
    evaluation = evaluate_run(run_dir, rollouts=3, device="cpu")  # the same scenes: noise 0, all
    assert sweep["rollouts"] == 3 and sweep["sample"] is True
    assert sweep["shifts"]["noise"]["error"] == [pytest.approx(evaluation["error"])]
    saved = read_robustness(path)
    assert same_sweep(saved, limit=None, sample=False, rollouts=3)
    assert not same_sweep(saved, limit=None, sample=True, rollouts=1)  # one sampled rollout: redone


def test_cli_on_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["robustness", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_shift_replaces_only_its_field():
    base = resolve_spec("cluttered60")
    rotated = SHIFTS["rotate"].spec(base, 30)
    assert rotated.rotation == (30.0, 30.0) and rotated.clutter_count == base.clutter_count
    assert SHIFTS["clutter"].spec(base, 16).clutter_count == 16
    assert SHIFTS["translate"].spec(base, 4).max_offset == 4


def test_a_sweep_file_of_another_run_is_refused_and_other_shifts_stay_in_it(run_dir, tmp_path):
    path = tmp_path / "sweep.json"
    robustness_sweep(run_dir, shifts={"rotate": [0, 30]}, limit=4, device="cpu", json_path=path)
    robustness_sweep(run_dir, shifts={"noise": [0.0, 0.5]}, limit=4, device="cpu", json_path=path)
    assert list(read_robustness(path)["shifts"]) == ["rotate", "noise"]  # the rotation kept
    other = tmp_path / "other"
    other.mkdir()
    for name in ("config.yaml", "best.pt", "result.json"):
        (other / name).write_bytes((run_dir / name).read_bytes())
    with pytest.raises(
        RamlabError, match=r"sweep\.json holds the sweep of .*run, not of .*other: choose another"
    ):
        robustness_sweep(other, shifts={"noise": [0.0]}, limit=4, device="cpu", json_path=path)


@pytest.mark.parametrize("data", ["translated60", "cluttered60", "centred60"])
def test_the_translate_level_a_run_trained_at_reads_its_own_test_scenes(fake_mnist, data):
    # translated60's window (the whole canvas) was swept as max_offset 16: the same places but
    # another spec key, so other draws, and the curve's "trained" point was not the test error
    base = resolve_spec(data)
    kind = SHIFTS["translate"]
    at_trained = kind.spec(base, kind.trained(base))
    assert at_trained == base
    own = load_split(data, "test", seed=0, cache=False)
    assert np.array_equal(shifted_scenes(at_trained, base=base, seed=0, limit=None).images, own.images)
    assert kind.spec(base, 16).max_offset is None  # the whole canvas, on centred60 too
    assert kind.spec(base, 15).max_offset == 15


@pytest.mark.parametrize(
    "damage",
    [
        '{"shifts": {"noise": {"lev',
        '{"shifts": {"noise": [0.0]}}',
        '{"shifts": {"noise": {"levels": [0.0]}}}',
    ],
)
def test_a_damaged_sweep_file_names_the_fix_and_the_studys_own_is_swept_again(run_dir, tmp_path, damage):
    path = tmp_path / "sweep.json"
    path.write_text(damage)
    with pytest.raises(RamlabError, match=r"sweep\.json: .*; delete it \(or choose another --json\)"):
        robustness_sweep(run_dir, shifts={"noise": [0.0]}, limit=4, device="cpu", json_path=path)
    robustness_sweep(
        run_dir, shifts={"noise": [0.0]}, limit=4, device="cpu", json_path=path, replace_stale=True
    )
    assert read_robustness(path)["shifts"]["noise"]["levels"] == [0.0]


def test_the_kept_scenes_stay_within_their_memory_budget(fake_mnist, monkeypatch):
    base, kind = resolve_spec("translated60"), SHIFTS["rotate"]
    one = shifted_scenes(kind.spec(base, 0), base=base, seed=0, limit=None)
    size = one.images.nbytes + one.labels.nbytes + one.bboxes.nbytes
    monkeypatch.setattr(robustness, "_SCENES_BYTES", 2 * size)  # room for two levels
    for level in (10, 20, 30):
        shifted_scenes(kind.spec(base, level), base=base, seed=0, limit=None)
    kept = [key[0].rotation[0] for key in robustness._SCENES]
    assert kept == [20.0, 30.0]  # the oldest went first
    assert (
        shifted_scenes(kind.spec(base, 30), base=base, seed=0, limit=None)
        is robustness._SCENES[list(robustness._SCENES)[-1]]
    )


def test_a_format_6_file_keeps_its_other_shifts_and_sweeps_its_scale_again(run_dir, tmp_path, capsys):
    # Format 7 changed only the scale levels of a dataset of many places (centred60 here).
    path = tmp_path / "sweep.json"
    robustness_sweep(run_dir, shifts={"rotate": [0, 30], "scale": [1.0, 1.3]}, device="cpu", json_path=path)
    old = read_robustness(path)
    old["format"], old["commit"] = 6, "aaa"
    for entry in old["shifts"].values():
        entry["error"] = [55.0, 55.0]  # what the file said, to see which shifts were kept
        del entry["commit"]  # format 6 named one commit, the file's
    path.write_text(json.dumps(old))
    asked = {"rotate": [0, 30], "scale": [1.0, 1.3]}
    again = robustness_sweep(run_dir, shifts=asked, device="cpu", json_path=path, commit="bbb")
    assert again["format"] == robustness.FORMAT and again["shifts"]["rotate"]["error"] == [55.0, 55.0]
    assert again["shifts"]["rotate"]["commit"] == "aaa"  # kept: measured by the file's commit
    assert again["shifts"]["scale"]["error"] != [55.0, 55.0] and again["shifts"]["scale"]["commit"] == "bbb"
    # A sweep of another kind (another limit) is refused, and drops nothing.
    path.write_text(json.dumps(old))
    capsys.readouterr()
    with pytest.raises(RamlabError, match="holds another sweep"):
        robustness_sweep(run_dir, shifts={"rotate": [0, 30]}, limit=4, device="cpu", json_path=path)
    assert "dropped" not in capsys.readouterr().err
    # A sweep that does not ask for scale drops the old scale levels, and says so.
    robustness_sweep(run_dir, shifts={"rotate": [0, 30]}, device="cpu", json_path=path)
    assert "its scale levels (1, 1.3) placed each resized digit anew (format 6)" in capsys.readouterr().err
    assert list(read_robustness(path)["shifts"]) == ["rotate"]
