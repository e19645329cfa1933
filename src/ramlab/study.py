"""The study runner: a preset names every job of a study; `run_study` does the ones not done.

A preset (YAML, in `ramlab/presets/` or a user's file) lists groups of training runs, the
evaluations, robustness sweeps and cost measurements to make of them. The study directory:

    OUT/study.yaml                      the preset as run (after --seeds)
    OUT/runs/<group>-<data>-seed<S>/    a run directory per training job, and beside the
                                        trainer's files: eval.json, glimpses.png/.gif,
                                        robustness.json
    OUT/cost.json                       cost of every model at every image size
    OUT/jobs.jsonl                      one line per finished job (seconds, commit, command)
    OUT/report.md, OUT/report.html      the report (`ramlab report OUT`)

Jobs run in order (training, evaluation, robustness, cost). A job whose output exists is
skipped; an interrupted training resumes from its last.pt; a robustness sweep or a cost
measurement keeps what it already wrote. So a study stopped at any point continues where it
stopped, and a finished run is never redone.
"""

from __future__ import annotations

import json
import re
import sys
import time
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ramlab.config import flatten, load_yaml, save_yaml
from ramlab.data import datasets
from ramlab.errors import RamlabError
from ramlab.files import write_json
from ramlab.runconfig import RunConfig, TrainConfig, config_path, recipe_names

PRESET_DIR = Path(__file__).parent / "presets"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


# ---- the preset ---------------------------------------------------------------------------
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
    recipe: bool = False
    """Start each dataset's runs from its committed recipe (`ramlab/presets/recipes/<data>.yaml`,
    RAM only); the preset's and the group's `train` and `model_config` override it."""
    best_reward_of: tuple[str, ...] = ()
    """Groups whose rewards compete: each dataset's runs take the reward of the group with
    the lowest mean validation error on it (those groups must come earlier)."""


@dataclass(frozen=True)
class EvalSpec:
    """Extra evaluation of every run: sampled policy, where the glimpses go, trajectories."""

    glimpses: int = 6
    """Test scenes drawn with their glimpse trajectories (0: none)."""
    sampled: bool = True
    """Also measure the test error with sampled glimpse locations."""
    limit: int | None = None
    """Use only the first N test scenes (None: all)."""


@dataclass(frozen=True)
class RobustnessSpec:
    """A robustness sweep of some runs."""

    runs: tuple[str, ...] = ("all",)
    """Group names whose runs are swept, or all."""
    shifts: dict = field(default_factory=dict)
    """Shift name -> levels (None: the defaults)."""
    limit: int | None = 2000
    """Test scenes per level (None: all 10,000)."""
    sample: bool = False
    """Sample glimpse locations instead of using the policy mean."""


@dataclass(frozen=True)
class CostSpec:
    """Cost measurement of untrained models at several image sizes."""

    models: tuple[str, ...] = ()
    """Registered model names (default: the models of the run groups)."""
    sizes: tuple[int, ...] = (28, 60, 100, 200, 400)
    """Image sides in pixels."""
    batch: int = 64
    """Batch of the throughput measurement (capped for large images)."""
    device: str = "cpu"
    """Where to measure: cpu, cuda, auto."""
    configs: dict = field(default_factory=dict)
    """Model name -> config fields (default: the model's defaults), adapted to each size."""


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


TOP_KEYS = ("description", "seeds", "device", "train", "runs", "evaluate", "robustness", "cost")
GROUP_KEYS = (
    "name",
    "model",
    "data",
    "seeds",
    "recipe",
    "train",
    "model_config",
    "per_data",
    "best_reward_of",
)


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


class _Where:
    """Builds error messages that name the file and the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, message: str) -> RamlabError:
        return RamlabError(f"{self.source}: {key}: {message}")

    def keys(self, data: Any, allowed: typing.Sequence[str], key: str) -> dict:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise self.error(key, f"expected a mapping with keys {', '.join(allowed)}; got {data!r}")
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            where = f"{key}.{unknown[0]}" if key else unknown[0]
            raise self.error(where, f"unknown key; allowed: {', '.join(allowed)}")
        return data

    def integer(self, value: Any, key: str, *, low: int, none: bool = False) -> int | None:
        if value is None and none:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            kind = f"a whole number >= {low}" + (" or null" if none else "")
            raise self.error(key, f"must be {kind}; got {value!r}")
        return value

    def names(self, value: Any, key: str, allowed: typing.Sequence[str]) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise self.error(key, f"expected a name or a list of names from: {', '.join(allowed)}")
        for item in items:
            if item not in allowed:
                raise self.error(key, f"unknown value {item!r}; allowed: {', '.join(allowed)}")
        return tuple(items)

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false; got {value!r}")
        return value

    def fields_of(self, cls: type, data: Any, key: str) -> dict:
        """Keys and basic types of a config section against a dataclass (values are checked
        again, fully, when the dataclass is built)."""
        data = self.keys(data, [f.name for f in fields(cls)], key)
        hints = typing.get_type_hints(cls)
        for name, value in data.items():
            tp = hints[name]
            if typing.get_origin(tp) in (typing.Union, types.UnionType):
                if value is None and type(None) in typing.get_args(tp):
                    continue
                options = [a for a in typing.get_args(tp) if a is not type(None)]
                tp = options[0] if len(options) == 1 else object
            base = typing.get_origin(tp) or tp
            ok = {
                int: isinstance(value, int) and not isinstance(value, bool),
                float: isinstance(value, (int, float)) and not isinstance(value, bool),
                bool: isinstance(value, bool),
                str: isinstance(value, str),
                tuple: isinstance(value, list),
                list: isinstance(value, list),
            }.get(base, True)
            if not ok:
                raise self.error(
                    f"{key}.{name}", f"expected {getattr(base, '__name__', base)}; got {value!r}"
                )
        return data


def load_preset(name_or_file: str | Path, *, seeds: int | None = None) -> Preset:
    """Read and check a preset: every key, model, dataset, shift and config value. A wrong
    one is reported with the file, the key and the allowed values."""
    from ramlab.models.registry import model_config_class, model_names
    from ramlab.robustness import SHIFTS, resolve_levels

    path = preset_path(name_or_file)
    source = str(path)
    w = _Where(source)
    raw = load_yaml(path)
    w.keys(raw, TOP_KEYS, "")
    if seeds is not None:
        if seeds < 1:
            raise RamlabError(f"--seeds must be >= 1, got {seeds}")
        raw = {**raw, "seeds": seeds}
    n_seeds = w.integer(raw.get("seeds", 1), "seeds", low=1)
    device = raw.get("device")
    if device is not None and not isinstance(device, str):
        raise w.error("device", f"expected auto, cpu, cuda or cuda:N; got {device!r}")
    train = dict(w.fields_of(TrainConfig, raw.get("train"), "train"))
    if device is not None:
        train.setdefault("device", device)

    models, names = model_names(), list(datasets.DATASETS)
    groups: list[RunGroup] = []
    runs = raw.get("runs")
    if not isinstance(runs, list) or not runs:
        raise w.error("runs", "expected a list of run groups, each with keys " + ", ".join(GROUP_KEYS))
    for i, entry in enumerate(runs):
        key = f"runs[{i}]"
        entry = w.keys(entry, GROUP_KEYS, key)
        name = entry.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise w.error(f"{key}.name", f"expected a name of letters, digits, _ . + -; got {name!r}")
        key = f"runs[{i}] ({name})"
        if any(g.name == name for g in groups):
            raise w.error(f"{key}.name", "used by another group; names must be unique")
        model = entry.get("model")
        if model not in models:
            raise w.error(f"{key}.model", f"unknown value {model!r}; allowed: {', '.join(models)}")
        data = w.names(entry.get("data"), f"{key}.data", names)
        group_seeds = w.integer(entry.get("seeds"), f"{key}.seeds", low=1, none=True)
        config_class = model_config_class(model)
        group_train = w.fields_of(TrainConfig, entry.get("train"), f"{key}.train")
        model_config = w.fields_of(config_class, entry.get("model_config"), f"{key}.model_config")
        per_data = w.keys(entry.get("per_data"), names, f"{key}.per_data")
        for d, extra in per_data.items():
            extra = w.keys(extra, ("train", "model_config"), f"{key}.per_data.{d}")
            w.fields_of(TrainConfig, extra.get("train"), f"{key}.per_data.{d}.train")
            w.fields_of(config_class, extra.get("model_config"), f"{key}.per_data.{d}.model_config")
        recipe = w.boolean(entry.get("recipe", False), f"{key}.recipe")
        if recipe:
            missing = sorted(set(data) - set(recipe_names())) if model == "ram" else list(data)
            if missing:
                raise w.error(
                    f"{key}.recipe",
                    f"no {model} recipe for {', '.join(missing)}; ram recipes: {', '.join(recipe_names())}",
                )
        best_of: tuple[str, ...] = ()
        if entry.get("best_reward_of") is not None:
            earlier = [g.name for g in groups if g.model == model]
            best_of = w.names(entry["best_reward_of"], f"{key}.best_reward_of", earlier)
            for source_name in best_of:
                missing = set(data) - set(next(g for g in groups if g.name == source_name).data)
                if missing:
                    raise w.error(
                        f"{key}.best_reward_of",
                        f"group {source_name!r} has no runs on {', '.join(sorted(missing))}",
                    )
        group = RunGroup(
            name=name,
            model=model,
            data=data,
            seeds=group_seeds,
            train=group_train,
            model_config=model_config,
            per_data=per_data,
            recipe=recipe,
            best_reward_of=best_of,
        )
        for d in data:  # every run's config is built now, so a bad value fails before any job
            _run_config(group, d, 0, train, where=f"{source}: {key} on {d}")
        groups.append(group)

    evaluate = None
    if raw.get("evaluate") is not None:
        entry = w.keys(raw["evaluate"], [f.name for f in fields(EvalSpec)], "evaluate")
        evaluate = EvalSpec(
            glimpses=w.integer(entry.get("glimpses", 6), "evaluate.glimpses", low=0),
            sampled=w.boolean(entry.get("sampled", True), "evaluate.sampled"),
            limit=w.integer(entry.get("limit"), "evaluate.limit", low=1, none=True),
        )

    sweeps: list[RobustnessSpec] = []
    swept_before: list[list[RunGroup]] = []
    entries = raw.get("robustness") or []
    if not isinstance(entries, list):
        raise w.error("robustness", "expected a list of sweeps, each with keys runs, shifts, limit, sample")
    for i, entry in enumerate(entries):
        key = f"robustness[{i}]"
        entry = w.keys(entry, [f.name for f in fields(RobustnessSpec)], key)
        targets = w.names(entry.get("runs", "all"), f"{key}.runs", ["all", *(g.name for g in groups)])
        shifts = entry.get("shifts", list(SHIFTS))
        if isinstance(shifts, list):
            shifts = dict.fromkeys(w.names(shifts, f"{key}.shifts", list(SHIFTS)))
        shifts = w.keys(shifts, list(SHIFTS), f"{key}.shifts")
        for shift_name, levels in shifts.items():
            if levels is not None and (not isinstance(levels, list) or not levels):
                raise w.error(
                    f"{key}.shifts.{shift_name}", f"expected a list of levels or null; got {levels!r}"
                )
        swept = groups if "all" in targets else [g for g in groups if g.name in targets]
        twice = [g.name for g in swept if any(g in earlier for earlier in swept_before)]
        if twice:
            raise w.error(
                f"{key}.runs", f"group {twice[0]!r} is already in an earlier sweep; give a group one sweep"
            )
        swept_before.append(swept)
        for d in {d for g in swept for d in g.data}:
            try:
                resolve_levels(datasets.dataset_spec(d), shifts)
            except RamlabError as exc:
                raise w.error(f"{key}.shifts", f"{exc} (dataset {d})") from None
        sweeps.append(
            RobustnessSpec(
                runs=targets,
                shifts=shifts,
                limit=w.integer(entry.get("limit", 2000), f"{key}.limit", low=1, none=True),
                sample=w.boolean(entry.get("sample", False), f"{key}.sample"),
            )
        )

    cost = None
    if raw.get("cost") is not None:
        entry = w.keys(raw["cost"], [f.name for f in fields(CostSpec)], "cost")
        sizes = entry.get("sizes", list(CostSpec.sizes))
        if not isinstance(sizes, list) or not sizes:
            raise w.error("cost.sizes", f"expected a list of image sides in pixels; got {sizes!r}")
        for size in sizes:
            w.integer(size, "cost.sizes", low=8)
        cost_device = entry.get("device", "cpu")
        if not isinstance(cost_device, str):
            raise w.error("cost.device", f"expected auto, cpu, cuda or cuda:N; got {cost_device!r}")
        cost_models = w.names(entry.get("models", [g.model for g in groups]), "cost.models", models)
        configs = w.keys(entry.get("configs"), cost_models, "cost.configs")
        for model_name, values in configs.items():
            values = w.fields_of(model_config_class(model_name), values, f"cost.configs.{model_name}")
            _model_config(model_name, values, where=f"{source}: cost.configs.{model_name}")
        cost = CostSpec(
            models=cost_models,
            configs=configs,
            sizes=tuple(sizes),
            batch=w.integer(entry.get("batch", 64), "cost.batch", low=1),
            device=cost_device,
        )

    description = raw.get("description", "")
    if not isinstance(description, str):
        raise w.error("description", f"expected text; got {description!r}")
    return Preset(
        name=path.stem,
        source=source,
        raw=raw,
        description=description.strip(),
        seeds=n_seeds,
        train=train,
        runs=tuple(groups),
        evaluate=evaluate,
        robustness=tuple(sweeps),
        cost=cost,
    )


def _model_config(model: str, values: dict, *, where: str) -> Any:
    from ramlab.config import from_dict
    from ramlab.models.registry import model_config_class

    try:
        return from_dict(model_config_class(model), values or {}, where=where)
    except RamlabError as exc:
        text = str(exc)
        raise RamlabError(text if text.startswith(where) else f"{where}: {text}") from None


def _run_config(
    group: RunGroup, data: str, seed: int, train: dict, *, where: str, reward: str | None = None
) -> RunConfig:
    extra = group.per_data.get(data) or {}
    base = load_yaml(config_path(data)) if group.recipe else {}
    model_config = {
        **(base.get("model_config") or {}),
        **group.model_config,
        **(extra.get("model_config") or {}),
    }
    if reward is not None:
        model_config["reward"] = reward
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
        "model_config": model_config,
    }
    try:
        return RunConfig.from_dict(spec, where=where)
    except RamlabError as exc:
        text = str(exc)
        raise RamlabError(text if text.startswith(where) else f"{where}: {text}") from None


# ---- jobs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One unit of work. `run` names a training run (train, eval, robustness jobs)."""

    kind: str  # train | eval | robustness | cost
    run: str | None = None
    group: RunGroup | None = None
    data: str | None = None
    seed: int = 0
    sweep: RobustnessSpec | None = None

    @property
    def title(self) -> str:
        return f"{self.kind} {self.run}" if self.run else self.kind


def config_difference(old: dict, new: dict) -> str:
    a, b = flatten(old), flatten(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:6]) or "none"


def _log_to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# Seconds per unit of work (a scene through a model; a cost measurement) before a job of the
# kind has run in this session: measured with the quick preset on a 2-core CPU.
PRIOR_SECONDS = {"train": 1e-3, "eval": 4e-3, "robustness": 2e-3, "cost": 3.0}


class Study:
    """The jobs of a preset in a study directory: which are done, running the rest."""

    def __init__(
        self,
        preset: Preset,
        out: str | Path,
        *,
        log: Callable[[str], None] = _log_to_stderr,
        command: str | None = None,
    ) -> None:
        self.preset = preset
        self.out = Path(out)
        self.log = log
        self.command = command or " ".join(["ramlab", *sys.argv[1:]])
        self.commit: str | None = None  # set when `run` starts
        self._rates: dict[tuple[str, str], list[float]] = {}

    # ---- the plan ------------------------------------------------------------------------
    def group_seeds(self, group: RunGroup) -> int:
        return group.seeds if group.seeds is not None else self.preset.seeds

    def run_dir(self, run: str) -> Path:
        return self.out / "runs" / run

    def jobs(self) -> list[Job]:
        train = [
            Job("train", run=f"{g.name}-{d}-seed{s}", group=g, data=d, seed=s)
            for g in self.preset.runs
            for d in g.data
            for s in range(self.group_seeds(g))
        ]
        jobs = list(train)
        if self.preset.evaluate is not None:
            jobs += [Job("eval", run=j.run, group=j.group, data=j.data, seed=j.seed) for j in train]
        for sweep in self.preset.robustness:
            for j in train:
                if "all" in sweep.runs or j.group.name in sweep.runs:
                    jobs.append(
                        Job("robustness", run=j.run, group=j.group, data=j.data, seed=j.seed, sweep=sweep)
                    )
        if self.preset.cost is not None:
            jobs.append(Job("cost"))
        return jobs

    def run_config(self, job: Job) -> RunConfig:
        reward = self._best_reward(job.group, job.data) if job.group.best_reward_of else None
        return _run_config(
            job.group,
            job.data,
            job.seed,
            self.preset.train,
            where=f"{self.preset.source}: {job.group.name} on {job.data}",
            reward=reward,
        )

    def _best_reward(self, group: RunGroup, data: str) -> str:
        scores = {}
        for name in group.best_reward_of:
            source = self.preset.group(name)
            errors = []
            for seed in range(self.group_seeds(source)):
                result = self.run_dir(f"{name}-{data}-seed{seed}") / "result.json"
                if result.is_file():
                    errors.append(json.loads(result.read_text())["val_error"])
            if not errors:
                raise RamlabError(
                    f"{group.name} takes the best reward of {', '.join(group.best_reward_of)}, "
                    f"but {name} has no finished run on {data} yet"
                )
            reward = _run_config(
                source, data, 0, self.preset.train, where=self.preset.source
            ).model_config.reward
            scores[name] = (sum(errors) / len(errors), reward)
        best = min(scores, key=lambda name: scores[name][0])
        self.log(
            f"[study] {group.name} on {data}: best reward is {scores[best][1]!r} "
            f"(group {best}, mean validation error {scores[best][0]:.2f}%)"
        )
        return scores[best][1]

    # ---- done? ---------------------------------------------------------------------------
    def is_done(self, job: Job) -> bool:
        if job.kind == "train":
            return (self.run_dir(job.run) / "result.json").is_file()
        if job.kind == "eval":
            path = self.run_dir(job.run) / "eval.json"
            return path.is_file() and _read_json(path).get("settings") == _eval_settings(self.preset.evaluate)
        if job.kind == "robustness":
            path = self.run_dir(job.run) / "robustness.json"
            if not path.is_file():
                return False
            from ramlab.robustness import resolve_levels

            done = _read_json(path)
            if done.get("limit") != job.sweep.limit or done.get("sample") != job.sweep.sample:
                return False
            wanted = resolve_levels(datasets.dataset_spec(job.data), job.sweep.shifts)
            shifts = done.get("shifts", {})
            return all(shifts.get(name, {}).get("levels") == levels for name, levels in wanted.items())
        if job.kind == "cost":
            wanted = {(m, s) for m in self.preset.cost.models for s in self.preset.cost.sizes}
            return wanted <= {(r["model"], r["size"]) for r in read_cost_rows(self.out / "cost.json")}
        raise AssertionError(job.kind)

    # ---- estimates -----------------------------------------------------------------------
    def _work(self, job: Job) -> tuple[str, float]:
        """(rate key, units of work) of a job, for the time estimate."""
        if job.kind == "train":
            cfg = _run_config(job.group, job.data, job.seed, self.preset.train, where="")
            n_train = min(cfg.train.train_limit or datasets.TRAIN_SIZE, datasets.TRAIN_SIZE)
            n_eval = cfg.train.eval_limit or 10_000
            return job.group.model, cfg.train.epochs * (n_train + n_eval / 4) + n_eval / 4
        if job.kind == "eval":
            return job.group.model, (self.preset.evaluate.limit or 10_000) * 2
        if job.kind == "robustness":
            levels = sum(len(v) if v else 6 for v in job.sweep.shifts.values())
            return job.group.model, levels * (job.sweep.limit or 10_000)
        return "all", len(self.preset.cost.models) * len(self.preset.cost.sizes)

    def _seconds(self, job: Job) -> float:
        model, work = self._work(job)
        rates = self._rates.get((job.kind, model)) or [
            r for (kind, _), values in self._rates.items() if kind == job.kind for r in values
        ]
        rate = sum(rates) / len(rates) if rates else PRIOR_SECONDS[job.kind]
        return work * rate

    # ---- running -------------------------------------------------------------------------
    def run(self, *, report: bool = True) -> Path | None:
        """Run every job not done yet, then write the report; returns report.md's path.

        A job that fails with a RamlabError (e.g. a loss that became NaN) is logged and the
        study goes on with the jobs that do not need it; the report is written from what
        finished, and then the failures are raised together. Rerunning retries them.
        """
        from ramlab.trainer import git_commit

        self.commit = git_commit()  # the code this process loaded, whatever the tree holds later
        self.out.mkdir(parents=True, exist_ok=True)
        save_yaml(self.out / "study.yaml", self.preset.raw)
        jobs = self.jobs()
        todo = [job for job in jobs if not self.is_done(job)]
        self.log(
            f"[study] {self.preset.name}: {len(jobs)} jobs, {len(jobs) - len(todo)} already done, "
            f"{len(todo)} to run (estimate {_duration(sum(self._seconds(j) for j in todo))}) in {self.out}"
        )
        failures: list[str] = []
        failed_runs: set[str] = set()
        for i, job in enumerate(todo):
            if i and self.is_done(job):  # e.g. done by a concurrent study on the same folder
                continue
            if job.run in failed_runs:
                self.log(f"[study] skipped: {job.title} (its training failed)")
                continue
            remaining = sum(self._seconds(j) for j in todo[i:])
            self.log(
                f"[study] job {jobs.index(job) + 1}/{len(jobs)}: {job.title} "
                f"({len(todo) - i - 1} more after it; time left ~{_duration(remaining)})"
            )
            tick = time.perf_counter()
            try:
                getattr(self, f"_run_{job.kind}")(job)
            except RamlabError as exc:
                self.log(f"[study] FAILED: {job.title}: {exc}")
                failures.append(f"{job.title}: {exc}")
                if job.kind == "train":
                    failed_runs.add(job.run)
                continue
            seconds = time.perf_counter() - tick
            model, work = self._work(job)
            self._rates.setdefault((job.kind, model), []).append(seconds / max(work, 1e-9))
            self._record(job, seconds)
            self.log(f"[study] done: {job.title} in {_duration(seconds)}")
        path = None
        if report:
            from ramlab.report import write_report

            try:
                path = write_report(self.out)
                self.log(f"[study] report: {path} and {path.with_suffix('.html')}")
            except RamlabError as exc:
                if not failures:
                    raise
                failures.append(f"report: {exc}")
        if failures:
            raise RamlabError(
                f"{len(failures)} job(s) of the study failed; the rest is done and kept, and "
                "rerunning the study retries them:\n  " + "\n  ".join(failures)
            )
        return path

    def _record(self, job: Job, seconds: float) -> None:
        line = {
            "job": job.title,
            "kind": job.kind,
            "run": job.run,
            "seconds": round(seconds, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "commit": self.commit,
            "command": self.command,
        }
        with (self.out / "jobs.jsonl").open("a") as f:
            f.write(json.dumps(line) + "\n")

    def _run_train(self, job: Job) -> None:
        from ramlab.trainer import Trainer

        config = self.run_config(job)
        run_dir = self.run_dir(job.run)
        saved = run_dir / "config.yaml"
        if saved.is_file():
            old = load_yaml(saved)
            if RunConfig.from_dict(old, where=str(saved)) != config:
                raise RamlabError(
                    f"{run_dir} holds a run with another config than the preset's "
                    f"({config_difference(old, config.to_dict())}); delete that folder to redo "
                    "the run, or choose another --out"
                )
        # resume=True also starts a fresh run: it continues from last.pt only when there is one.
        Trainer(config, run_dir, command=f"{self.command}  # job: {job.title}").fit(resume=True)

    def _run_eval(self, job: Job) -> None:
        evaluate_run_extras(
            self.run_dir(job.run),
            spec=self.preset.evaluate,
            device=self.preset.train.get("device", "auto"),
            command=f"{self.command}  # job: {job.title}",
        )

    def _run_robustness(self, job: Job) -> None:
        from ramlab.robustness import robustness_sweep

        run_dir = self.run_dir(job.run)
        robustness_sweep(
            run_dir,
            shifts=job.sweep.shifts,
            limit=job.sweep.limit,
            sample=job.sweep.sample,
            device=self.preset.train.get("device", "auto"),
            json_path=run_dir / "robustness.json",
            command=f"{self.command}  # job: {job.title}",
            progress=lambda text: self.log(f"[study]   {text}"),
        )

    def _run_cost(self, job: Job) -> None:
        from ramlab.cost import measure_costs, write_cost_json

        spec, path = self.preset.cost, self.out / "cost.json"
        rows = [r for r in read_cost_rows(path) if r["model"] in spec.models and r["size"] in spec.sizes]
        for model in spec.models:
            sizes = [s for s in spec.sizes if not any(r["model"] == model and r["size"] == s for r in rows)]
            if not sizes:
                continue
            self.log(f"[study]   cost of {model} at {', '.join(map(str, sizes))} px")
            configs = (
                {model: _model_config(model, spec.configs[model], where="cost")}
                if model in spec.configs
                else None
            )
            rows += measure_costs([model], sizes, device=spec.device, batch=spec.batch, configs=configs)
            write_cost_json(rows, path)  # after each model, so an interruption keeps the rest


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def read_cost_rows(path: str | Path) -> list[dict]:
    """The rows of a cost JSON (a list, or a mapping with `rows`); [] when absent."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RamlabError(f"{path}: not valid JSON ({exc}); delete it to measure again") from None
    rows = data.get("rows", []) if isinstance(data, dict) else data
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and "model" in r and "size" in r for r in rows
    ):
        raise RamlabError(f"{path}: not a cost table (rows with model and size); delete it to measure again")
    return rows


def _flops(model, scenes) -> dict[str, Any]:
    """FLOPs per image of the trained model on one of its test scenes (ramlab.cost's counter)."""
    import torch

    from ramlab.cost import count_flops

    image = torch.from_numpy(scenes.images[:1]).float().div(255.0)[:, None]  # (1, 1, H, W)
    total, parts, _ = count_flops(model, image.to(next(model.parameters()).device))
    return {"flops": total, "flops_breakdown": parts}


def _eval_settings(spec: EvalSpec) -> dict:
    return {"glimpses": spec.glimpses, "sampled": spec.sampled, "limit": spec.limit}


def evaluate_run_extras(
    run_dir: str | Path, *, spec: EvalSpec, device: str = "auto", command: str | None = None
) -> dict[str, Any]:
    """eval.json of a run: the test error with sampled locations, where the glimpses go, and
    the glimpse trajectories (glimpses.png, glimpses.gif), for models that take glimpses."""
    import torch

    from ramlab.data.loader import SceneLoader
    from ramlab.evaluate import evaluate
    from ramlab.run import load_run
    from ramlab.trainer import git_commit
    from ramlab.viz.glimpses import animate_trajectories, draw_trajectories, trajectories, where_glimpses_go

    run_dir = Path(run_dir)
    config, model = load_run(run_dir, device=device)
    # The trainer's test scenes unless told otherwise, so sampled and mean-policy errors compare.
    limit = spec.limit or config.train.eval_limit
    scenes = datasets.load_split(config.data, "test", seed=config.train.data_seed, limit=limit)
    loader = SceneLoader(scenes, batch_size=1000, device=next(model.parameters()).device)
    with torch.no_grad():
        attention = model(next(iter(loader)).images[:2]).rollout is not None
    result: dict[str, Any] = {
        "run": str(run_dir),
        "settings": _eval_settings(spec),
        "attention": attention,
        "params": model.num_parameters(),
        **_flops(model, scenes),
        "commit": git_commit(),
        "command": command or " ".join(["ramlab", *sys.argv[1:]]),
    }
    if attention:
        if spec.sampled:
            result["sampled"] = evaluate(model, loader, sample=True).to_dict()
        result["where"] = where_glimpses_go(model, loader)
        if spec.glimpses:
            shown = datasets.load_split(config.data, "test", seed=config.train.data_seed, limit=spec.glimpses)
            traj = trajectories(model, shown)
            title = f"{run_dir.name}: {config.model} on {config.data}"
            draw_trajectories(traj, run_dir / "glimpses.png", title=title)
            animate_trajectories(
                traj, run_dir / "glimpses.gif", count=min(spec.glimpses, 9), title=run_dir.name
            )
            result["figures"] = {"png": "glimpses.png", "gif": "glimpses.gif"}
    write_json(run_dir / "eval.json", result)
    return result


def run_study(
    preset: str | Path,
    *,
    out: str | Path | None = None,
    seeds: int | None = None,
    log: Callable[[str], None] = _log_to_stderr,
    command: str | None = None,
) -> Path | None:
    """Load a preset (packaged name or YAML file), run what is not done, write the report."""
    loaded = load_preset(preset, seeds=seeds)
    out = Path(out) if out else Path("studies") / loaded.name
    return Study(loaded, out, log=log, command=command).run()


def plan(preset: Preset, out: str | Path) -> list[tuple[Job, bool]]:
    """Every job of the study and whether it is done."""
    study = Study(preset, out, log=lambda _: None)
    return [(job, study.is_done(job)) for job in study.jobs()]


__all__ = [
    "CostSpec",
    "EvalSpec",
    "Job",
    "Preset",
    "RobustnessSpec",
    "RunGroup",
    "Study",
    "evaluate_run_extras",
    "load_preset",
    "plan",
    "preset_names",
    "read_cost_rows",
    "run_study",
]
