"""The study runner: every job of the plan not done yet, then the report.

`executor="serial"` (the default) runs the jobs one after the other in this process; any
other executor (`ramlab.execute`: local, ray, slurm) runs each job as its own process,
`python -m ramlab.study.job STUDY_DIR JOB_ID`, in dependency order, its output in
`STUDY_DIR/logs/<job id>.log`.

A job whose output exists is skipped; an interrupted training resumes from its last.pt; a
robustness sweep or a cost measurement keeps what it already wrote. A job that fails (a
RamlabError, or any other error: its traceback goes to the log) is logged and the jobs that
need it are skipped; the others go on, and the
failures are raised together at the end. So a study stopped at any point continues where
it stopped, and a finished job is never redone.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ramlab.errors import Interrupted, RamlabError
from ramlab.execute import Resources, Task, check_options, execute
from ramlab.files import remove_stale_temp, write_json
from ramlab.home import ramlab_home
from ramlab.lock import DirectoryLock
from ramlab.report.runs import PLAN
from ramlab.study import recipes
from ramlab.study.context import Context, log_to_stderr
from ramlab.study.estimate import Rates, finished_seconds, units
from ramlab.study.job import STUDY_COMMAND
from ramlab.study.jobs import is_done, refusal, run_job, save_preset, work_left
from ramlab.study.plan import Job, build_plan, run_dir, topological_order
from ramlab.study.preset import Preset, load_preset

JOB_COMMAND = (sys.executable, "-m", "ramlab.study.job")
"""The job entry point every executor but serial runs, followed by STUDY_DIR JOB_ID."""


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Study(Context):
    """The jobs of a preset in a study directory: which are done, running the rest."""

    def __init__(
        self,
        preset: Preset,
        out: str | Path,
        *,
        log: Callable[[str], None] = log_to_stderr,
        command: str | None = None,
        job_command: Sequence[str] = JOB_COMMAND,
    ) -> None:
        super().__init__(preset, out, log=log, command=command)
        self._rates = Rates()
        self.job_command = tuple(job_command)  # a wrapper (container, test data) may replace it

    def jobs(self) -> list[Job]:
        """Every job of the plan, each after the jobs it needs."""
        return topological_order(build_plan(self.preset))

    def is_done(self, job: Job) -> bool:
        return is_done(self, job)

    # ---- estimates -----------------------------------------------------------------------
    def _left(self, job: Job) -> tuple[str, float]:
        """(model, units of work) left of a job (`jobs.work_left`)."""
        return work_left(self, job)

    def _seconds(self, job: Job) -> float:
        model, work = self._left(job)
        return work * self._rates.per_unit(job.kind, model, job.data)

    def _learn_history(self, jobs: list[Job]) -> dict[str, float]:
        """Learn from what this study's finished jobs took (its jobs.jsonl); returns their seconds."""
        by_id = {job.id: job for job in jobs}
        taken = finished_seconds(self.out / "jobs.jsonl", by_id)
        # A resumed job's line: the seconds of its last part, and that part's units.
        for job_id, (seconds, work) in taken.items():
            job = by_id[job_id]
            model, whole = units(job, self.preset)
            self._rates.add(
                job.kind, model, work=whole if work is None else work, seconds=seconds, data=job.data
            )
        return {job_id: seconds for job_id, (seconds, _) in taken.items()}

    def times(self) -> list[tuple[Job, bool, float | None, str | None]]:
        """Every job, whether it is done, its seconds (what it took if done, None when
        jobs.jsonl does not say; else the estimate) and why it would fail before it starts
        (`jobs.refusal`; None for most). Reads the study folder; writes nothing."""
        jobs = self.jobs()
        taken = self._learn_history(jobs)
        rows = []
        for job in jobs:
            done = self.is_done(job)
            seconds = taken.get(job.id) if done else self._seconds(job)
            rows.append((job, done, seconds, None if done else refusal(self, job)))
        return rows

    # ---- running -------------------------------------------------------------------------
    @staticmethod
    def check_serial_options(options: Mapping[str, object]) -> None:
        """The serial study takes no executor options: a RamlabError that says what does."""
        if options:
            raise RamlabError(
                f"--option {', '.join(options)}: the serial study runs its jobs in this process, "
                "so executor options do not apply; for a job's time limit run one job at a time "
                "as a command: --executor local --jobs 1 --option timeout_min=N"
            )

    def run(
        self,
        *,
        report: bool = True,
        executor: str = "serial",
        resources: Resources | None = None,
        options: Mapping[str, object] | None = None,
    ) -> Path | None:
        """Run every job not done yet, then write the report; returns report.md's path.

        A job that fails (e.g. a loss that became NaN) is logged and the study goes on with
        the jobs that do not need it; the report is written from what finished, and then the
        failures are raised together (with each job's log under a parallel executor).
        Rerunning retries them and skips what is done.
        """
        if executor == "serial" and options:
            self.check_serial_options(options)
        if executor != "serial":
            check_options(executor, options or {})  # before the study's folder is made
        with DirectoryLock(
            self.out, self.command, what="study", resume="run the same command again to go on"
        ):
            remove_stale_temp(self.out)
            try:
                if executor == "serial":
                    return self._run(report=report)
                return self._run_processes(
                    executor, resources or Resources(), dict(options or {}), report=report
                )
            except KeyboardInterrupt as exc:
                raise Interrupted(
                    f"study interrupted; finished jobs are kept. Resume with: {self.command}",
                    exit_code=getattr(exc, "exit_code", 130),  # 143 for SIGTERM
                ) from None

    def _start(self, how: str, *, serial: bool = True) -> tuple[list[Job], list[Job]]:
        """Record the code and the preset, say what is to do; returns (all jobs, jobs to run).
        The estimate is the jobs' time summed: in parallel, the executor's lines divide it."""
        from ramlab.provenance import run_commit

        self.commit = run_commit()  # the code this process loaded, whatever the tree holds later
        save_preset(self)  # job processes read the preset from study.yaml
        copied = recipes.save(self.preset, self.out)  # and the recipes from STUDY/recipes/
        if copied and any((self.out / "runs").glob("*/config.yaml")):
            self.log(recipes.late_note(copied, self.out))
        if self.recipes_changed:
            self.log(recipes.changed_note(self.recipes_changed, self.out))
        jobs = self.jobs()
        # The report takes these runs only (a seed of an earlier --seeds stays on disk).
        planned = sorted({str(run_dir(".", job.run)) for job in jobs if job.run})
        write_json(self.out / PLAN, {"runs": planned})
        todo = [job for job in jobs if not self.is_done(job)]
        self._learn_history(jobs)  # what this study's machine took before
        self.log(
            f"[study] {self.preset.name}: {len(jobs)} jobs, {len(jobs) - len(todo)} already done, "
            f"{len(todo)} to run {how} (estimate {duration(sum(self._seconds(j) for j in todo))}"
            f"{'' if serial else ' of job time'}) in {self.out}"
        )
        return jobs, todo

    def _run(self, *, report: bool) -> Path | None:
        jobs, todo = self._start("in this process")
        by_id = {job.id: job for job in jobs}
        failures: list[str] = []
        failed: set[str] = set()
        skipped: set[str] = set()
        for i, job in enumerate(todo):
            if i and self.is_done(job):  # e.g. done by a concurrent study on the same folder
                continue
            blocked = [dep for dep in job.deps if dep in failed or dep in skipped]
            if blocked:
                skipped.add(job.id)
                self.log(f"[study] skipped: {job.title} ({_why(job, by_id[blocked[0]], failed)})")
                continue
            remaining = sum(self._seconds(j) for j in todo[i:])
            self.log(
                f"[study] job {len(jobs) - len(todo) + i + 1}/{len(jobs)}: {job.title} "
                f"({len(todo) - i - 1} more after it; time left ~{duration(remaining)})"
            )
            model, work = self._left(job)
            try:
                seconds = run_job(self, job)
            except Exception as exc:  # one job's failure, as under the process executors
                reason = str(exc)
                if not isinstance(exc, RamlabError):  # CUDA out of memory, a full disk, a bug
                    self.log(traceback.format_exc().rstrip())
                    reason = f"{type(exc).__name__}: {exc}"
                self.log(f"[study] FAILED: {job.title}: {reason}")
                failures.append(f"{job.title}: {reason}")
                failed.add(job.id)
                continue
            self._rates.add(job.kind, model, work, seconds=seconds, data=job.data)
            self.log(f"[study] done: {job.title} in {duration(seconds)}")
        return self._finish(failures, report=report)

    def _run_processes(
        self, executor: str, resources: Resources, options: dict[str, object], *, report: bool
    ) -> Path | None:
        """Each job not done as its own process through `executor`, in dependency order."""
        self.run_by(executor, resources.threads_per_job)  # the jobs' RAMLAB_THREADS
        _, todo = self._start(
            f"with --executor {executor} ({resources.jobs} at once, {resources.threads_per_job} thread(s) each)",
            serial=False,
        )
        pending = {job.id for job in todo}
        # A job may run on another machine (Ray, Slurm), in another working directory and
        # (Ray) without this process's environment: the folder is absolute, and the cache's
        # place goes with it where one was set.
        out = self.out.resolve()
        env = {STUDY_COMMAND: self.command}
        if os.environ.get("RAMLAB_HOME") or os.environ.get("XDG_CACHE_HOME"):
            env["RAMLAB_HOME"] = str(ramlab_home().resolve())  # as ramlab_home() reads them
        tasks = [
            Task(
                id=job.id,
                argv=(*self.job_command, str(out), job.id),
                log=out / "logs" / f"{job.id}.log",
                deps=tuple(dep for dep in job.deps if dep in pending),  # the others are done
                title=job.title,
                seconds=self._seconds(job),
                env=env,
                alone=job.kind == "cost",  # its timings share the machine with no other job
            )
            for job in todo
        ]
        outcomes = execute(
            tasks,
            executor=executor,
            resources=resources,
            progress=lambda line: self.log(f"[study] {line}"),
            **options,
        )
        titles = {job.id: job.title for job in todo}
        for skipped in (o for o in outcomes if o.skipped):
            self.log(f"[study] skipped: {titles[skipped.id]} ({skipped.reason.removeprefix('skipped: ')})")
        failures = [
            f"{titles[o.id]}: {o.reason} (log: {o.log})" for o in outcomes if not o.ok and not o.skipped
        ]
        return self._finish(failures, report=report)

    def _finish(self, failures: list[str], *, report: bool) -> Path | None:
        """Write the report from what finished; then raise the failures together."""
        path = None
        if report:
            from ramlab.report import write_report

            try:
                path = write_report(self.out)
                self.log(f"[study] report: {path} and {path.with_suffix('.html')}")
            except Exception as exc:  # a report bug must not hide the jobs' failures
                if not failures:
                    raise
                if not isinstance(exc, RamlabError):
                    self.log(traceback.format_exc().rstrip())
                failures.append(f"report: {type(exc).__name__}: {exc}")
        if failures:
            jobs = sum(not f.startswith("report: ") for f in failures)
            what = f"{jobs} job(s) of the study failed" + (
                ", and so did the report" if jobs < len(failures) else ""
            )
            raise RamlabError(
                f"{what}; the rest is done and kept, and rerunning the study retries them:\n  "
                + "\n  ".join(failures)
            )
        return path


def _why(job: Job, dep: Job, failed: set[str]) -> str:
    if dep.kind == "train" and dep.run == job.run and dep.id in failed:
        return "its training failed"
    return f"{dep.title} {'failed' if dep.id in failed else 'was skipped'}"


def run_study(
    preset: str | Path,
    *,
    out: str | Path | None = None,
    seeds: int | None = None,
    log: Callable[[str], None] = log_to_stderr,
    command: str | None = None,
) -> Path | None:
    """Load a preset (packaged name or YAML file), run what is not done, write the report."""
    loaded = load_preset(preset, seeds=seeds)
    out = Path(out) if out else Path("studies") / loaded.name
    return Study(loaded, out, log=log, command=command).run()


def job_states(preset: Preset, out: str | Path) -> list[tuple[Job, bool]]:
    """Every job of the study in `out` and whether it is done."""
    study = Study(preset, out, log=lambda _: None)
    return [(job, study.is_done(job)) for job in study.jobs()]
