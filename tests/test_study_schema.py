"""The preset schema (pydantic): every problem is one line of one RamlabError naming the
file, the key path as written in the YAML, and what is allowed; a valid preset gives the
spec objects the study uses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from test_study import TINY_RAM, write_preset

from ramlab.data.datasets import DATASETS
from ramlab.errors import RamlabError
from ramlab.models.registry import model_names
from ramlab.runconfig import TrainConfig
from ramlab.study import CostSpec, EvalSpec, RobustnessSpec, load_preset
from ramlab.study.schema import SIZES

RAM_KEYS = "glimpses, glimpse_size, scales, glimpse_hidden"


def group(name: str, **fields) -> dict:
    return {"name": name, "model": "ram", "data": "translated60", "model_config": TINY_RAM, **fields}


def error_of(tmp_path, **sections) -> tuple[str, str]:
    """(the preset file's path, the message of the error loading it)."""
    path = write_preset(tmp_path / "bad.yaml", **sections)
    with pytest.raises(RamlabError) as caught:
        load_preset(path)
    assert not isinstance(caught.value.__cause__, ValidationError)  # no pydantic text leaks
    return str(path), str(caught.value)


# ---- key path and allowed values ------------------------------------------------------------
@pytest.mark.parametrize(
    ("sections", "line"),
    [
        (
            {"runs": [group("a"), group("b"), group("c", data=["mnist", "mnist9"])]},
            f"runs[2] (c).data: unknown dataset 'mnist9'; allowed: {', '.join(DATASETS)}",
        ),
        (
            {"runs": [group("x", model="vit")]},
            f"runs[0] (x).model: unknown model 'vit'; allowed: {', '.join(model_names())}",
        ),
        (
            {"runs": [group("x", per_data={"mnist9": {}})]},
            f"runs[0] (x).per_data.mnist9: unknown dataset 'mnist9'; allowed: {', '.join(DATASETS)}",
        ),
        (
            {"robustness": [{"shifts": {"blur": [1]}}]},
            "robustness[0].shifts.blur: unknown shift 'blur'; allowed: translate, rotate, scale, noise, clutter",
        ),
        (
            {"cost": {"models": ["ram", "vit"]}},
            f"cost.models: unknown model 'vit'; allowed: {', '.join(model_names())}",
        ),
        ({"runs": [group("x y")]}, "runs[0].name: expected a name of letters, digits, _ . + -; got 'x y'"),
    ],
)
def test_a_wrong_name_lists_the_allowed_ones(tmp_path, sections, line):
    path, message = error_of(tmp_path, **sections)
    assert message == f"{path}: {line}"


@pytest.mark.parametrize(
    ("sections", "line"),
    [
        ({"epochs": 3}, "epochs: unknown key; allowed: description, seeds, device, train, runs, evaluate"),
        ({"train": {"epoch": 2}}, "train.epoch: unknown key; allowed: epochs, batch_size, optimizer"),
        (
            {"runs": [group("x", colour=1)]},
            "runs[0] (x).colour: unknown key; allowed: name, model, data, seeds",
        ),
        (
            {"runs": [group("x", per_data={"mnist": {"model_config": {"glimpse": 3}}})]},
            f"runs[0] (x).per_data.mnist.model_config.glimpse: unknown key; allowed: {RAM_KEYS}",
        ),
        (
            {"runs": [group("x", per_data={"mnist": {"optimizer": "sgd"}})]},
            "runs[0] (x).per_data.mnist.optimizer: unknown key; allowed: train, model_config",
        ),
        ({"evaluate": {"glimpse": 2}}, "evaluate.glimpse: unknown key; allowed: glimpses, sampled, limit"),
        (
            {"cost": {"configs": {"resnet": {"widths": [4]}}, "models": ["ram"]}},
            "cost.configs.resnet: unknown key; allowed: ram",
        ),
        (
            {"cost": {"configs": {"ram": {"width": 4}}}},
            f"cost.configs.ram.width: unknown key; allowed: {RAM_KEYS}",
        ),
    ],
)
def test_an_unknown_key_lists_the_keys_of_its_section(tmp_path, sections, line):
    path, message = error_of(tmp_path, **sections)
    assert message.startswith(f"{path}: {line}"), message


@pytest.mark.parametrize(
    ("sections", "line"),
    [
        ({"seeds": "two"}, "seeds: expected int; got 'two'"),
        (  # the study's cost rows chose the RAM's scales per side and dropped this silently
            {"cost": {"configs": {"ram": {"scales": 2}}}},
            "cost.configs.ram.scales: ram's scales is set for each image side by the cost job: leave it out",
        ),
        ({"cost": {"repeats": 0}}, "cost.repeats: must be a whole number >= 1; got 0"),
        ({"seeds": True}, "seeds: expected int; got True"),
        ({"train": {"lr": "fast"}}, "train.lr: expected a number; got 'fast'"),
        ({"train": {"epochs": 2.0}}, "train.epochs: expected int; got 2.0"),
        (
            {"runs": [group("x", recipe="yes")]},
            "runs[0] (x).recipe: expected true, false or a recipe name (cluttered100, cluttered60, mnist, "
            "translated60); got 'yes'",
        ),
        ({"device": 0}, "device: expected auto, cpu, cuda or cuda:N; got 0"),
        ({"description": ["a"]}, "description: expected text; got ['a']"),
        ({"runs": {"name": "x"}}, "runs: expected a list; got {'name': 'x'}"),
        ({"runs": []}, "runs: needs at least 1 item(s); got []"),
        ({"train": 5}, "train: expected a mapping with keys epochs, batch_size, optimizer, lr"),
        ({"runs": ["x"]}, "runs[0]: expected a mapping with keys name, model, data, seeds, recipe"),
        (
            {"runs": [{"name": "x", "model": "resnet", "data": "mnist", "model_config": {"widths": 4}}]},
            "runs[0] (x).model_config.widths: expected a list; got 4",
        ),
        ({"runs": [{"name": "x", "data": "mnist"}]}, "runs[0] (x).model: missing: this key is required"),
        (
            {"runs": [group("x", data=[])]},
            "runs[0] (x).data: expected a dataset or a list of datasets from: mnist",
        ),
        (
            {"robustness": [{"shifts": {"rotate": []}}]},
            "robustness[0].shifts.rotate: needs at least 1 item(s)",
        ),
        (
            {"robustness": [{"shifts": {"rotate": ["a"]}}]},
            "robustness[0].shifts.rotate[0]: expected a number",
        ),
        ({"robustness": {"runs": "all"}}, "robustness: expected a list"),
        ({"cost": {"sizes": [28, 4]}}, "cost.sizes[1]: must be a whole number >= 8; got 4"),
        ({"cost": {"sizes": [28, 60, 28]}}, "cost.sizes: size 28 is listed twice"),
        ({"cost": {"device": "gpu"}}, "cost.device: expected auto, cpu, cuda or cuda:N; got 'gpu'"),
        (
            {"runs": [group("x", per_data={"cluttered60": {"train": {"epochs": 9}}})]},
            "runs[0] (x).per_data.cluttered60: cluttered60 is not in this group's data (translated60), "
            "so these settings would reach no run",
        ),
        ({"evaluate": {"limit": 0}}, "evaluate.limit: must be a whole number >= 1; got 0"),
        ({"seeds": 1000}, "seeds: must be a whole number <= 100; got 1000"),
        ({"runs": [group("x", seeds=101)]}, "runs[0] (x).seeds: must be a whole number <= 100; got 101"),
        (
            {"runs": [group("x", data=["translated60", "mnist", "translated60"])]},
            "runs[0] (x).data: dataset 'translated60' is listed twice",
        ),
    ],
)
def test_a_wrong_type_or_value_says_what_is_expected(tmp_path, sections, line):
    path, message = error_of(tmp_path, **sections)
    assert message.startswith(f"{path}: {line}"), message


def test_all_the_problems_are_listed_in_one_error(tmp_path):
    path, message = error_of(tmp_path, seeds=0, train={"epoch": 2}, evaluate={"glimpses": "all"})
    assert message.splitlines() == [
        f"{path}: seeds: must be a whole number >= 1; got 0",
        f"{path}: train.epoch: unknown key; allowed: {', '.join(TrainConfig.__dataclass_fields__)}",
        f"{path}: evaluate.glimpses: expected int; got 'all'",
    ]


# ---- references between sections ------------------------------------------------------------
@pytest.mark.parametrize(
    ("sections", "line"),
    [
        ({"runs": [group("a"), group("a")]}, "runs[1] (a).name: used by another group; names must be unique"),
        (
            {"runs": [group("a", best_reward_of="b"), group("b")]},
            "runs[0] (a).best_reward_of: 'b' is not an earlier group of model ram; allowed: none",
        ),
        (
            {
                "runs": [
                    {"name": "cnn", "model": "resnet", "data": "mnist"},
                    group("b", best_reward_of=["cnn"]),
                ]
            },
            "runs[1] (b).best_reward_of: 'cnn' is not an earlier group of model ram; allowed: none",
        ),
        (
            {"runs": [group("a"), group("b", data=["translated60", "mnist"], best_reward_of="a")]},
            "runs[1] (b).best_reward_of: group 'a' has no runs on mnist",
        ),
        (
            {
                "runs": [
                    {"name": "r1", "model": "resnet", "data": "mnist"},
                    {"name": "r2", "model": "resnet", "data": "mnist", "best_reward_of": "r1"},
                ]
            },
            "runs[1] (r2).best_reward_of: model resnet has no reward to choose; best_reward_of is for: ram",
        ),
        (
            {"runs": [group("a", recipe=True, data="centred60")]},
            "runs[0] (a).recipe: no ram recipe for centred60; ram recipes: ",
        ),
        (
            {"runs": [{"name": "cnn", "model": "resnet", "data": "centred60", "recipe": "translated60"}]},
            "runs[0] (cnn).recipe: translated60 is a ram recipe, not a resnet one; ram recipes: cluttered100",
        ),
        (
            {"robustness": [{"runs": "ram"}, {"runs": "all"}]},
            "robustness[1].runs: group 'ram' is already in an earlier sweep; give a group one sweep",
        ),
        ({"robustness": [{"runs": ["nope"]}]}, "robustness[0].runs: unknown group 'nope'; allowed: all, ram"),
        # A sampled sweep of a run with no policy to sample failed when its job came, hours in.
        (
            {
                "runs": [
                    group("a"),
                    group(
                        "b",
                        data=["translated60", "mnist"],
                        per_data={"mnist": {"model_config": {"policy": "random"}}},
                    ),
                ],
                "robustness": [{"runs": ["a", "b"], "sample": True}],
            },
            "robustness[0].sample: group 'b' has no location policy to sample",
        ),
        (
            {
                "runs": [group("a"), {"name": "cnn", "model": "resnet", "data": "mnist"}],
                "robustness": [{"sample": True}],
            },
            "robustness[0].sample: group 'cnn' has no location policy to sample",
        ),
        # Settings that were accepted and then replaced (a review found each silently dropped):
        ({"train": {"seed": 5}}, "train.seed: a run's seed is its index 0..seeds-1"),
        ({"runs": [group("a", train={"seed": 5})]}, "runs[0] (a).train.seed: a run's seed is its index"),
        (
            {"runs": [group("a", per_data={"translated60": {"train": {"seed": 5}}})]},
            "runs[0] (a).per_data.translated60.train.seed: a run's seed is its index",
        ),
        (
            {
                "runs": [
                    group("a"),
                    group("b", best_reward_of="a", model_config={**TINY_RAM, "reward": "bbox"}),
                ]
            },
            "runs[1] (b).model_config.reward: a best_reward_of group trains the reward its compared groups chose",
        ),
        (
            {"device": "cpu", "train": {"device": "cuda"}},
            "train.device: the device is given twice, as `device: cpu` and here; keep one",
        ),
    ],
)
def test_references_to_other_groups_are_checked(tmp_path, sections, line):
    path, message = error_of(tmp_path, **sections)
    assert message.startswith(f"{path}: {line}"), message


# ---- what a valid preset gives ----------------------------------------------------------------
def test_a_valid_preset_gives_the_spec_objects_with_their_defaults(tmp_path):
    path = write_preset(
        tmp_path / "ok.yaml",
        runs=[group("a", seeds=2, per_data={"translated60": {"train": {"epochs": 1}}}), group("b")],
        evaluate={},
        robustness=[{"runs": "a", "shifts": ["rotate"]}, {"runs": ["b"], "shifts": {"noise": [0, 0.5]}}],
        cost={"configs": {"ram": {"glimpses": 2}}},
    )
    preset = load_preset(path)
    assert preset.evaluate == EvalSpec() == EvalSpec(glimpses=6, sampled=True, limit=None)
    assert preset.robustness == (
        RobustnessSpec(runs=("a",), shifts={"rotate": None}),
        RobustnessSpec(runs=("b",), shifts={"noise": [0, 0.5]}, limit=None, sample=False),
    )
    assert preset.cost == CostSpec(models=("ram",), sizes=SIZES, configs={"ram": {"glimpses": 2}})
    a = preset.group("a")
    assert (a.seeds, a.data, a.best_reward_of) == (2, ("translated60",), ())
    assert a.per_data == {"translated60": {"train": {"epochs": 1}, "model_config": {}}}
    assert a.model_config == TINY_RAM
    with pytest.raises(ValidationError):
        preset.evaluate.glimpses = 3  # frozen, like the dataclasses they replace


def test_a_cost_size_no_model_fits_fails_when_the_preset_loads(tmp_path):
    # it failed in the cost job, which runs after every training
    path, message = error_of(tmp_path, cost={"models": ["resnet", "ram"], "sizes": [28, 10]})
    assert message.startswith(f"{path}: cost: ram at 10 px: ram glimpse_size"), message
    assert "wider than the 10x10 canvas" in message
    # the ConvNet's 10 px kernel checked there too, not only when it is built
    path, message = error_of(tmp_path, cost={"models": ["convnet"], "sizes": [28, 9]})
    assert message.startswith(f"{path}: cost: convnet at 9 px: convnet kernel 10 is larger"), message


def test_yaml_numbers_in_exponent_form_are_numbers(tmp_path):
    # YAML 1.1 reads 1e-3 (no dot) as text: a preset refused it, a run config converted it
    path = tmp_path / "p.yaml"
    path.write_text(
        "seeds: 1\ntrain: {epochs: 1, lr: 1e-3, weight_decay: 5E-4}\n"
        "runs: [{name: r, model: ram, data: translated60, model_config: {std: 1e-1, glimpses: 2}}]\n"
        "robustness: [{shifts: {noise: [0, 1e-1]}}]\n"
    )
    preset = load_preset(path)
    assert preset.train["lr"] == 0.001 and preset.train["weight_decay"] == 0.0005
    assert preset.runs[0].model_config["std"] == 0.1
    assert preset.robustness[0].shifts["noise"] == [0.0, 0.1]


@pytest.mark.parametrize("device", ["cuda:x", "tpu", "cuda:", "cpu:0"])
def test_a_device_of_no_known_form_is_refused_before_any_run(device):
    with pytest.raises(RamlabError, match=f"device must be one of auto, cpu, cuda or cuda:N; got '{device}'"):
        TrainConfig(device=device)
    assert TrainConfig(device="cuda:1").device == "cuda:1"  # this machine need not have it


def test_text_that_looks_like_an_exponent_survives_a_save_and_a_load(tmp_path):
    # read as YAML 1.2 does, 1e5 is a number: a folder named so (--init-from 1e5) must be
    # written quoted, or the run's config.yaml would read back a float
    from ramlab.config import load_yaml, save_yaml

    data = {"init_from": "1e5", "lr": 1e-5, "hidden": 3, "name": "1e-3x"}
    assert load_yaml(save_yaml(tmp_path / "c.yaml", data)) == data


def test_an_empty_shift_list_or_init_from_is_refused(tmp_path):
    # `shifts: {}` swept nothing; `init_from: ''` meant no initialisation, silently.
    _, message = error_of(tmp_path, robustness=[{"runs": "all", "shifts": {}}])
    assert "robustness[0].shifts: no shift given" in message
    with pytest.raises(RamlabError, match="init_from is empty"):
        TrainConfig(init_from="")
