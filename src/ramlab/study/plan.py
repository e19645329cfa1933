"""The study's jobs as a graph, a pure function of the preset.

    id                     kind        after (deps)
    train-<run>            train       the compared groups' training on <data> (best_reward_of)
    eval-<run>             eval        train-<run>
    robustness-<i>-<run>   robustness  train-<run>             (sweep i of the preset's list)
    cost                   cost        nothing; it runs alone, after every other job has ended
                                       (its timings share the machine with none of them)

A run is `<group>-<data>-seed<S>`, its directory `STUDY/runs/<run>/`. Ids are stable (the
same preset gives the same ids, in the same order) and safe as file names. The report is no
job: it is written after all of them.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from pathlib import Path

from ramlab.study.preset import Preset, RunGroup
from ramlab.study.schema import RobustnessSpec

KINDS = ("train", "eval", "robustness", "cost")


@dataclass(frozen=True)
class Job:
    """One unit of work. `run` names a training run (train, eval, robustness jobs)."""

    kind: str
    """train | eval | robustness | cost"""
    id: str
    """Unique in the plan, stable, filesystem-safe: `train-<run>`, `eval-<run>`,
    `robustness-<sweep index>-<run>`, `cost`."""
    deps: tuple[str, ...] = ()
    """Ids of the jobs that must be done before this one."""
    run: str | None = None
    group: RunGroup | None = None
    data: str | None = None
    seed: int = 0
    sweep: RobustnessSpec | None = None

    @property
    def title(self) -> str:
        return f"{self.kind} {self.run}" if self.run else self.kind


def group_seeds(preset: Preset, group: RunGroup) -> int:
    return group.seeds if group.seeds is not None else preset.seeds


def run_name(group: RunGroup, data: str, seed: int) -> str:
    return f"{group.name}-{data}-seed{seed}"


def run_dir(out: str | Path, run: str) -> Path:
    """The directory of run `run` in the study folder `out`."""
    return Path(out) / "runs" / run


def build_plan(preset: Preset) -> list[Job]:
    """Every job of the preset, in a valid order: training, evaluation, robustness, cost."""
    trains: list[Job] = []
    for group in preset.runs:
        for data in group.data:
            compared = tuple(
                f"train-{run_name(preset.group(name), data, seed)}"
                for name in group.best_reward_of
                for seed in range(group_seeds(preset, preset.group(name)))
            )
            for seed in range(group_seeds(preset, group)):
                run = run_name(group, data, seed)
                trains.append(
                    Job("train", f"train-{run}", compared, run=run, group=group, data=data, seed=seed)
                )

    def after(kind: str, id: str, train: Job, **extra) -> Job:
        return Job(
            kind, id, (train.id,), run=train.run, group=train.group, data=train.data, seed=train.seed, **extra
        )

    jobs = list(trains)
    if preset.evaluate is not None:
        jobs += [after("eval", f"eval-{t.run}", t) for t in trains]
    for i, sweep in enumerate(preset.robustness):
        jobs += [
            after("robustness", f"robustness-{i}-{t.run}", t, sweep=sweep)
            for t in trains
            if "all" in sweep.runs or t.group.name in sweep.runs
        ]
    if preset.cost is not None:
        jobs.append(Job("cost", "cost"))
    return jobs


def topological_order(jobs: list[Job]) -> list[Job]:
    """The jobs with each after its deps; otherwise in their given order (stable). Raises
    ValueError for a dependency on a job not in the list, or a cycle."""
    index = {job.id: i for i, job in enumerate(jobs)}
    if len(index) < len(jobs):
        raise ValueError("two jobs have the same id")
    waiting = {job.id: set(job.deps) for job in jobs}
    needed_by: dict[str, list[str]] = {job.id: [] for job in jobs}
    for job in jobs:
        for dep in job.deps:
            if dep not in index:
                raise ValueError(f"job {job.id} depends on {dep}, which is not in the plan")
            needed_by[dep].append(job.id)
    ready = [index[id] for id, deps in waiting.items() if not deps]
    heapq.heapify(ready)
    order: list[Job] = []
    while ready:
        job = jobs[heapq.heappop(ready)]
        order.append(job)
        for other in needed_by[job.id]:
            waiting[other].discard(job.id)
            if not waiting[other]:
                heapq.heappush(ready, index[other])
    if len(order) < len(jobs):
        stuck = sorted(id for id, deps in waiting.items() if deps)
        raise ValueError(f"the jobs' dependencies form a cycle: {', '.join(stuck)}")
    return order
