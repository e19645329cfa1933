"""Presets: the packaged ones load and hold the study's plan, and a wrong preset is named by
file, key and the allowed values (the schema's own messages: test_study_schema.py)."""

from __future__ import annotations

import pytest
from test_study import TINY_RAM, TINY_TRAIN, write_preset

from ramlab import study
from ramlab.cli import main
from ramlab.data.datasets import DATASETS
from ramlab.errors import RamlabError
from ramlab.runconfig import RunConfig, config_path
from ramlab.study import Study, load_preset, preset_path


def test_packaged_presets_load_and_hold_the_issue_plan():
    quick = load_preset("quick")
    assert quick.seeds == 1
    rams = [g for g in quick.runs if g.model == "ram"]
    assert [g.model_config["reward"] for g in rams] == ["sparse", "sparse+infogain", "sparse+bbox"]
    assert {g.model for g in quick.runs} == {"ram", "resnet"}
    assert {d for g in quick.runs for d in g.data} == {"translated60"}
    assert quick.cost is not None and max(quick.cost.sizes) >= 512
    assert quick.robustness and quick.evaluate is not None

    paper = load_preset("paper")
    assert paper.seeds == 3
    six = [g for g in paper.runs if g.model == "ram" and "glimpses" not in g.model_config]
    # the recipes' 6, the telescoped control, the scaled sparse control; the last, centred60
    assert [g.seeds for g in six] == [None] * 6 + [1, None, None]
    scaled = [g for g in six if g.name == "ram6-sparse-scaled"]
    (terminal,) = [g for g in six if g.name == "ram6-infogain-terminal"]
    six = [g for g in six[:8] if g not in scaled and g is not terminal]
    assert sorted(g.model_config["reward"] for g in six) == [
        "0.1*infogain@0",
        "bbox",
        "sparse",
        "sparse+0.1*infogain@0",
        "sparse+0.1*infogain@0+bbox",
        "sparse+bbox",
    ]  # each new reward with the sparse one and alone (DESIGN.md), information gain per
    # glimpse at the weight chosen on validation (results/rewards-recipe/)
    # The control for its credit: the same information gain at the sparse reward's discount.
    assert terminal.model_config["reward"] == "sparse+0.1*infogain" and set(terminal.data) == set(six[0].data)
    for g in six:
        assert set(g.data) == {"mnist", "translated60", "cluttered60", "cluttered100"}
    # The control for the rewards' scale: the sparse reward at the new rewards' weight, where
    # policy_trains_core lets the scale reach the core (every recipe but mnist's).
    assert [(g.model_config["reward"], g.seeds) for g in scaled] == [("0.1*sparse", None)]
    assert set(scaled[0].data) == {"translated60", "cluttered60", "cluttered100"}
    for data in scaled[0].data:
        assert RunConfig.load(config_path(data)).model_config.policy_trains_core
    assert not RunConfig.load(config_path("mnist")).model_config.policy_trains_core
    # The paper gives 4 and 8 glimpses, and on mnist 7 instead of 8 (1.07%).
    large = {"translated60", "cluttered60", "cluttered100"}
    for glimpses, data in ((4, {"mnist", *large}), (8, large), (7, {"mnist"})):
        groups = [
            g
            for g in paper.runs
            if g.model_config.get("glimpses") == glimpses and "policy" not in g.model_config
        ]
        assert [g.seeds for g in groups] == [1, 1]
        assert [bool(g.best_reward_of) for g in groups] == [False, True]
        assert set(groups[1].best_reward_of) == {g.name for g in six if g.model_config["reward"] != "sparse"}
        assert all(set(g.data) == data for g in groups), glimpses
    # The baselines and the centred-digit models have the study's seeds too: mean ± std on both
    # sides of the RAM-against-CNN comparison and of the translation sweep.
    baselines = [g for g in paper.runs if g.model in ("resnet", "fc", "convnet") or "centred" in g.name]
    assert {g.model for g in baselines} == {"resnet", "fc", "convnet", "ram"}
    assert all(g.seeds is None for g in baselines) and paper.seeds == 3
    resnets = [g for g in paper.runs if g.model == "resnet"]
    assert resnets and all(g.train["fresh_scenes"] for g in resnets)  # new scenes, as the RAMs get
    assert all(sweep.limit is None for sweep in paper.robustness)  # all 10,000 test scenes
    swept = {name for sweep in paper.robustness for name in sweep.runs}
    assert {g.name for g in six} | {"ram6-sparse-scaled"} <= swept  # every 6-glimpse reward
    assert {g.name for g in paper.runs if "centred" in g.name} <= swept
    jobs = Study(paper, "unused", log=lambda _: None).jobs()
    assert sum(j.kind == "train" for j in jobs) == 72 + 9 + 4 + 16 + 2 + 36 + 12
    # The paper's random-glimpse control, where it gives a number: 8 glimpses, the cluttered sets.
    (random,) = [g for g in paper.runs if g.model_config.get("policy") == "random"]
    assert random.model_config["glimpses"] == 8 and set(random.data) == {"cluttered60", "cluttered100"}


def test_paper_rewards_add_to_each_recipes_own_sparse_weight():
    """Every paper RAM whose reward has the sparse term carries it at its recipe's weight (a
    tenth where the recipe trains the core with REINFORCE, 1 on mnist), so a new reward is
    added to the recipe's own; only ram6-sparse keeps the paper's weight of 1 everywhere. The
    new rewards' weights are the same on every dataset (chosen once, on cluttered60's
    validation split)."""
    from ramlab.rewards import parse_reward

    paper = load_preset("paper")
    recipe_weight = {}
    # (a best_reward_of group takes another group's reward once it is known: none of its own)
    for group in (g for g in paper.runs if g.model == "ram" and not g.best_reward_of):
        others = set()
        for data in group.data:
            recipe = data if group.recipe is True else group.recipe
            recipe_reward = RunConfig.load(config_path(recipe)).model_config.reward
            recipe_weight[data] = parse_reward(recipe_reward)["sparse"]
            run = study.preset.run_config(group, data, 0, paper.train, where="test")
            weights = parse_reward(run.model_config.reward)
            if "sparse" in weights:
                expected = 1.0 if group.name == "ram6-sparse" else recipe_weight[data]
                assert weights.pop("sparse") == expected, (group.name, data)
            others.add(tuple(sorted(weights.items())))
        assert len(others) == 1, (group.name, others)
    assert {d: w for d, w in recipe_weight.items() if w != 1.0} == dict.fromkeys(
        ("translated60", "centred60", "cluttered60", "cluttered100"), 0.1
    )
    assert recipe_weight["mnist"] == 1.0
    combined = {g.name for g in paper.runs if "+" in g.model_config.get("reward", "")}
    # (and the centred-digit RAM, whose reward is translated60's recipe's own)
    assert combined == {
        "ram6-infogain",
        "ram6-bbox",
        "ram6-infogain-bbox",
        "ram6-infogain-terminal",
        "ram6-centred",
    }


def test_seeds_option_replaces_the_default_only(tmp_path):
    tiny = load_preset("tiny", seeds=3)
    counts = {g.name: Study(tiny, tmp_path, log=lambda _: None).group_seeds(g) for g in tiny.runs}
    assert counts == {"ram-sparse": 2, "ram-infogain": 3, "ram-best": 3, "resnet": 3}
    assert tiny.raw["seeds"] == 3


@pytest.mark.parametrize(
    ("edit", "key", "allowed"),
    [
        ({"epochs": 3}, "epochs", "description, seeds, device, train, runs"),
        ({"train": {"epoch": 2}}, "train.epoch", "epochs, batch_size"),
        ({"train": {"optimizer": "rmsprop"}}, ": train: optimizer", "adam, sgd"),  # not under runs[0]
        ({"train": {"epochs": "two"}}, "train.epochs", "expected int"),
        ({"seeds": 0}, "seeds", "a whole number >= 1"),
        ({"runs": [{"name": "x", "model": "vit", "data": "mnist"}]}, "runs[0] (x).model", "ram, resnet"),
        (
            {"runs": [{"name": "x", "model": "ram", "data": "mnist9"}]},
            "runs[0] (x).data",
            "mnist, translated60",
        ),
        (
            {"runs": [{"name": "x", "model": "ram", "data": "mnist", "colour": 1}]},
            "runs[0] (x).colour",  # a group is named beside its index, as in every key below it
            "name, model",
        ),
        (
            {"runs": [{"name": "x", "model": "ram", "data": "mnist", "model_config": {"glimpse": 3}}]},
            "runs[0] (x).model_config.glimpse",
            "glimpses, glimpse_size",
        ),
        (
            {
                "runs": [
                    {"name": "x", "model": "ram", "data": "mnist", "model_config": {"reward": "sparse+foo"}}
                ]
            },
            "runs[0] (x) on mnist",
            "valid: sparse, infogain, bbox",
        ),
        (
            {"robustness": [{"shifts": ["blur"]}]},
            "robustness[0].shifts",
            "translate, rotate, scale, noise, clutter",
        ),
        ({"robustness": [{"runs": ["nope"]}]}, "robustness[0].runs", "all, ram"),
        ({"robustness": [{"shifts": {"scale": [3.0]}}]}, "robustness[0].shifts", "needs 84 px"),
        (
            {"cost": {"models": ["ram"], "size": [28]}},
            "cost.size",
            "models, sizes, batch, repeats, device, compile, configs",
        ),
        ({"evaluate": {"glimpses": -1}}, "evaluate.glimpses", "a whole number >= 0"),
        ({"train": {"test": False}}, "train.test", "a study's runs are its final models"),
        (
            {"runs": [{"name": "x", "model": "ram", "data": "mnist", "train": {"test": False}}]},
            "runs[0] (x).train.test",
            "leave test true; tune with `ramlab train ... --test false` instead",
        ),
        (
            {
                "runs": [
                    {
                        "name": "x",
                        "model": "ram",
                        "data": "mnist",
                        "per_data": {"mnist": {"train": {"test": False}}},
                    }
                ]
            },
            "runs[0] (x).per_data.mnist.train.test",
            "leave test true",
        ),
    ],
)
def test_a_wrong_preset_names_file_key_and_allowed_values(tmp_path, edit, key, allowed):
    path = write_preset(tmp_path / "bad.yaml", **edit)
    with pytest.raises(RamlabError) as caught:
        load_preset(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    assert key in message, message
    assert allowed in message, message


def test_a_wrong_preset_exits_2_on_the_cli(tmp_path, capsys):
    path = write_preset(tmp_path / "bad.yaml", train={"epoch": 2})
    assert main(["study", str(path), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ramlab: error: {path}: train.epoch: unknown key; allowed: ")
    assert "Traceback" not in err


def test_a_bad_train_value_is_named_where_it_is_written(tmp_path):
    ram = {"name": "ram", "model": "ram", "data": "translated60", "model_config": TINY_RAM}
    path = write_preset(tmp_path / "top.yaml", train={**TINY_TRAIN, "lr": -1})
    with pytest.raises(RamlabError, match=r"^\S+top\.yaml: train: lr must be > 0, got -1") as caught:
        load_preset(path)
    assert "runs[0]" not in str(caught.value)
    # The same value under a group is that group's.
    path = write_preset(tmp_path / "group.yaml", runs=[{**ram, "train": {"lr": -1}}])
    with pytest.raises(
        RamlabError, match=r"group\.yaml: runs\[0\] \(ram\) on translated60: train: lr must be"
    ):
        load_preset(path)
    # A top-level value every group replaces is never used, so it is not an error.
    path = write_preset(
        tmp_path / "replaced.yaml", train={**TINY_TRAIN, "lr": -1}, runs=[{**ram, "train": {"lr": 0.01}}]
    )
    preset = load_preset(path)
    assert preset.runs[0].train == {"lr": 0.01}


@pytest.mark.parametrize(
    ("model", "model_config", "says"),
    [("ram", {"glimpse_size": 40}, "glimpse_size 40"), ("convnet", {"kernel": 40}, "kernel")],
)
def test_a_model_wider_than_its_canvas_is_refused_when_the_preset_loads(tmp_path, model, model_config, says):
    # It listed and started, and failed in its training job, after the jobs before it.
    runs = [{"name": "big", "model": model, "data": "mnist", "model_config": model_config}]
    path = write_preset(tmp_path / "big.yaml", runs=runs)
    with pytest.raises(RamlabError, match=r"big\.yaml: runs\[0\] \(big\) on mnist: ") as caught:
        load_preset(path)
    assert says in str(caught.value) and "28" in str(caught.value)


def test_unknown_preset_lists_the_packaged_ones():
    with pytest.raises(RamlabError, match=r"unknown preset 'quik'.*paper, quick, tiny"):
        preset_path("quik")


def test_every_packaged_dataset_name_is_allowed_in_presets(tmp_path):
    runs = [{"name": f"fc-{name}", "model": "fc", "data": name} for name in DATASETS]
    preset = load_preset(write_preset(tmp_path / "every.yaml", runs=runs))
    assert [group.data for group in preset.runs] == [(name,) for name in DATASETS]
    assert set(DATASETS) >= {"mnist", "translated60", "centred60", "cluttered60", "cluttered100"}


def test_a_folder_holding_another_presets_study_is_refused(tmp_path):
    other = write_preset(tmp_path / "other.yaml", train={"epochs": 1})
    out = tmp_path / "s"
    from ramlab.study.jobs import save_preset

    save_preset(Study(load_preset("tiny"), out))
    assert (out / "study.yaml").read_text().startswith("# ramlab study of preset: tiny\n")
    save_preset(Study(load_preset("tiny"), out))  # the same preset again: its resume
    with pytest.raises(
        RamlabError, match=r"holds the study of preset 'tiny' \(its study.yaml\), not 'other'"
    ):
        save_preset(Study(load_preset(other), out))
    assert load_preset(out / "study.yaml").raw == load_preset("tiny").raw  # still readable by the jobs
    save_preset(Study(load_preset(out / "study.yaml"), out))  # rerun from its own study.yaml
    # ... with more seeds: saved (the job processes plan from the file), under its name
    save_preset(Study(load_preset(out / "study.yaml", seeds=3), out))
    assert (out / "study.yaml").read_text().startswith("# ramlab study of preset: tiny\n")
    assert load_preset(out / "study.yaml").seeds == 3
