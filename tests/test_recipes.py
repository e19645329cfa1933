"""The committed training recipes, and the M-rollout options end to end through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from test_cli_train import TINY

from ramlab.cli import main
from ramlab.config import load_yaml
from ramlab.errors import RamlabError
from ramlab.metrics import read_metrics
from ramlab.report.sections.rewards import sparse_weight
from ramlab.rewards import parse_discounts, parse_reward
from ramlab.runconfig import RECIPE_DIR, RunConfig, config_path, recipe_names

RESULTS = Path(__file__).resolve().parents[1] / "results" / "recipes"
GLIMPSES = {"mnist": (8, 1), "translated60": (12, 3), "cluttered60": (12, 3), "cluttered100": (12, 4)}


def test_there_is_one_recipe_per_dataset_of_the_paper() -> None:
    assert recipe_names() == sorted(GLIMPSES)


def test_the_package_data_ships_every_preset_and_recipe() -> None:
    # A wheel holds only what package-data names: recipes once stayed behind, so a plain
    # `pip install .` could not run `--config cluttered60` nor the study presets.
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    root = Path(__file__).resolve().parents[1]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = setuptools["package-data"]["ramlab"]
    package = root / "src" / "ramlab"
    shipped = {path for pattern in globs for path in package.glob(pattern)}  # * stays in a folder
    files = sorted((package / "presets").rglob("*.yaml"))
    assert (package / "presets" / "recipes" / "cluttered60.yaml") in files
    assert [p.relative_to(package).as_posix() for p in files if p not in shipped] == []


@pytest.mark.parametrize("name", sorted(GLIMPSES))
def test_a_recipe_is_the_papers_set_up_for_its_dataset(name: str) -> None:
    config = RunConfig.load(config_path(name))
    assert config_path(name) == RECIPE_DIR / f"{name}.yaml"
    assert config.model == "ram" and config.data == name
    ram = config.model_config
    assert (ram.glimpse_size, ram.scales) == GLIMPSES[name]
    assert ram.glimpses == 6
    # The paper's sparse reward; at a weight other than 1 only where REINFORCE trains the core
    # (policy_trains_core): elsewhere Adam makes the weight all but irrelevant. Beside it a new
    # reward only where validation chose one (TUNING.md): translated60 and the cluttered sets,
    # information gain per glimpse (@0), since the telescoped form (gamma 1) is another reward.
    weights = parse_reward(ram.reward)
    assert weights["sparse"] == 1.0 or ram.policy_trains_core
    others = {k: v for k, v in weights.items() if k != "sparse"}
    if name in ("translated60", "cluttered60", "cluttered100"):
        assert others == {"infogain": 0.1} and parse_discounts(ram.reward) == {"infogain": 0.0}
    else:
        assert sparse_weight(ram.reward) == weights["sparse"] and not others
    # Evaluated as the targets are measured: policy mean, one rollout.
    assert config.train.eval_rollouts == 1 and not config.train.eval_sample and config.train.test
    assert config.train.eval_limit is None  # all 5,000 validation and 10,000 test scenes


# How a run was run, not what it learns (compile: the same losses, tested in test_fastpath): these
# may differ between a recipe and its measured run.
RUN_MANAGEMENT = {
    "threads",
    "progress",
    "time_budget",
    "test",
    "device",
    "compile",
    "eval_batch_size",
    "log_every",
    "checkpoint_every",
}


def what_shapes_training(config: RunConfig) -> dict:
    """The config as a dict without its RUN_MANAGEMENT settings."""
    data = config.to_dict()
    for section in ("train", "model_config"):
        data[section] = {k: v for k, v in data[section].items() if k not in RUN_MANAGEMENT}
    return data


@pytest.mark.parametrize("name", sorted(GLIMPSES))
def test_each_committed_recipe_result_was_trained_with_the_recipe(name: str) -> None:
    """results/recipes/<name>.json is the recipe's measured run, so its one command regenerates
    it: every setting that shapes the training equals the recipe file's (older result files
    lack options added since, which read as their defaults)."""
    result = json.loads((RESULTS / f"{name}.json").read_text())
    assert result["test_count"] == 10000 and result["test_protocol"] == "policy mean, one rollout"
    trained, recipe = RunConfig.from_dict(result["config"]), RunConfig.load(config_path(name))
    measured, now = what_shapes_training(trained), what_shapes_training(recipe)
    if stops_no_sooner(recipe, trained):
        for key in STOPPING:
            del measured["train"][key], now["train"][key]
    assert measured == now


# When training ends: a recipe may since have taken a longer patience or more epochs (cluttered100:
# 20/200 -> 60/300) without its run being redone, where its schedule does not depend on the number
# of epochs. The measured run is then the start of the recipe's run, stopped sooner.
STOPPING = ("early_stop", "epochs")
EPOCH_FREE_SCHEDULES = {"none", "exponential", "plateau"}


def stops_no_sooner(recipe: RunConfig, trained: RunConfig) -> bool:
    """True when the recipe trains as `trained` did to its stop and may go on after it."""

    def patience(cfg) -> float:
        return cfg.early_stop or math.inf  # 0: no early stop

    return (
        recipe.train.schedule in EPOCH_FREE_SCHEDULES
        and recipe.train.epochs >= trained.train.epochs
        and patience(recipe.train) >= patience(trained.train)
    )


def test_a_recipe_may_stop_later_than_its_measured_run_only_on_an_epoch_free_schedule() -> None:
    base = RunConfig.load(config_path("cluttered100"))

    def variant(**train) -> RunConfig:
        data = base.to_dict()
        data["train"].update(train)
        return RunConfig.from_dict(data)

    shorter = variant(early_stop=20, epochs=200)
    assert stops_no_sooner(base, shorter)  # 60/300 goes on from where 20/200 stopped
    assert not stops_no_sooner(shorter, base)  # a recipe that stops sooner is another run
    assert stops_no_sooner(variant(early_stop=0), base)  # 0: never early
    assert not stops_no_sooner(base, variant(early_stop=0))
    cosine = variant(schedule="cosine")  # its rate at epoch e depends on the epoch count
    assert not stops_no_sooner(cosine, variant(schedule="cosine", epochs=200))


def test_the_study_presets_test_every_run_on_the_full_splits(tmp_path) -> None:
    """Their test errors are the issue's protocol: all 10,000 test scenes, policy mean, one
    rollout (the first N scenes of a split are not a random sample of it). The paper preset's
    later jobs depend on finished runs, so its file is checked for any eval_limit instead."""
    from ramlab import study
    from ramlab.study.preset import preset_path

    assert "eval_limit" not in preset_path("paper").read_text()
    runner = study.Study(study.load_preset("quick"), tmp_path / "out", log=lambda _: None)
    configs = [runner.run_config(job) for job in runner.jobs() if job.kind == "train"]
    assert len(configs) == 4
    for config in configs:
        assert config.train.eval_limit is None and config.train.test
        assert config.train.eval_rollouts == 1 and not config.train.eval_sample


def test_the_quick_preset_still_trains_what_results_quick_measured(tmp_path) -> None:
    """results/quick/ is the quick study's measured output, so `ramlab study quick` must still
    train those runs: a change to the translated60 recipe that the quick preset inherits
    (schedule, loss) would make the README's quick numbers stale."""
    from ramlab import study

    runner = study.Study(study.load_preset("quick"), tmp_path / "out", log=lambda _: None)
    configs = {job.run: runner.run_config(job) for job in runner.jobs() if job.kind == "train"}
    measured = sorted(path.name for path in (RESULTS.parent / "quick" / "runs").iterdir())
    assert sorted(configs) == measured
    for run, config in configs.items():
        result = json.loads((RESULTS.parent / "quick" / "runs" / run / "result.json").read_text())
        trained = RunConfig.from_dict(result["config"])
        assert what_shapes_training(trained) == what_shapes_training(config), run


def test_train_from_a_recipe_name_with_overrides(fake_mnist, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    tiny = [*TINY, "--epochs", "2", "--early-stop", "0"]
    assert main(["train", "ram", "--config", "translated60", *tiny, "--out", str(out)]) == 0
    saved = load_yaml(out / "config.yaml")
    recipe = load_yaml(config_path("translated60"))
    assert saved["train"]["schedule"] == recipe["train"]["schedule"] == "exponential"
    assert saved["model_config"]["core"] == recipe["model_config"]["core"]
    assert saved["model_config"]["hidden"] == 12  # the option, over the recipe


def test_m_rollouts_and_monte_carlo_evaluation_end_to_end(fake_mnist, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    options = ["--rollouts", "3", "--baseline", "rollouts", "--schedule", "plateau", "--eval-rollouts", "2"]
    assert main(["train", "ram", *TINY, *options, "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["rollouts_seen"] == 16 * 3
    assert "averaged over 2 rollouts" in result["test_protocol"]
    lines = read_metrics(out / "metrics.jsonl")
    assert any("grad/policy" in line for line in lines)
    capsys.readouterr()

    assert main(["eval", str(out), "--rollouts", "4", "--limit", "8"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["rollouts"] == 4 and evaluation["sample"] is True
    assert "averaged over 4 rollouts (Monte Carlo)" in evaluation["protocol"]
    assert main(["eval", str(out), "--rollouts", "0"]) == 2
    assert "--rollouts must be >= 1" in capsys.readouterr().err


def test_an_unknown_config_lists_the_recipes(tmp_path, capsys) -> None:
    assert main(["train", "ram", "--config", "clutered60", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "clutered60: no such config file" in err and "cluttered60, mnist, translated60" in err


def test_a_study_group_can_start_from_the_recipes(tmp_path) -> None:
    from ramlab import study

    preset = tmp_path / "p.yaml"
    preset.write_text(
        yaml.safe_dump(
            {
                "seeds": 1,
                "train": {"eval_limit": 100},
                "runs": [
                    {
                        "name": "ram",
                        "model": "ram",
                        "data": ["translated60", "mnist"],
                        "recipe": True,
                        "train": {"epochs": 3},
                        "model_config": {"reward": "sparse+infogain"},
                    }
                ],
            }
        )
    )
    loaded = study.load_preset(preset)
    runner = study.Study(loaded, tmp_path / "out", log=lambda _: None)
    configs = {job.run: runner.run_config(job) for job in runner.jobs() if job.kind == "train"}
    mnist = configs["ram-mnist-seed0"]
    recipe = RunConfig.load(config_path("mnist"))
    assert (mnist.model_config.glimpse_size, mnist.model_config.scales) == (8, 1)  # the recipe's
    assert mnist.model_config.core == recipe.model_config.core
    assert mnist.train.schedule == recipe.train.schedule and mnist.train.grad_clip == recipe.train.grad_clip
    assert mnist.train.epochs == 3 and mnist.model_config.reward == "sparse+infogain"  # the group's
    assert mnist.train.eval_limit == 100  # the preset's, where the recipe is silent
    assert configs["ram-translated60-seed0"].model_config.scales == 3

    resnet = {"name": "cnn", "model": "resnet", "data": ["translated60", "mnist"], "recipe": True}
    preset.write_text(yaml.safe_dump({"seeds": 1, "runs": [resnet]}))
    with pytest.raises(RamlabError, match="no resnet recipe for translated60, mnist"):
        study.load_preset(preset)


def test_the_paper_study_trains_every_ram_from_its_recipe() -> None:
    """The full study's RAMs are the recipes that met the paper's errors, with only the
    reward, the glimpse count, the seed and how they run changed (the 30-epoch RAMs it trained
    before were 2-3x the paper's errors); the centred-digit RAM is translated60's recipe."""
    from ramlab import study
    from ramlab.study.preset import run_config

    paper = study.load_preset("paper")
    changed = {"reward", "glimpses", "seed", "policy"}  # policy: the random-glimpse control
    checked = set()
    for group in (g for g in paper.runs if g.model == "ram"):
        for data in group.data:
            config = run_config(group, data, 2, paper.train, where="", reward="sparse+bbox")
            recipe = RunConfig.load(config_path("translated60" if data == "centred60" else data))
            assert config.data == data and config.train.seed == 2 and config.train.compile
            got, want = what_shapes_training(config), what_shapes_training(recipe)
            for section in ("train", "model_config"):
                differ = {k for k in want[section] if got[section][k] != want[section][k]}
                assert differ <= changed, (group.name, data, differ)
            assert config.model_config.glimpses == group.model_config.get("glimpses", 6)
            checked.add(data)
    assert checked == {*GLIMPSES, "centred60"}


def test_a_recipe_name_is_the_recipe_even_beside_a_file_of_that_name(tmp_path, monkeypatch) -> None:
    # A stray file named `mnist` in the working folder replaced the recipe, in studies too.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnist").write_text("model: ram\ndata: mnist\n")
    assert config_path("mnist") == RECIPE_DIR / "mnist.yaml"
    assert config_path("./mnist").resolve() == tmp_path / "mnist"  # the file, named as a path
