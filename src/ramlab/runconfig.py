"""A run's whole configuration: what to train on what, how, and with which model config.

    RunConfig(model="ram", data="translated60", train=TrainConfig(...), model_config=RAMConfig(...))

It is saved as `config.yaml` in the run directory, and read back from there (or from a
user's YAML file, with CLI overrides on top).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ramlab.config import check_finite, choice, from_dict, load_yaml, param, to_dict, unknown_keys
from ramlab.data.datasets import DATASETS, dataset_spec, image_size, resolve_spec
from ramlab.data.scenes import SceneSpec
from ramlab.device import DEVICES, is_device_name
from ramlab.errors import RamlabError
from ramlab.models.base import FeedForwardModel, Model
from ramlab.models.registry import build_model, model_class, model_config_class, model_names
from ramlab.optim import SCHEDULES

OPTIMIZERS = ("adam", "sgd")
FRESH_SEED_STRIDE = 1000
"""Epoch e's fresh training scenes are seeded data_seed + FRESH_SEED_STRIDE·e (ramlab.run_data)."""
RECIPE_DIR = Path(__file__).parent / "presets" / "recipes"


def recipe_names() -> list[str]:
    """The committed training recipes (one per dataset): `ramlab train ram --config NAME`."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def config_path(name_or_path: str | Path) -> Path:
    """A run config file: the name of a committed recipe, a path (`./NAME` for a file in the
    working folder named as a recipe: a stray file there never replaces one), or a run's
    folder (its config.yaml)."""
    if str(name_or_path) in recipe_names():
        return RECIPE_DIR / f"{name_or_path}.yaml"
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.is_dir():  # a run's folder: its config
        if (path / "config.yaml").is_file():
            return path / "config.yaml"
        raise RamlabError(
            f"{name_or_path} is a folder without a config.yaml: give a config file or a run's folder"
        )
    raise RamlabError(
        f"{name_or_path}: no such config file, and not a recipe name; recipes: {', '.join(recipe_names())}"
    )


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimisation, budget, seeding and logging."""

    epochs: int = param(10, "number of passes over the training split")
    batch_size: int = param(128, "samples per optimisation step")
    optimizer: str = param("adam", "adam or sgd (with momentum)")
    lr: float = param(1e-3, "initial learning rate")
    momentum: float = param(0.9, "momentum for sgd")
    weight_decay: float = param(0.0, "L2 weight decay")
    schedule: str = param(
        "cosine",
        "learning-rate schedule: none, cosine (per step, to 0), step (x0.1 at 50% and 75%), "
        "exponential (x lr_decay per epoch, applied at every step, floor lr_min), "
        "plateau (x plateau_factor once more than plateau_patience epochs in a row bring no better val "
        "error, floor lr_min)",
    )
    lr_decay: float = param(0.97, "exponential schedule: factor per epoch")
    lr_min: float = param(1e-5, "exponential and plateau schedules: the learning rate's floor")
    plateau_factor: float = param(0.5, "plateau schedule: factor applied on a plateau")
    plateau_patience: int = param(
        3, "plateau schedule: epochs without improvement tolerated; the next one lowers lr (torch's rule)"
    )
    time_budget: float = param(
        0.0,
        "stop at the end of the first epoch whose training wall time reaches this many minutes "
        "(0: no limit); the result then depends on the machine's speed, and says so",
    )
    early_stop: int = param(
        0, "stop after this many epochs without a better validation error (0: train every epoch)"
    )
    ema: float = param(
        0.0,
        "validate, keep as best.pt and test an exponential moving average of the weights with "
        "this decay per step (e.g. 0.998; 0: the weights themselves)",
    )
    grad_clip: float = param(0.0, "clip the global gradient norm to this value (0: no clipping)")
    seed: int = param(0, "seed of the model initialisation, shuffling and policy sampling")
    data_seed: int = param(0, "seed of the scene generator (which placements and clutter)")
    fresh_scenes: bool = param(
        False,
        "draw new placements and clutter for the training digits every epoch (augmentation); "
        "validation and test scenes stay fixed. Epoch e's are the fixed training scenes of data "
        "seed data_seed + 1000·e (epoch 0's are this data seed's own)",
    )
    augment_rotation: float = param(
        0.0,
        "with fresh_scenes: rotate each training digit by an angle drawn uniformly in "
        "±this many degrees, anew every epoch (0: none); validation and test scenes are not rotated",
    )
    augment_scale: float = param(
        1.0,
        "with fresh_scenes: scale each training digit by a factor drawn uniformly between this "
        "and 1, anew every epoch (1: none); a digit is placed by its box at the larger of the two "
        "(so with 0.85 a digit on mnist's 28×28 canvas shrinks about its centre, in place)",
    )
    device: str = param("auto", "auto (CUDA when present), cpu, cuda or cuda:N")
    threads: int = param(0, "CPU threads for torch (0: torch's default)")
    compile: bool = param(
        False,
        "train through the compiled fast path (torch.compile; CUDA graphs on a GPU): the same "
        "losses, faster per step, tens of seconds to compile first (see ramlab.fastpath)",
    )
    train_limit: int | None = param(None, "use only the first N training scenes (None: all)")
    eval_limit: int | None = param(
        None, "use N validation and test scenes, a fixed random subset of each (None: all)"
    )
    eval_batch_size: int = param(1000, "samples per evaluation batch")
    eval_sample: bool = param(False, "evaluate with sampled locations instead of the policy mean")
    eval_rollouts: int = param(
        1,
        "validate and test with the mean class probabilities of this many sampled rollouts per "
        "image (Monte Carlo; 1: one rollout, the policy mean unless eval_sample)",
    )
    test: bool = param(
        True,
        "evaluate the best checkpoint on the test split when training ends (false for tuning "
        "runs: choose hyperparameters on the validation split and read the test split once)",
    )
    log_every: int = param(50, "steps between training-metric lines in metrics.jsonl")
    checkpoint_every: int = param(0, "also write last.pt every N steps within an epoch (0: each epoch only)")
    tensorboard: bool = param(False, "also log to TensorBoard (needs the tensorboard package)")
    progress: bool = param(True, "show a progress bar")
    init_from: str | None = param(
        None,
        "start from the model weights of this checkpoint (a .pt file, or a run directory: its "
        "best.pt) instead of a random initialisation; the optimiser, schedule and budget start "
        "afresh (fine-tuning, or branching a run with new settings)",
    )

    @property
    def augmented(self) -> bool:
        """Whether the training digits are rotated or scaled (so even epoch 0 builds its scenes)."""
        return bool(self.augment_rotation) or self.augment_scale != 1.0

    def __post_init__(self) -> None:
        check_finite(self)
        choice("optimizer", self.optimizer, OPTIMIZERS)
        choice("schedule", self.schedule, SCHEDULES)
        for name in (
            "epochs",
            "batch_size",
            "eval_batch_size",
            "log_every",
            "eval_rollouts",
            "plateau_patience",
        ):
            if getattr(self, name) < 1:
                raise RamlabError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("seed", "data_seed"):  # torch and numpy take seeds up to 2^64; 2^63 wraps to 0
            if not 0 <= getattr(self, name) < 2**32:
                raise RamlabError(f"{name} must be in 0..{2**32 - 1}, got {getattr(self, name)}")
        if not self.lr > 0:
            raise RamlabError(f"lr must be > 0, got {self.lr}")
        if not self.weight_decay >= 0 or not 0 <= self.momentum < 1:
            raise RamlabError(
                f"weight_decay must be >= 0 and momentum in [0, 1); got {self.weight_decay}, {self.momentum}"
            )
        for key in ("grad_clip", "checkpoint_every", "threads", "early_stop", "time_budget"):
            if not getattr(self, key) >= 0:
                raise RamlabError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.init_from is not None and not self.init_from.strip():
            raise RamlabError("init_from is empty: give a checkpoint or a run folder, or leave it out (null)")
        if self.fresh_scenes and self.data_seed >= FRESH_SEED_STRIDE:
            raise RamlabError(
                f"with fresh_scenes, data_seed must be below {FRESH_SEED_STRIDE}, got {self.data_seed}: epoch e's "
                f"training scenes are drawn with seed data_seed + {FRESH_SEED_STRIDE}·e, so data seeds "
                f"{FRESH_SEED_STRIDE} apart would share them (data seed {FRESH_SEED_STRIDE}'s first epoch would be "
                "data seed 0's second)"
            )
        if self.augmented and not self.fresh_scenes:
            raise RamlabError(
                "augment_rotation and augment_scale draw new training scenes every epoch: they need fresh_scenes true"
            )
        if not 0 <= self.augment_rotation <= 180 or not self.augment_scale > 0:
            raise RamlabError(
                f"augment_rotation must be in [0, 180] degrees and augment_scale > 0; got {self.augment_rotation}, {self.augment_scale}"
            )
        if not 0 <= self.ema < 1:
            raise RamlabError(
                f"ema must be in [0, 1) (a decay per step such as 0.998; 0: off), got {self.ema}"
            )
        if not 0 < self.lr_decay <= 1 or not 0 < self.plateau_factor < 1:
            raise RamlabError(
                f"lr_decay must be in (0, 1] and plateau_factor in (0, 1); got {self.lr_decay}, {self.plateau_factor}"
            )
        if self.schedule in ("exponential", "plateau") and not 0 <= self.lr_min <= self.lr:
            raise RamlabError(f"lr_min must be in [0, lr={self.lr}], got {self.lr_min}")
        if not is_device_name(self.device):
            raise RamlabError(f"device must be one of {', '.join(DEVICES)} or cuda:N; got {self.device!r}")
        for name in ("train_limit", "eval_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise RamlabError(f"{name} must be >= 1 or None, got {value}")


# Training fields a resumed run may change: budgets and how it runs, and the learning rate
# and gradient clipping (the way on after a NaN: `--resume --lr X`; the schedule goes on
# scaled to the new initial rate, and history.jsonl records the change). (`epochs` changes the cosine and step schedules' length, so it may change only under the
# other schedules.)
RESUME_MAY_CHANGE = (
    "lr",
    "grad_clip",
    "epochs",
    "time_budget",
    "early_stop",
    "threads",
    "device",
    "compile",
    "progress",
    "log_every",
    "checkpoint_every",
    "eval_batch_size",
    "tensorboard",
    "test",
)


# Training fields only some settings read: field -> (what reads it, whether `train` does).
READ_BY: dict[str, tuple[str, Callable[[TrainConfig], bool]]] = {
    "momentum": ("SGD's (--optimizer sgd)", lambda t: t.optimizer == "sgd"),
    "lr_decay": ("the exponential schedule's", lambda t: t.schedule == "exponential"),
    "lr_min": (
        "the exponential and plateau schedules' floor",
        lambda t: t.schedule in ("exponential", "plateau"),
    ),
    "plateau_factor": ("the plateau schedule's", lambda t: t.schedule == "plateau"),
    "plateau_patience": ("the plateau schedule's", lambda t: t.schedule == "plateau"),
}


def unused_fields(train: TrainConfig, *, checkpointed: bool) -> set[str]:
    """The training fields a run configured as `train` never reads (a resume may give them
    any value; the run keeps its own): those of `READ_BY` its settings do not read, and
    init_from once last.pt holds the weights (`checkpointed`)."""
    unused = {name for name, (_, reads) in READ_BY.items() if not reads(train)}
    if checkpointed:
        unused.add("init_from")
    return unused


def keep_unused(saved: RunConfig, given: RunConfig, *, checkpointed: bool) -> tuple[RunConfig, list[str]]:
    """`given` with the saved run's values of the fields it never reads, and the names of those
    that differed: a resume that repeats a command with another, unused value (`--momentum`
    under Adam, `--init-from` left out of a resume) continues the run as it was configured."""
    unused = unused_fields(saved.train, checkpointed=checkpointed)
    differ = sorted(k for k in unused if getattr(saved.train, k) != getattr(given.train, k))
    if not differ:
        return given, []
    kept = replace(given.train, **{k: getattr(saved.train, k) for k in differ})
    return replace(given, train=kept), differ


def resume_changes(saved: RunConfig, given: RunConfig) -> dict[str, list]:
    """{field: [saved, given]} for the train fields a resume changes; a clear error if it
    would change anything else."""
    old, new = saved.to_dict(), given.to_dict()
    changed = {k: [old["train"][k], v] for k, v in new["train"].items() if old["train"].get(k) != v}
    fixed = sorted(k for k in changed if k not in RESUME_MAY_CHANGE)
    fixed += [f"model_config.{k}" for k, v in new["model_config"].items() if old["model_config"].get(k) != v]
    fixed += [k for k in ("model", "data") if old[k] != new[k]]
    if "epochs" in changed and saved.train.schedule in ("cosine", "step"):
        fixed.append("epochs (the cosine and step schedules depend on it)")
    if fixed:
        raise RamlabError(
            f"a resumed run keeps its config; these differ: {', '.join(fixed)}. A resume may change "
            f"only {', '.join(RESUME_MAY_CHANGE)}; repeat the run's command, or choose another --out"
        )
    return changed


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; saved as the run directory's config.yaml."""

    model: str
    data: str
    train: TrainConfig
    model_config: Any

    def __post_init__(self) -> None:
        if self.model not in model_names():
            raise RamlabError(f"unknown model {self.model!r}; valid: {', '.join(model_names())}")
        dataset_spec(self.data)
        if (self.train.eval_sample or self.train.eval_rollouts > 1) and issubclass(
            model_class(self.model), FeedForwardModel
        ):
            raise RamlabError(
                f"eval_sample and eval_rollouts are for the RAM: the {self.model} model draws no "
                "glimpse locations"
            )
        if (
            self.train.eval_sample
            and self.train.eval_rollouts == 1
            and getattr(self.model_config, "policy", "learned") == "random"
        ):
            raise RamlabError(
                "eval_sample is for a learned policy: a RAM with random glimpse locations (policy: "
                "random) has none to sample; leave eval_sample out (eval_rollouts M averages M "
                "random placements)"
            )
        if self.train.augmented:  # a scale that does not fit the canvas fails now, not at epoch 0
            try:
                self.training_spec()
            except RamlabError as exc:
                raise RamlabError(f"augment_scale {self.train.augment_scale} on {self.data}: {exc}") from None

    def training_spec(self) -> SceneSpec:
        """The spec the training scenes are drawn from: the dataset's, with the augmentation's
        rotation and scale ranges when it has one (fresh scenes only)."""
        cfg = self.train
        if not cfg.augmented:
            return dataset_spec(self.data)
        return resolve_spec(
            self.data,
            rotation=(-cfg.augment_rotation, cfg.augment_rotation),
            scale=(min(cfg.augment_scale, 1.0), max(cfg.augment_scale, 1.0)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "data": self.data,
            "train": to_dict(self.train),
            "model_config": to_dict(self.model_config),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "config") -> RunConfig:
        valid = {"model", "data", "train", "model_config"}
        unknown = unknown_keys(data, valid)
        if unknown:
            raise RamlabError(f"{where}: unknown key(s) {unknown}; valid: {', '.join(sorted(valid))}")
        model = data.get("model")
        if not isinstance(model, str) or model not in model_names():  # (a list is no name)
            raise RamlabError(f"{where}: model must be one of {', '.join(model_names())}; got {model!r}")
        name = data.get("data", "translated60")
        if not isinstance(name, str) or name not in DATASETS:
            raise RamlabError(f"{where}: data must be one of {', '.join(DATASETS)}; got {name!r}")
        train = from_dict(TrainConfig, data.get("train") or {}, where=f"{where}: train")
        model_config = from_dict(
            model_config_class(model), data.get("model_config") or {}, where=f"{where}: model_config"
        )
        try:
            return cls(model=model, data=name, train=train, model_config=model_config)
        except RamlabError as exc:  # checks across sections, named by file
            raise RamlabError(f"{where}: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        return cls.from_dict(load_yaml(path), where=str(path))

    def with_overrides(self, *, train: dict[str, Any], model_config: dict[str, Any]) -> RunConfig:
        try:
            return replace(
                self,
                train=replace(self.train, **train),
                model_config=replace(self.model_config, **model_config),
            )
        except TypeError as exc:
            raise RamlabError(str(exc)) from None


def build_run_model(config: RunConfig, device: torch.device | str = "cpu") -> Model:
    """The run's model, freshly initialised, on `device`."""
    return build_model(config.model, config.model_config, image_size=image_size(config.data)).to(device)
