"""`ramlab study PRESET|FILE.yaml [--out DIR] [--seeds N] [--list] [--executor E --jobs N
--threads-per-job T --gpus-per-job F --option KEY=VALUE]` and `ramlab report DIR`."""

from __future__ import annotations

import argparse
import shlex
import sys
import textwrap
from pathlib import Path

from ramlab.errors import RamlabError


def register(sub: argparse._SubParsersAction) -> None:
    from ramlab.study import preset_names

    presets = ", ".join(preset_names())
    p = sub.add_parser(
        "study",
        help="run a whole study (training, evaluation, robustness, cost) and write its report",
        description="Run every job of a preset that is not done yet, then write the report. "
        "Finished jobs are skipped and an interrupted study resumes where it stopped, so the "
        f"same command continues it. Packaged presets: {presets}.",
    )
    p.add_argument("preset", metavar="PRESET", help=f"a packaged preset ({presets}) or a YAML file")
    p.add_argument("--out", metavar="DIR", help="study folder (default: studies/<preset name>)")
    p.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        help="seeds per run group (replaces the preset's `seeds`; groups with their own keep it)",
    )
    p.add_argument(
        "--list",
        action="store_true",
        help="list the jobs, which are done, what each took or is estimated to take, and any that would be refused or blocked (and why); run nothing",
    )
    run = p.add_argument_group("executors (see the README: one machine, a Ray cluster, Slurm)")
    run.add_argument(
        "--executor",
        default="serial",
        choices=("serial", "local", "ray", "slurm"),
        help="serial: one job after another in this process (default); local: N jobs at once as "
        "subprocesses; ray: Ray tasks (RAY_ADDRESS, or a local Ray; pip install 'ramlab[ray]'); "
        "slurm: job arrays per dependency level (pip install 'ramlab[slurm]')",
    )
    run.add_argument("--jobs", type=int, default=1, metavar="N", help="jobs at once (default 1)")
    run.add_argument(
        "--threads-per-job",
        type=int,
        default=None,
        metavar="T",
        help="CPU threads of each job (default 1; serial: the preset's); N x T may not exceed the CPUs",
    )
    run.add_argument(
        "--gpus-per-job",
        type=float,
        default=0.0,
        metavar="F",
        help="GPUs of each job where GPUs are visible: 0.25 puts four jobs on one GPU (default 0)",
    )
    run.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an executor option, repeatable: e.g. local timeout_min=600 (a job's time limit); "
        "ray retries=2 address=auto; slurm timeout_min=600 max_requeues=5 sbatch.partition=gpu "
        "sbatch.account=ml",
    )
    p.set_defaults(handler=cmd_study)

    p = sub.add_parser(
        "report",
        help="write report.md and report.html for a study (or any folder of runs)",
        description="Read the run directories under DIR (and DIR/cost.json) and write "
        "DIR/report.md and a self-contained DIR/report.html. Reads files only.",
    )
    p.add_argument("dir", metavar="DIR", help="a study folder, or any folder holding run directories")
    p.set_defaults(handler=cmd_report)


def cmd_study(args: argparse.Namespace) -> int:
    from ramlab.execute import Resources
    from ramlab.study import Study, load_preset

    preset = load_preset(args.preset, seeds=args.seeds)
    out = Path(args.out) if args.out else Path("studies") / preset.name
    if (out / "config.yaml").is_file() and not (out / "study.yaml").is_file():
        raise RamlabError(
            f"{out} is a training run's folder (its config.yaml): choose another --out for the study"
        )
    study = Study(preset, out, command=shlex.join(["ramlab", *sys.argv[1:]]))
    resources = Resources(  # checked before --list too: a listed command is one that runs
        jobs=args.jobs,
        threads_per_job=1 if args.threads_per_job is None else args.threads_per_job,
        gpus_per_job=args.gpus_per_job,
    )
    if args.executor == "serial" and (args.jobs > 1 or args.gpus_per_job):
        raise RamlabError("--jobs and --gpus-per-job need a parallel --executor (local, ray or slurm)")
    options = parse_options(args.option)
    if args.executor == "serial" and options:
        study.check_serial_options(options)
    if args.executor != "serial":
        from ramlab.execute import check_options

        check_options(args.executor, options)
    # The jobs' threads: the executor's T; serially torch's threads in this process, where given.
    serial_default = args.executor == "serial" and args.threads_per_job is None
    study.run_by(args.executor, None if serial_default else resources.threads_per_job)
    if args.executor == "serial" or (args.executor == "local" and not args.gpus_per_job):
        from ramlab.execute.resources import check_cpus

        # as the executor will (a GPU pool may lower the local executor's --jobs first), for
        # --list too; the in-process serial study would otherwise cap torch's threads quietly
        check_cpus(args.jobs, resources.threads_per_job)
    if args.list:
        from ramlab.study.runner import duration

        rows = study.times()
        todo, stopped = [], {}  # seconds of the jobs to do; the title of each job that cannot run
        for i, (job, done, seconds, refused) in enumerate(rows, start=1):
            waits = next((stopped[dep] for dep in job.deps if dep in stopped), None)
            if refused or (waits and not done):  # it would fail, or be skipped: no estimate
                stopped[job.id] = job.title
                why = refused or f"skipped: it needs {waits}, which cannot run"
                print(f"{i:>4}  {'refused' if refused else 'blocked':<7} {'':>7}  {job.title}")
                print(textwrap.indent(why, " " * 8))
                continue
            took = "" if seconds is None else f"{'' if done else '~'}{duration(seconds)}"
            print(f"{i:>4}  {'done' if done else 'to do':<7} {took:>7}  {job.title}")
            if not done:
                todo.append(seconds)
        n_refused = sum(1 for *_, reason in rows if reason)
        n_blocked = len(stopped) - n_refused
        print(
            f"{len(rows)} jobs: {len(rows) - len(todo) - len(stopped)} done, {len(todo)} to do"
            f"{f', {n_refused} refused, {n_blocked} blocked by them (each says why)' if stopped else ''}, "
            f"~{duration(sum(todo))} "
            "of job time (estimated from this study's finished jobs, else from rates measured on 2 CPU cores)"
        )
        return 0
    trainings = [job for job in study.jobs() if job.kind == "train" and not study.is_done(job)]
    if any(study.run_config(job, chosen_reward=False).train.tensorboard for job in trainings):
        from ramlab.metrics import check_tensorboard

        check_tensorboard()  # else each of these jobs would fail on it
    path = study.run(executor=args.executor, resources=resources, options=options)
    print(path)
    return 0


def parse_options(pairs: list[str]) -> dict[str, object]:
    """`KEY=VALUE` pairs as executor options; VALUE is read as YAML (numbers, true/false,
    text), and `sbatch.partition=gpu` fills the `sbatch` mapping (its values as text; an
    empty one or `true`, a bare flag)."""
    import yaml

    from ramlab.config import yaml_value

    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise RamlabError(f"--option {pair!r}: write KEY=VALUE, e.g. retries=2")
        try:
            # an #SBATCH value stays as written (YAML reads 10:00:00 as 36000, 0123 as octal
            # and on as true); none, or true, is a bare flag (sbatch.exclusive=: --exclusive)
            if key.startswith("sbatch."):
                value = True if text.lower() in ("", "true") else text
            else:
                value = yaml_value(text) if text else ""
        except yaml.YAMLError as exc:
            problem = str(exc).splitlines()[0]
            raise RamlabError(f"--option {pair!r}: VALUE is not valid YAML ({problem})") from None
        outer, dot, inner = key.partition(".")
        if dot and not inner:
            raise RamlabError(f"--option {pair!r}: write {outer}.KEY=VALUE")
        clash = outer in options
        if inner:
            held = options.setdefault(outer, {})
            clash = not isinstance(held, dict) or inner in held
        if clash:
            raise RamlabError(f"--option {key} is given twice, or {outer} both as a value and as {outer}.KEY")
        if inner:
            options[outer][inner] = value  # type: ignore[index]
        else:
            options[key] = value
    return options


def cmd_report(args: argparse.Namespace) -> int:
    from ramlab.report import write_report

    path = write_report(args.dir)
    print(f"{path}\n{path.with_suffix('.html')}")
    return 0
