"""A study's preset: the run groups, evaluation, robustness sweeps and cost it asks for.

A preset is a YAML file, packaged (`ramlab/presets/<name>.yaml`) or a user's. `load_preset`
checks it against the schema (`ramlab.study.schema`) and builds every run's config, so a
wrong key, name, type or value fails before any job, with the file, the key and what is
allowed. `run_config` is how a group, a dataset and a seed become a run's `RunConfig`:

    preset train  <  the recipe (recipe: true, the dataset's; recipe: NAME, that one)
                  <  group train / model_config
                  <  group per_data[dataset]  <  seed (and the best reward, best_reward_of)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ramlab.config import from_dict, load_yaml
from ramlab.errors import RamlabError
from ramlab.models.registry import model_class, model_config_class
from ramlab.runconfig import RunConfig, TrainConfig, config_path
from ramlab.study.messages import preset_error
from ramlab.study.schema import CostSpec, EvalSpec, PresetFile, RobustnessSpec
from ramlab.study.values import MAX_SEEDS

PRESET_DIR = Path(__file__).parent.parent / "presets"


@dataclass(frozen=True)
class RunGroup:
    """Training runs of one model config on one or more datasets, over seeds 0..seeds-1."""

    name: str
    """Unique name; run directories are `<name>-<data>-seed<S>`."""
    model: str
    """A registered model: ram, resnet, fc, convnet, ..."""
    data: tuple[str, ...]
    """Named datasets (one or a list)."""
    seeds: int | None = None
    """Seeds of this group; None: the preset's `seeds` (which --seeds overrides)."""
    train: dict = field(default_factory=dict)
    """TrainConfig fields over the preset's `train`."""
    model_config: dict = field(default_factory=dict)
    """The model's config fields."""
    per_data: dict = field(default_factory=dict)
    """Dataset name -> {train: {...}, model_config: {...}} for that dataset only."""
    recipe: bool | str = False
    """Start each dataset's runs from its committed recipe (`ramlab/presets/recipes/<data>.yaml`,
    RAM only), or, given a recipe's name, every dataset's from that one (e.g. translated60's
    for centred60, which has none); the group's `train` and `model_config` override it."""
    best_reward_of: tuple[str, ...] = ()
    """Groups whose rewards compete: each dataset's runs take the reward of the group with
    the lowest mean validation error on it (those groups must come earlier)."""
    recipes: dict = field(default_factory=dict, compare=False)
    """Recipe name -> the recipe as read when the preset loaded (a study's: as it started,
    `ramlab.study.recipes`), so every run of the group trains on one version of it."""

    def recipe_names(self) -> set[str]:
        """The recipes this group's runs start from."""
        if not self.recipe:
            return set()
        return {data if self.recipe is True else str(self.recipe) for data in self.data}


@dataclass(frozen=True)
class Preset:
    name: str
    source: str
    """The file it was read from (for messages)."""
    raw: dict
    """The YAML as read, with --seeds applied (saved as study.yaml)."""
    description: str
    seeds: int
    train: dict
    runs: tuple[RunGroup, ...]
    evaluate: EvalSpec | None
    robustness: tuple[RobustnessSpec, ...]
    cost: CostSpec | None

    def group(self, name: str) -> RunGroup:
        for group in self.runs:
            if group.name == name:
                return group
        raise RamlabError(f"{self.source}: no run group named {name!r}")


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name_or_file: str | Path) -> Path:
    """A packaged preset by name, or a user's YAML file."""
    text = str(name_or_file)
    if text in preset_names():
        return PRESET_DIR / f"{text}.yaml"
    path = Path(text)
    if path.is_file():
        return path
    raise RamlabError(
        f"unknown preset {text!r}: not a packaged preset ({', '.join(preset_names())}) nor a YAML file"
    )


def _check_cost_sizes(cost: CostSpec, configs: dict[str, Any], *, where: str) -> None:
    """Every cost model (the schema has filled in the default ones) builds at every size,
    checked now rather than in the cost job, which runs after every training."""
    from ramlab.cost import check_sizes

    try:
        check_sizes(list(cost.models), list(cost.sizes), configs)
    except RamlabError as exc:
        raise RamlabError(f"{where}: {exc}") from None


def _check_fits(config: RunConfig, *, where: str) -> None:
    """The model fits its dataset's canvas (a glimpse or kernel wider than it), checked now
    rather than in the training job, which may run hours after the study starts."""
    from ramlab.data.datasets import image_size

    try:
        model_class(config.model).check_image_size(config.model_config, image_size(config.data))
    except RamlabError as exc:
        raise RamlabError(f"{where}: {exc}") from None


def load_preset(name_or_file: str | Path, *, seeds: int | None = None) -> Preset:
    """Read and check a preset: every key, model, dataset, shift and config value. A wrong
    one is reported with the file, the key and the allowed values."""
    path = preset_path(name_or_file)
    source = str(path)
    raw = load_yaml(path)
    if seeds is not None:
        if not 1 <= seeds <= MAX_SEEDS:
            raise RamlabError(
                f"--seeds must be 1..{MAX_SEEDS} (the paper preset's 3 seeds are already ~300 jobs), got {seeds}"
            )
        raw = {**raw, "seeds": seeds}
    try:
        spec = PresetFile.model_validate(raw)
    except ValidationError as exc:
        raise preset_error(exc, source=source, raw=raw) from None
    train = dict(spec.train)
    if spec.device is not None:
        train.setdefault("device", spec.device)
    groups = []
    for i, entry in enumerate(spec.runs):
        group = RunGroup(
            name=entry.name,
            model=entry.model,
            data=entry.data,
            seeds=entry.seeds,
            train=entry.train,
            model_config=entry.model_cfg,
            per_data=entry.per_data,
            recipe=entry.recipe,
            best_reward_of=entry.best_reward_of or (),
        )
        # The recipes read once, here (the schema has checked their names): every run of the
        # group builds on this copy (a study's, replaced by its own: `ramlab.study.recipes`).
        group = replace(group, recipes={name: load_yaml(config_path(name)) for name in group.recipe_names()})
        for data in group.data:  # every run's config is built now, so a bad value fails before any job
            where = f"{source}: runs[{i}] ({group.name}) on {data}"
            try:
                config = run_config(group, data, 0, train, where=where)
            except RamlabError as exc:
                raise _top_level_train_error(train, str(exc), source=source) or exc from None
            _check_fits(config, where=where)
        groups.append(group)
    if spec.cost is not None:
        configs = {
            name: model_config(name, values, where=f"{source}: cost.configs.{name}")
            for name, values in spec.cost.configs.items()
        }
        _check_cost_sizes(spec.cost, configs, where=f"{source}: cost")
    return Preset(
        name=path.stem,
        source=source,
        raw=raw,
        description=spec.description.strip(),
        seeds=spec.seeds,
        train=train,
        runs=tuple(groups),
        evaluate=spec.evaluate,
        robustness=tuple(spec.robustness or ()),
        cost=spec.cost,
    )


def _top_level_train_error(train: dict, message: str, *, source: str) -> RamlabError | None:
    """The preset's own `train:` error, when a run failed on it: a bad value there is named
    there, not under the first group that inherits it. None when `train:` alone is valid, or
    fails on something else than the run did (a group overrides the value)."""
    try:
        from_dict(TrainConfig, train, where=f"{source}: train")
    except RamlabError as exc:
        reason = str(exc).removeprefix(f"{source}: train: ")
        return exc if message.endswith(reason) else None
    return None


def _prefixed(exc: RamlabError, where: str) -> RamlabError:
    text = str(exc)
    return RamlabError(text if text.startswith(where) else f"{where}: {text}")


def model_config(model: str, values: dict, *, where: str) -> Any:
    """The config dataclass of `model` with `values` (a clear error names `where`)."""
    try:
        return from_dict(model_config_class(model), values or {}, where=where)
    except RamlabError as exc:
        raise _prefixed(exc, where) from None


def run_config(
    group: RunGroup, data: str, seed: int, train: dict, *, where: str, reward: str | None = None
) -> RunConfig:
    """The config of the run of `group` on `data` with `seed` (the preset's `train` below
    the group's settings; `reward` replaces the model's, for best_reward_of groups)."""
    extra = group.per_data.get(data) or {}
    recipe = data if group.recipe is True else group.recipe
    base = group.recipes[recipe] if recipe else {}
    model_fields = {
        **(base.get("model_config") or {}),
        **group.model_config,
        **(extra.get("model_config") or {}),
    }
    if reward is not None:
        model_fields["reward"] = reward
    spec = {
        "model": group.model,
        "data": data,
        "train": {
            **train,
            **(base.get("train") or {}),
            **group.train,
            **(extra.get("train") or {}),
            "seed": seed,
        },
        "model_config": model_fields,
    }
    try:
        return RunConfig.from_dict(spec, where=where)
    except RamlabError as exc:
        raise _prefixed(exc, where) from None
