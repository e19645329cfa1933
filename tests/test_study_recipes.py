"""A study keeps the recipes it started with (STUDY/recipes/): its later runs train on the
version its first ones did, whatever is committed meanwhile."""

from __future__ import annotations

from test_study_estimate import TRAIN, by_id, preset

from ramlab.config import load_yaml
from ramlab.study import Study, load_preset


def test_a_study_keeps_the_recipes_it_started_with(tmp_path, monkeypatch):
    # The paper study runs for days: a recipe committed meanwhile trained its later runs on
    # another version than the first, and the rerun refused the first as "another config".
    import ramlab.study.preset as preset_module
    from ramlab.runconfig import config_path

    recipe = tmp_path / "translated60.yaml"
    recipe.write_text(config_path("translated60").read_text())
    monkeypatch.setattr(preset_module, "config_path", lambda name: recipe)
    group = {"name": "ram", "model": "ram", "data": "translated60", "recipe": True, "train": TRAIN}
    out, lines = tmp_path / "s", []
    first = Study(preset(tmp_path, runs=[group]), out, log=lines.append)
    first._start("in this process")
    saved = out / "recipes" / "translated60.yaml"
    assert load_yaml(saved) == load_yaml(recipe)
    run = "train-ram-translated60-seed0"

    def lr(study: Study) -> float:
        return study.run_config(by_id(study)[run]).train.lr

    assert lr(first) == 0.001

    recipe.write_text(recipe.read_text().replace("lr: 0.001", "lr: 0.002"))  # the recipe changes
    assert preset(tmp_path, runs=[group]).runs[0].recipes["translated60"]["train"]["lr"] == 0.002
    again = Study(preset(tmp_path, runs=[group]), out, log=lines.append)
    assert lr(again) == 0.001  # the study's own copy
    again._start("in this process")
    assert any("keeps the recipe(s) it started with (translated60" in line for line in lines)
    # A job process reads study.yaml and the same copy.
    assert lr(Study(load_preset(out / "study.yaml"), out)) == 0.001
    saved.unlink()  # as the note says: delete the copy to take the new recipe
    assert lr(Study(preset(tmp_path, runs=[group]), out)) == 0.002


def test_a_study_begun_before_recipes_were_kept_says_it_copies_them_now(tmp_path):
    group = {"name": "ram", "model": "ram", "data": "translated60", "recipe": True, "train": TRAIN}
    out, lines = tmp_path / "s", []
    (out / "runs" / "ram-translated60-seed0").mkdir(parents=True)
    (out / "runs" / "ram-translated60-seed0" / "config.yaml").write_text("model: ram\n")
    Study(preset(tmp_path, runs=[group]), out, log=lines.append)._start("in this process")
    assert any("began before studies kept their recipes; translated60 copied" in line for line in lines)
    lines.clear()
    Study(preset(tmp_path, runs=[group]), out, log=lines.append)._start("in this process")
    assert not any("recipes" in line for line in lines)  # once
