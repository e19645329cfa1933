"""One function per kind of job, each `run_<kind>(context, job)`, and whether a job is done.

    train        Trainer.fit into RUN/ (resumes from RUN/last.pt; done: RUN/result.json)
    eval         evaluate_run_extras: RUN/eval.json, glimpses.png/.gif (done: eval.json made
                 with the preset's settings)
    robustness   robustness_sweep: RUN/robustness.json (done: it holds the sweep's levels)
    cost         measure_costs: STUDY/cost.json (done: every model at every size; a model's
                 rows are written as soon as it is measured; rows it drops go to
                 STUDY/cost-replaced.json)

`run_job` runs any of them (with the job's torch threads) and appends its line to
STUDY/jobs.jsonl: the serial runner and the job entry point (`ramlab.study.job`) both use it.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ramlab.config import HOW_IT_RAN, flatten, load_yaml, save_yaml
from ramlab.cost_rows import REPEATS_BEFORE, read_cost_rows
from ramlab.data import datasets
from ramlab.errors import RamlabError
from ramlab.files import os_error_message, write_json
from ramlab.lock import append_line
from ramlab.run_dir import read_result
from ramlab.runconfig import RunConfig
from ramlab.study.context import Context
from ramlab.study.estimate import epochs_trained, units
from ramlab.study.extras import eval_settings, evaluate_run_extras
from ramlab.study.plan import Job
from ramlab.study.preset import model_config
from ramlab.study.schema import CostSpec


def config_difference(old: dict, new: dict) -> str:
    a, b = flatten(old), flatten(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:6]) or "none"


def checked_run_config(ctx: Context, job: Job) -> RunConfig:
    """The training job's config; a RamlabError if its run folder holds a run (finished or
    not) made with another: a changed preset never silently reuses, or continues, it. How the
    run ran (`config.HOW_IT_RAN`: device, compile, threads, logging) may differ; on a device
    of another kind its samples come from another generator, and under a time budget these
    change how many epochs fit, so such a run is the same experiment, not the same numbers."""
    config = _preset_config(ctx, job)
    mismatch = _config_mismatch(ctx, job, config)
    if mismatch:
        raise RamlabError(mismatch)
    return config


def _preset_config(ctx: Context, job: Job) -> RunConfig:
    config = ctx.run_config(job)
    if ctx.threads:
        config = config.with_overrides(train={"threads": ctx.threads}, model_config={})
    return config


def _config_mismatch(ctx: Context, job: Job, config: RunConfig) -> str | None:
    """What refuses the run folder's run for `config`, or None (no run there, or the same)."""
    run_dir = ctx.run_dir(job.run)
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return None
    old = RunConfig.from_dict(load_yaml(saved), where=str(saved))
    # How a run ran (threads, device, compile, logging), not what it computes: these may
    # differ between attempts, or after the run (a resume records a change of them).
    old = replace(old, train=replace(old.train, **{k: getattr(config.train, k) for k in HOW_IT_RAN}))
    if old == config:
        return None
    return (
        f"{run_dir} holds a run with another config than the preset's "
        f"({config_difference(old.to_dict(), config.to_dict())}); delete that folder to redo "
        "the run, or choose another --out"
    )


def refusal(ctx: Context, job: Job) -> str | None:
    """Why the job would fail before it starts, or None: a training job whose run folder
    holds a run (finished or not) made with another config (the message says what differs
    and what to do) or a damaged config.yaml. `ramlab study --list` shows it under the job."""
    if job.kind != "train" or not (ctx.run_dir(job.run) / "config.yaml").is_file():
        return None  # nothing there to refuse
    try:
        config = _preset_config(ctx, job)
    except RamlabError:  # a reward chosen from runs not finished yet: known once they are
        return None
    try:
        return _config_mismatch(ctx, job, config)
    except RamlabError as exc:  # config.yaml damaged
        return str(exc)


def run_train(ctx: Context, job: Job, *, trainer_class: type | None = None) -> None:
    """Train the run (or resume it from its last.pt); `trainer_class` replaces the Trainer."""
    from ramlab.trainer import Trainer

    config = checked_run_config(ctx, job)
    run_dir = ctx.run_dir(job.run)
    # resume=True also starts a fresh run: it continues from last.pt only when there is one.
    trainer = (trainer_class or Trainer)(
        config, run_dir, command=f"{ctx.command}  # job: {job.title}", study_job=True, commit=ctx.commit
    )
    trainer.fit(resume=True)


def run_eval(ctx: Context, job: Job) -> None:
    evaluate_run_extras(
        ctx.run_dir(job.run),
        spec=ctx.preset.evaluate,
        device=_run_device(ctx, job),
        command=f"{ctx.command}  # job: {job.title}",
        commit=ctx.commit,
    )


def run_robustness(ctx: Context, job: Job) -> None:
    from ramlab.robustness import robustness_sweep

    run_dir = ctx.run_dir(job.run)
    robustness_sweep(
        run_dir,
        shifts=job.sweep.shifts,
        limit=job.sweep.limit,
        sample=job.sweep.sample,
        device=_run_device(ctx, job),
        json_path=run_dir / "robustness.json",
        replace_stale=True,  # the study's own file: a changed preset redoes it
        command=f"{ctx.command}  # job: {job.title}",
        commit=ctx.commit,
        progress=lambda text: ctx.log(f"[study]   {text}"),
    )


def _run_device(ctx: Context, job: Job) -> str:
    """The device the preset trains the job's run on: a group's or a dataset's `train.device`
    too, not only the top level's (the reward, which a best_reward_of group chooses, aside)."""
    return ctx.run_config(job, chosen_reward=False).train.device


REPLACED_COST = "cost-replaced.json"


def _cost_base_config(spec: CostSpec, model: str) -> Any:
    return model_config(model, spec.configs[model], where="cost") if model in spec.configs else None


def _cost_rows_of(ctx: Context) -> list[dict]:
    """The rows of the study's cost.json that its preset asks for, measured as it asks; rows
    timed another way (eager or compiled, another device, batch, number of timed calls, model
    config or number of threads on a CPU: a resume under another executor) are left out, so
    they are measured again. A study whose jobs run on other nodes leaves threads to the job, which knows them."""
    from ramlab.cost import row_settings
    from ramlab.device import threads_given

    spec, threads = ctx.preset.cost, threads_given(ctx.job_threads())

    def as_asked(row: dict) -> bool:
        want = row_settings(
            row["model"],
            row["size"],
            device=spec.device,
            batch=spec.batch,
            config=_cost_base_config(spec, row["model"]),
            compiled=spec.compile,
            repeats=spec.repeats,
        )
        row = {"compiled": False, "repeats": REPEATS_BEFORE, **row}  # rows written before the keys
        if ctx.jobs_here and want["device"] == "cpu" and row.get("threads") != threads:
            return False
        return all(row.get(key) == value for key, value in want.items())

    return [
        r
        for r in read_cost_rows(ctx.out / "cost.json")
        if r["model"] in spec.models and r["size"] in spec.sizes and as_asked(r)
    ]


def run_cost(ctx: Context, job: Job) -> None:
    import torch

    from ramlab.cost import measure_costs, write_cost_json

    spec, path = ctx.preset.cost, ctx.out / "cost.json"
    rows = _cost_rows_kept(ctx, torch.get_num_threads())
    _keep_replaced(ctx, [r for r in read_cost_rows(path) if r not in rows])
    left = cost_cells_left(ctx, rows)
    for model in spec.models:
        sizes = [s for s in spec.sizes if (model, s) in left]
        if not sizes:
            continue
        ctx.log(f"[study]   cost of {model} at {', '.join(map(str, sizes))} px")
        base = _cost_base_config(spec, model)
        configs = {model: base} if base is not None else None
        measured = measure_costs(
            [model],
            sizes,
            device=spec.device,
            batch=spec.batch,
            repeats=spec.repeats,
            configs=configs,
            compiled=spec.compile,
        )
        rows += [{**row, "commit": ctx.commit} for row in measured]  # a resumed job adds rows of its own
        write_cost_json(rows, path)  # after each model, so an interruption keeps the rest


def _keep_replaced(ctx: Context, replaced: list[dict]) -> None:
    """Rows cost.json held that the job is about to drop (another model, size or way of
    timing than the preset's now, or measured again): added to STUDY/cost-replaced.json
    (each row once), so a changed preset loses no measurement. The report reads cost.json
    only. A damaged cost-replaced.json is moved aside, kept, and a new one begun."""
    if not replaced:
        return
    path = ctx.out / REPLACED_COST
    try:
        kept = read_cost_rows(path)
    except RamlabError as exc:
        aside = path.with_name(f"{path.stem}-damaged-{time.strftime('%Y%m%d-%H%M%S')}.json")
        path.replace(aside)
        ctx.log(f"[study]   {exc}: moved to {aside}, a new {path.name} begun")
        kept = []
    added = [r for i, r in enumerate(replaced) if r not in kept and r not in replaced[:i]]
    if added:
        write_json(path, {"rows": kept + added})
        ctx.log(
            f"[study]   {len(added)} cost row(s) this job replaces or the preset no longer asks for: kept in {path}"
        )


RUNNERS = {"train": run_train, "eval": run_eval, "robustness": run_robustness, "cost": run_cost}


def run_job(ctx: Context, job: Job, *, trainer_class: type | None = None) -> float:
    """Run one job with its torch threads, record it in jobs.jsonl; returns its seconds."""
    from ramlab.device import set_threads

    set_threads(ctx.job_threads())
    _, work = work_left(ctx, job)  # what this attempt does, for the estimates
    tick = time.perf_counter()
    if job.kind == "train":
        run_train(ctx, job, trainer_class=trainer_class)
    else:
        RUNNERS[job.kind](ctx, job)
    seconds = time.perf_counter() - tick
    record(ctx, job, seconds, work=work)
    return seconds


def record(ctx: Context, job: Job, seconds: float, *, work: float | None = None) -> None:
    """Append the job's line to STUDY/jobs.jsonl (`append_line`: one locked write, so jobs
    finishing at once in several processes, on several nodes, never mix their lines)."""
    line = {
        "job": job.title,
        "id": job.id,
        "kind": job.kind,
        "run": job.run,
        "seconds": round(seconds, 3),
        "units": None if work is None else round(work, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": ctx.commit,
        "command": ctx.command,
    }
    path = ctx.out / "jobs.jsonl"
    try:
        append_line(path, json.dumps(line))
    except OSError as exc:
        raise RamlabError(os_error_message(exc, path)) from None


PRESET_LINE = "ramlab study of preset: "  # study.yaml's first line, then the preset's name


def save_preset(ctx: Context) -> Path:
    """STUDY/study.yaml: the preset as run, which the job entry point reads back. A folder
    holding another preset's study is refused (its runs and report would mix with these)."""
    path, header = ctx.out / "study.yaml", f"{PRESET_LINE}{ctx.preset.name}"
    first = path.read_text(errors="replace").partition("\n")[0] if path.is_file() else ""
    if path.is_file() and Path(ctx.preset.source).resolve() == path.resolve():
        # The study rerun from its own study.yaml: kept as it is, or saved as changed (--seeds:
        # the job processes plan from the file) under the preset's name its first line holds.
        if load_yaml(path) == ctx.preset.raw:
            return path
        if first.startswith(f"# {PRESET_LINE}"):
            header = first.removeprefix("# ")
    elif first.startswith(f"# {PRESET_LINE}") and first != f"# {header}":
        held = first.removeprefix(f"# {PRESET_LINE}")
        raise RamlabError(
            f"{ctx.out} holds the study of preset {held!r} (its study.yaml), not {ctx.preset.name!r}: "
            "choose another --out"
        )
    return save_yaml(path, ctx.preset.raw, header=header)


def _read_json(path: Path) -> dict:
    """A job's JSON output, or {} (not done) where it is missing or damaged: unreadable, not
    JSON, or JSON that is not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def is_done(ctx: Context, job: Job) -> bool:
    """Whether the job's output exists, made with the preset's current settings."""
    if job.kind == "train":
        if read_result(ctx.run_dir(job.run) / "result.json") is None:
            return False  # missing, or damaged: the training job resumes and rewrites it
        try:
            checked_run_config(ctx, job)
        except RamlabError:  # a finished run made with another config: its job fails, saying
            return False  # so, and those needing it are skipped; the other jobs go on
        return True
    if job.kind == "eval":
        path = ctx.run_dir(job.run) / "eval.json"
        return path.is_file() and _read_json(path).get("settings") == eval_settings(ctx.preset.evaluate)
    if job.kind == "robustness":
        return not shifts_left(ctx, job)
    if job.kind == "cost":  # every cell there, of whatever code: a rerun after a commit redoes none
        return not cost_cells_left(ctx, _cost_rows_of(ctx))
    raise AssertionError(job.kind)


def shifts_left(ctx: Context, job: Job) -> dict[str, list]:
    """The sweep's shifts (name: levels) its robustness.json does not hold as the preset asks
    them, read as the sweep reads the file when it resumes (`robustness.read_robustness`):
    all of them where the file is missing, damaged (any shift, asked for or not) or of
    another kind of sweep (limit, policy); a format 6 file's moved scale levels are left.
    Unlike the sweep, this loads no weights: a best.pt replaced by hand since is not seen."""
    from ramlab.robustness import read_robustness, resolve_levels
    from ramlab.sweeps import same_sweep, without_moved_scale

    wanted = resolve_levels(datasets.dataset_spec(job.data), job.sweep.shifts)
    path = ctx.run_dir(job.run) / "robustness.json"
    if not path.is_file():
        return wanted
    try:
        done = without_moved_scale(read_robustness(path))
    except RamlabError:  # damaged: the study's sweep starts it afresh
        return wanted
    if not same_sweep(done, limit=job.sweep.limit, sample=job.sweep.sample):
        return wanted  # another kind of sweep: replaced
    return {
        name: levels
        for name, levels in wanted.items()
        if done["shifts"].get(name, {}).get("levels") != levels
    }


def cost_cells_left(ctx: Context, rows: list[dict]) -> set[tuple[str, int]]:
    """The (model, image size) cells of the preset's cost table that `rows` lack."""
    spec = ctx.preset.cost
    wanted = {(m, s) for m in spec.models for s in spec.sizes}
    return wanted - {(r["model"], r["size"]) for r in rows}


def _cost_rows_kept(ctx: Context, threads: int) -> list[dict]:
    """The rows of cost.json a cost job at `threads` keeps: those measured as the preset asks
    (`_cost_rows_of`), or none where any was measured by other code, threads (a node's) or
    torch: all are measured again, as the ratios divide only rows timed alike (`cost_ratios`)."""
    import torch

    from ramlab.provenance import run_commit

    rows = _cost_rows_of(ctx)
    here = {"commit": ctx.commit or run_commit(), "threads": threads, "torch": torch.__version__}
    if any(r.get(key) != value for r in rows for key, value in here.items()):
        return []
    return rows


def work_left(ctx: Context, job: Job) -> tuple[str, float]:
    """(model, units of work) the job has left, for the estimates and the rates learnt from
    what an attempt did: an interrupted training's validated epochs, a resumed sweep's kept
    shifts and a resumed cost job's measured cells are done."""
    if job.kind == "train":
        return units(job, ctx.preset, trained=epochs_trained(ctx.run_dir(job.run)))
    if job.kind == "robustness":
        return units(job, ctx.preset, levels=sum(map(len, shifts_left(ctx, job).values())))
    if job.kind == "cost":
        from ramlab.device import threads_given

        kept = _cost_rows_kept(ctx, threads_given(ctx.job_threads()))  # the threads run_job sets
        return units(job, ctx.preset, cells=len(cost_cells_left(ctx, kept)))
    return units(job, ctx.preset)
