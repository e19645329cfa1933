"""The study: a preset names every job of a study; `run_study` does the ones not done.

A preset (YAML, in `ramlab/presets/` or a user's file) lists groups of training runs, the
evaluations, robustness sweeps and cost measurements to make of them. The study directory:

    OUT/study.yaml                      the preset as run (after --seeds)
    OUT/runs/<group>-<data>-seed<S>/    a run directory per training job, and beside the
                                        trainer's files: eval.json, glimpses.png/.gif,
                                        robustness.json
    OUT/cost.json                       cost of every model at every image size
    OUT/jobs.jsonl                      one line per finished job (id, seconds, commit, command);
                                        a resumed study's time estimates start from it
    OUT/report.md, OUT/report.html      the report (`ramlab report OUT`)

The modules, each depending only on those above it:

    values, schema, messages   the preset file's schema (pydantic) and its error messages
    preset                     load_preset: Preset, RunGroup; run_config of a run
    plan                       build_plan: the jobs (Job.id, Job.deps); topological_order
    context, extras, jobs      what a job needs; run_<kind>(context, job), is_done, run_job
    estimate                   a job's units of work and seconds per unit (priors, learnt rates)
    runner                     Study: the serial runner (skip done jobs, time left, failures)
    job                        `python -m ramlab.study.job STUDY_DIR JOB_ID`: one job, for executors
"""

from ramlab.cost_rows import read_cost_rows
from ramlab.study.context import Context
from ramlab.study.extras import evaluate_run_extras
from ramlab.study.jobs import is_done, run_job
from ramlab.study.plan import Job, build_plan, topological_order
from ramlab.study.preset import Preset, RunGroup, load_preset, preset_names, preset_path
from ramlab.study.runner import Study, job_states, run_study
from ramlab.study.schema import CostSpec, EvalSpec, RobustnessSpec

__all__ = [
    "Context",
    "CostSpec",
    "EvalSpec",
    "Job",
    "Preset",
    "RobustnessSpec",
    "RunGroup",
    "Study",
    "build_plan",
    "evaluate_run_extras",
    "is_done",
    "job_states",
    "load_preset",
    "preset_names",
    "preset_path",
    "read_cost_rows",
    "run_job",
    "run_study",
    "topological_order",
]
