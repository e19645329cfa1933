"""How long a study's jobs will take: the estimates behind the runner's "time left".

A job's estimate is its units of work times the seconds a unit takes:

    train        scenes through the model: epochs x training scenes x rollouts a scene, plus
                 a quarter of each validation's and the test's scenes (inference is cheaper);
                 the epochs an interrupted run has validated are done; a run that stops
                 early takes less
    eval         the test scenes it reads, once for where the glimpses go and once more sampled
    robustness   every level's scenes (a resumed sweep's kept shifts are done)
    cost         one unit per (model, image size) cell (a resumed job's measured cells are done)

Seconds per unit, first found in: the jobs of the same kind, model and dataset this study has
finished (in this process, or in any before it: the study's jobs.jsonl); those of the same
kind and model on any dataset; else the model's PRIOR_SECONDS (PRIOR_BY_KIND for other
models) at this machine's speed, the kind's finished jobs against their own priors (a
ResNet's unit is no RAM's). A learnt rate is the median of the jobs', so one odd job moves it
little; a job's jobs.jsonl line records its seconds and the units that attempt did (a
training resumed after an interruption: the epochs that were left). Keyed by
dataset because a unit's cost differs by dataset (the retina, the core, how early a recipe
stops: a training's units count every epoch of its config, so a rate learnt from runs that
stop early prices that in): the RAM recipes' runs took 1.5-4.1e-4 s a unit alone on 2 CPU
cores, from mnist's and translated60's to cluttered100's (results/recipes/).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path

from ramlab.data import datasets
from ramlab.errors import RamlabError
from ramlab.metrics import read_metrics
from ramlab.progress import val_curve
from ramlab.study.plan import Job
from ramlab.study.preset import Preset, run_config

VAL_SIZE = 5_000
TEST_SIZE = 10_000

# Seconds per unit before the study has finished a job of the kind: `ramlab study quick` at
# 6f960b6 on the project's idle 2-core CPU on 2026-12-03 (its jobs.jsonl's seconds over each
# job's units; 18.8 minutes in all). That machine ran the same code about 2x slower than on
# 2026-11-25 (11.0 minutes), so expect the first estimate to be up to 2x long on 2 cores.
# A GPU, more threads or another CPU will differ; the first finished job of a kind corrects it.
PRIOR_SECONDS: dict[tuple[str, str], float] = {
    ("train", "ram"): 4e-4,
    ("train", "resnet"): 1.8e-3,
    # fc and convnet: `ramlab train fc|convnet --data translated60 --epochs 5 --threads 2` at
    # 6bb4873, the same day, 29.4 s and 32.7 s for 283,750 units (startup included)
    ("train", "fc"): 1.0e-4,
    ("train", "convnet"): 1.2e-4,
    ("eval", "ram"): 3.6e-4,
    # no test pass for a model without glimpses: its parameters and FLOPs
    **{("eval", model): 1e-5 for model in ("resnet", "fc", "convnet")},
    ("robustness", "ram"): 1.5e-4,
    ("robustness", "resnet"): 4.5e-4,
}
PRIOR_BY_KIND = {"train": 1.8e-3, "eval": 3.6e-4, "robustness": 4.5e-4, "cost": 0.2}
"""For a model without its own prior (one registered later): the dearest measured."""


def epochs_trained(run_dir: Path) -> int:
    """The last epoch a run's metrics.jsonl validated: how far an interrupted training got
    (0 without a readable log)."""
    try:
        records = read_metrics(run_dir / "metrics.jsonl")
    except (OSError, UnicodeDecodeError, RamlabError):  # the resume itself names a damaged line
        return 0
    return int(max((point.epoch for point in val_curve(records)), default=0))


def units(
    job: Job, preset: Preset, *, trained: int = 0, levels: int | None = None, cells: int | None = None
) -> tuple[str, float]:
    """(model, units of work) of a job: a training's after its first `trained` epochs, a
    sweep's of `levels` of its levels (None: all), the cost job's of `cells` of its (model,
    size) cells (None: all); the cost job's model is "all"."""
    if job.kind == "train":
        cfg = run_config(job.group, job.data, job.seed, preset.train, where="")
        n_train = min(cfg.train.train_limit or datasets.TRAIN_SIZE, datasets.TRAIN_SIZE)
        n_val = min(cfg.train.eval_limit or VAL_SIZE, VAL_SIZE)
        n_test = min(cfg.train.eval_limit or TEST_SIZE, TEST_SIZE)
        rollouts = getattr(cfg.model_config, "rollouts", 1)
        epochs = max(cfg.train.epochs - trained, 0)
        return job.group.model, epochs * n_train * rollouts + (epochs * n_val + n_test) / 4
    if job.kind == "eval":  # as study.extras reads: the preset's limit, else the run's own
        cfg = run_config(job.group, job.data, job.seed, preset.train, where="")
        n_test = min(preset.evaluate.limit or cfg.train.eval_limit or TEST_SIZE, TEST_SIZE)
        return job.group.model, n_test * (1 + preset.evaluate.sampled)
    if job.kind == "robustness":
        from ramlab.robustness import resolve_levels

        if levels is None:
            levels = sum(map(len, resolve_levels(datasets.dataset_spec(job.data), job.sweep.shifts).values()))
        return job.group.model, levels * (job.sweep.limit or TEST_SIZE)
    return "all", (len(preset.cost.models) * len(preset.cost.sizes) if cells is None else cells)


class Rates:
    """Seconds per unit of work, learnt from finished jobs, keyed by (kind, model, dataset)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, str | None], list[float]] = {}

    def add(self, kind: str, model: str, work: float, seconds: float, *, data: str | None = None) -> None:
        if seconds > 0 and work > 0:
            self._seen.setdefault((kind, model, data), []).append(seconds / work)

    def per_unit(self, kind: str, model: str, data: str | None = None) -> float:
        def learnt(same: Callable[[tuple[str, str, str | None]], bool]) -> list[float]:
            return [rate for key, rates in self._seen.items() if same(key) for rate in rates]

        seen = learnt(lambda key: key == (kind, model, data)) or learnt(lambda key: key[:2] == (kind, model))
        if seen:
            return statistics.median(seen)
        # This model's prior at this machine's speed: the kind's other models against theirs
        # (a RAM's rate per unit is no ResNet's: 4-10x apart).
        speeds = [
            rate / prior(key[0], key[1])
            for key, rates in self._seen.items()
            if key[0] == kind
            for rate in rates
        ]
        return prior(kind, model) * (statistics.median(speeds) if speeds else 1.0)


def prior(kind: str, model: str) -> float:
    """Seconds per unit of `kind` for `model` measured on 2 CPU cores (the kind's dearest
    for a model without its own)."""
    return PRIOR_SECONDS.get((kind, model), PRIOR_BY_KIND[kind])


def finished_seconds(path: Path, ids: Iterable[str]) -> dict[str, tuple[float, float | None]]:
    """Each finished job's (seconds, units of work it did) from a study's jobs.jsonl, for
    the jobs in `ids`: the last line of a job counts, and a training resumed by it did only
    the epochs left (None: a line written before the units were recorded). An unreadable
    file or line is passed over: an estimate never stops a study."""
    wanted, found = set(ids), {}
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    for line in lines:
        try:
            entry = json.loads(line)
            job_id, seconds = entry["id"], float(entry["seconds"])
            work = entry.get("units")
            work = None if work is None else float(work)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if isinstance(job_id, str) and job_id in wanted:  # an id of another type: a damaged line
            found[job_id] = (seconds, work)
    return found
