"""The preset file's schema: a pydantic model per section, and one clear error for a wrong file.

    description, seeds, device, train      the study's text, seeds and defaults of every run
    runs:       [{name, model, data, seeds, recipe, train, model_config, per_data, best_reward_of}]
    evaluate:   {glimpses, sampled, limit}                       (EvalSpec)
    robustness: [{runs, shifts, limit, sample}]                  (RobustnessSpec)
    cost:       {models, sizes, batch, repeats, device, compile, configs}   (CostSpec)

A `train` or `model_config` section takes any of the fields of `TrainConfig` or of the
model's config dataclass, with their types (`config_section`); their values are checked when
the run configs are built (`ramlab.study.preset`). YAML values are taken as they are (strict:
"2" is no number). `ramlab.study.messages` turns the errors into one RamlabError.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from ramlab.config import field_names
from ramlab.cost_rows import REPEATS
from ramlab.data.datasets import dataset_spec
from ramlab.errors import RamlabError
from ramlab.models.base import FeedForwardModel
from ramlab.models.registry import model_class, model_config_class, model_names
from ramlab.runconfig import TrainConfig, recipe_names
from ramlab.study.sections import Section, fields_of
from ramlab.study.values import (
    Count,
    DatasetName,
    DatasetNames,
    Device,
    GroupName,
    Levels,
    ModelName,
    Recipe,
    Seeds,
    invalid,
    names_of,
    one_of,
    problem,
    shift_names,
)

TrainFields = fields_of(TrainConfig)


@functools.cache
def _per_data(model: str) -> TypeAdapter:
    """Dataset name -> {train, model_config} of a group of `model`."""
    per_data = create_model(
        f"PerData_{model}",
        __base__=Section,
        train=(TrainFields, {}),
        model_cfg=(fields_of(model_config_class(model)), Field({}, alias="model_config")),
    )
    return TypeAdapter(dict[DatasetName, per_data | None])


@functools.cache
def _cost_configs() -> TypeAdapter:
    """Model name -> its config fields, for every registered model."""
    fields = {name: (fields_of(model_config_class(name)), None) for name in model_names()}
    return TypeAdapter(create_model("CostConfigs", __base__=Section, **fields))


class Group(Section):
    """A run group as the YAML gives it (the preset makes a `RunGroup` of it)."""

    name: GroupName
    model: ModelName
    data: DatasetNames
    seeds: Seeds | None = None
    recipe: Recipe = False
    train: TrainFields = Field(default_factory=dict)
    model_cfg: Any = Field(default_factory=dict, alias="model_config")
    per_data: Any = Field(default_factory=dict)
    best_reward_of: names_of("group") | None = None

    @field_validator("model_cfg", "per_data")
    @classmethod
    def _of_the_model(cls, value: Any, info: ValidationInfo) -> dict:
        model = info.data.get("model")
        if model is None:  # a wrong model is reported on its own
            return {}
        if info.field_name == "model_cfg":
            return TypeAdapter(fields_of(model_config_class(model))).validate_python(value)
        entries = _per_data(model).validate_python({} if value is None else value)
        return {d: e.model_dump(by_alias=True) if e else {} for d, e in entries.items()}

    @model_validator(mode="after")
    def _per_data_is_of_its_data(self) -> Group:
        for name in self.per_data:
            if name not in self.data:
                raise invalid(
                    ("per_data", name),
                    f"{name} is not in this group's data ({', '.join(self.data)}), so these "
                    "settings would reach no run",
                )
        return self

    @model_validator(mode="after")
    def _recipes_exist(self) -> Group:
        wrong = ""
        if self.recipe is True:  # each dataset's own recipe
            missing = sorted(set(self.data) - set(recipe_names())) if self.model == "ram" else self.data
            wrong = f"no {self.model} recipe for {', '.join(missing)}" if missing else ""
        elif self.recipe and self.model != "ram":  # one recipe, by name, for every dataset
            wrong = f"{self.recipe} is a ram recipe, not a {self.model} one"
        if wrong:
            raise invalid(("recipe",), f"{wrong}; ram recipes: {', '.join(recipe_names())}", self.recipe)
        return self


class EvalSpec(Section, frozen=True):
    """Extra evaluation of every run: sampled policy, where the glimpses go, trajectories."""

    glimpses: Annotated[int, Field(ge=0)] = 6
    """Test scenes drawn with their glimpse trajectories (0: none)."""
    sampled: bool = True
    """Also measure the test error with sampled glimpse locations."""
    limit: Count | None = None
    """Use N test scenes, a fixed random subset (None: all)."""


def _shift_list(value: Any) -> Any:
    """`shifts: [rotate, noise]` is `shifts: {rotate: null, noise: null}` (default levels)."""
    if isinstance(value, dict) and not value:
        raise problem("no shift given; name one or more, or leave `shifts` out for all")
    if not isinstance(value, list):
        return value
    if not value or not all(isinstance(v, str) for v in value):
        raise problem(f"expected a list of shift names or a mapping of shifts to levels; got {value!r}")
    return dict.fromkeys(value)


class RobustnessSpec(Section, frozen=True):
    """A robustness sweep of some runs."""

    runs: names_of("group") = ("all",)
    """Group names whose runs are swept, or all."""
    shifts: Annotated[dict[one_of("shift", shift_names), Levels | None], BeforeValidator(_shift_list)] = (
        Field(default_factory=lambda: dict.fromkeys(shift_names()))
    )
    """Shift name -> levels (None: the defaults)."""
    limit: Count | None = None
    """Test digits per level (None: all 10,000, the default, as `ramlab robustness`); N: a fixed
    random subset, the same at every level, with its sampling noise (about ±0.4 points at 3.5%)."""
    sample: bool = False
    """Sample glimpse locations instead of using the policy mean."""


def _has_policy(group: Group) -> bool:
    """Whether a group's runs draw their glimpse places from a learned policy (what a sampled
    sweep samples): a RAM not set to `policy: random`, here or for one of its datasets."""
    if issubclass(model_class(group.model), FeedForwardModel):
        return False
    configs = [
        group.model_cfg,
        *((entry or {}).get("model_config") or {} for entry in group.per_data.values()),
    ]
    return not any(config.get("policy") == "random" for config in configs)


def _cost_config_dicts(value: Any) -> dict:
    if value is None:
        return {}
    configs = _cost_configs().validate_python(value)
    out = {name: getattr(configs, name) for name in value}  # in the file's order
    for name, fields in out.items():
        for field in model_class(name).sized_fields:
            if field in fields:  # config_for_image_size sets it at every side
                raise invalid(
                    (name, field),
                    f"{name}'s {field} is set for each image side by the cost job: leave it out",
                    fields[field],
                )
    return out


SIZES = (28, 60, 100, 200, 400)


class CostSpec(Section, frozen=True):
    """Cost measurement of untrained models at several image sizes."""

    models: names_of("model", model_names) = ()
    """Registered model names (default: the models of the run groups)."""
    sizes: Annotated[tuple[Annotated[int, Field(ge=8)], ...], Field(strict=False, min_length=1)] = SIZES
    """Image sides in pixels."""
    batch: Count = 64
    """Batch of the throughput measurement (capped for large images)."""
    repeats: Count = REPEATS
    """Timed calls per latency and throughput measurement, the median taken (after warm-up)."""
    device: Device = "cpu"
    """Where to measure: cpu, cuda, auto."""
    compile: bool = False
    """Time the compiled fast path (torch.compile; CUDA graphs on a GPU) instead of the eager pass."""
    configs: Annotated[dict, PlainValidator(_cost_config_dicts)] = Field(default_factory=dict)
    """Model name -> config fields (default: the model's defaults), adapted to each size."""

    @field_validator("sizes")
    @classmethod
    def _each_size_once(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        twice = sorted({size for size in sizes if sizes.count(size) > 1})
        if twice:
            raise problem(f"size {twice[0]} is listed twice")
        return sizes


class PresetFile(Section):
    """A whole preset file; the cross-references between its sections are checked last."""

    description: str = ""
    seeds: Seeds = 1
    device: Device | None = None
    train: TrainFields = Field(default_factory=dict)
    runs: Annotated[list[Group], Field(min_length=1)]
    evaluate: EvalSpec | None = None
    robustness: list[RobustnessSpec] | None = None
    cost: CostSpec | None = None

    @model_validator(mode="after")
    def _cross_references(self) -> PresetFile:
        self._check_tested()
        groups: dict[str, Group] = {}
        for i, group in enumerate(self.runs):
            if group.name in groups:
                raise invalid(("runs", i, "name"), "used by another group; names must be unique", group.name)
            earlier = [g.name for g in groups.values() if g.model == group.model]
            if group.best_reward_of and "reward" not in field_names(model_config_class(group.model)):
                rewarded = [m for m in model_names() if "reward" in field_names(model_config_class(m))]
                raise invalid(
                    ("runs", i, "best_reward_of"),
                    f"model {group.model} has no reward to choose; best_reward_of is for: {', '.join(rewarded)}",
                )
            given = [("model_config",)] * ("reward" in group.model_cfg) + [
                ("per_data", d, "model_config")
                for d, e in group.per_data.items()
                if "reward" in (e.get("model_config") or {})
            ]
            if group.best_reward_of and given:
                raise invalid(
                    ("runs", i, *given[0], "reward"),
                    "a best_reward_of group trains the reward its compared groups chose on each dataset; "
                    "this one would be replaced: leave it out",
                )
            for name in group.best_reward_of or ():
                if name not in earlier:
                    raise invalid(
                        ("runs", i, "best_reward_of"),
                        f"{name!r} is not an earlier group of model {group.model}; allowed: "
                        f"{', '.join(earlier) or 'none'}",
                        name,
                    )
                missing = sorted(set(group.data) - set(groups[name].data))
                if missing:
                    raise invalid(
                        ("runs", i, "best_reward_of"), f"group {name!r} has no runs on {', '.join(missing)}"
                    )
            groups[group.name] = group
        self._check_sweeps(groups)
        if self.cost is not None:
            models = self.cost.models or tuple(dict.fromkeys(g.model for g in self.runs))
            for name in self.cost.configs:
                if name not in models:
                    raise invalid(("cost", "configs", name), f"unknown key; allowed: {', '.join(models)}")
            self.cost = self.cost.model_copy(update={"models": models})
        return self

    def _check_tested(self) -> None:
        """A study's runs are final models: its report, evaluation and sweeps read their test
        split, so none may be trained with `test: false` (that is for tuning runs). A run's
        seed is its index among the group's seeds, so no `train` may set one (it was dropped);
        and `device:` and `train.device` are one setting, given once."""
        trains = [(("train",), self.train)]
        for i, group in enumerate(self.runs):
            trains.append((("runs", i, "train"), group.train))
            trains += [
                (("runs", i, "per_data", d, "train"), e.get("train") or {}) for d, e in group.per_data.items()
            ]
        if self.device is not None and "device" in self.train:
            raise invalid(
                ("train", "device"),
                f"the device is given twice, as `device: {self.device}` and here; keep one",
                self.train["device"],
            )
        for loc, train in trains:
            if "seed" in train:
                raise invalid(
                    (*loc, "seed"),
                    "a run's seed is its index 0..seeds-1 (the preset's `seeds`, a group's `seeds`, "
                    "or --seeds): a seed here would be replaced; leave it out",
                    train["seed"],
                )
            if train.get("test") is False:
                raise invalid(
                    (*loc, "test"),
                    "a study's runs are its final models, tested once at the end (its report, "
                    "evaluation and sweeps read their test split): leave test true; tune with "
                    "`ramlab train ... --test false` instead",
                    False,
                )

    def _check_sweeps(self, groups: dict[str, Group]) -> None:
        from ramlab.robustness import resolve_levels

        swept: set[str] = set()
        for i, sweep in enumerate(self.robustness or ()):
            allowed = ["all", *groups]
            for name in sweep.runs:
                if name not in allowed:
                    raise invalid(
                        ("robustness", i, "runs"), f"unknown group {name!r}; allowed: {', '.join(allowed)}"
                    )
            targets = list(groups) if "all" in sweep.runs else list(sweep.runs)
            twice = [name for name in targets if name in swept]
            if twice:
                raise invalid(
                    ("robustness", i, "runs"),
                    f"group {twice[0]!r} is already in an earlier sweep; give a group one sweep",
                )
            swept.update(targets)
            unsampled = [name for name in targets if sweep.sample and not _has_policy(groups[name])]
            if unsampled:  # its sweep job would fail when it comes, after the training
                raise invalid(
                    ("robustness", i, "sample"),
                    f"group {unsampled[0]!r} has no location policy to sample (random glimpse "
                    "places, or a model without glimpses): list the groups to sample in runs, "
                    "and sweep it without sample",
                )
            for data in sorted({d for name in targets for d in groups[name].data}):
                try:
                    resolve_levels(dataset_spec(data), sweep.shifts)
                except RamlabError as exc:
                    raise invalid(("robustness", i, "shifts"), f"{exc} (dataset {data})") from None
